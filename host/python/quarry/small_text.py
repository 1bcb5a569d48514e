"""small-text query strategies that rank with quarry.

One ``QueryStrategy`` per uncertainty measure, for ``small_text.PoolBasedActiveLearner``::

    from small_text import PoolBasedActiveLearner
    import quarry.small_text

    learner = PoolBasedActiveLearner(clf_factory, quarry.small_text.Entropy(), train)
    indices = learner.query(num_samples=20)

Only the unlabeled rows are predicted; their probabilities are read in place by quarry and the
``n`` best come back, best first (equal scores: the lower position in ``indices_unlabeled``
first). ``scores_`` then holds the quarry scores of the rows returned. ``BreakingTies`` and
``PredictionEntropy`` are small-text's names for ``Margin`` and ``Entropy``. Importing this
module imports small-text.
"""

from __future__ import annotations

import numpy as np
from small_text.query_strategies import QueryStrategy

import quarry

__all__ = [
    "BreakingTies",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "PredictionEntropy",
    "QuarryUncertainty",
    "Ratio",
]


class QuarryUncertainty(QueryStrategy):
    """Picks the unlabeled rows with the highest quarry ``measure`` score of the classifier's
    ``predict_proba``."""

    measure = "entropy"

    def __init__(self, measure: str | None = None, resources: quarry.Resources | None = None):
        if measure is not None:
            self.measure = measure
        self.resources = resources
        self.scores_ = None

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        self._validate_query_input(indices_unlabeled, n)
        indices_unlabeled = np.asarray(indices_unlabeled)
        proba = np.asarray(clf.predict_proba(dataset[indices_unlabeled]))
        picks = quarry.select(proba, n, measure=self.measure, resources=self.resources)
        self.scores_ = picks.scores
        return indices_unlabeled[picks.indices]

    def __str__(self):
        return f"{type(self).__name__}(measure={self.measure!r})"


class LeastConfidence(QuarryUncertainty):
    """Lowest top probability first (score ``1 - p1``)."""

    measure = "least_confidence"


class Margin(QuarryUncertainty):
    """Smallest gap between the two most likely classes first (score ``1 - (p1 - p2)``)."""

    measure = "margin"


class Entropy(QuarryUncertainty):
    """Highest prediction entropy first."""

    measure = "entropy"


class Ratio(QuarryUncertainty):
    """Highest ``p2 / p1`` first."""

    measure = "ratio"


BreakingTies = Margin
PredictionEntropy = Entropy
