"""scikit-activeml query strategies that select with quarry.

Each class subclasses scikit-activeml's own strategy of the same name (``skactiveml.pool``) and
keeps its ``query(X, y, ...)`` contract: the same arguments, validation and exceptions, the
classifier calls (a fresh fit unless ``fit_clf=False``, ``predict_proba`` of the candidates), and
the indices returned (into ``X``, or into ``candidates`` when they are samples)::

    from skactiveml.classifier import SklearnClassifier
    import quarry.skactiveml

    qs = quarry.skactiveml.UncertaintySampling(method="entropy")
    idx = qs.query(X, y, clf=SklearnClassifier(LogisticRegression()), batch_size=100)

What the engine computes is computed by the engine: ``UncertaintySampling`` (least confident,
margin, entropy), ``QueryByCommittee`` (``KL_divergence`` as the engine's ``bald``, the members'
mean KL divergence from their mean; ``vote_entropy``; ``variation_ratios``), ``CoreSet``
(Euclidean k-center greedy from the labeled rows) and ``Badge`` (k-means++ seeding on gradient
embeddings, seeded by ``random_state``). Everything else (``return_utilities=True``, a cost
matrix, utility weights, regression ensembles, other metrics, a batch larger than the
candidates, ``CoreSet`` without labeled rows) runs scikit-activeml's own code. Equal utilities go
to the lower row (scikit-activeml draws among them with ``random_state``); ``Badge``'s picks
after the first are drawn with the engine's generator, not numpy's, so they follow the same
distribution but are other rows. Importing this module imports scikit-activeml.
"""

from __future__ import annotations

import numpy as np
from skactiveml import pool as _pool
from skactiveml.base import SkactivemlClassifier, SkactivemlRegressor
from skactiveml.pool._query_by_committee import _check_ensemble
from skactiveml.pool._uncertainty_sampling import uncertainty_scores
from skactiveml.utils import (
    check_equal_missing_label,
    check_type,
    labeled_indices,
    unlabeled_indices,
)
from sklearn.base import clone

import quarry

from . import _dropin

__all__ = ["Badge", "CoreSet", "QueryByCommittee", "UncertaintySampling"]


def _indices(picks: np.ndarray, mapping: np.ndarray | None) -> np.ndarray:
    return picks if mapping is None else np.asarray(mapping)[picks]


def _fit(estimator, X, y, sample_weight, fit: bool):
    if not fit:
        return estimator
    if sample_weight is None:
        return clone(estimator).fit(X, y)
    return clone(estimator).fit(X, y, sample_weight)


def _seed(random_state_) -> int:
    """One engine seed per query from the strategy's RandomState (an int random_state gives the
    same picks call after call, as scikit-activeml's does)."""
    return int(random_state_.randint(0, 2**31 - 1))


class UncertaintySampling(_pool.UncertaintySampling):
    """scikit-activeml's UncertaintySampling; ``least_confident``, ``margin_sampling`` and
    ``entropy`` ranked by the engine's ``least_confidence``, ``margin`` and ``entropy``."""

    _MEASURES = {
        "least_confident": "least_confidence",
        "margin_sampling": "margin",
        "entropy": "entropy",
    }

    def query(self, X, y, clf, fit_clf=True, sample_weight=None, utility_weight=None,
              candidates=None, batch_size=1, return_utilities=False):  # fmt: skip
        args = (X, y, clf, fit_clf, sample_weight, utility_weight, candidates, batch_size,
                return_utilities)  # fmt: skip
        measure = self._MEASURES.get(self.method) if isinstance(self.method, str) else None
        if measure is None or self.cost_matrix is not None or utility_weight is not None:
            return super().query(*args)
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        if return_utilities or batch_size > len(X_cand):
            return super().query(*args)
        check_type(clf, "clf", SkactivemlClassifier)
        check_equal_missing_label(clf.missing_label, self.missing_label_)
        check_type(fit_clf, "fit_clf", bool)
        clf = _fit(clf, X, y, sample_weight, fit_clf)
        probas = _dropin.rows_array(clf.predict_proba(X_cand), "predict_proba", 2, len(X_cand))
        picks = _dropin.select(
            probas,
            batch_size,
            lambda: uncertainty_scores(probas, method=self.method),  # raises its own errors
            measure=measure,
        )
        return _indices(picks, mapping)


class QueryByCommittee(_pool.QueryByCommittee):
    """scikit-activeml's QueryByCommittee for a classifier ensemble: ``KL_divergence`` by the
    engine's ``bald`` of the members' ``predict_proba``, ``vote_entropy`` and
    ``variation_ratios`` from the members' ``predict``."""

    _MEASURES = {
        "KL_divergence": "bald",
        "vote_entropy": "vote_entropy",
        "variation_ratios": "variation_ratio",
    }

    def query(self, X, y, ensemble, fit_ensemble=True, sample_weight=None, candidates=None,
              batch_size=1, return_utilities=False):  # fmt: skip
        args = (X, y, ensemble, fit_ensemble, sample_weight, candidates, batch_size,
                return_utilities)  # fmt: skip
        measure = self._MEASURES.get(self.method) if isinstance(self.method, str) else None
        if measure is None or return_utilities or self.sample_predictions_method_name:
            return super().query(*args)
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        check_type(fit_ensemble, "fit_ensemble", bool)
        ensemble, est_arr, classes, sample_func, _ = _check_ensemble(
            ensemble=ensemble,
            X=X,
            y=y,
            sample_weight=sample_weight,
            fit_ensemble=fit_ensemble,
            missing_label=self.missing_label_,
            estimator_types=[SkactivemlClassifier, SkactivemlRegressor],
            sample_predictions_method_name=None,
            sample_predictions_dict=None,
        )
        if classes is None or sample_func is not None or batch_size > len(X_cand):
            return super().query(*args)  # regression ensembles and the rest: the library's own
        if measure == "bald":
            probas = self._aggregate_predict_probas(X_cand, ensemble, est_arr)  # [M, N, C]
            # scikit-activeml clips to eps and renormalises before its KL divergence.
            pool = np.clip(probas, self.eps, 1.0)
            pool /= pool.sum(axis=2, keepdims=True)
            picks = quarry.select(pool, batch_size, measure="bald").indices
            return _indices(picks, mapping)
        labels = np.array([est.predict(X_cand) for est in est_arr])  # [M, N]
        classes = np.asarray(classes)
        position = np.searchsorted(classes, labels).clip(0, len(classes) - 1)
        votes = np.where(classes[position] == labels, position, -1).astype(np.int32)
        picks = quarry.select(votes, batch_size, measure=measure, classes=len(classes)).indices
        return _indices(picks, mapping)


class CoreSet(_pool.CoreSet):
    """scikit-activeml's CoreSet (k-center greedy from the labeled samples) by the engine's
    ``strategy="coreset"``, for the Euclidean metric."""

    def query(self, X, y, candidates=None, batch_size=1, return_utilities=False):
        args = (X, y, candidates, batch_size, return_utilities)
        if return_utilities or self.metric not in (None, "euclidean") or self.metric_dict:
            return super().query(*args)
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        labeled = labeled_indices(y, missing_label=self.missing_label_)
        if len(labeled) == 0 or batch_size > len(X_cand) or X.ndim != 2:
            return super().query(*args)  # its random first centre, its batch-size warning
        emb = np.ascontiguousarray(X_cand, dtype=np.float32)
        picks = quarry.select(
            np.full((len(emb), 2), 0.5, np.float32),  # scores play no part with labeled rows
            batch_size,
            strategy="coreset",
            embeddings=emb,
            labeled=np.ascontiguousarray(X[labeled], dtype=np.float32),
        ).indices
        return _indices(picks, mapping)


class Badge(_pool.Badge):
    """scikit-activeml's Badge by the engine's ``strategy="badge"`` on the classifier's
    ``predict_proba`` and the samples (or the embeddings the classifier returns with them)."""

    def query(self, X, y, clf, fit_clf=True, sample_weight=None, candidates=None, batch_size=1,
              return_utilities=False):  # fmt: skip
        args = (X, y, clf, fit_clf, sample_weight, candidates, batch_size, return_utilities)
        if return_utilities:
            return super().query(*args)
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        X_cand, mapping = self._transform_candidates(candidates, X, y)
        check_type(clf, "clf", SkactivemlClassifier)
        check_equal_missing_label(clf.missing_label, self.missing_label_)
        check_type(fit_clf, "fit_clf", bool)
        kwargs = {}
        if isinstance(self.clf_embedding_flag_name, str):
            kwargs = {self.clf_embedding_flag_name: True}
        elif isinstance(self.clf_embedding_flag_name, dict):
            kwargs = self.clf_embedding_flag_name
        if candidates is None:
            X_unlbld, where = X_cand, mapping
        elif mapping is not None:
            keep = unlabeled_indices(y[mapping], missing_label=self.missing_label)
            X_unlbld, where = X_cand[keep], mapping[keep]
        else:
            X_unlbld, where = X_cand, np.arange(len(X_cand))
        if batch_size > len(X_unlbld):
            return super().query(*args)
        clf = _fit(clf, X, y, sample_weight, fit_clf)
        probas = clf.predict_proba(X_unlbld, **kwargs)
        if isinstance(probas, tuple):
            probas, X_unlbld = probas
        probas = _dropin.rows_array(probas, "predict_proba", 2, len(X_unlbld))
        try:
            picks = quarry.select(
                probas.astype(np.float32),  # the engine's BADGE reads float32 probabilities
                batch_size,
                strategy="badge",
                features=np.ascontiguousarray(X_unlbld, dtype=np.float32),
                seed=_seed(self.random_state_),
            ).indices
        except quarry.InvalidInput:  # rows the engine refuses: the library's own draws
            return super().query(*args)
        return list(np.asarray(where)[picks])  # a list, as scikit-activeml's Badge returns
