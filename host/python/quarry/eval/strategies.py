"""Strategy names, and the one place the simulator calls quarry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import measures as _measures

# The measures the simulator runs, from quarry's measure table: those of one model's probabilities
# that need no side input (egl needs features), and the committees'.
SINGLE_MODEL_MEASURES = tuple(
    m["name"] for m in _measures() if m["pool_kind"] == "predictions" and not m["features"]
)
COMMITTEE_MEASURES = tuple(m["name"] for m in _measures() if m["pool_kind"] == "committee")
DEFAULT_EXPLORE = 0.1
#: Batch strategies that choose the k rows together (``quarry.select(strategy=...)``), and
#: ``recommended`` (:func:`quarry.recommended`: margin with k-means diversity over the
#: embeddings, here the standardised features or their PCA).
BATCH_STRATEGIES = ("badge", "coreset", "recommended")


@dataclass(frozen=True)
class Strategy:
    """One way of picking a batch. ``measure`` is None for random sampling; ``diversity`` is
    None, ``"features"`` (k-means over the standardised features) or ``"pca"`` (over a PCA of
    them); ``explore`` is the fraction of each batch drawn at random. ``batch`` is ``badge``,
    ``coreset`` or ``recommended`` (``measure`` is then margin, which ranks their candidates);
    ``tie_break`` is quarry's rule for equal scores (``row`` or ``random``)."""

    name: str
    measure: str | None = None
    diversity: str | None = None
    explore: float = 0.0
    candidates: int | None = None
    batch: str | None = None
    tie_break: str = "row"

    @property
    def committee(self) -> bool:
        return self.measure in COMMITTEE_MEASURES


def parse_strategy(
    spec: str, *, explore: float = DEFAULT_EXPLORE, candidates: int | None = None
) -> Strategy:
    """``random``, or a measure followed by any of ``+diversity``, ``+pca`` (diversity over a PCA
    of the features) and ``+explore`` (the fraction ``explore``) or ``+explore=EPS``; e.g.
    ``margin+pca+explore=0.2``; ``+ties`` breaks equal scores with quarry's seeded random
    tie-break instead of lowest row first. ``badge``, ``coreset`` and ``recommended`` are batch
    strategies (diversity over the standardised features, or their PCA with ``+pca``).
    ``candidates`` is the diversity step's candidate count."""
    spec = spec.strip()
    measure, *modifiers = spec.split("+")
    if measure == "random":
        if modifiers:
            raise ValueError(f"strategy {spec!r}: random sampling takes no modifiers")
        return Strategy(spec)
    batch = None
    if measure in BATCH_STRATEGIES:
        batch, measure = measure, "margin"
    elif measure not in SINGLE_MODEL_MEASURES + COMMITTEE_MEASURES:
        raise ValueError(
            f"strategy {spec!r}: unknown measure {measure!r}; expected random, "
            + ", ".join(BATCH_STRATEGIES)
            + " or one of "
            + ", ".join(SINGLE_MODEL_MEASURES + COMMITTEE_MEASURES)
        )
    diversity, eps, tie_break = ("features" if batch else None), 0.0, "row"
    for modifier in modifiers:
        if modifier == "ties":
            tie_break = "random"
        elif batch and modifier == "pca":
            diversity = "pca"
        elif batch:
            raise ValueError(f"strategy {spec!r}: {batch} takes only +pca and +ties")
        elif modifier in ("diversity", "pca"):
            if diversity is not None:
                raise ValueError(f"strategy {spec!r}: diversity named twice")
            diversity = "features" if modifier == "diversity" else "pca"
        elif modifier == "explore" or modifier.startswith("explore="):
            value = modifier.partition("=")[2]
            try:
                eps = float(value) if value else explore
            except ValueError:
                raise ValueError(f"strategy {spec!r}: {modifier!r} is not explore=EPS") from None
            if not 0.0 <= eps < 1.0:
                raise ValueError(f"strategy {spec!r}: exploration must lie in [0, 1), got {eps}")
        else:
            raise ValueError(
                f"strategy {spec!r}: unknown modifier {modifier!r}; expected diversity, pca, "
                "explore, explore=EPS or ties"
            )
    return Strategy(
        spec,
        measure,
        diversity,
        eps,
        candidates if diversity and batch is None else None,
        batch,
        tie_break,
    )


def parse_strategies(specs: str, **options) -> list[Strategy]:
    strategies = [parse_strategy(s, **options) for s in specs.split(",") if s.strip()]
    if not strategies:
        raise ValueError("no strategy named")
    names = [s.name for s in strategies]
    if len(set(names)) != len(names):
        raise ValueError(f"a strategy is named twice in {specs!r}")
    return strategies


def quarry_pick(
    strategy: Strategy,
    pool: np.ndarray,
    k: int,
    embeddings: np.ndarray | None,
    seed: int,
    *,
    features: np.ndarray | None = None,
    labeled: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of ``pool`` (``[N, C]`` probabilities or a ``[M, N, C]`` committee) that quarry
    picks, best first. ``features``: the model's last-layer features of the pool rows (BADGE,
    which falls back to the embeddings without them); ``labeled``: the labeled rows'
    embeddings (core-set's first centers)."""
    import quarry

    candidates = 0  # quarry's default: 10 * k (every row for badge/coreset), capped at N
    if embeddings is not None and strategy.candidates:
        candidates = min(strategy.candidates, pool.shape[-2])
    ties = {} if strategy.tie_break == "row" else {"tie_break": strategy.tie_break}
    if strategy.batch == "recommended":
        selection = quarry.recommended(
            pool,
            k,
            embeddings=embeddings,
            candidates=candidates,
            seed=seed,
            **ties,
        )
    elif strategy.batch == "badge":
        selection = quarry.select(
            pool.astype(np.float32),
            k,
            strategy="badge",
            features=embeddings if features is None else features,
            seed=seed,
            **ties,
        )
    elif strategy.batch == "coreset":
        selection = quarry.select(
            pool, k, strategy="coreset", embeddings=embeddings, labeled=labeled, **ties
        )
    else:
        selection = quarry.select(
            pool,
            k,
            measure=strategy.measure,
            embeddings=embeddings,
            candidates=candidates,
            explore=strategy.explore,
            seed=seed,
            **ties,
        )
    return np.asarray(selection.indices, dtype=np.int64)
