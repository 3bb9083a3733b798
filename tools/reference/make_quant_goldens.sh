#!/usr/bin/env bash
# make_quant_goldens.sh: the test data for tests/ggml_types_test.cpp, made by llama.cpp's own
# tools: llama-quantize quantizes a 1-layer synthetic Mistral-7B-shaped model to each type, and
# llama.cpp's gguf-py package decodes the first 1024 weights of blk.0.attn_q.weight. Run by hand
# (it needs the llama.cpp checkout that bench/compare-llama.sh builds, and Debian's
# python3-numpy); writes tests/data/ggml_types/TYPE.blocks (the raw blocks), TYPE.f32
# (gguf-py's decoded floats) and input.f32 (the F16 weights llama-quantize was given, as floats).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
llama=${LLAMA_CPP_DIR:-${EFFORT_CACHE:-$HOME/.cache/effort}/llama.cpp}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/build/bin/effort-synthetic-model" -o "$work/f16.gguf" --layers 1 --seed 7
for type in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K; do
  "$llama/build/bin/llama-quantize" --pure "$work/f16.gguf" "$work/$type.gguf" "$type" >"$work/$type.log" 2>&1
done
PYTHONPATH="$llama/gguf-py" /usr/bin/python3 - "$work" "$here/tests/data/ggml_types" <<'PY'
import sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
work, out = sys.argv[1:3]
source = next(t for t in GGUFReader(f"{work}/f16.gguf").tensors if t.name == "blk.0.attn_q.weight")
np.asarray(source.data).reshape(-1)[:1024].astype(np.float32).tofile(f"{out}/input.f32")
for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]:
    reader = GGUFReader(f"{work}/{name}.gguf")
    t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    assert t.tensor_type.name == name, (name, t.tensor_type.name)
    raw = np.asarray(t.data).reshape(-1).view(np.uint8)
    values = dequantize(np.asarray(t.data), t.tensor_type).reshape(-1)
    n = 1024  # 32 blocks of 32, or 4 super-blocks of 256
    blocks = raw[: raw.size * n // values.size]
    blocks.tofile(f"{out}/{name.lower()}.blocks")
    values[:n].astype(np.float32).tofile(f"{out}/{name.lower()}.f32")
    print(name, blocks.size, "bytes ->", n, "weights")
PY
