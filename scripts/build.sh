#!/usr/bin/env bash
# Configures and builds quarry into build/ (Release). The CUDA backend is built when nvcc is found.
# CUDA architectures: see scripts/cuda_archs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
archs=$(bash scripts/cuda_archs.sh)
# ccache (when installed) lets the Python package's build (scripts/test.sh) reuse these objects.
launchers=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$archs" "${launchers[@]}" >/dev/null
cmake --build build -j "$(nproc)"
