#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: GoogleTest (ctest), then the Python package's
# tests (pytest) against `pip install .` in the virtualenv .venv. GPU tests skip when no CUDA
# device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"

# Python: a virtualenv with the package's build and test dependencies, all from PyPI. modAL
# 0.4.2 calls scikit-learn with an argument that scikit-learn 1.8 removed, hence the cap.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q scikit-build-core nanobind numpy pytest "scikit-learn<1.8" \
  modAL-python scikit-activeml small-text torch matplotlib "dask[array]" distributed
# The package is built like build/ (same generator, a build folder as deep), so that ccache
# serves the library's objects compiled there.
export CMAKE_GENERATOR="Unix Makefiles"
defines=(-C build-dir=build-pip -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$(bash scripts/cuda_archs.sh)")
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  defines+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache
    -C cmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
.venv/bin/python -m pip install -q --no-build-isolation "${defines[@]}" .
QUARRY_CLI=$PWD/build/quarry .venv/bin/python -m pytest tests/python -q -rs
