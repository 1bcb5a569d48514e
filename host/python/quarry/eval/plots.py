"""One learning-curve PNG per dataset: each strategy's mean accuracy with a ±1 std band."""

from __future__ import annotations

import os
import re

import numpy as np

from .report import curves, summarize
from .strategies import COMMITTEE_MEASURES


def mean_curve(runs: dict, unit: str):
    """Mean and std over seeds of accuracy against labels (or cost), on the union of the seeds'
    x values within the range every seed covers (interpolated where seeds' x values differ)."""
    xs = [np.array([r[unit] for r in curve], dtype=np.float64) for curve in runs.values()]
    ys = [np.array([r["accuracy"] for r in curve]) for curve in runs.values()]
    lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
    grid = np.unique(np.concatenate(xs))
    grid = grid[(grid >= lo) & (grid <= hi)]
    stacked = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])
    return grid, stacked.mean(axis=0), stacked.std(axis=0, ddof=1 if len(xs) > 1 else 0)


def file_name(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset) + ".png"


def panels(strategies: list[str]) -> list[tuple[str, list[str]]]:
    """Strategies grouped for the plot: single-model and committee measures side by side once
    there are more than six, each panel with random sampling as its reference."""
    others = [s for s in strategies if s != "random"]
    committee = [s for s in others if s.split("+")[0] in COMMITTEE_MEASURES]
    single = [s for s in others if s not in committee]
    baseline = ["random"] if "random" in strategies else []
    if len(others) <= 6 or not committee or not single:
        return [("", baseline + others)]
    return [("one model", baseline + single), ("committee", baseline + committee)]


def plot(doc: dict, output_dir: str, summary: dict | None = None) -> dict:
    """Write ``<dataset>.png`` for every dataset into ``output_dir``; returns dataset → path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summary if summary is not None else summarize(doc)
    config = doc["config"]
    unit = "cost" if config.get("budget_unit") == "cost" else "labels"
    seeds = len(config["seeds"])
    paths = {}
    for dataset, by_strategy in curves(doc).items():
        present = [s for s in config["strategies"] if s in by_strategy]
        colors = plt.get_cmap("tab10").colors
        styles, n = {}, 0
        for strategy in present:
            if strategy == "random":
                styles[strategy] = {"color": "black", "linestyle": "--", "linewidth": 2.0}
            else:
                styles[strategy] = {
                    "color": colors[n % len(colors)],
                    "linestyle": "-" if n < len(colors) else ":",
                    "linewidth": 1.6,
                }
                n += 1
        groups = panels(present)
        fig, axes = plt.subplots(
            1,
            len(groups),
            figsize=(6.5 * len(groups) + 1.5, 5),
            dpi=90,
            sharey=True,
            squeeze=False,
        )
        full = summary[dataset]["full_data_accuracy"]["mean"]
        for ax, (heading, strategies) in zip(axes[0], groups, strict=True):
            for strategy in strategies:
                grid, mean, std = mean_curve(by_strategy[strategy], unit)
                style = styles[strategy]
                area = summary[dataset]["strategies"][strategy]["aulc"]["mean"]
                label = strategy if area is None else f"{strategy} (AULC {area:.3f})"
                ax.plot(grid, mean, label=label, **style)
                ax.fill_between(
                    grid, mean - std, mean + std, color=style["color"], alpha=0.12, lw=0
                )
            if full is not None:
                ax.axhline(full, color="grey", linestyle=":", linewidth=1.2, label="whole pool")
            if heading:
                ax.set_title(heading, fontsize="medium")
            ax.set_xlabel("labeled rows" if unit == "labels" else "labeling cost")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", fontsize="small")
        axes[0][0].set_ylabel("test accuracy")
        fig.suptitle(
            f"{dataset}: {config['model']}, batches of {config['batch_size']}, "
            f"mean ± std over {seeds} seed{'s' if seeds > 1 else ''}"
        )
        fig.tight_layout()
        path = os.path.join(output_dir, file_name(dataset))
        fig.savefig(path)
        plt.close(fig)
        paths[dataset] = path
    return paths
