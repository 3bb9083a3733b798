#!/usr/bin/env bash
# tsan.sh: a ThreadSanitizer build of the tests and tools, then the concurrency scenarios: the
# [threads] tests (sessions on one shared model generating at once, thread pools), the [server]
# tests (parallel sessions, a queue, cancelled streams, shutdown, all in a TSan-built server)
# and [speculative], and bench/server-load.py against the TSan server. Any report fails it
# (halt_on_error; the server exits non-zero, which the tests and the load script check).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -G Ninja -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g1" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DEFFORT_UNITY_LIBRARY=ON -DEFFORT_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan --target effort-tests effort-server effort-run effort-convert effort-eval effort-check
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
build-tsan/bin/effort-tests "[threads],[server],[speculative]"
bench/server-load.py --server build-tsan/bin/effort-server --clients 4 --requests 10
echo "tsan.sh: no ThreadSanitizer report"
