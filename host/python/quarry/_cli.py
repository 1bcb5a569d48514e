"""The `quarry` console script: runs the quarry program shipped inside the package; table pools
(Parquet, Arrow IPC), row IDs and the .jsonl/.csv/.parquet outputs go through Python first
(_table_cli.py), under the program's contract (exit codes, one-line errors, atomic outputs)."""

import os
import sys
from pathlib import Path

TABLE_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc")
TABLE_OUTPUTS = (".jsonl", ".csv", ".parquet")
TABLE_FLAGS = (
    "--column", "--id-column", "--ids", "--embeddings-column", "--cost-column",
    "--lengths-column", "--features-column", "--labeled-column", "--labeled-ids",
)  # fmt: skip


def wants_tables(argv: list[str]) -> bool:
    """Whether a command line is one for the Python front end (decided without importing it)."""
    if not argv or argv[0] not in ("select", "score"):
        return False
    for i, a in enumerate(argv[1:], 1):
        flag = a.split("=", 1)[0]
        if flag in TABLE_FLAGS or (not a.startswith("-") and a.lower().endswith(TABLE_SUFFIXES)):
            return True
        if flag in ("--output", "-o"):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            if value.lower().endswith(TABLE_OUTPUTS):
                return True
    return False


def main() -> None:
    if wants_tables(sys.argv[1:]):
        from ._table_cli import main as table_main

        sys.exit(table_main(sys.argv[1:]))
    program = Path(__file__).parent / "bin" / "quarry"
    if not program.exists():
        # The package was built without CLI11 (docs/building.md#dependencies).
        sys.exit(
            "quarry: this installation has no quarry program: CLI11 was missing when it was "
            "built; install it (Debian: sudo apt-get install libcli11-dev) and reinstall"
        )
    os.execv(program, [str(program), *sys.argv[1:]])
