"""modAL query strategies that rank with quarry.

Drop-in replacements for modAL's own, with the same signatures and return values
(``(indices, values)``, values as modAL computes them: ``1 - p1`` for uncertainty, ``p1 - p2`` for
margin, entropies, KL divergences)::

    from modAL.models import ActiveLearner, Committee
    import quarry.modal

    learner = ActiveLearner(estimator, query_strategy=quarry.modal.entropy_sampling)
    committee = Committee(learners, query_strategy=quarry.modal.vote_entropy_sampling)

The estimator's ``predict_proba`` (float64, as scikit-learn returns it) is read in place by
quarry, converted to float32 a chunk at a time. Indices come best first; among rows with equal
scores the lower row comes first (modAL's own order among the picks is arbitrary). With
``random_tie_break=True`` the rows are shuffled before ranking, as modAL does. modAL itself is
not imported by this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import quarry

__all__ = [
    "consensus_entropy_sampling",
    "entropy_sampling",
    "margin_sampling",
    "max_disagreement_sampling",
    "uncertainty_sampling",
    "vote_entropy_sampling",
]


def _not_fitted(error: Exception) -> bool:
    return type(error).__name__ == "NotFittedError"


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """scipy.stats.entropy as modAL calls it: rows normalised, 0 ln 0 = 0."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)


def _rank(
    pool: Any, n_instances: int, random_tie_break: bool, row_axis: int = 0, **options
) -> np.ndarray:
    """The n_instances best rows of ``pool`` by quarry, shuffled first for a random tie break."""
    rows = pool.shape[row_axis]
    if n_instances > rows:
        raise quarry.InvalidArgument(
            f"n_instances ({n_instances}) must be at most the number of rows ({rows})"
        )
    if not random_tie_break:
        return quarry.select(pool, n_instances, **options).indices
    order = np.random.permutation(rows)
    shuffled = np.take(pool, order, axis=row_axis)
    return order[quarry.select(shuffled, n_instances, **options).indices]


def _single(classifier, X, n_instances, random_tie_break, measure, values, kwargs):
    try:
        proba = np.asarray(classifier.predict_proba(X, **kwargs))
    except Exception as error:  # modAL: an unfitted estimator makes every row equal
        if not _not_fitted(error):
            raise
        return np.arange(n_instances), np.full(
            n_instances, 1.0 if measure == "least_confidence" else 0.0
        )
    if proba.ndim != 2:
        raise quarry.InvalidArgument(
            f"predict_proba must return [N, classes] probabilities, got shape {proba.shape}"
        )
    if proba.shape[1] == 1:  # one known class: every row is certain, as modAL scores it
        return np.arange(n_instances), values(proba[:n_instances])
    picks = _rank(proba, n_instances, random_tie_break, measure=measure)
    return picks, values(proba[picks])


def uncertainty_sampling(
    classifier,
    X,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **uncertainty_measure_kwargs,
):
    """Least-confidence sampling: rows with the lowest top probability; values ``1 - p1``."""
    return _single(
        classifier,
        X,
        n_instances,
        random_tie_break,
        "least_confidence",
        lambda p: 1 - p.max(axis=1),
        uncertainty_measure_kwargs,
    )


def margin_sampling(
    classifier,
    X,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **uncertainty_measure_kwargs,
):
    """Margin sampling: rows with the smallest ``p1 - p2``; values ``p1 - p2``."""

    def margin(p):
        if p.shape[1] == 1:
            return np.zeros(len(p))
        top = -np.partition(-p, 1, axis=1)
        return top[:, 0] - top[:, 1]

    return _single(
        classifier, X, n_instances, random_tie_break, "margin", margin, uncertainty_measure_kwargs
    )


def entropy_sampling(
    classifier,
    X,
    n_instances: int = 1,
    random_tie_break: bool = False,
    **uncertainty_measure_kwargs,
):
    """Entropy sampling: rows whose class probabilities have the largest entropy."""
    return _single(
        classifier,
        X,
        n_instances,
        random_tie_break,
        "entropy",
        lambda p: _entropy(p, axis=1),
        uncertainty_measure_kwargs,
    )


def _committee_proba(committee, X, kwargs):
    """[N, M, C] float64 class probabilities of every learner, as modAL's vote_proba gives."""
    return np.asarray(committee.vote_proba(X, **kwargs))


def vote_entropy_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """Vote entropy of the learners' predicted labels (``committee.vote``); values as modAL's."""
    try:
        labels = np.asarray(committee.vote(X, **disagreement_measure_kwargs))  # [N, M]
    except Exception as error:
        if not _not_fitted(error):
            raise
        return np.arange(n_instances), np.zeros(n_instances)
    classes = np.asarray(committee.classes_)
    position = np.searchsorted(classes, labels).clip(0, len(classes) - 1)
    votes = np.where(classes[position] == labels, position, -1).astype(np.int32)
    picks = _rank(  # votes.T: the [M, N] view quarry reads, strided, not copied
        votes.T, n_instances, random_tie_break, 1, measure="vote_entropy", classes=len(classes)
    )
    counts = (votes[picks][:, :, None] == np.arange(len(classes))).sum(axis=1)
    return picks, _entropy(counts / votes.shape[1], axis=1)


def consensus_entropy_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """Entropy of the learners' mean class probabilities; values as modAL's."""
    try:
        proba = _committee_proba(committee, X, disagreement_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return np.arange(n_instances), np.zeros(n_instances)
    picks = _rank(
        proba, n_instances, random_tie_break, measure="consensus_entropy", layout="rows-first"
    )
    return picks, _entropy(proba[picks].mean(axis=1), axis=1)


def max_disagreement_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """The largest KL divergence of a learner from the consensus (quarry's ``kl_max``)."""
    try:
        proba = _committee_proba(committee, X, disagreement_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return np.arange(n_instances), np.zeros(n_instances)
    picks = _rank(proba, n_instances, random_tie_break, measure="kl_max", layout="rows-first")
    p = proba[picks]
    mean = p.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.nansum(np.where(p > 0, p * np.log(p / mean), 0.0), axis=2)
    return picks, kl.max(axis=1)
