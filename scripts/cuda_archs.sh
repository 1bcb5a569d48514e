#!/usr/bin/env bash
# Prints the CUDA architectures to build for: $QUARRY_CUDA_ARCHS if set; else this machine's GPU
# ("native"); else 90 (Hopper) only, which keeps a build on a machine without a GPU short.
if [ -n "${QUARRY_CUDA_ARCHS:-}" ]; then
  echo "$QUARRY_CUDA_ARCHS"
elif nvidia-smi -L >/dev/null 2>&1; then
  echo native
else
  echo 90
fi
