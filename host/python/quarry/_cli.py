"""The `quarry` console script: runs the quarry program shipped inside the package."""

import os
import sys
from pathlib import Path


def main() -> None:
    program = Path(__file__).parent / "bin" / "quarry"
    if not program.exists():
        # The package was built without CLI11 (docs/building.md#dependencies).
        sys.exit(
            "quarry: this installation has no quarry program: CLI11 was missing when it was "
            "built; install it (Debian: sudo apt-get install libcli11-dev) and reinstall"
        )
    os.execv(program, [str(program), *sys.argv[1:]])
