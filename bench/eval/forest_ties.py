"""How many rows a random forest scores alike, and how sorted by class each pool is (bench/EVAL.md).

    python bench/eval/forest_ties.py [DATASET ...]

For each dataset (subsampled as quarry-eval --max-rows 3000 does) and seeds 0-4: fit the
simulator's forest on the seed set of 20, then count the unlabeled pool rows whose margin equals
the 10th-best one (rows a batch of 10 has to choose among by the tie rule) and the classes among
the 10 rows that lowest-row-first ties would pick; and the class changes along the pool's row order.
"""

from __future__ import annotations

import sys

import numpy as np

from quarry.eval.data import load_dataset, make_split
from quarry.eval.models import model_factory
from quarry.eval.simulate import subsample

DATASETS = (
    "keel:satimage keel:segment keel:texture keel:vehicle keel:spambase keel:phoneme "
    "keel:penbased mnist5k synthetic:3000"
).split()


def main(specs) -> None:
    make = model_factory("rf")
    for spec in specs or DATASETS:
        data = subsample(load_dataset(spec), 3000)
        tied, classes = [], []
        for seed in range(5):
            split = make_split(data, seed)
            unlabeled = np.setdiff1d(split.pool, split.seed_rows)
            model = make(seed).fit(data.X[split.seed_rows], data.y[split.seed_rows])
            p = np.sort(model.predict_proba(data.X[unlabeled]), axis=1)
            margin = p[:, -1] - p[:, -2]
            tied.append(int(np.sum(margin == np.sort(margin)[9])))
            first = np.lexsort((unlabeled, margin))[:10]  # smallest margin, then lowest row
            classes.append(len(np.unique(data.y[unlabeled[first]])))
        changes = int(np.sum(np.diff(data.y[split.pool]) != 0))
        print(
            f"{spec}: {len(split.pool)} pool rows, {changes} class changes in row order; "
            f"{np.mean(tied):.0f} rows tied at the 10th-best margin (min {min(tied)}, max "
            f"{max(tied)}); the first 10 in row order span {np.mean(classes):.1f} of "
            f"{data.n_classes} classes"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
