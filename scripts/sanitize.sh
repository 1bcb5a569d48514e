#!/usr/bin/env bash
# Builds quarry CPU-only with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/ and
# runs the whole test suite there; a sanitizer finding fails the test that made it. -O1 keeps the
# build and the tests reasonably fast while the reports keep their line numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-asan -DQUARRY_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DQUARRY_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j "$(nproc)"
export UBSAN_OPTIONS=print_stacktrace=1
ctest --test-dir build-asan --output-on-failure -j "$(nproc)"
