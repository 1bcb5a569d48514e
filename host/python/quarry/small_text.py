"""small-text query strategies that score with quarry.

Each class subclasses small-text's own strategy of the same name and keeps its contract: the
constructor, ``__str__``, the exceptions of ``_validate_query_input``, the classifier calls
(``predict_proba(dataset)`` on the whole dataset, as small-text calls it: fewer rows than the
dataset raise ``ValueError``, more are read by position as small-text does; ``embed`` for the
embedding strategies), and ``scores_``: float64, one per row of the dataset, in small-text's
orientation (the confidence, lower first for ``LeastConfidence`` and
``BreakingTies``)::

    from small_text import PoolBasedActiveLearner
    import quarry.small_text

    learner = PoolBasedActiveLearner(clf_factory, quarry.small_text.PredictionEntropy(), train)
    indices = learner.query(num_samples=20)

The engine scores the rows (float32, so ``scores_`` agrees with small-text's to about 1e-7);
the ``n`` best unlabeled rows come back best first, equal scores to the lower position in
``indices_unlabeled``. Rows the engine refuses and small-text scores anyway (rows not summing to
1, as small-text's own test mocks give) are scored with small-text's formula in numpy.
``GreedyCoreset`` runs the engine's k-center greedy, ``EmbeddingKMeans`` its k-means, ``BALD``
its mutual information. ``Margin``, ``Entropy``, ``Ratio`` and ``QuarryUncertainty(measure)``
are quarry's measures under quarry's names. Importing this module imports small-text.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy as _scipy_entropy
from small_text.query_strategies import QueryStrategy
from small_text.query_strategies import bayesian as _bayesian
from small_text.query_strategies import coresets as _coresets
from small_text.query_strategies import strategies as _strategies

import quarry

from . import _dropin

__all__ = [
    "BALD",
    "BreakingTies",
    "Entropy",
    "EmbeddingKMeans",
    "GreedyCoreset",
    "LeastConfidence",
    "Margin",
    "PredictionEntropy",
    "QuarryUncertainty",
    "Ratio",
]


def _proba(clf, dataset, ndim: int = 2, **kwargs) -> np.ndarray:
    return _dropin.rows_array(
        clf.predict_proba(dataset, **kwargs),
        "predict_proba",
        ndim,
        _dropin.num_rows(dataset),
        extra_rows=True,  # small-text indexes by position; its own tests' mocks return more rows
    )


def _best(utility: np.ndarray, indices_unlabeled, n: int) -> np.ndarray:
    """The n unlabeled rows of highest utility, best first (ties: lower position first)."""
    indices_unlabeled = np.asarray(indices_unlabeled)
    if len(indices_unlabeled) == n:  # small-text returns the whole pool as it is
        return np.array(indices_unlabeled)
    return indices_unlabeled[_dropin.top(utility[indices_unlabeled], n)]


class _EngineConfidence:
    """small-text's ConfidenceBasedQueryStrategy with the engine's scores: ``measure`` is the
    engine's, ``_to_confidence`` turns its score into small-text's confidence, ``_peer`` is
    small-text's formula for rows the engine refuses."""

    measure: str

    def get_confidence(self, clf, dataset, _indices_unlabeled, _indices_labeled, _y):
        proba = _proba(clf, dataset)
        scores, engine = _dropin.score(proba, self.measure, lambda: self._peer(proba))
        return self._to_confidence(scores) if engine else scores

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        self._validate_query_input(indices_unlabeled, n)
        lower_first = self.score(clf, dataset, indices_unlabeled, indices_labeled, y)
        return _best(-lower_first, indices_unlabeled, n)


class LeastConfidence(_EngineConfidence, _strategies.LeastConfidence):
    """Lowest top probability first; ``scores_`` is ``p1``."""

    measure = "least_confidence"

    @staticmethod
    def _to_confidence(scores):
        return 1.0 - scores

    @staticmethod
    def _peer(proba):
        return np.amax(proba, axis=1)


class BreakingTies(_EngineConfidence, _strategies.BreakingTies):
    """Smallest gap between the two most likely classes first; ``scores_`` is ``p1 - p2``."""

    measure = "margin"

    @staticmethod
    def _to_confidence(scores):
        return 1.0 - scores

    @staticmethod
    def _peer(proba):
        top2 = -np.partition(-proba, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]


class PredictionEntropy(_EngineConfidence, _strategies.PredictionEntropy):
    """Highest prediction entropy first; ``scores_`` is the entropy."""

    measure = "entropy"

    @staticmethod
    def _to_confidence(scores):
        return scores

    @staticmethod
    def _peer(proba):
        with np.errstate(divide="ignore", invalid="ignore"):
            return _scipy_entropy(proba, axis=1)  # rows normalised, as small-text's scipy call


class QuarryUncertainty(QueryStrategy):
    """Picks the unlabeled rows with the highest quarry ``measure`` score of the classifier's
    ``predict_proba`` (any of quarry's measures of ``[N, C]`` probabilities); ``scores_`` holds
    the engine's score (higher first) of every row of the dataset, float64."""

    measure = "entropy"

    def __init__(self, measure: str | None = None, resources: quarry.Resources | None = None):
        if measure is not None:
            self.measure = measure
        self.resources = resources
        self.scores_ = None

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        self._validate_query_input(indices_unlabeled, n)
        proba = _proba(clf, dataset)
        self.scores_ = quarry.score(proba, self.measure, resources=self.resources).astype(
            np.float64
        )
        return _best(self.scores_, indices_unlabeled, n)

    def __str__(self):
        return f"{type(self).__name__}(measure={self.measure!r})"


class Margin(QuarryUncertainty):
    """quarry's ``margin``, ``1 - (p1 - p2)``: small-text's ``BreakingTies`` ranking."""

    measure = "margin"


class Entropy(QuarryUncertainty):
    """quarry's ``entropy``: small-text's ``PredictionEntropy`` ranking."""

    measure = "entropy"


class Ratio(QuarryUncertainty):
    """Highest ``p2 / p1`` first."""

    measure = "ratio"


class BALD(_bayesian.BALD):
    """BALD from the classifier's dropout samples ``predict_proba(dataset,
    dropout_sampling=k)`` ``[N, k, C]``, scored by the engine's ``bald`` (natural log;
    small-text's log2 and its 1e-8 guard do not change the order of rows without ties)."""

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        self._validate_query_input(indices_unlabeled, n)
        proba = _proba(clf, dataset, 3, dropout_sampling=self.dropout_samples)
        scores, _ = _dropin.score(
            proba, "bald", lambda: _bayesian._bald(proba), layout="rows-first"
        )
        return _best(scores, indices_unlabeled, n)


class GreedyCoreset(_coresets.GreedyCoreset):
    """small-text's greedy core-set (k-center greedy from the labeled rows) by the engine's
    ``strategy="coreset"``. Cosine distance (``arccos`` of the cosine similarity) orders points
    as the Euclidean distance of unit vectors does, so it runs on normalised embeddings."""

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None):  # fmt: skip
        if self.normalize:
            from sklearn.preprocessing import normalize  # looked up per call, as small-text does

            embeddings = normalize(embeddings, axis=1)
        elif self.distance_metric == "cosine":
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / norms
        indices_unlabeled = np.asarray(indices_unlabeled)
        indices_labeled = np.asarray(indices_labeled, dtype=np.int64)
        _coresets._check_coreset_size(embeddings, n)
        if len(indices_labeled) == 0:  # small-text's own error (no centres to start from)
            return super().sample(clf, dataset, indices_unlabeled, indices_labeled, y, n,
                                  embeddings)  # fmt: skip
        emb = np.asarray(embeddings, dtype=np.float32)
        candidates = np.ascontiguousarray(emb[indices_unlabeled])
        picks = quarry.select(
            np.full((len(candidates), 2), 0.5, np.float32),  # scores play no part with labeled
            n,
            strategy="coreset",
            embeddings=candidates,
            labeled=np.ascontiguousarray(emb[indices_labeled]),
        ).indices
        return picks  # positions in indices_unlabeled, as small-text's greedy_coreset returns


class EmbeddingKMeans(_strategies.EmbeddingKMeans):
    """small-text's EmbeddingKMeans with the engine's k-means (``quarry.kmeans``, seeded by
    ``seed``; small-text's scikit-learn KMeans is unseeded), then small-text's own rule: the
    unlabeled row nearest each centre."""

    def __init__(self, normalize=True, seed: int = 0):
        super().__init__(normalize=normalize)
        self.seed = seed

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None):  # fmt: skip
        if self.normalize:
            from sklearn.preprocessing import normalize  # looked up per call, as small-text does

            embeddings = normalize(embeddings, axis=1)
        vectors = embeddings[indices_unlabeled]
        centers = quarry.kmeans(
            np.ascontiguousarray(vectors, dtype=np.float32), n, seed=self.seed
        ).centroids
        centers = np.asarray(centers, dtype=np.float64)
        indices = self._get_nearest_to_centers(centers, vectors, normalized=self.normalize)
        if np.unique(indices).shape[0] < n:  # a vector nearest several centres
            indices = self._get_nearest_to_centers_iterative(
                centers, vectors, normalized=self.normalize
            )
        return indices
