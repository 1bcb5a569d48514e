"""`quarry select` and `quarry score` for table pools (Parquet, Arrow IPC / Feather), row IDs and
the .jsonl/.csv/.parquet outputs: the pip-installed command routes these here (see _cli.py) and
everything else to the C++ program. The contract is the program's: exit code 0, 2 for bad usage
or bad input, 1 for anything else; one line on stderr; outputs written atomically."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, NoReturn

import numpy as np

import quarry

from . import outputs, tables


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage)
        raise _Usage(message)


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper()
    unit = t[-1] if t and t[-1] in "KMGT" else ""
    try:
        value = int(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise _Usage(f"--memory-budget: not a size: '{text}'") from None
    if value < 1:
        raise _Usage("--memory-budget must be at least one byte")
    return value * units[unit]


def _parser() -> _Parser:
    p = _Parser(prog="quarry", add_help=True)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in ("select", "score"):
        c = sub.add_parser(name)
        c.add_argument("pool")
        c.add_argument("--column", help="the list column of predictions (tables)")
        c.add_argument("--id-column", help="the column of row IDs (strings or int64)")
        c.add_argument("--ids", help="IDS.npy / .txt: row IDs of an array pool")
        c.add_argument("--measure")
        c.add_argument("--logits", action="store_true")
        c.add_argument("--temperature", type=float, default=1.0)
        c.add_argument("--layout", default="members-first")
        c.add_argument("--classes", type=int)
        c.add_argument("--lengths-column")
        c.add_argument("--features-column")
        c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        c.add_argument("--memory-budget", type=_size)
        c.add_argument("--threads", type=int, help="CPU threads at most (0: automatic)")
        c.add_argument("--output", "-o", default="-")
        if name == "select":
            c.add_argument("-k", type=int)
            c.add_argument("--embeddings-column")
            c.add_argument("--embeddings", help="EMB.npy of an .npy pool")
            c.add_argument("--costs", help="COST.npy of an .npy pool")
            c.add_argument("--candidates", type=int, default=0)
            c.add_argument("--kmeans-iters", type=int, default=25)
            c.add_argument("--strategy", default="rank")
            c.add_argument("--cost-column")
            c.add_argument("--budget", type=float)
            c.add_argument("--exact-budget", action="store_true")
            c.add_argument("--explore", type=float, default=0.0)
            c.add_argument("--seed", type=int, default=0)
            c.add_argument("--labeled-column", help="boolean column: rows already labeled")
            c.add_argument("--labeled-ids", help="file of IDs already labeled (.npy, .txt, .jsonl)")
    return p


def _read_id_file(path: str) -> np.ndarray:
    """IDs from a .npy array, a .jsonl of picks (its "id" fields), or text (one a line; integers
    when every line is one)."""
    if not os.path.isfile(path):
        raise quarry.InvalidArgument(f"{path}: No such file or directory")
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".jsonl"):
        import json

        with open(path, encoding="utf-8") as f:
            return np.array([json.loads(line)["id"] for line in f if line.strip()], dtype=object)
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    try:
        return np.array([int(v) for v in lines], np.int64)
    except ValueError:
        return np.array(lines, dtype=object)


def _pool_source(args: Any) -> tuple[Any, str, Any]:
    """(source for tables.select_table, column, ids) for a table or an .npy pool with --ids."""
    if tables.is_table_path(args.pool):
        if not args.column:
            raise _Usage(f"{args.pool}: a table pool needs --column (its list column)")
        ids = _read_id_file(args.ids) if args.ids else None
        return args.pool, args.column, ids
    if args.column or args.id_column:
        raise _Usage("--column and --id-column are for table pools (.parquet, .arrow, .feather)")
    if not os.path.isfile(args.pool):
        raise quarry.InvalidArgument(f"{args.pool}: No such file or directory")
    try:
        pool = np.load(args.pool, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise quarry.InvalidInput(f"{args.pool}: {e}") from None
    ids = _read_id_file(args.ids) if args.ids else None
    table = tables.array_table(pool)
    # The .npy companions of an array pool become columns of its table.
    for flag, name in (("embeddings", "embeddings_column"), ("costs", "cost_column")):
        path = getattr(args, flag, None)
        if path is None:
            continue
        if not os.path.isfile(path):
            raise quarry.InvalidArgument(f"{path}: No such file or directory")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        column = tables.array_table(array).column(0) if array.ndim > 1 else tables._pa().array(
            np.asarray(array))  # fmt: skip
        table = table.append_column(flag, column)
        setattr(args, name, flag)
    return table, "pool", ids


def _run(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    out = args.output
    if out != "-":
        outputs.output_kind(out)  # refuse a bad suffix before any work
        for given in (args.pool, args.ids):
            if given and os.path.exists(out) and os.path.samefile(out, given):
                raise _Usage(f"--output {out} is one of the inputs")
    source, column, ids = _pool_source(args)
    common = {"measure": args.measure, "temperature": args.temperature, "layout": args.layout,
              "device": args.device, "memory_budget": args.memory_budget}  # fmt: skip
    if args.threads is not None:  # the engine checks the count
        common["resources"] = quarry.Resources(
            args.device, args.memory_budget, threads=args.threads
        )
    if args.logits:
        common["logits"] = True
    if args.classes is not None:
        common["classes"] = args.classes
    if args.command == "score":
        if args.lengths_column or args.features_column:
            raise _Usage("quarry score of a table takes --column only (no lengths/features yet)")
        scores = tables.score_table(source, column=column, **common)
        row_ids = None
        if args.id_column or ids is not None:
            src = tables._open(source)
            row_ids = tables.read_ids(
                tables._whole_column(src, args.id_column) if args.id_column else ids,
                args.id_column or "ids",
            )
        if out == "-":
            sys.stdout.write("".join(f"{float(s)!r}\n" for s in scores))
        else:
            outputs.write_scores(out, scores, row_ids)
        return
    options: dict[str, Any] = {}
    if args.candidates:
        options["candidates"] = args.candidates
    if args.kmeans_iters != 25:
        options["kmeans_iters"] = args.kmeans_iters
    if args.explore:
        options["explore"] = args.explore
    if args.seed:
        options["seed"] = args.seed
    if args.strategy != "rank":
        options["strategy"] = args.strategy
    if args.budget is not None:
        options["budget"] = args.budget
    if args.exact_budget:
        options["exact_budget"] = True
    if args.k is None and args.budget is None:
        raise _Usage("select needs -k, or --cost-column with --budget")
    picks = tables.select_table(
        source,
        args.k,
        column=column,
        id_column=args.id_column,
        ids=ids,
        embeddings_column=args.embeddings_column,
        cost_column=args.cost_column,
        lengths_column=args.lengths_column,
        features_column=args.features_column,
        labeled_column=args.labeled_column,
        labeled_ids=_read_id_file(args.labeled_ids) if args.labeled_ids else None,
        **common,
        **options,
    )
    if out == "-":
        sys.stdout.write("".join(f"{int(i)}\n" for i in picks.indices))
    else:
        outputs.write_selection(out, picks)


def _interrupted(signum: int, frame: Any) -> NoReturn:
    # Unwinds through outputs.atomic_path, which removes the temporary file.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, _interrupted)
    try:
        _run(argv)
    except _Usage as e:
        return _fail(str(e), 2)
    except (quarry.InvalidArgument, quarry.InvalidInput, quarry.BackendUnavailable) as e:
        return _fail(str(e), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except MemoryError:
        return _fail("out of host memory", 1)
    except (quarry.Error, OSError) as e:
        return _fail(str(e), 1)
    return 0


def _fail(message: str, code: int) -> int:
    text = " ".join(message.split())  # one line, whatever the message held
    print(f"quarry: error: {text}", file=sys.stderr)
    return code
