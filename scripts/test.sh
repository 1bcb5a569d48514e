#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: GoogleTest (ctest), then the Python package's
# tests (pytest) against `pip install .` in the virtualenv .venv. GPU tests skip when no CUDA
# device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"

# Python: a virtualenv with the package's build and test dependencies at the versions pinned in
# requirements/test.lock (names from pyproject.toml; scripts/lock.sh refreshes the lock).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q "pip==25.3"
.venv/bin/python -m pip install -q -r requirements/test.lock
# The package is built like build/ (same generator, a build folder as deep), so that ccache
# serves the library's objects compiled there.
export CMAKE_GENERATOR="Unix Makefiles"
defines=(-C build-dir=build-pip -C "cmake.define.CMAKE_CUDA_ARCHITECTURES=$(bash scripts/cuda_archs.sh)")
# A pip build is CPU-only unless asked: ask for the CUDA plugin where build/ has one, so that the
# Python tests run on the GPU where there is one.
if [ -e build/libquarry_cuda.so ]; then
  defines+=(-C cmake.define.QUARRY_ENABLE_CUDA=ON)
fi
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  defines+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache
    -C cmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
.venv/bin/python -m pip install -q --no-build-isolation --no-deps "${defines[@]}" .

# The Label Studio server that tests/python/test_label_studio.py starts, in a virtualenv of its
# own (its Django stack stays out of the package's), at the versions of
# requirements/label-studio.lock; remade when the lock changes. The test fails, not skips, here.
if ! cmp -s requirements/label-studio.lock .venv-label-studio/installed.lock; then
  rm -rf .venv-label-studio
  python3 -m venv .venv-label-studio
  .venv-label-studio/bin/python -m pip install -q "pip==25.3"
  .venv-label-studio/bin/python -m pip install -q -r requirements/label-studio.lock
  cp requirements/label-studio.lock .venv-label-studio/installed.lock
fi
export QUARRY_REQUIRE_LABEL_STUDIO=1

QUARRY_CLI=$PWD/build/quarry .venv/bin/python -m pytest tests/python -q -rs
