# check_layers.cmake: fails when a file includes a header from a layer above its own.
# cmake -DROOT=<source tree> -P check_layers.cmake
#
# Layers, lowest first: kernels/ -> src/formats/ -> src/model/ -> src/runtime/ -> include/effort/
# -> tools/, with src/convert/ and src/eval/ beside src/runtime/ (above model/, used by no other
# src/ folder). The public value types (effort/config.h, error.h, types.h) are the vocabulary
# every src/ layer shares; effort/effort.h, tokenizer.h, convert.h and eval.h declare what
# runtime/, convert/ and eval/ implement. Of kernels/, src/ sees only the SIMD-free headers: the
# kernel table, fp16 conversions and the bucket view. Tools see only the public API (and their
# own headers, and the server's generated chat page); the benchmarks may reach further, into
# kernels/ and the formats and model layers, to time and measure them apart.
set(vocabulary "effort/config.h;effort/error.h;effort/types.h")
set(simd_free_kernels "kernels/kernels.h;kernels/fp16.h;kernels/bucket_view.h;kernels/unit.h")
set(allowed_kernels "kernels/")
set(allowed_formats "${simd_free_kernels};formats/;${vocabulary}")
set(allowed_model "${simd_free_kernels};formats/;model/;${vocabulary}")
set(allowed_convert "${simd_free_kernels};formats/;model/;effort/convert.h;${vocabulary}")
set(allowed_eval "effort/eval.h;${vocabulary}")
set(allowed_runtime "${simd_free_kernels};formats/;model/;runtime/;effort/")
set(allowed_include "effort/")
set(allowed_tools "effort/;chat_page.h")
set(allowed_bench "effort/;kernels/;formats/;model/;cli.h;exit_flags.h;svg_plot.h")
set(layers "kernels=kernels" "formats=src/formats" "model=src/model" "convert=src/convert" "eval=src/eval"
           "runtime=src/runtime" "include=include/effort" "tools=tools" "bench=bench")

if(NOT IS_DIRECTORY "${ROOT}/src")
  message(FATAL_ERROR "check_layers: ROOT=${ROOT} has no src/ folder")
endif()
set(violations "")
foreach(entry IN LISTS layers)
  string(REPLACE "=" ";" pair "${entry}")
  list(GET pair 0 layer)
  list(GET pair 1 folder)
  file(GLOB_RECURSE files "${ROOT}/${folder}/*.h" "${ROOT}/${folder}/*.cpp")
  foreach(file IN LISTS files)
    file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    foreach(line IN LISTS lines)
      string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]*\"([^\"]*)\".*" "\\1" header "${line}")
      # A name found relative to the file, inside its own layer's folder, is an include within
      # the layer (a bare name beside it, or ../cli.h from tools/server/).
      get_filename_component(dir "${file}" DIRECTORY)
      get_filename_component(resolved "${dir}/${header}" ABSOLUTE)
      set(ok FALSE)
      string(FIND "${resolved}" "${ROOT}/${folder}/" inside)
      if(EXISTS "${resolved}" AND inside EQUAL 0)
        set(ok TRUE)
      endif()
      foreach(prefix IN LISTS allowed_${layer})
        string(FIND "${header}" "${prefix}" at)
        if(at EQUAL 0)
          set(ok TRUE)
        endif()
      endforeach()
      if(NOT ok)
        file(RELATIVE_PATH where "${ROOT}" "${file}")
        string(APPEND violations "  ${where} includes \"${header}\"; ${layer} may include only: ${allowed_${layer}}\n")
      endif()
    endforeach()
  endforeach()
endforeach()
if(violations)
  message(FATAL_ERROR "check_layers: includes that point up a layer:\n${violations}")
endif()
message(STATUS "check_layers: every include of ${ROOT} points down or sideways within its layer")
