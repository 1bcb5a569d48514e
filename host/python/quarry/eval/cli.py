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
    p.add_argument(
        "--dataset",
        action="append",
        metavar="NAME|X.npy|X.npy:y.npy|FILE.csv",
        help="digits, breast_cancer, wine, synthetic[:ROWS] (make_classification, default "
        "100000 rows), X.npy with y.npy beside it, FEATURES.npy:LABELS.npy, or a CSV whose last "
        "column is the label; repeatable",
    )
    p.add_argument(
        "--strategies",
        default="random,margin,entropy",
        help="comma-separated: random, least_confidence, margin, ratio, entropy, vote_entropy, "
        "consensus_entropy, kl_max, bald, variation_ratio, each optionally with +diversity, +pca "
        "and +explore[=EPS], e.g. margin+pca+explore (default %(default)s)",
    )
    p.add_argument(
        "--model",
        default="logreg",
        help="logreg, mlp, rf, gnb or module:Estimator (default %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=10, help="rows per round (default 10)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=200,
        help="labels acquired after the seed set, or cost units with --costs (default 200)",
    )
    p.add_argument(
        "--costs",
        metavar="COSTS.npy",
        help="one positive labeling cost per dataset row",
    )
    p.add_argument(
        "--seed-size", type=int, default=20, help="stratified seed set (default 20)"
    )
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument(
        "--committee-size",
        type=int,
        default=5,
        help="bagged committee members (default 5)",
    )
    p.add_argument(
        "--explore", type=float, default=0.1, help="fraction for +explore (default 0.1)"
    )
    p.add_argument(
        "--candidates", type=int, help="diversity candidates (default 10 x batch)"
    )
    p.add_argument(
        "--pca-components", type=int, default=16, help="PCA size for +pca (default 16)"
    )
    p.add_argument(
        "--test-size", type=float, default=0.25, help="held-out fraction (default 0.25)"
    )
    p.add_argument(
        "--stop-set",
        type=int,
        default=1000,
        help="pool rows the kappa rule watches (1000)",
    )
    p.add_argument("--stop-window", type=int, default=stopping.DEFAULT_WINDOW)
    p.add_argument("--stop-min-gain", type=float, default=stopping.DEFAULT_MIN_GAIN)
    p.add_argument("--stop-kappa", type=float, default=stopping.DEFAULT_KAPPA)
    p.add_argument("--output-dir", default="quarry-eval", help="default %(default)s")
    p.add_argument(
        "--report-only",
        metavar=JSON_NAME,
        help="rebuild the report and plots from an earlier run's JSON instead of simulating",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def _write_json(doc: dict, path: str) -> None:
    # Written under a temporary name and renamed, so the record appears complete or not at all.
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
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
        progress=not args.quiet,
    )
    return write_outputs(doc, args.output_dir)


def _whole(budget: float):
    return int(budget) if budget == int(budget) else budget


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        paths = run(args)
    except (
        ValueError
    ) as e:  # bad input or options, quarry.InvalidInput/InvalidArgument included
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
