#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets (tests/fuzz/) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, seeds each from the fixture model and hand-written inputs, runs each
# for SECONDS (default 60), and prints a table: executions, coverage (edges), findings. Findings
# (crash-*, leak-*, timeout-*, oom-* files) stay in build-fuzz/findings/TARGET; exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
command -v clang++ >/dev/null || { echo "fuzz.sh: needs clang++ (apt-get install clang)" >&2; exit 2; }
fixture=${EFFORT_MODELS_DIR:-../shared/models}/stories260K-hf

CXX=clang++ cmake -G Ninja -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFFORT_FUZZ=ON -DEFFORT_SANITIZE=ON \
  -DEFFORT_BUILD_TESTS=OFF -DEFFORT_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz-targets effort-convert

seeds=build-fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"/{fuzz_model_file,fuzz_safetensors,fuzz_config,fuzz_tokenizer,fuzz_request,fuzz_cli_lists}
if [ -d "$fixture" ]; then
  build-fuzz/bin/effort-convert "$fixture" -o "$seeds/fuzz_model_file/fixture.effort" >/dev/null 2>&1
  build-fuzz/bin/effort-convert "$fixture" -o "$seeds/fuzz_model_file/fixture.gguf" >/dev/null 2>&1
  cp "$fixture/model.safetensors" "$seeds/fuzz_safetensors/"
  cp "$fixture/config.json" "$seeds/fuzz_config/"
  cp "$fixture/tokenizer.model" "$seeds/fuzz_tokenizer/"
else
  echo "fuzz.sh: $fixture is absent: the file targets start from empty corpora" >&2
fi
printf '%s' '{"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "stop": ["."], "effort": 1}' \
  > "$seeds/fuzz_request/completion.json"
printf '%s' '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "stream": true, "seed": 3, "effort_map": {"down": 1}, "early_exit": {"threshold": 0.8}}' \
  > "$seeds/fuzz_request/chat.json"
printf '%s' 'down=0.2,up=0.3' > "$seeds/fuzz_cli_lists/map"
printf '%s' '8-23=0.4,24=0.6' > "$seeds/fuzz_cli_lists/layers"
printf '%s' '{"layer_thresholds": {"2": 0.9, "3": 0.95}}' > "$seeds/fuzz_cli_lists/calibration.json"

printf '\n| target | seconds | executions | coverage (edges) | findings |\n| --- | ---: | ---: | ---: | ---: |\n' > build-fuzz/table.md
status=0
for target in fuzz_model_file fuzz_safetensors fuzz_config fuzz_tokenizer fuzz_request fuzz_cli_lists; do
  corpus=build-fuzz/corpus/$target findings=build-fuzz/findings/$target
  rm -rf "$findings" && mkdir -p "$corpus" "$findings"
  echo "== $target, $seconds s" >&2
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-fuzz/bin/$target "$corpus" "$seeds/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$findings/" > "build-fuzz/$target.log" 2>&1 || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$target.log" | grep -o '[0-9]*$' || echo 0)
  edges=$(grep -oE 'cov: [0-9]+' "build-fuzz/$target.log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  found=$(find "$findings" -type f | wc -l)
  [ "$found" -eq 0 ] || status=1
  printf '| %s | %s | %s | %s | %s |\n' "$target" "$seconds" "${runs:-0}" "${edges:-0}" "$found" >> build-fuzz/table.md
done
cat build-fuzz/table.md
exit $status
