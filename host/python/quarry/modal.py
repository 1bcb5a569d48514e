"""modAL query strategies that rank with quarry.

Drop-in replacements for modAL's own, with the same signatures and return values
(``(indices, values)``, values as modAL computes them: ``1 - p1`` for uncertainty, ``p1 - p2`` for
margin, entropies, KL divergences)::

    from modAL.models import ActiveLearner, Committee
    import quarry.modal

    learner = ActiveLearner(estimator, query_strategy=quarry.modal.entropy_sampling)
    committee = Committee(learners, query_strategy=quarry.modal.vote_entropy_sampling)

The classifier is called as modAL calls it (``predict_proba``; a Committee's ``vote``,
``predict_proba`` (the consensus) or ``vote_proba``) and its output, in any layout, is read by
quarry (float64 converted to float32 a chunk at a time; a Fortran-ordered array, as scikit-learn
returns for two classes, is copied once). Indices come best first; among rows with equal scores
the lower row comes first (modAL's own order among the picks is arbitrary). With
``random_tie_break=True`` the rows are shuffled before ranking, as modAL does. Inputs modAL
accepts and quarry.select refuses (rows not summing to 1, all-zero rows) are ranked by modAL's
own formula (see ``quarry._dropin``); ``n_instances`` larger than the pool raises modAL's
``AssertionError``; an unfitted estimator scores every row alike, as modAL's does. modAL itself is
not imported by this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import entropy as _scipy_entropy

import quarry

from . import _dropin

__all__ = [
    "consensus_entropy_sampling",
    "diverse_uncertainty_sampling",
    "entropy_sampling",
    "margin_sampling",
    "max_disagreement_sampling",
    "uncertainty_sampling",
    "vote_entropy_sampling",
]

_TOO_MANY = "n_instances must be less or equal than the size of utility"


def _not_fitted(error: Exception) -> bool:
    return type(error).__name__ == "NotFittedError"


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """modAL's entropy: scipy.stats.entropy (rows normalised, 0 ln 0 = 0, an all-zero row NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _scipy_entropy(p, axis=axis)


def _check_count(n_instances: int, rows: int | None) -> None:
    if rows is not None and n_instances > rows:
        raise AssertionError(_TOO_MANY)  # modAL's multi_argmax assertion, message and type


def _order(rows: int, random_tie_break: bool) -> np.ndarray | None:
    return np.random.permutation(rows) if random_tie_break else None


def _alike(X, n_instances: int, value: float, random_tie_break: bool):
    """An unfitted estimator: every row scores ``value`` (modAL's constant), so the first rows."""
    rows = _dropin.num_rows(X)
    _check_count(n_instances, rows)
    order = _order(rows, random_tie_break)
    picks = np.arange(n_instances) if order is None else order[:n_instances]
    return picks, np.full(n_instances, value)


def _single(classifier, X, n_instances, random_tie_break, measure, values, kwargs):
    try:
        raw = classifier.predict_proba(X, **kwargs)
    except Exception as error:  # modAL: an unfitted estimator makes every row equal
        if not _not_fitted(error):
            raise
        return _alike(X, n_instances, 1.0 if measure == "least_confidence" else 0.0,
                      random_tie_break)  # fmt: skip
    proba = _dropin.rows_array(raw, "predict_proba", 2, _dropin.num_rows(X))
    _check_count(n_instances, len(proba))
    utility = (lambda: values(proba)) if measure != "margin" else (lambda: -values(proba))
    if proba.shape[1] == 1:  # one known class: every row is certain, as modAL scores it
        order = _order(len(proba), random_tie_break)
        picks = (
            _dropin.top(utility(), n_instances)
            if order is None
            else order[_dropin.top(utility()[order], n_instances)]
        )
        return picks, values(proba[picks])
    picks = _dropin.select(
        proba, n_instances, utility, order=_order(len(proba), random_tie_break), measure=measure
    )
    return picks, values(proba[picks])


def _margin(p: np.ndarray) -> np.ndarray:
    if p.shape[1] == 1:
        return np.zeros(len(p))
    top = -np.partition(-p, 1, axis=1)
    return top[:, 0] - top[:, 1]


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
    return _single(
        classifier, X, n_instances, random_tie_break, "margin", _margin, uncertainty_measure_kwargs
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


def vote_entropy_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """Vote entropy of the learners' predicted labels (``committee.vote``); values as modAL's."""
    try:
        raw = committee.vote(X, **disagreement_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return _alike(X, n_instances, 0.0, random_tie_break)
    labels = np.asarray(raw)
    if labels.ndim != 2 or labels.shape[0] != _dropin.num_rows(X):
        raise ValueError(f"committee.vote must return [n_samples, n_learners]; got {labels.shape}")
    _check_count(n_instances, len(labels))
    classes = np.asarray(committee.classes_)
    position = np.searchsorted(classes, labels).clip(0, len(classes) - 1)
    votes = np.where(classes[position] == labels, position, -1).astype(np.int32)

    def p_vote(rows: Any = slice(None)) -> np.ndarray:  # modAL: counts / number of learners
        counts = (votes[rows][:, :, None] == np.arange(len(classes))).sum(axis=1)
        return counts / votes.shape[1]

    picks = _dropin.select(  # votes.T: the [M, N] view quarry reads, strided, not copied
        votes.T,
        n_instances,
        lambda: _entropy(p_vote(), axis=1),
        row_axis=1,
        order=_order(len(votes), random_tie_break),
        measure="vote_entropy",
        classes=len(classes),
    )
    return picks, _entropy(p_vote(picks), axis=1)


def consensus_entropy_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """Entropy of the committee's consensus (``committee.predict_proba``, as modAL reads it)."""
    try:
        raw = committee.predict_proba(X, **disagreement_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return _alike(X, n_instances, 0.0, random_tie_break)
    proba = _dropin.rows_array(raw, "committee.predict_proba", 2, _dropin.num_rows(X))
    _check_count(n_instances, len(proba))
    picks = _dropin.select(
        proba,
        n_instances,
        lambda: _entropy(proba, axis=1),
        order=_order(len(proba), random_tie_break),
        measure="entropy",
    )
    return picks, _entropy(proba[picks], axis=1)


def _kl_max(p: np.ndarray) -> np.ndarray:
    """modAL's KL_max_disagreement of [rows, M, C]: scipy's entropy(p_m, qk=mean), normalised."""
    mean = p.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _scipy_entropy(p, qk=np.broadcast_to(mean, p.shape), axis=2).max(axis=1)


def max_disagreement_sampling(
    committee, X, n_instances: int = 1, random_tie_break=False, **disagreement_measure_kwargs
):
    """The largest KL divergence of a learner from the consensus (quarry's ``kl_max``)."""
    try:
        raw = committee.vote_proba(X, **disagreement_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return _alike(X, n_instances, 0.0, random_tie_break)
    proba = _dropin.rows_array(raw, "committee.vote_proba", 3, _dropin.num_rows(X))
    _check_count(n_instances, len(proba))
    picks = _dropin.select(
        proba,
        n_instances,
        lambda: _kl_max(proba),
        order=_order(len(proba), random_tie_break),
        measure="kl_max",
        layout="rows-first",
    )
    return picks, _kl_max(proba[picks])


def diverse_uncertainty_sampling(
    classifier,
    X,
    n_instances: int = 20,
    candidates: int = 0,
    seed: int = 0,
    **uncertainty_measure_kwargs,
):
    """A batch spread over the pool, in place of modAL's ``uncertainty_batch_sampling``: the
    top ``candidates`` rows by least confidence (0: ``10 * n_instances``) are clustered on their
    features ``X`` with the engine's k-means and the most uncertain row of each cluster is kept
    (``quarry.select(..., embeddings=X)``). Not modAL's picks: its ranked batch scores
    ``alpha * (1 - 1 / (1 + d)) + (1 - alpha) * u`` pick by pick, a rule the engine does not
    compute. Returns ``(indices, values)`` as modAL's strategies do, values ``1 - p1``."""
    try:
        raw = classifier.predict_proba(X, **uncertainty_measure_kwargs)
    except Exception as error:
        if not _not_fitted(error):
            raise
        return _alike(X, n_instances, 1.0, False)
    proba = _dropin.rows_array(raw, "predict_proba", 2, _dropin.num_rows(X))
    _check_count(n_instances, len(proba))
    if n_instances == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    features = np.ascontiguousarray(np.asarray(X).reshape(len(proba), -1), dtype=np.float32)
    picks = quarry.select(  # strict: no library formula to fall back on for this rule
        proba,
        n_instances,
        measure="least_confidence",
        embeddings=features,
        candidates=candidates,
        seed=seed,
    ).indices
    return picks, 1 - proba[picks].max(axis=1)
