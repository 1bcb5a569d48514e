"""What the drop-ins (quarry.modal, quarry.small_text, quarry.skactiveml) share.

The drop-ins take what their library takes. A classifier's output is read as it comes (any
layout: a transposed or Fortran-ordered ``predict_proba`` is copied once into rows); its row count
is checked against the samples asked for. Rows the engine accepts are ranked by the engine. Rows
it refuses but the library scores anyway (rows not summing to 1, all-zero rows, non-finite
values: ``quarry.InvalidInput``) are scored with the library's own formula in float64 numpy and
ranked by the same rule: descending score, equal scores to the lower row. quarry.select itself
stays strict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import quarry

_ENGINE_DTYPES = (np.float16, np.float32, np.float64)


def num_rows(X: Any) -> int | None:
    """The number of samples in ``X`` as the libraries count them (``X.shape[0]``, else len)."""
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        return None


def rows_array(
    values: Any, name: str, ndim: int, rows: int | None = None, extra_rows: bool = False
) -> np.ndarray:
    """``values`` as an array the engine reads in place: copied only when its last axis is not
    contiguous (Fortran order, a transposed view), its dtype is not a float the engine reads, or
    it is not native-endian. Its dimensions and row count are checked (``extra_rows``: more rows
    than samples are read by position, as small-text reads them; fewer are refused)."""
    array = np.asarray(values)
    if array.ndim != ndim:
        raise quarry.InvalidArgument(
            f"{name} must be a {ndim}-D array; got shape {array.shape}"
            + (" (one column per class)" if ndim == 2 else "")
        )
    if rows is not None and (array.shape[0] < rows or (array.shape[0] > rows and not extra_rows)):
        raise quarry.InvalidArgument(f"{name} returned {array.shape[0]} rows for {rows} samples")
    if array.dtype.type not in _ENGINE_DTYPES or not array.dtype.isnative:
        array = array.astype(np.float64)
    if array.size and (array.strides[-1] != array.itemsize or any(s < 0 for s in array.strides)):
        array = np.ascontiguousarray(array)
    return array


def top(utility: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` rows of highest ``utility``, best first, equal values to the lower row (the
    engine's rule); NaN counts as the lowest value."""
    utility = np.asarray(utility, dtype=np.float64)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    u = np.where(np.isnan(utility), -np.inf, utility)
    kth = -np.partition(-u, n - 1)[n - 1]
    above = np.flatnonzero(u > kth)
    at = np.flatnonzero(u == kth)[: n - len(above)]
    picks = np.concatenate([above, at])
    return picks[np.lexsort((picks, -u[picks]))].astype(np.int64)


def select(
    pool: np.ndarray,
    n: int,
    peer_utility: Callable[[], np.ndarray],
    row_axis: int = 0,
    order: np.ndarray | None = None,
    **options,
) -> np.ndarray:
    """The engine's ``n`` picks of ``pool``; the library's ``peer_utility()`` ranked by
    :func:`top` where the engine refuses the rows. ``order``: a permutation of the rows to rank
    in instead (a random tie break), mapped back."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if order is not None:
        shuffled = np.take(pool, order, axis=row_axis)
        return order[select(shuffled, n, lambda: peer_utility()[order], row_axis, **options)]
    try:
        return quarry.select(pool, n, **options).indices
    except quarry.InvalidInput:
        return top(peer_utility(), n)


def score(pool: np.ndarray, measure: str, peer_utility: Callable[[], np.ndarray], **options):
    """Every row's engine score as float64 (the library's values up to float32 rounding), or the
    library's ``peer_utility()`` where the engine refuses the rows; and which one it is."""
    try:
        return quarry.score(pool, measure, **options).astype(np.float64), True
    except quarry.InvalidInput:
        return np.asarray(peer_utility(), dtype=np.float64), False
