#!/usr/bin/env bash
# compare-llama.sh: llama.cpp's llama-bench and our effort-bench on the same GGUF, same threads,
# one after the other, printed as one table (and kept as JSON).
#
#   bench/compare-llama.sh [--model F16.gguf | --layers N [--experts E]] [-t THREADS] [-r REPS] [-p N] [-n N]
#                          [--efforts LIST] [--bucket-size S] [--weights LIST] [--no-mmap] [--out DIR]
#
# Without --model it writes a synthetic Mistral-7B-shaped GGUF (F16, random weights) with N
# layers (default 8); with --experts E, a Mixtral-8x7B-shaped one (E experts per layer, 2 per
# token; Mixtral-8x7B's layers at E = 8). llama.cpp runs the F16 file and its own Q8_0 and Q4_0 quantizations of it;
# we run the F16 file and llama.cpp's Q8_0 file directly (dense) and the F16 file's
# effort-convert'ed .effort files (buckets of S, default the converter's; entries of each of
# --weights, default f16,q8) at each effort.
# --no-mmap loads weights into process memory in both engines (llama-bench -lm none).
#
# llama.cpp comes from the npm registry: the node-llama-cpp package carries the llama.cpp
# sources as a git bundle (llama/gitRelease.bundle), which is cloned and built with CMake in the
# cache folder ($EFFORT_CACHE, default ~/.cache/effort), never in this repository. Set
# LLAMA_CPP_DIR to use a llama.cpp checkout of your own (built in LLAMA_CPP_DIR/build). Where
# llama.cpp cannot be had (no npm, no network, a failed build), the script says why and
# benchmarks ours alone.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${EFFORT_BIN:-$here/build/bin}
cache=${EFFORT_CACHE:-$HOME/.cache/effort}
node_llama_cpp_version=${NODE_LLAMA_CPP_VERSION:-3.22.1}
model="" layers=8 experts=0 threads=2 reps=5 n_prompt=512 n_gen=128 efforts=1,0.5,0.25 out="" no_mmap="" bucket_size=2 weights=f16,q8

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --experts) experts=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    -p) n_prompt=$2; shift 2 ;;
    -n) n_gen=$2; shift 2 ;;
    --efforts) efforts=$2; shift 2 ;;
    --bucket-size) bucket_size=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-mmap) no_mmap=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare-llama.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v python3 >/dev/null || { echo "compare-llama.sh: python3 not found (Debian: apt-get install python3); it prints the table" >&2; exit 1; }
for tool in effort-bench effort-convert effort-synthetic-model; do
  [ -x "$bin/$tool" ] || { echo "compare-llama.sh: $bin/$tool not found: build the project first (README)" >&2; exit 1; }
done
mkdir -p "$cache/models"
out=${out:-$cache/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# --- llama.cpp ------------------------------------------------------------------------------
skip_llama=""
llama_version=""
get_llama() {
  local dir=${LLAMA_CPP_DIR:-$cache/llama.cpp}
  llama_bin=$dir/build/bin
  if [ ! -x "$llama_bin/llama-bench" ] || [ ! -x "$llama_bin/llama-quantize" ]; then
    if [ -z "${LLAMA_CPP_DIR:-}" ] && [ ! -d "$dir" ]; then
      command -v npm >/dev/null || { skip_llama="npm not found (Debian: apt-get install nodejs npm)"; return; }
      command -v git >/dev/null || { skip_llama="git not found"; return; }
      local npm_dir=$cache/npm
      mkdir -p "$npm_dir"
      echo "[compare] fetching node-llama-cpp@$node_llama_cpp_version from the npm registry" >&2
      (cd "$npm_dir" && npm pack --silent "node-llama-cpp@$node_llama_cpp_version" >/dev/null 2>"$out/npm.log") ||
        { skip_llama="npm pack node-llama-cpp@$node_llama_cpp_version failed (see $out/npm.log)"; return; }
      tar -xzf "$npm_dir/node-llama-cpp-$node_llama_cpp_version.tgz" -C "$npm_dir" \
        package/llama/gitRelease.bundle package/llama/llama.cpp.info.json ||
        { skip_llama="the package has no llama/gitRelease.bundle"; return; }
      git clone -q "$npm_dir/package/llama/gitRelease.bundle" "$dir" 2>"$out/clone.log" ||
        { skip_llama="cloning the bundle failed (see $out/clone.log)"; rm -rf "$dir"; return; }
      cp "$npm_dir/package/llama/llama.cpp.info.json" "$dir/node-llama-cpp.info.json"
    fi
    echo "[compare] building llama.cpp in $dir (a few minutes)" >&2
    # Native, but without AMX: CPUs that advertise it under a hypervisor that does not grant its
    # tile state kill llama-bench with SIGILL on Q8_0 (seen on this project's Xeon VMs).
    local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    { cmake -S "$dir" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF "-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx" &&
      cmake --build "$dir/build" -j"$(nproc)" --target llama-bench llama-quantize llama-simple; } >"$out/llama-build.log" 2>&1 ||
      { skip_llama="building llama.cpp failed (see $out/llama-build.log)"; return; }
  fi
  # llama-simple (greedy text) came later than the first builds: added to an existing build.
  [ -x "$llama_bin/llama-simple" ] || cmake --build "$dir/build" -j"$(nproc)" --target llama-simple >"$out/llama-build.log" 2>&1 || true
  llama_version="llama.cpp $(git -C "$dir" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [ -f "$dir/node-llama-cpp.info.json" ] && llama_version+=" (node-llama-cpp@$node_llama_cpp_version bundle)"
}
get_llama || true
[ -n "$skip_llama" ] && echo "[compare] skipping llama.cpp: $skip_llama" >&2

# --- the model ------------------------------------------------------------------------------
if [ -z "$model" ]; then
  if [ "$experts" -gt 0 ]; then
    model=$cache/models/synthetic-7b-shape-${layers}layer-moe${experts}x2-f16.gguf
    [ -f "$model" ] || "$bin/effort-synthetic-model" -o "$model" --layers "$layers" --experts "$experts" --experts-per-token 2
  else
    model=$cache/models/synthetic-7b-shape-${layers}layer-f16.gguf
    [ -f "$model" ] || "$bin/effort-synthetic-model" -o "$model" --layers "$layers"
  fi
fi
[ -f "$model" ] || { echo "compare-llama.sh: --model $model: no such file" >&2; exit 1; }
stem=$cache/models/$(basename "$model" .gguf)
# Named by layout and file format version, so that a cached file of an older build is not reused.
effort_models=()
for w in ${weights//,/ }; do
  effort_model=$stem-buckets$bucket_size$([ "$w" = f16 ] || echo "-$w")-v4.effort
  [ -f "$effort_model" ] || "$bin/effort-convert" "$model" -o "$effort_model" --bucket-size "$bucket_size" --weights "$w"
  effort_models+=("$effort_model")
done

# --- runs -----------------------------------------------------------------------------------
if [ -z "$skip_llama" ]; then
  for q in Q8_0 Q4_0; do
    [ -f "$stem-$q.gguf" ] || "$llama_bin/llama-quantize" "$model" "$stem-$q.gguf" "$q" >"$out/quantize-$q.log" 2>&1
  done
  for f in "$model" "$stem-Q8_0.gguf" "$stem-Q4_0.gguf"; do
    echo "[compare] llama-bench $(basename "$f")" >&2
    "$llama_bin/llama-bench" -m "$f" -p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" -o json \
      -lm "$([ -n "$no_mmap" ] && echo none || echo mmap)" \
      >"$out/llama-$(basename "$f" .gguf).json" 2>"$out/llama-bench.log"
  done
fi
ours=(-p "$n_prompt" -n "$n_gen" -t "$threads" -r "$reps" -o json ${no_mmap:+--no-mmap})
echo "[compare] effort-bench $(basename "$model") (dense)" >&2
"$bin/effort-bench" -m "$model" "${ours[@]}" >"$out/effort-dense.json"
if [ -f "$stem-Q8_0.gguf" ]; then
  echo "[compare] effort-bench $(basename "$stem-Q8_0.gguf") (dense)" >&2
  "$bin/effort-bench" -m "$stem-Q8_0.gguf" "${ours[@]}" >"$out/effort-dense-Q8_0.json"
fi
rm -f "$out"/effort-buckets*.json
for effort_model in "${effort_models[@]}"; do
  layout=$(basename "$effort_model" -v4.effort)
  layout=${layout#"$(basename "$stem")-"}
  echo "[compare] effort-bench $(basename "$effort_model")" >&2
  "$bin/effort-bench" -m "$effort_model" "${ours[@]}" --effort "$efforts" --stages >"$out/effort-$layout.json"
done
printf '%s\n' "${llama_version:-llama.cpp: skipped ($skip_llama)}" >"$out/versions.txt"

# --- the same greedy text -------------------------------------------------------------------
# Both engines, greedy, 16 tokens after the same prompt on the F16 file: the text must match.
greedy=""
if [ -z "$skip_llama" ] && [ -x "$llama_bin/llama-simple" ]; then
  prompt="Once upon a time"
  "$bin/effort-run" -m "$model" -p "$prompt" -n 16 --temp 0 -t "$threads" >"$out/greedy-effort.txt" 2>/dev/null
  "$llama_bin/llama-simple" -m "$model" -n 16 "$prompt" >"$out/greedy-llama.txt" 2>/dev/null
  # effort-run prints the prompt as text, llama-simple as its pieces ("<s>▁Once▁upon..."): the
  # generated words are compared, ours against as many last words of llama.cpp's.
  if python3 - "$out/greedy-effort.txt" "$out/greedy-llama.txt" "$prompt" <<'EOF'
import sys
ours = open(sys.argv[1]).read().strip()[len(sys.argv[3]):].split()
theirs = open(sys.argv[2]).read().split()
sys.exit(0 if ours and theirs[-len(ours):] == ours else 1)
EOF
  then
    greedy="greedy, 16 tokens after \"$prompt\": the same text from llama.cpp and effort"
  else
    greedy="greedy, 16 tokens after \"$prompt\": DIFFERENT text (see $out/greedy-*.txt)"
  fi
fi

# --- one table ------------------------------------------------------------------------------
python3 - "$out" "$llama_version" "$(basename "$model")" <<'EOF'
import glob, json, os, sys
out, version, model = sys.argv[1:4]
rows = []
for path in sorted(glob.glob(os.path.join(out, "llama-*.json"))):
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        rows.append(("llama.cpp " + r["model_type"].split()[-1], r["model_size"] / 2**30, r["n_threads"], test,
                     r["avg_ts"], r["stddev_ts"], r["samples_ts"]))
for r in json.load(open(os.path.join(out, "effort-dense.json"))):
    rows.append(("effort, GGUF as is (dense)", r["size_bytes"] / 2**30, r["threads"], r["test"], r["tps_mean"],
                 r["tps_sd"], r["reps"]))
if os.path.exists(os.path.join(out, "effort-dense-Q8_0.json")):
    for r in json.load(open(os.path.join(out, "effort-dense-Q8_0.json"))):
        rows.append(("effort, Q8_0 GGUF as is (dense)", r["size_bytes"] / 2**30, r["threads"], r["test"], r["tps_mean"],
                     r["tps_sd"], r["reps"]))
layouts = sorted(glob.glob(os.path.join(out, "effort-buckets*.json")))
for path in layouts:
    layout = os.path.basename(path)[len("effort-"):-len(".json")]
    for r in json.load(open(path)):
        rows.append((f"effort .effort {layout} at {r['effort']:g}", r["size_bytes"] / 2**30, r["threads"], r["test"],
                     r["tps_mean"], r["tps_sd"], r["reps"]))
base = {row[3]: row[4] for row in rows if row[0] == "llama.cpp F16"}
dense = {row[3]: row[4] for row in rows if row[0] == "effort, GGUF as is (dense)"}
mmap = "weights in process memory (no mmap)" if json.load(open(os.path.join(out, "effort-dense.json")))[0]["mmap"] is False else "weights memory-mapped"
print(f"{model}; {version or 'llama.cpp: skipped'}; {mmap}\n")
print("| engine | size | threads | test | t/s | vs llama.cpp F16 | vs our dense |")
print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
for name, size, threads, test, mean, sd, _ in rows:
    ratio = f"{mean / base[test]:.2f}x" if test in base else "-"
    ratio_dense = f"{mean / dense[test]:.2f}x" if test in dense else "-"
    size_text = f"{size:.2f} GiB" if size >= 1 else f"{size * 1024:.2f} MiB"
    print(f"| {name} | {size_text} | {threads} | {test} | {mean:.2f} ± {sd:.2f} | {ratio} | {ratio_dense} |")
print("\nour generation, ms per token by stage:\n")
print("| layout | effort | test | total | multiply | dispatch | attention | head | other |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for path in layouts:
    layout = os.path.basename(path)[len("effort-"):-len(".json")]
    for r in json.load(open(path)):
        s = r.get("stages_ms_per_token")
        if s:
            cells = " | ".join(f"{s[k]:.1f} ({100 * s[k] / s['total']:.0f}%)" for k in ("multiply", "dispatch", "attention", "head", "other"))
            print(f"| {layout} | {r['effort']:g} | {r['test']} | {s['total']:.1f} | {cells} |")
EOF
[ -n "$greedy" ] && printf '\n%s\n' "$greedy"
echo "[compare] JSON and logs in $out" >&2
