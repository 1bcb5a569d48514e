#!/usr/bin/env bash
# Runs a command in a private mount namespace (unshare -m) where the Debian packages a
# quarry build uses are hidden: FAISS, OpenBLAS and the reference BLAS/LAPACK (with libgfortran and
# libquadmath, which OpenBLAS needs), CLI11 and nlohmann-json: their headers, libraries and CMake
# packages. `--keep-faiss` leaves FAISS and OpenBLAS in place (to see what a pip build takes from
# PyPI when only those are installed).
#   bash tests/wheel/hide-system.sh [--keep-faiss] COMMAND [ARG...]
set -euo pipefail
keep_faiss=0
if [ "${1:-}" = --keep-faiss ]; then
  keep_faiss=1
  shift
fi
lib=/usr/lib/x86_64-linux-gnu
dirs=(/usr/include/nlohmann /usr/include/CLI /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json)
files=()
if ((!keep_faiss)); then
  dirs+=(/usr/include/faiss "$lib/cmake/faiss" "$lib/cmake/openblas" "$lib/openblas-pthread" "$lib/blas"
    "$lib/lapack" /usr/include/x86_64-linux-gnu/openblas-pthread)
  files+=("$lib/libfaiss.a")
  for f in "$lib"/libgfortran.so.* "$lib"/libquadmath.so.*; do
    [ -e "$f" ] && files+=("$(readlink -f "$f")")
  done
fi
# shellcheck disable=SC2016 # expanded by the inner shell
script='set -e; empty=$(mktemp -d)
  while [ "$1" != -- ]; do
    if [ -d "$1" ]; then mount --bind "$empty" "$1"; elif [ -e "$1" ]; then mount --bind /dev/null "$1"; fi
    shift
  done
  shift; exec "$@"'
# As root a mount namespace; otherwise a user namespace too, where this user is root.
unshare=(unshare -m)
[ "$(id -u)" -eq 0 ] || unshare=(unshare -r -m)
exec "${unshare[@]}" bash -c "$script" hide "${dirs[@]}" "${files[@]}" -- "$@"
