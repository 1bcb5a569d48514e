#!/usr/bin/env bash
# Refreshes requirements/test.lock, the exact versions that scripts/test.sh (and so CI) installs:
# the build requirements of pyproject.toml's [build-system] plus its `test` and `wheel` extras,
# resolved for this machine's Python (3.11 on the project's machines) from PyPI; and
# requirements/label-studio.lock, the Label Studio server the labeling-tool tests run
# (requirements/label-studio.in), which lives in a virtualenv of its own. Run it, run
# scripts/test.sh, and commit the locks together with whatever the new versions needed.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q "uv==0.13.8"
# The build requirements, read from pyproject.toml so that their names live in one place.
python3 - >"$tools/build.in" <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
"$tools/venv/bin/uv" pip compile --quiet --no-header --python "$(command -v python3)" \
  --extra test --extra wheel pyproject.toml "$tools/build.in" --output-file requirements/test.lock
# uv names the temporary input file; keep the lock independent of where it was made.
sed -i "s|$tools/build.in|pyproject.toml (build-system)|" requirements/test.lock
echo "lock: $(grep -c '==' requirements/test.lock) pinned packages in requirements/test.lock"
"$tools/venv/bin/uv" pip compile --quiet --no-header --python "$(command -v python3)" \
  requirements/label-studio.in --output-file requirements/label-studio.lock
echo "lock: $(grep -c '==' requirements/label-studio.lock) pinned packages in requirements/label-studio.lock"
