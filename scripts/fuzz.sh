#!/usr/bin/env bash
# fuzz.sh [SECONDS [RUNS]]: builds the libFuzzer targets (tests/fuzz/) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, seeds them (tests/fuzz/make-seeds.sh), runs
# each until RUNS executions (default 1,000,000) or SECONDS (default 3600), two at a time, and
# prints a table: executions, coverage (edges), findings. Findings (crash-*, leak-*, timeout-*,
# oom-* files) stay in build-fuzz/findings/TARGET; exit 1 if any. The corpus grows across runs in
# build-fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600} runs=${2:-1000000}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
[[ "$runs" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: RUNS must be a whole number, got '$runs'" >&2; exit 2; }
command -v clang++ >/dev/null || { echo "fuzz.sh: needs clang++ (./scripts/install-deps.sh installs it)" >&2; exit 2; }

CXX=clang++ cmake -G Ninja -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFFORT_FUZZ=ON -DEFFORT_SANITIZE=ON \
  -DEFFORT_BUILD_TESTS=OFF -DEFFORT_BUILD_BENCH=ON >/dev/null
cmake --build build-fuzz --target fuzz-targets effort-convert effort-synthetic-model
tests/fuzz/make-seeds.sh build-fuzz/bin build-fuzz/seeds

fuzz() {  # fuzz TARGET: one libFuzzer run, its log in build-fuzz/TARGET.log
  local target=$1 corpus=build-fuzz/corpus/$1 findings=build-fuzz/findings/$1
  rm -rf "$findings" && mkdir -p "$corpus" "$findings"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-fuzz/bin/$target "$corpus" "build-fuzz/seeds/$target" \
    -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$findings/" > "build-fuzz/$target.log" 2>&1 || true
}
targets=(fuzz_model_file fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_request fuzz_cli_lists)
for target in "${targets[@]}"; do
  echo "== $target: up to $runs executions or $seconds s" >&2
  fuzz "$target" &
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
wait

printf '\n| target | executions | seconds | coverage (edges) | findings |\n| --- | ---: | ---: | ---: | ---: |\n' > build-fuzz/table.md
status=0
for target in "${targets[@]}"; do
  log=build-fuzz/$target.log
  executed=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo "$seconds")
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  found=$(find "build-fuzz/findings/$target" -type f | wc -l)
  [ "$found" -eq 0 ] || status=1
  printf '| %s | %s | %s | %s | %s |\n' "$target" "${executed:-0}" "$took" "${edges:-0}" "$found" >> build-fuzz/table.md
done
cat build-fuzz/table.md
exit $status
