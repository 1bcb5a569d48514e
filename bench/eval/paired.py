"""Paired comparison against random sampling over many quarry-eval runs (bench/EVAL.md).

    python bench/eval/paired.py OUT/logreg [OUT/rf ...] > table.md

Reads every ``rounds.json`` below the given folders (one per dataset; runs of the same dataset,
model and seeds are pooled, so extra strategies can be run later into another folder) and
prints, per dataset, each strategy's AULC gain over random on the same split and seed set (mean ±
standard deviation over seeds), the labels it needed to reach random's final accuracy, its
macro-F1 AULC gain, and where the κ stopping rule stopped against the best stop in hindsight.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections import defaultdict

import numpy as np

from quarry.eval.report import aulc, curves, needed
from quarry.eval.stopping import stable_kappa_round


def load(folders):
    runs = defaultdict(dict)  # (model, dataset) -> strategy -> seed -> records
    configs = {}
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("rounds.json")):
            doc = json.loads(path.read_text())
            model = doc["config"]["model"]
            for dataset, by_strategy in curves(doc).items():
                configs[(model, dataset)] = doc["config"]
                for strategy, seeds in by_strategy.items():
                    runs[(model, dataset)].setdefault(strategy, {}).update(seeds)
    return runs, configs


def paired(runs: dict, config: dict) -> dict:
    random = runs["random"]
    out = {}
    for strategy, seeds in runs.items():
        common = sorted(set(seeds) & set(random))
        gain, gain_f1, need, saved, stop_gap, stop_acc = [], [], [], [], [], []
        for s in common:
            c, r = seeds[s], random[s]
            labels = [x["labels"] for x in c]
            gain.append(
                aulc(labels, [x["accuracy"] for x in c])
                - aulc([x["labels"] for x in r], [x["accuracy"] for x in r])
            )
            gain_f1.append(
                aulc(labels, [x["macro_f1"] for x in c])
                - aulc([x["labels"] for x in r], [x["macro_f1"] for x in r])
            )
            target = r[-1]["accuracy"]
            n = needed(c, target)
            need.append(n)
            nr = needed(r, target)
            # A run that never reached random's final accuracy is charged its final labels.
            saved.append(100.0 * (nr - (c[-1]["labels"] if n is None else n)) / nr)
            k = stable_kappa_round(
                [x["kappa"] for x in c],
                window=config["stop_window"],
                threshold=config["stop_kappa"],
            )
            stop = c[k if k is not None else -1]
            best = max(c, key=lambda x: x["accuracy"])
            stop_gap.append(stop["labels"] - best["labels"])
            stop_acc.append(stop["accuracy"] - best["accuracy"])
        out[strategy] = {
            "seeds": len(common),
            "gain": np.array(gain),
            "gain_f1": np.array(gain_f1),
            "need": need,
            "saved": np.array(saved),
            "stop_gap": np.array(stop_gap),
            "stop_acc": np.array(stop_acc),
        }
    return out


def pm(values, digits, sign=True) -> str:
    if len(values) == 0:
        return "—"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}} ± {{:.{digits}f}}"
    return fmt.format(np.mean(values), np.std(values, ddof=1) if len(values) > 1 else 0.0)


def main(folders) -> None:
    runs, configs = load(folders)
    summary = defaultdict(dict)  # model -> strategy -> [mean gain per dataset]
    for (model, dataset), by_strategy in sorted(runs.items()):
        if "random" not in by_strategy:
            continue
        table = paired(by_strategy, configs[(model, dataset)])
        print(f"\n#### {dataset} — {model}\n")
        print(
            "| strategy | AULC gain over random | macro-F1 AULC gain | labels to random's "
            "final (seeds reaching) | saved | κ stop − best stop: labels, accuracy |"
        )
        print("|---|---|---|---|---|---|")
        for strategy, t in table.items():
            reached = [n for n in t["need"] if n is not None]
            need = f"{np.mean(reached):.0f} ({len(reached)}/{t['seeds']})" if reached else "never"
            print(
                f"| {strategy} | {pm(t['gain'], 4)} | {pm(t['gain_f1'], 4)} | {need} | "
                f"{pm(t['saved'], 1)}% | {pm(t['stop_gap'], 0)}, {pm(t['stop_acc'], 3)} |"
            )
            if strategy != "random":
                summary[model].setdefault(strategy, []).append((dataset, float(np.mean(t["gain"]))))
    for model, by_strategy in summary.items():
        print(f"\n#### Across datasets — {model}\n")
        print("| strategy | datasets | mean AULC gain | worst dataset | datasets below −0.01 |")
        print("|---|---|---|---|---|")
        for strategy, gains in by_strategy.items():
            values = [g for _, g in gains]
            worst = min(gains, key=lambda x: x[1])
            below = sum(g < -0.01 for g in values)
            print(
                f"| {strategy} | {len(values)} | {np.mean(values):+.4f} | "
                f"{worst[1]:+.4f} ({worst[0]}) | {below} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
