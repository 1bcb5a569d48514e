"""The pool-based active-learning simulation loop."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import stopping, strategies
from .data import Dataset, Split, load_dataset, make_split
from .models import (
    aligned_proba,
    committee_proba,
    fit,
    fit_committee,
    last_layer_features,
    model_factory,
)
from .strategies import Strategy, parse_strategy

FORMAT = "quarry-eval/1"
#: Fields of every round record, in order; the timing fields are the only ones that vary between
#: two runs with the same seed.
ROUND_FIELDS = (
    "dataset",
    "strategy",
    "seed",
    "round",
    "labels",
    "cost",
    "accuracy",
    "macro_f1",
    "kappa",
    "select_seconds",
    "predict_seconds",
    "fit_seconds",
)
TIMING_FIELDS = ("select_seconds", "predict_seconds", "fit_seconds")


@dataclass(frozen=True)
class Settings:
    batch_size: int = 10
    budget: float = 200
    seed_size: int = 20
    committee_size: int = 5
    pca_components: int = 16
    test_fraction: float = 0.25
    stop_size: int = 1000
    unseen_classes: int = 0


def _check(settings: Settings, costs_given: bool, strategies: Sequence[Strategy]) -> None:
    if settings.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {settings.batch_size}")
    if not settings.budget > 0:
        raise ValueError(f"budget must be positive, got {settings.budget}")
    if not costs_given and settings.budget != int(settings.budget):
        raise ValueError(f"a label budget must be a whole number, got {settings.budget}")
    if settings.seed_size < 2:
        raise ValueError(f"seed set must hold at least 2 rows, got {settings.seed_size}")
    if settings.committee_size < 2:
        raise ValueError(f"a committee needs at least 2 members, got {settings.committee_size}")
    if settings.stop_size < 1:
        raise ValueError(f"the stop set needs at least 1 row, got {settings.stop_size}")
    if settings.pca_components < 1:
        raise ValueError(f"PCA needs at least 1 component, got {settings.pca_components}")
    for s in strategies:
        if s.candidates is not None and s.candidates < settings.batch_size:
            raise ValueError(
                f"strategy {s.name}: {s.candidates} candidates cannot fill batches of "
                f"{settings.batch_size}"
            )


def _embeddings(dataset: Dataset, split: Split, kind: str, components: int) -> np.ndarray:
    """Embeddings of every dataset row for the diversity step, fitted on the pool's features
    (unlabeled data, so no label leaks): standardised features, or their first PCA components."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit(dataset.X[split.pool]).transform(dataset.X)
    if kind == "pca":
        pca = PCA(n_components=min(components, *dataset.X.shape), random_state=0)
        scaled = pca.fit(scaled[split.pool]).transform(scaled)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def _evaluate(model, dataset: Dataset, split: Split):
    from sklearn.metrics import accuracy_score, f1_score

    predicted = model.predict(dataset.X[split.test])
    truth = dataset.y[split.test]
    accuracy = float(accuracy_score(truth, predicted))
    return accuracy, float(f1_score(truth, predicted, average="macro", zero_division=0))


def run_strategy(
    dataset: Dataset,
    split: Split,
    strategy: Strategy,
    make: Callable[[int], object],
    seed: int,
    settings: Settings,
    *,
    costs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> list[dict]:
    """One learning curve: the seed-set round 0, then a batch per round until the budget (labels,
    or cost units when ``costs`` gives each dataset row's cost) is spent or the pool is empty."""
    X, y = dataset.X, dataset.y
    row_cost = np.ones(len(y)) if costs is None else np.asarray(costs, dtype=np.float64)
    labeled = np.zeros(len(y), dtype=bool)
    labeled[split.seed_rows] = True
    in_pool = np.zeros(len(y), dtype=bool)
    in_pool[split.pool] = True
    rng = np.random.default_rng([seed, 0xA11])
    spent = 0.0  # labels, or cost, acquired after the seed set
    records, previous_stop_predictions = [], None

    def record(round_, model, select_s, predict_s, fit_s):
        nonlocal previous_stop_predictions
        accuracy, macro_f1 = _evaluate(model, dataset, split)
        stop_predictions = model.predict(X[split.stop_rows])
        kappa = None
        if previous_stop_predictions is not None:
            kappa = stopping.cohen_kappa(previous_stop_predictions, stop_predictions)
        previous_stop_predictions = stop_predictions
        records.append(
            {
                "dataset": dataset.name,
                "strategy": strategy.name,
                "seed": seed,
                "round": round_,
                "labels": int(labeled.sum()),
                "cost": float(row_cost[labeled].sum()),
                "accuracy": accuracy,
                "macro_f1": macro_f1,
                "kappa": kappa,
                "select_seconds": select_s,
                "predict_seconds": predict_s,
                "fit_seconds": fit_s,
            }
        )

    start = time.perf_counter()
    model = fit(make(seed), X[labeled], y[labeled])
    record(0, model, 0.0, 0.0, time.perf_counter() - start)

    round_ = 0
    while True:
        remaining = settings.budget - spent
        open_rows = np.flatnonzero(in_pool & ~labeled & (row_cost <= remaining))
        k = min(settings.batch_size, len(open_rows))
        if costs is None:
            k = min(k, int(remaining))
        if k <= 0:
            break
        round_ += 1
        fit_s = predict_s = 0.0
        if strategy.measure is None:
            start = time.perf_counter()
            picks = rng.permutation(len(open_rows))[:k]
            select_s = time.perf_counter() - start
        else:
            if strategy.committee:
                start = time.perf_counter()
                committee = fit_committee(
                    make, seed, X[labeled], y[labeled], settings.committee_size, rng
                )
                fit_s += time.perf_counter() - start
                start = time.perf_counter()
                pool = committee_proba(committee, X[open_rows], dataset.n_classes)
            else:
                start = time.perf_counter()
                pool = aligned_proba(model, X[open_rows], dataset.n_classes)
            predict_s = time.perf_counter() - start
            emb = None if embeddings is None else embeddings[open_rows]
            features = labeled_emb = None
            if strategy.batch == "badge":
                features = last_layer_features(model, X[open_rows])
            if strategy.batch == "coreset":
                labeled_emb = embeddings[labeled]
            start = time.perf_counter()
            picks = strategies.quarry_pick(
                strategy,
                pool,
                k,
                emb,
                seed * 100_003 + round_,
                features=features,
                labeled=labeled_emb,
            )
            select_s = time.perf_counter() - start
        picks = open_rows[picks]
        if costs is not None:
            # Labels are bought in the order quarry ranked them until the next one is unaffordable.
            picks = picks[np.cumsum(row_cost[picks]) <= remaining + 1e-9 * settings.budget]
        labeled[picks] = True
        spent += float(row_cost[picks].sum()) if costs is not None else len(picks)
        start = time.perf_counter()
        model = fit(make(seed), X[labeled], y[labeled])
        fit_s += time.perf_counter() - start
        record(round_, model, select_s, predict_s, fit_s)
    return records


def _full_data_reference(dataset: Dataset, split: Split, make, seed: int) -> dict:
    start = time.perf_counter()
    model = fit(make(seed), dataset.X[split.pool], dataset.y[split.pool])
    fit_s = time.perf_counter() - start
    accuracy, macro_f1 = _evaluate(model, dataset, split)
    return {
        "dataset": dataset.name,
        "seed": seed,
        "labels": len(split.pool),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "fit_seconds": fit_s,
    }


def simulate(
    datasets: Sequence[str | Dataset],
    strategies: Sequence[str | Strategy] = ("random", "margin"),
    *,
    model="logreg",
    batch_size: int = 10,
    budget: float = 200,
    costs: np.ndarray | Mapping[str, np.ndarray] | None = None,
    seed_size: int = 20,
    seeds: int | Sequence[int] = 5,
    committee_size: int = 5,
    explore: float = 0.1,
    candidates: int | None = None,
    pca_components: int = 16,
    test_fraction: float = 0.25,
    stop_size: int = 1000,
    stop_window: int = stopping.DEFAULT_WINDOW,
    stop_min_gain: float = stopping.DEFAULT_MIN_GAIN,
    stop_kappa: float = stopping.DEFAULT_KAPPA,
    max_rows: int | None = None,
    unseen_classes: int = 0,
    blas_threads: int | None = 1,
    progress: bool = False,
) -> dict:
    """Simulate active learning on labeled datasets and return the record (a JSON-ready dict).

    For each dataset and seed: split into pool and test set, draw a stratified seed set of
    ``seed_size`` pool rows, and run every strategy from the same split and seed set. Each round
    fits the model on the labeled rows, lets the strategy pick ``batch_size`` pool rows, reveals
    their labels and evaluates on the test set, until ``budget`` labels (after the seed set) or,
    with ``costs`` (one positive cost per dataset row; a mapping from dataset name to costs for
    several datasets), ``budget`` cost units are spent.

    ``strategies``: names as :func:`quarry.eval.strategies.parse_strategy` reads them
    (``random``, ``margin``, ``bald``, ``entropy+diversity``, ``margin+pca+explore=0.2``, ...);
    committee measures use a bagged committee of ``committee_size`` members. ``model``: a name
    (``logreg``, ``mlp``, ``rf``, ``gnb``), ``module:Estimator``, an estimator with ``fit`` and
    ``predict_proba`` (cloned per fit) or a callable ``seed -> estimator``. ``seeds``: a count
    (seeds 0..n-1) or the seeds themselves. ``blas_threads``: BLAS threads while simulating
    (None leaves them be): the model fits on a few hundred labels run fastest on one thread, and
    several threads on a busy machine can make each fit many times slower. ``max_rows``: a
    dataset with more rows is first subsampled to that many (stratified, fixed seed 0).
    ``unseen_classes``: a cold start whose seed set lacks that many classes (drawn per seed).

    The result holds ``config``, ``datasets``, ``references`` (the model fit on the whole pool,
    per dataset and seed) and ``rounds``, a flat list of records with the fields
    :data:`ROUND_FIELDS`; :func:`quarry.eval.report.summarize` turns it into the report's numbers.
    """
    parsed = [
        s if isinstance(s, Strategy) else parse_strategy(s, explore=explore, candidates=candidates)
        for s in strategies
    ]
    if not parsed:
        raise ValueError("no strategy named")
    if len({s.name for s in parsed}) != len(parsed):
        raise ValueError("a strategy is named twice")
    settings = Settings(
        batch_size,
        budget,
        seed_size,
        committee_size,
        pca_components,
        test_fraction,
        stop_size,
        unseen_classes,
    )
    _check(settings, costs is not None, parsed)
    if stop_window < 1:
        raise ValueError(f"the stopping window must be at least 1 round, got {stop_window}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("at least one seed is needed")
    if max_rows is not None and max_rows < 100:
        raise ValueError(f"max rows must be at least 100, got {max_rows}")
    if unseen_classes < 0:
        raise ValueError(f"unseen classes must be at least 0, got {unseen_classes}")
    loaded = unique_names(
        [d if isinstance(d, Dataset) else load_dataset(d) for d in datasets],
        [d if isinstance(d, str) else None for d in datasets],
    )
    if not loaded:
        raise ValueError("no dataset named")
    if max_rows is not None:
        loaded = [subsample(d, max_rows) for d in loaded]
    dataset_costs = {d.name: _costs_for(d, costs, len(loaded)) for d in loaded}
    make = model_factory(model)

    doc = {
        "format": FORMAT,
        "config": {
            "model": model if isinstance(model, str) else repr(model),
            "strategies": [s.name for s in parsed],
            "batch_size": batch_size,
            "budget": budget,
            "budget_unit": "labels" if costs is None else "cost",
            "seed_size": seed_size,
            "seeds": seed_list,
            "committee_size": committee_size,
            "explore": explore,
            "candidates": candidates,
            "pca_components": pca_components,
            "test_fraction": test_fraction,
            "stop_size": stop_size,
            "stop_window": stop_window,
            "stop_min_gain": stop_min_gain,
            "stop_kappa": stop_kappa,
            "max_rows": max_rows,
            "unseen_classes": unseen_classes,
            "blas_threads": blas_threads,
        },
        "datasets": [],
        "references": [],
        "rounds": [],
    }
    with _blas_threads(blas_threads):
        for dataset in loaded:
            doc["datasets"].append(
                {
                    "name": dataset.name,
                    "rows": len(dataset.y),
                    "features": int(dataset.X.shape[1]),
                    "classes": int(dataset.n_classes),
                }
            )
            for seed in seed_list:
                split = make_split(
                    dataset,
                    seed,
                    seed_size=seed_size,
                    test_fraction=test_fraction,
                    stop_size=stop_size,
                    unseen_classes=unseen_classes,
                )
                reference = _full_data_reference(dataset, split, make, seed)
                doc["references"].append(reference)
                _say(
                    progress,
                    f"{dataset.name} seed {seed}: pool {len(split.pool)}, test {len(split.test)}, "
                    f"full-data accuracy {reference['accuracy']:.4f}",
                )
                embeddings = {}
                for s in parsed:
                    if s.diversity and s.diversity not in embeddings:
                        embeddings[s.diversity] = _embeddings(
                            dataset, split, s.diversity, pca_components
                        )
                for s in parsed:
                    start = time.perf_counter()
                    records = run_strategy(
                        dataset,
                        split,
                        s,
                        make,
                        seed,
                        settings,
                        costs=dataset_costs[dataset.name],
                        embeddings=embeddings.get(s.diversity),
                    )
                    doc["rounds"].extend(records)
                    last = records[-1]
                    _say(
                        progress,
                        f"  {s.name:<24} {len(records) - 1:>4} rounds, {last['labels']:>6} labels, "
                        f"accuracy {last['accuracy']:.4f} ({time.perf_counter() - start:.1f} s)",
                    )
    return doc


def unique_names(loaded: list[Dataset], specs: list[str | None]) -> list[Dataset]:
    """Datasets renamed where two share a name (two ``X.npy`` in different folders): each
    clashing one is named by its path as given, which must then differ."""
    import dataclasses

    names = [d.name for d in loaded]
    out = []
    for d, spec in zip(loaded, specs, strict=True):
        if names.count(d.name) > 1 and spec is not None:
            d = dataclasses.replace(d, name=spec.split(":", 1)[0] if ".npy" in spec else spec)
        out.append(d)
    if len({d.name for d in out}) != len(out):
        raise ValueError("a dataset is named twice")
    return out


def subsample(dataset: Dataset, rows: int) -> Dataset:
    """At most ``rows`` rows of ``dataset``, stratified by class with a fixed seed (0), in their
    original order; the name is unchanged. A class too rare to keep is an error."""
    import dataclasses

    from sklearn.model_selection import train_test_split

    if len(dataset.y) <= rows:
        return dataset
    keep, _ = train_test_split(
        np.arange(len(dataset.y)), train_size=rows, stratify=dataset.y, random_state=0
    )
    keep = np.sort(keep)
    if len(np.unique(dataset.y[keep])) != dataset.n_classes:
        raise ValueError(f"{dataset.name}: {rows} rows cannot hold every class")
    return dataclasses.replace(dataset, X=dataset.X[keep], y=dataset.y[keep])


def _blas_threads(threads: int | None):
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise ValueError(f"BLAS threads must be at least 1, got {threads}")
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def _costs_for(dataset: Dataset, costs, n_datasets: int) -> np.ndarray | None:
    if costs is None:
        return None
    if isinstance(costs, Mapping):
        if dataset.name not in costs:
            raise ValueError(f"no costs given for dataset {dataset.name}")
        costs = costs[dataset.name]
    elif n_datasets > 1:
        raise ValueError("with several datasets, give costs as a mapping from dataset name")
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (len(dataset.y),):
        raise ValueError(
            f"costs must hold one value per row of {dataset.name} ({len(dataset.y)}), "
            f"got shape {costs.shape}"
        )
    bad = np.flatnonzero(~(np.isfinite(costs) & (costs > 0)))
    if len(bad):
        raise ValueError(
            f"costs: row {bad[0]}: cost must be finite and positive, got {costs[bad[0]]}"
        )
    return costs


def _say(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr, flush=True)
