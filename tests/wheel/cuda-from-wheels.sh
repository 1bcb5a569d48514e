#!/usr/bin/env bash
# Checks that the CUDA plugin installed in the site-packages folder SITE finds cudart and cuBLAS in
# the nvidia-* wheels there (SITE/nvidia), in a mount namespace where the system's CUDA libraries
# (/usr/local/cuda*, /usr/local/lib) are hidden.
#   bash tests/wheel/cuda-from-wheels.sh SITE
set -euo pipefail
site=$(cd "$1" && pwd)
unshare=(unshare -m)
[ "$(id -u)" -eq 0 ] || unshare=(unshare -r -m)
# shellcheck disable=SC2016 # expanded by the inner shell
"${unshare[@]}" bash -euo pipefail -c '
  empty=$(mktemp -d)
  for d in /usr/local/cuda*/lib /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then mount --bind "$empty" "$d"; fi
  done
  for f in /usr/local/lib/libcudart* /usr/local/lib/libcublas*; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then mount --bind /dev/null "$f"; fi
  done
  found=$(ldd "$1/quarry/libquarry_cuda.so" | grep -E "libcu(dart|blas)")
  echo "$found"
  if grep -v -q -F "=> $1/quarry/../nvidia/" <<<"$found"; then
    echo "cuda-from-wheels: the CUDA plugin does not take cudart and cuBLAS from $1/nvidia" >&2
    exit 1
  fi
' check "$site"
