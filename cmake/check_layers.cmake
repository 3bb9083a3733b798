# check_layers.cmake: fails when a file includes a header from a layer above its own.
# cmake -DROOT=<source tree> -P check_layers.cmake
#
# Layers, lowest first: kernels/ -> src/formats/ -> src/model/ -> src/runtime/ ->
# include/effort/effort.h, with src/convert/ and src/eval/ beside src/runtime/ (above model/,
# used by no other src/ folder). The public value types (effort/config.h, error.h,
# types.h) are the vocabulary every src/ layer shares; effort/effort.h and effort/tokenizer.h
# declare what runtime/ implements.
set(vocabulary "effort/config.h;effort/error.h;effort/types.h")
set(allowed_kernels "kernels/")
set(allowed_formats "kernels/;formats/;${vocabulary}")
set(allowed_model "kernels/;formats/;model/;${vocabulary}")
set(allowed_convert "kernels/;formats/;model/;convert/;${vocabulary}")
set(allowed_eval "eval/;${vocabulary}")
set(allowed_runtime "kernels/;formats/;model/;runtime/;effort/")
set(allowed_include "effort/")
set(layers "kernels=kernels" "formats=src/formats" "model=src/model" "convert=src/convert" "eval=src/eval"
           "runtime=src/runtime" "include=include/effort")

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
      # A bare name found beside the file is an include within its own folder.
      get_filename_component(dir "${file}" DIRECTORY)
      set(ok FALSE)
      if(NOT header MATCHES "/" AND EXISTS "${dir}/${header}")
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
