"""The report's numbers, computed from the JSON record alone, and its Markdown."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .stopping import accuracy_plateau_stop, stable_kappa_round

FULL_DATA_FRACTION = 0.99


def aulc(labels, accuracies) -> float:
    """Area under the learning curve: the trapezoid of accuracy over labels, divided by the label
    range, so a curve that is flat at accuracy a scores a."""
    x = np.asarray(labels, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if len(x) < 2 or x[-1] == x[0]:
        raise ValueError("a learning curve needs at least two distinct label counts")
    return float(np.sum((a[1:] + a[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def needed(curve: list[dict], target: float, unit: str = "labels"):
    """The labels (or cost) at the first round whose accuracy reaches ``target``; None if none."""
    for r in curve:
        if r["accuracy"] >= target:
            return r[unit]
    return None


def _stats(values) -> dict:
    """Mean and standard deviation (n − 1) over seeds, ignoring seeds with no value."""
    present = [v for v in values if v is not None]
    out = {"n": len(present), "of": len(values), "mean": None, "std": None}
    if present:
        out["mean"] = float(np.mean(present))
        out["std"] = float(np.std(present, ddof=1)) if len(present) > 1 else 0.0
    return out


def _saving(strategy_needs, random_needs, strategy_ends, random_ends) -> list:
    """Percent of random sampling's labels (or cost) saved, for every seed: a run that never
    reached the target is charged what it had spent at its last round (a lower bound of what it
    would need), so a strategy that never gets there shows a saving of at most 0, and two runs
    that both never get there save 0."""
    out = []
    for s, r, s_end, r_end in zip(
        strategy_needs, random_needs, strategy_ends, random_ends, strict=True
    ):
        s = s_end if s is None else s
        r = r_end if r is None else r
        out.append(0.0 if s is None or r is None or r <= 0 else 100.0 * (r - s) / r)
    return out


def curves(doc: dict) -> dict:
    """``{dataset: {strategy: {seed: [records by round]}}}``."""
    out = defaultdict(lambda: defaultdict(dict))
    grouped = defaultdict(list)
    for r in doc["rounds"]:
        grouped[(r["dataset"], r["strategy"], r["seed"])].append(r)
    for (dataset, strategy, seed), records in grouped.items():
        out[dataset][strategy][seed] = sorted(records, key=lambda r: r["round"])
    return out


def summarize(doc: dict) -> dict:
    """Per dataset and strategy, over seeds: final accuracy, AULC, the labels (cost, with a cost
    budget) needed to reach random sampling's final accuracy and 99% of the full-data accuracy
    and the percent saved against random, where each stopping rule stops, and time per round."""
    config = doc["config"]
    unit = "cost" if config.get("budget_unit") == "cost" else "labels"
    reference = {(r["dataset"], r["seed"]): r["accuracy"] for r in doc["references"]}
    summary = {}
    for dataset, by_strategy in curves(doc).items():
        seeds = sorted({seed for runs in by_strategy.values() for seed in runs})
        random_runs = by_strategy.get("random")
        random_final = (
            {seed: random_runs[seed][-1]["accuracy"] for seed in random_runs}
            if random_runs
            else None
        )
        full = {seed: reference[(dataset, seed)] for seed in seeds if (dataset, seed) in reference}
        rows = {}
        for strategy, runs in by_strategy.items():
            order = sorted(runs)
            entry = {
                "seeds": len(order),
                "final_labels": _stats([runs[s][-1]["labels"] for s in order]),
                "final_cost": _stats([runs[s][-1]["cost"] for s in order]),
                "final_accuracy": _stats([runs[s][-1]["accuracy"] for s in order]),
                "final_macro_f1": _stats([runs[s][-1]["macro_f1"] for s in order]),
                "aulc": _stats(
                    [
                        aulc(
                            [r["labels"] for r in runs[s]],
                            [r["accuracy"] for r in runs[s]],
                        )
                        if len(runs[s]) > 1
                        else None
                        for s in order
                    ]
                ),
                # Macro-F1's area, the fairer measure on imbalanced data.
                "aulc_macro_f1": _stats(
                    [
                        aulc(
                            [r["labels"] for r in runs[s]],
                            [r["macro_f1"] for r in runs[s]],
                        )
                        if len(runs[s]) > 1
                        else None
                        for s in order
                    ]
                ),
            }
            for key, targets in (
                ("random_final", random_final),
                ("full_99", {s: FULL_DATA_FRACTION * a for s, a in full.items()}),
            ):
                if not targets or any(s not in targets for s in order):
                    entry[f"needed_{key}"] = entry[f"saved_{key}"] = None
                    continue
                needs = [needed(runs[s], targets[s], unit) for s in order]
                entry[f"needed_{key}"] = _stats(needs)
                if random_runs and all(s in random_runs for s in order):
                    random_needs = [needed(random_runs[s], targets[s], unit) for s in order]
                    entry[f"saved_{key}"] = _stats(
                        _saving(
                            needs,
                            random_needs,
                            [runs[s][-1][unit] for s in order],
                            [random_runs[s][-1][unit] for s in order],
                        )
                    )
                else:
                    entry[f"saved_{key}"] = None
            for rule, stop_of in (
                (
                    "stop_plateau",
                    lambda curve: accuracy_plateau_stop(
                        [r["accuracy"] for r in curve],
                        window=config["stop_window"],
                        min_gain=config["stop_min_gain"],
                    ),
                ),
                (
                    "stop_kappa",
                    lambda curve: stable_kappa_round(
                        [r["kappa"] for r in curve],
                        window=config["stop_window"],
                        threshold=config["stop_kappa"],
                    ),
                ),
            ):
                stops = [stop_of(runs[s]) for s in order]
                entry[rule] = {
                    "round": _stats(stops),
                    "labels": _stats(
                        [
                            None if r is None else runs[s][r]["labels"]
                            for s, r in zip(order, stops, strict=True)
                        ]
                    ),
                    "accuracy": _stats(
                        [
                            None if r is None else runs[s][r]["accuracy"]
                            for s, r in zip(order, stops, strict=True)
                        ]
                    ),
                }
            # The κ rule (it needs no labels: the stopping rule to use) against the best stop in
            # hindsight, the first round of highest test accuracy; a κ rule that never fires
            # stops where the budget ends.
            best = [max(runs[s], key=lambda r: r["accuracy"]) for s in order]
            kappa_stop = [
                runs[s][r if r is not None else -1]
                for s, r in zip(
                    order,
                    [
                        stable_kappa_round(
                            [r["kappa"] for r in runs[s]],
                            window=config["stop_window"],
                            threshold=config["stop_kappa"],
                        )
                        for s in order
                    ],
                    strict=True,
                )
            ]
            entry["best_stop"] = {
                "labels": _stats([b["labels"] for b in best]),
                "accuracy": _stats([b["accuracy"] for b in best]),
            }
            entry["kappa_minus_best"] = {
                "labels": _stats(
                    [k["labels"] - b["labels"] for k, b in zip(kappa_stop, best, strict=True)]
                ),
                "accuracy": _stats(
                    [k["accuracy"] - b["accuracy"] for k, b in zip(kappa_stop, best, strict=True)]
                ),
            }
            later = [r for s in order for r in runs[s] if r["round"] > 0]
            entry["select_ms"] = (
                _stats([1e3 * r["select_seconds"] for r in later]) if later else None
            )
            entry["fit_ms"] = _stats([1e3 * r["fit_seconds"] for r in later]) if later else None
            rows[strategy] = entry
        summary[dataset] = {
            "unit": unit,
            "full_data_accuracy": _stats([full.get(s) for s in seeds]),
            "strategies": {s: rows[s] for s in config["strategies"] if s in rows},
        }
    return summary


def _pm(stat, digits: int, suffix: str = "") -> str:
    if stat is None or stat["mean"] is None:
        return "—" if stat is None else f"— (0/{stat['of']})"
    text = f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}{suffix}"
    if stat["n"] < stat["of"]:
        text += f" ({stat['n']}/{stat['of']})"
    return text


def _stop(entry: dict) -> str:
    labels, accuracy = entry["labels"], entry["accuracy"]
    if labels["mean"] is None:
        return f"never (0/{labels['of']})"
    text = f"{labels['mean']:.0f} ({accuracy['mean']:.3f})"
    if labels["n"] < labels["of"]:
        text += f" {labels['n']}/{labels['of']}"
    return text


def markdown(doc: dict, summary: dict | None = None, *, plots: dict | None = None) -> str:
    """The Markdown report; ``plots`` maps a dataset to its PNG's path relative to the report."""
    summary = summary if summary is not None else summarize(doc)
    config = doc["config"]
    info = {d["name"]: d for d in doc.get("datasets", [])}
    unit = "cost" if config.get("budget_unit") == "cost" else "labels"
    seeds = ", ".join(str(s) for s in config["seeds"])
    lines = [
        "# Active-learning simulation",
        "",
        (
            f"Model `{config['model']}`, batches of {config['batch_size']}, a budget of "
            f"{config['budget']:g} {unit} after a stratified seed set of {config['seed_size']} "
            f"rows, seeds {seeds}; the test set is {config['test_fraction']:.0%} of each dataset."
        ),
        "",
        (
            "Values are mean ± standard deviation over seeds; `(n/m)` marks a number only n of "
            f"m seeds reached. {unit.capitalize()} count the seed set. *Random's final*: the "
            f"{unit} at which a strategy first matches the accuracy random sampling ends with on "
            f"the same split; *99% full*: the {unit} at which it first reaches 99% of the "
            f"accuracy of the model trained on the whole pool; *saved*: percent of random "
            f"sampling's {unit} for the same target, every seed counted (a run that never reached "
            f"the target is charged its final {unit}, so it saves at most 0%). AULC: trapezoid of "
            f"accuracy over labels, divided by the label range. Stopping rules, as labels "
            f"(accuracy) at the round they pick: *plateau*, accuracy gained over "
            f"{config['stop_window']} rounds below {config['stop_min_gain']}; *κ*, Cohen's κ of "
            f"consecutive rounds' predictions on {config['stop_size']} unlabeled pool rows at "
            f"least {config['stop_kappa']} for {config['stop_window']} rounds in a row; "
            "*best stop*, in hindsight, the first round of highest test accuracy; *κ − best*, "
            "how far the κ rule (which needs no labels) stops from it, a κ rule that never fires "
            "stopping at the budget's end."
        ),
    ]
    digits = 0 if unit == "labels" else 1
    for dataset, part in summary.items():
        d = info.get(dataset, {})
        lines += [
            "",
            f"## {dataset}",
            "",
            (f"{d['rows']} rows, {d['features']} features, {d['classes']} classes. " if d else "")
            + f"Full-data accuracy {_pm(part['full_data_accuracy'], 4)}.",
            "",
            (
                f"| strategy | final accuracy | AULC | {unit} to random's final | saved | "
                f"{unit} to 99% full | saved |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for strategy, e in part["strategies"].items():
            lines.append(
                f"| {strategy} | {_pm(e['final_accuracy'], 4)} | {_pm(e['aulc'], 4)} | "
                f"{_pm(e['needed_random_final'], digits)} | "
                f"{_pm(e['saved_random_final'], 1, '%')} | "
                f"{_pm(e['needed_full_99'], digits)} | {_pm(e['saved_full_99'], 1, '%')} |"
            )
        lines += [
            "",
            (
                "| strategy | final labels | final cost | plateau stop | κ stop | best stop | "
                "κ − best | select ms/round | fit ms/round |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for strategy, e in part["strategies"].items():
            lines.append(
                f"| {strategy} | {e['final_labels']['mean']:.0f} | {e['final_cost']['mean']:.1f} | "
                f"{_stop(e['stop_plateau'])} | {_stop(e['stop_kappa'])} | "
                f"{_stop(e['best_stop'])} | "
                f"{_pm(e['kappa_minus_best']['labels'], 0)} labels, "
                f"{_pm(e['kappa_minus_best']['accuracy'], 3)} | "
                f"{_pm(e['select_ms'], 2)} | {_pm(e['fit_ms'], 1)} |"
            )
        if plots and dataset in plots:
            lines += ["", f"![{dataset} learning curves]({plots[dataset]})"]
    return "\n".join(lines) + "\n"
