"""Models by name, bagged committees, and probabilities aligned to the dataset's classes."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

import numpy as np

MODEL_NAMES = ("logreg", "mlp", "rf", "gnb")


def _named_model(name: str):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "mlp":
        return make_pipeline(
            StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=300)
        )
    if name == "rf":
        return RandomForestClassifier(n_estimators=100, n_jobs=1)
    if name == "gnb":
        return GaussianNB()
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"model {name!r}: {e}") from None
        return obj() if isinstance(obj, type) else obj
    raise ValueError(
        f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)} or module:Estimator"
    )


def model_factory(model) -> Callable[[int], object]:
    """A function ``seed -> unfitted estimator`` for a model name (``logreg``, ``mlp``, ``rf``,
    ``gnb``, or ``module:Estimator``), an estimator object (cloned for every fit) or a callable
    ``seed -> estimator``. Every ``random_state`` parameter is set from the seed, so runs repeat."""
    from sklearn.base import clone

    if callable(model) and not hasattr(model, "fit"):
        return model
    template = _named_model(model) if isinstance(model, str) else model
    for method in ("fit", "predict_proba"):
        if not hasattr(template, method):
            raise ValueError(f"model {template!r} has no {method}()")

    def make(seed: int):
        estimator = clone(template)
        if hasattr(estimator, "get_params"):
            states = {k: seed for k in estimator.get_params() if k.endswith("random_state")}
            estimator.set_params(**states)
        return estimator

    return make


def fit(estimator, X: np.ndarray, y: np.ndarray):
    from sklearn.exceptions import ConvergenceWarning

    # A few dozen labels rarely let an iterative solver converge fully; that is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    return estimator


def aligned_proba(estimator, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per dataset class (a class the model never saw gets 0)."""
    # scikit-learn returns two-class probabilities in Fortran order; quarry reads C-order rows.
    proba = np.ascontiguousarray(estimator.predict_proba(X))
    seen = np.asarray(getattr(estimator, "classes_", np.arange(proba.shape[1])))
    if proba.shape[1] == n_classes and np.array_equal(seen, np.arange(n_classes)):
        return proba
    full = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    full[:, seen.astype(np.int64)] = proba
    return full


def last_layer_features(estimator, X: np.ndarray) -> np.ndarray | None:
    """The input of the model's last linear layer for rows ``X`` (what BADGE's gradient
    embeddings are built from): a pipeline's transformed features for a linear model, the last
    hidden layer's activations for an MLP; None for models without one (trees, naive Bayes)."""
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline

    final, Z = estimator, X
    if isinstance(estimator, Pipeline):
        final = estimator.steps[-1][1]
        Z = estimator[:-1].transform(X) if len(estimator.steps) > 1 else X
    if isinstance(final, LinearClassifierMixin):
        return np.ascontiguousarray(Z, dtype=np.float32)
    if isinstance(final, MLPClassifier):
        activation = {
            "relu": lambda a: np.maximum(a, 0),
            "tanh": np.tanh,
            "logistic": lambda a: 1 / (1 + np.exp(-a)),
            "identity": lambda a: a,
        }[final.activation]
        for W, b in zip(final.coefs_[:-1], final.intercepts_[:-1], strict=True):
            Z = activation(Z @ W + b)
        return np.ascontiguousarray(Z, dtype=np.float32)
    return None


def fit_committee(make, seed: int, X: np.ndarray, y: np.ndarray, members: int, rng) -> list:
    """A bagged committee: each member fit on a bootstrap resample drawn class by class, so that
    every member sees every class of the labeled set."""
    committee = []
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    for m in range(members):
        rows = np.concatenate([rng.choice(r, size=len(r), replace=True) for r in by_class])
        committee.append(fit(make(seed * 1000 + m), X[rows], y[rows]))
    return committee


def committee_proba(committee: list, X: np.ndarray, n_classes: int) -> np.ndarray:
    """The members' probabilities stacked members-first, ``[M, N, C]``."""
    return np.stack([aligned_proba(member, X, n_classes) for member in committee])
