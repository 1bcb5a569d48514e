"""Stopping rules, usable in any active-learning loop.

Call a rule after every round with the history so far; it returns the round at which to stop
(counting the seed-set round as 0), or None to go on::

    accuracies, predictions = [], []
    while True:
        ...  # fit, evaluate, predict the stop set
        accuracies.append(accuracy)
        predictions.append(model.predict(X_stop))
        if kappa_stability_stop(predictions) is not None:
            break
        ...  # select and label the next batch
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_WINDOW = 3
DEFAULT_MIN_GAIN = 0.005
DEFAULT_KAPPA = 0.99


def accuracy_plateau_stop(
    accuracies: Sequence[float],
    *,
    window: int = DEFAULT_WINDOW,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> int | None:
    """The first round r ≥ ``window`` whose accuracy exceeds that of round r − ``window`` by less
    than ``min_gain``: the learning curve has flattened. Needs labeled evaluation data."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    for r in range(window, len(accuracies)):
        if accuracies[r] - accuracies[r - window] < min_gain:
            return r
    return None


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's κ between two rounds' predicted labels on the same rows. Two identical predictions
    give 1 even when they are a single class (where κ's formula is 0/0)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"predictions must be 1-D and of one length, got {a.shape} and {b.shape}")
    if np.array_equal(a, b):
        return 1.0
    return float(cohen_kappa_score(a, b))


def stable_kappa_round(
    kappas: Sequence[float | None],
    *,
    window: int = DEFAULT_WINDOW,
    threshold: float = DEFAULT_KAPPA,
) -> int | None:
    """The first round r at which the κ of each of the last ``window`` pairs of consecutive rounds
    (``kappas[r]`` compares round r with r − 1; ``kappas[0]`` is unused) is at least
    ``threshold``."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    run = 0
    for r in range(1, len(kappas)):
        run = run + 1 if kappas[r] is not None and kappas[r] >= threshold else 0
        if run >= window:
            return r
    return None


def kappa_stability_stop(
    predictions: Sequence[np.ndarray],
    *,
    window: int = DEFAULT_WINDOW,
    threshold: float = DEFAULT_KAPPA,
) -> int | None:
    """Stabilising predictions (Bloodgood & Vijay-Shanker, 2009): the first round at which the
    predictions on a fixed, unlabeled stop set agreed with the previous round's with Cohen's κ ≥
    ``threshold`` for ``window`` rounds in a row. Needs no labels."""
    kappas = [None] + [
        cohen_kappa(predictions[r - 1], predictions[r]) for r in range(1, len(predictions))
    ]
    return stable_kappa_round(kappas, window=window, threshold=threshold)
