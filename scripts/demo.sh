#!/usr/bin/env bash
# Sets up, builds, and selects the 10 rows most worth labeling from the example pool
# (examples/pool.npy: 1,000 rows of 10-class probabilities).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh >/dev/null
build/quarry info
echo "== the 10 most uncertain rows of examples/pool.npy (entropy), best first:"
build/quarry select examples/pool.npy -k 10 --output build/picks.json
cat build/picks.json
