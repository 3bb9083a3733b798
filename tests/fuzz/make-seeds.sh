#!/usr/bin/env bash
# make-seeds.sh BIN_DIR OUT_DIR: the fuzz targets' seed corpora, one folder per target: the
# hand-written inputs in seeds/, the fixture's config, tokenizer and weights, and model files
# written by BIN_DIR's tools: with effort-synthetic-model (the benchmarks' build), 70 KB models
# (dense and 4 experts) as GGUF and .effort (fast to fuzz); without it, the fixture converted (400-500 KB).
set -euo pipefail
bin=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
fixture=$here/../../models/stories260K
rm -rf "$out"
mkdir -p "$out"/{fuzz_model_file,fuzz_safetensors,fuzz_config,fuzz_tokenizer,fuzz_request,fuzz_cli_lists}
cp -r "$here/seeds/." "$out/"
cp "$fixture/config.json" "$out/fuzz_config/"
cp "$fixture/tokenizer.model" "$out/fuzz_tokenizer/"
if [ -x "$bin/effort-synthetic-model" ]; then
  "$bin/effort-synthetic-model" --tiny -o "$out/fuzz_model_file/tiny.gguf" 2>/dev/null
  "$bin/effort-convert" "$out/fuzz_model_file/tiny.gguf" -o "$out/fuzz_model_file/tiny.effort" >/dev/null 2>&1
  # and a mixture of experts (3-D expert tensors, routers)
  "$bin/effort-synthetic-model" --tiny --experts 4 -o "$out/fuzz_model_file/tiny-moe.gguf" 2>/dev/null
  "$bin/effort-convert" "$out/fuzz_model_file/tiny-moe.gguf" -o "$out/fuzz_model_file/tiny-moe.effort" >/dev/null 2>&1
elif [ -d "$fixture" ]; then
  "$bin/effort-convert" "$fixture" -o "$out/fuzz_model_file/fixture.effort" >/dev/null 2>&1
  "$bin/effort-convert" "$fixture" -o "$out/fuzz_model_file/fixture.gguf" >/dev/null 2>&1
else
  echo "make-seeds.sh: $fixture is absent and $bin has no effort-synthetic-model: no model file seeds" >&2
fi
