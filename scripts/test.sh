#!/usr/bin/env bash
# test.sh: installs dependencies, fetches the test data too large for the repository, builds,
# and runs the whole test suite twice: an optimised build (GCC), then a build with
# AddressSanitizer + UndefinedBehaviorSanitizer (clang) that also runs each fuzz target briefly.
# Builds in build-test/ and build-asan/ (never the README's build/). Prints how long each phase
# took and every test that skipped (with CI set, a missing datum fails its test instead).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
phase_start=$SECONDS
phases=()
phase() {  # phase NAME: closes the running phase under NAME
  phases+=("$(printf '%-34s %4ds' "$1" $((SECONDS - phase_start)))")
  phase_start=$SECONDS
}

./scripts/install-deps.sh
phase "dependencies"
./scripts/fetch-test-data.sh
phase "test data"
skips=$(mktemp)
export EFFORT_TEST_SKIP_LOG=$skips
jobs=$(nproc)

# The optimised pass builds everything, benchmarks included (a test runs effort-bench).
# Ninja keeps both cores busy to the end of each pass (make's recursive targets leave gaps).
# The library compiles as unity translation units here too (each file alone is what the README's
# first command builds).
cmake -G Ninja -S . -B build-test -DCMAKE_BUILD_TYPE=Release -DEFFORT_UNITY_LIBRARY=ON -DEFFORT_BUILD_TESTS=ON \
  -DEFFORT_BUILD_BENCH=ON >/dev/null
cmake --build build-test -j"$jobs"
phase "build (optimised)"
(cd build-test && ctest --output-on-failure -j"$jobs")
phase "tests (optimised)"

# The library as a user links it: installed in a temporary prefix, examples/ built against the
# CMake package, run on the fixture (60 greedy tokens, effort 1 then 0.5: 75% of the work).
echo "== examples/ against the installed package"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$skips"' EXIT
cmake --install build-test --prefix "$tmp/prefix" >/dev/null
cmake -G Ninja -S examples -B "$tmp/example" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/example"
"$tmp/prefix/bin/effort-convert" models/stories260K -o "$tmp/fixture.effort" 2>/dev/null
"$tmp/example/effort-example" "$tmp/fixture.effort" | tee "$tmp/example.out"
grep -q "75% of the dense multiply-adds done" "$tmp/example.out" || { echo "examples/: unexpected output" >&2; exit 1; }
phase "install and examples/"

echo "== again under AddressSanitizer + UBSan, with the fuzz targets' smoke runs"
# clang, which builds the libFuzzer targets (tests/fuzz/) with the tests, from the same
# instrumented library; it compiles this pass 20 s faster than GCC did. -O1, as the sanitizers
# recommend (-O0 measured: 63 s less compiling, 61 s more testing); -g1 keeps line numbers in
# reports.
cmake -G Ninja -S . -B build-asan -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Sanitize -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1" \
  -DEFFORT_SANITIZE=ON -DEFFORT_FUZZ=ON -DEFFORT_UNITY_LIBRARY=ON -DEFFORT_BUILD_TESTS=ON -DEFFORT_BUILD_BENCH=OFF \
  -DEFFORT_TEST_MAIN_OBJECT="$PWD/build-test/tests/CMakeFiles/effort_test_main.dir/main.cpp.o" >/dev/null
cmake --build build-asan -j"$jobs"
phase "build (sanitizers)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
phase "tests (sanitizers)"

echo "== time per phase"
printf '%s\n' "${phases[@]}"
printf '%-34s %4ds\n' "total" $((SECONDS - start))
echo "== skipped: $(wc -l <"$skips") test(s)"
cat "$skips"
