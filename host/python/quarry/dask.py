"""Exact selection over a pool spread across a Dask cluster.

:func:`select` takes a row-chunked Dask array (``da.from_npy_stack``, ``da.from_zarr``, ...) or a
list of ``.npy`` paths. One task per chunk computes the chunk's partial result where the chunk
lies (on the worker's GPU under dask-cuda, one worker per GPU; on its CPU otherwise), a tree of
tasks combines the partials, and a last task merges them: the same picks as :func:`quarry.select`
on the concatenated pool, for every measure, with diversity and exploration. Only partials travel
(k rows per chunk, or the top candidates with their embeddings), never the pool. A worker lost
mid-job is replaced by Dask, its tasks run again, and the answer does not change.

Dask is imported only when this module is used.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

import quarry

__all__ = ["select"]

_worker_state = threading.local()


def _resources(device: str) -> quarry.Resources:
    """One Resources per worker thread and device, made on first use and kept."""
    cache = getattr(_worker_state, "resources", None)
    if cache is None:
        cache = _worker_state.resources = {}
    if device not in cache:
        cache[device] = quarry.Resources(device)
    return cache[device]


def _load(shard: Any) -> Any:
    return np.load(shard, mmap_mode="r") if isinstance(shard, (str, os.PathLike)) else shard


def _partial(shard, embeddings, row_offset, pool_rows, k, options, device):
    """Runs on a worker: the partial result of one chunk."""
    return quarry.select_partial(
        _load(shard),
        k,
        row_offset=row_offset,
        pool_rows=pool_rows,
        embeddings=None if embeddings is None else _load(embeddings),
        resources=_resources(device),
        **options,
    )


def _combine(partials):
    return quarry.combine(list(partials))


def _merge(partials, k, device):
    return quarry.merge(list(partials), k, resources=_resources(device))


def _rows_axis(ndim: int, dtype: Any, layout: str) -> int:
    """Where the rows are: [N, C] and rows-first [N, M, C] on axis 0; members-first [M, N, C] and
    votes [M, N] on axis 1."""
    if ndim == 2:
        return 1 if np.issubdtype(np.dtype(dtype), np.integer) else 0
    if ndim == 3:
        return 0 if layout in ("rows-first", "rows_first") else 1
    raise quarry.InvalidArgument(
        f"the pool must be 2-D or 3-D, got {ndim} dimensions: [N, C], [M, N, C] or [M, N] votes"
    )


def _chunks(pool: Any, layout: str) -> tuple[list[Any], list[int]]:
    """The pool's row chunks (Dask delayed blocks, or paths) and their row counts."""
    if isinstance(pool, (list, tuple)):
        if not pool:
            raise quarry.InvalidArgument("the pool has no shards")
        rows = []
        for shard in pool:
            array = _load(shard)  # a path: only its header is read here
            rows.append(int(array.shape[_rows_axis(array.ndim, array.dtype, layout)]))
        return list(pool), rows
    if not hasattr(pool, "to_delayed"):
        raise quarry.InvalidArgument(
            "pool must be a Dask array or a list of .npy paths, got "
            f"{type(pool).__module__}.{type(pool).__name__}; quarry.select reads in-memory arrays"
        )
    axis = _rows_axis(pool.ndim, pool.dtype, layout)
    if any(np.isnan(c) for c in pool.chunks[axis]):
        raise quarry.InvalidArgument(
            "the pool's chunk sizes are unknown: call pool.compute_chunk_sizes() first"
        )
    # Chunks span whole rows: every other axis in one chunk.
    pool = pool.rechunk({a: -1 for a in range(pool.ndim) if a != axis})
    return list(pool.to_delayed().ravel()), [int(c) for c in pool.chunks[axis]]


def _embedding_chunks(embeddings: Any, rows: list[int]) -> list[Any]:
    if isinstance(embeddings, (list, tuple)):
        if len(embeddings) != len(rows):
            raise quarry.InvalidArgument(
                f"{len(embeddings)} embeddings shards for {len(rows)} pool shards: give one per "
                "pool shard"
            )
        return list(embeddings)
    if not hasattr(embeddings, "rechunk"):
        raise quarry.InvalidArgument(
            "embeddings must be a Dask array or a list of .npy paths, got "
            f"{type(embeddings).__module__}.{type(embeddings).__name__}"
        )
    if embeddings.ndim != 2 or embeddings.shape[0] != sum(rows):
        raise quarry.InvalidArgument(
            f"embeddings must be [N, D] with N = {sum(rows)}, got shape {embeddings.shape}"
        )
    return list(embeddings.rechunk((tuple(rows), -1)).to_delayed().ravel())


def select(
    pool: Any,
    k: int,
    *,
    measure: str | None = None,
    logits: bool = False,
    temperature: float = 1.0,
    layout: str = "members-first",
    classes: int | None = None,
    embeddings: Any = None,
    candidates: int = 0,
    kmeans_iters: int = 25,
    explore: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    split_every: int = 8,
    compute: bool = True,
) -> Any:
    """The ``k`` rows of a Dask-held pool most worth labeling: the same picks as
    :func:`quarry.select` on the concatenated pool.

    Args:
        pool: a Dask array chunked along its rows (other axes are brought into one chunk), or a
            list of ``.npy`` paths that every worker can read (rows in list order).
        k: rows to return.
        measure, logits, temperature, layout, classes, embeddings, candidates, kmeans_iters,
            explore, seed: as for :func:`quarry.select`; ``embeddings`` is a Dask array
            ``[N, D]`` (rechunked to the pool's row chunks) or a list of ``.npy`` paths, one per
            pool shard.
        device: the backend each worker uses: ``"auto"`` (its GPU when it has one), ``"cpu"`` or
            ``"cuda"``.
        split_every: partials combined per task of the tree reduction.
        compute: False returns the Dask ``Delayed`` of the :class:`quarry.Selection` instead.

    Returns:
        A :class:`quarry.Selection` (or its ``Delayed``), computed on the current Dask scheduler
        (a ``distributed.Client`` when one is active).
    """
    import dask

    if split_every < 2:
        raise quarry.InvalidArgument(f"split_every must be at least 2, got {split_every}")
    chunks, rows = _chunks(pool, layout)
    embedding_chunks = (
        [None] * len(chunks) if embeddings is None else _embedding_chunks(embeddings, rows)
    )
    options = dict(
        measure=measure,
        logits=logits,
        temperature=temperature,
        layout=layout,
        classes=classes,
        candidates=candidates,
        kmeans_iters=kmeans_iters,
        explore=explore,
        seed=seed,
    )
    pool_rows = sum(rows)
    partial = dask.delayed(_partial, pure=True)
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).tolist()
    level = [
        partial(chunk, emb, offset, pool_rows, k, options, device)
        for chunk, emb, offset in zip(chunks, embedding_chunks, offsets, strict=True)
    ]
    combine = dask.delayed(_combine, pure=True)
    while len(level) > split_every:
        level = [combine(level[i : i + split_every]) for i in range(0, len(level), split_every)]
    result = dask.delayed(_merge, pure=True)(level, k, device)
    return result.compute() if compute else result
