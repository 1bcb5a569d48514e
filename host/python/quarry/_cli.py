"""The `quarry` console script: runs the quarry program shipped inside the package."""

import os
import sys
from pathlib import Path


def main() -> None:
    program = Path(__file__).parent / "bin" / "quarry"
    os.execv(program, [str(program), *sys.argv[1:]])
