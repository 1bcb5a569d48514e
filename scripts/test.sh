#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite. GPU tests skip when no CUDA device is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
