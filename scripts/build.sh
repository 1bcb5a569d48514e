#!/usr/bin/env bash
# Configures and builds quarry into build/ (Release). The CUDA backend is built when nvcc is found.
# CUDA architectures: $QUARRY_CUDA_ARCHS if set; else this machine's GPU ("native"); else 90
# (Hopper) only, which keeps a build on a machine without a GPU short.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${QUARRY_CUDA_ARCHS:-}" ]; then
  archs=$QUARRY_CUDA_ARCHS
elif nvidia-smi -L >/dev/null 2>&1; then
  archs=native
else
  archs=90
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$archs" >/dev/null
cmake --build build -j "$(nproc)"
