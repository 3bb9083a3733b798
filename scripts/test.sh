#!/usr/bin/env bash
# test.sh: installs dependencies, builds, and runs the whole test suite twice: an optimised build,
# then a build with AddressSanitizer + UndefinedBehaviorSanitizer.
# Environment: EFFORT_MODELS_DIR points the model tests at another models folder.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEFFORT_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== again under AddressSanitizer + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFFORT_SANITIZE=ON -DEFFORT_BUILD_TESTS=ON \
  -DEFFORT_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$jobs")
