#!/usr/bin/env bash
# Builds the libFuzzer target for the .npy header parser with Clang (installed when missing) and
# runs it for FUZZ_SECONDS (default 30) from the seed corpus in tests/fuzz/corpus. New inputs go
# to a scratch directory; an input that crashes is written to build-fuzz/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
can_fuzz() {  # clang++ with its libFuzzer runtime
  command -v clang++ >/dev/null &&
    echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    clang++ -x c++ -fsanitize=fuzzer - -o /dev/null 2>/dev/null
}
if ! can_fuzz; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "fuzz: installing clang"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang \
    libclang-rt-dev >/dev/null
fi
cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DQUARRY_BUILD_FUZZERS=ON \
  -DQUARRY_ENABLE_CUDA=OFF -DQUARRY_BUILD_TESTS=OFF -DQUARRY_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz_npy -j "$(nproc)"
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cd build-fuzz
./fuzz_npy -max_total_time="$seconds" -max_len=45000 -timeout=10 -print_final_stats=1 \
  -dict=../tests/fuzz/npy.dict "$corpus" ../tests/fuzz/corpus
