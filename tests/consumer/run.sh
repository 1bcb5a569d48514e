#!/usr/bin/env bash
# Installs the build in BUILD_DIR to a temporary prefix, then configures, builds and runs the
# consumer project against it with find_package(quarry), and checks that the installed program and
# library find the installed CUDA plugin.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer" "$work/prefix/"
# The installed program runs from the installed libquarry.so and names the installed plugin.
info=$("$work/prefix/bin/quarry" info)
if grep -q "^backends: cpu, cuda" <<<"$info" && ! grep -qF "backends: cpu, cuda ($work/prefix/" <<<"$info"; then
  echo "$info" >&2
  exit 1
fi
