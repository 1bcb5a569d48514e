"""quarry: pick the pool rows most worth labeling.

Give :func:`select` what a model (or a committee) predicts for every row of an unlabeled pool
and it returns the rows to label next; :func:`score` gives every row's score. Arrays are read in
place: numpy (memory-mapped too), PyTorch, CuPy, JAX, anything with ``__dlpack__``,
``__cuda_array_interface__`` or the buffer protocol. Host arrays are read on the host path, CUDA
arrays on the device, in order with the producer's stream. The GIL is released while the engine
works.

Measures (higher always means "select first"): ``entropy``, ``least_confidence``, ``margin``,
``ratio`` for one model's ``[N, C]`` probabilities or logits; ``vote_entropy``,
``consensus_entropy``, ``kl_max``, ``bald``, ``variation_ratio`` for a committee's
``[M, N, C]`` (``layout="rows-first"``: ``[N, M, C]``) or ``[M, N]`` integer votes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _quarry
from ._quarry import (
    BackendUnavailable,
    CudaError,
    Error,
    InvalidArgument,
    InvalidInput,
    OutOfMemory,
    Resources,
)

__all__ = [
    "BackendUnavailable",
    "CudaError",
    "Error",
    "InvalidArgument",
    "InvalidInput",
    "KMeansResult",
    "OutOfMemory",
    "Resources",
    "Selection",
    "__version__",
    "info",
    "kmeans",
    "score",
    "select",
]

__version__: str = _quarry.info()["version"]

_REASONS = np.array(["rank", "cluster", "exploration"])
_thread_state = threading.local()


def _resources(resources: Resources | None) -> Resources:
    """The caller's Resources, or this thread's default one (device="auto"), made on first use."""
    if resources is not None:
        return resources
    default = getattr(_thread_state, "resources", None)
    if default is None:
        default = _thread_state.resources = Resources()
    return default


_CUDA_DLPACK_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _input(array: Any, res: Resources) -> Any:
    """A CUDA array as a DLPack capsule whose producer has ordered its pending work before quarry's
    stream (``__dlpack__(stream=...)``); anything else as it is (read in place by the module)."""
    dlpack_device = getattr(array, "__dlpack_device__", None)
    if dlpack_device is None or dlpack_device()[0] not in _CUDA_DLPACK_DEVICES:
        return array
    stream = res.cuda_stream
    if not stream:  # the CPU backend: the module reports that it cannot read device memory
        return array
    try:
        return array.__dlpack__(stream=stream, max_version=(1, 0))
    except TypeError:  # producers older than DLPack 1.0's max_version
        return array.__dlpack__(stream=stream)


def _device_empty(pool: Any):
    """A function making float32 arrays of ``pool``'s framework on ``pool``'s CUDA device."""

    def empty(rows: int) -> Any:
        framework = type(pool).__module__.split(".")[0]
        if framework == "torch":
            import torch

            return torch.empty(rows, dtype=torch.float32, device=pool.device)
        if framework == "cupy":
            import cupy

            with pool.device:
                return cupy.empty(rows, dtype=cupy.float32)
        # Others (JAX, ...): allocate with PyTorch or CuPy, hand over through DLPack.
        try:
            import torch

            device = getattr(pool, "__dlpack_device__", lambda: (2, 0))()[1]
            made = torch.empty(rows, dtype=torch.float32, device=f"cuda:{device}")
        except ImportError:
            try:
                import cupy

                made = cupy.empty(rows, dtype=cupy.float32)
            except ImportError:
                raise InvalidArgument(
                    f"score() of a {framework} device array needs PyTorch or CuPy to allocate "
                    "the scores on the device"
                ) from None
        if framework in ("jax", "jaxlib"):
            import jax.numpy as jnp

            return jnp.from_dlpack(made)
        namespace = getattr(pool, "__array_namespace__", None)
        return namespace().from_dlpack(made) if namespace else made

    return empty


class Selection:
    """The rows :func:`select` picked, best first (rank and cluster picks, then exploration).

    Attributes:
        indices: int64 pool rows.
        scores: float32 score of each pick.
        reasons: why each row was picked: ``"rank"``, ``"cluster"`` (best of its k-means
            cluster) or ``"exploration"`` (drawn at random).
        clusters: int32 k-means cluster of each pick, -1 without diversity.
        measure: the measure that scored the pool.
    """

    __slots__ = ("indices", "scores", "_reason_codes", "clusters", "measure")

    def __init__(self, indices, scores, reason_codes, clusters, measure):
        self.indices = indices
        self.scores = scores
        self._reason_codes = reason_codes
        self.clusters = clusters
        self.measure = measure

    @property
    def reasons(self) -> np.ndarray:
        return _REASONS.take(self._reason_codes)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (
            f"Selection(indices={self.indices!r}, scores={self.scores!r}, "
            f"reasons={self.reasons!r}, clusters={self.clusters!r}, measure={self.measure!r})"
        )


class KMeansResult:
    """The result of :func:`kmeans`: ``centroids`` [k, D] float32, ``assignments`` int32 per
    point, ``inertia`` (sum of squared distances to the assigned centroids) and ``iterations``."""

    __slots__ = ("centroids", "assignments", "inertia", "iterations")

    def __init__(self, centroids, assignments, inertia, iterations):
        self.centroids = centroids
        self.assignments = assignments
        self.inertia = inertia
        self.iterations = iterations

    def __repr__(self) -> str:
        return (
            f"KMeansResult(k={len(self.centroids)}, inertia={self.inertia!r}, "
            f"iterations={self.iterations!r})"
        )


def score(
    pool: Any,
    measure: str | None = None,
    *,
    logits: bool = False,
    temperature: float = 1.0,
    layout: str = "members-first",
    classes: int | None = None,
    resources: Resources | None = None,
) -> Any:
    """Scores every row of ``pool``; a higher score means "select first".

    Args:
        pool: ``[N, C]`` one model's probabilities (or logits), ``[M, N, C]`` a committee's
            (``[N, M, C]`` with ``layout="rows-first"``), or ``[M, N]`` int32/int64 votes
            (-1 = abstained). float32, float16, bfloat16; read in place.
        measure: the measure's name; None picks the pool's natural one: ``entropy`` for
            ``[N, C]``, ``consensus_entropy`` for a committee, ``vote_entropy`` for votes.
        logits: the pool holds logits: ``softmax(z / temperature)`` is fused into the scoring.
        temperature: softmax temperature for logits (finite, > 0).
        layout: axis order of a 3-D pool, ``"members-first"`` or ``"rows-first"``.
        classes: votes only: the number of classes (a vote >= classes is an error).
        resources: the :class:`Resources` to run on; None uses this thread's default.

    Returns:
        float32 scores, one per row: a numpy array for a host pool; for a CUDA pool an array of
        the pool's framework on its device (PyTorch, CuPy, JAX), never copied to the host.

    Raises:
        InvalidInput: bad data (``.row`` is the first bad row).
        InvalidArgument: bad shapes, dtypes or options.
    """
    res = _resources(resources)
    return _quarry.score(
        res,
        _input(pool, res),
        measure,
        logits,
        temperature,
        layout,
        classes or 0,
        _device_empty(pool),
    )


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
    resources: Resources | None = None,
) -> Selection:
    """Returns the ``k`` rows most worth labeling, best first.

    Rows are ranked by descending score, equal scores in ascending row order. With
    ``embeddings`` the top ``candidates`` rows are clustered with k-means and the best row of each
    cluster is kept; with ``explore`` a fraction of the picks is drawn at random (seeded) from the
    rest. The same inputs, seed and backend give the same picks.

    Args:
        pool: the predictions, as for :func:`score`.
        k: rows to return, 1 <= k <= N.
        measure, logits, temperature, layout, classes: how rows are scored, as for :func:`score`.
        embeddings: ``[N, D]`` float embeddings of the pool rows, for diversity.
        candidates: rows to cluster with embeddings; 0 = 10 * k, capped at N.
        kmeans_iters: k-means iterations at most.
        explore: fraction of the k picks drawn at random, 0 <= explore < 1.
        seed: seeds k-means++ and exploration.
        resources: the :class:`Resources` to run on; None uses this thread's default.

    Returns:
        A :class:`Selection` (``indices``, ``scores``, ``reasons``, ``clusters``).

    Raises:
        InvalidInput: bad data (``.row`` is the first bad row).
        InvalidArgument: bad k, shapes, dtypes or options.
    """
    res = _resources(resources)
    return Selection(
        *_quarry.select(
            res,
            _input(pool, res),
            k,
            measure,
            logits,
            temperature,
            layout,
            classes or 0,
            None if embeddings is None else _input(embeddings, res),
            candidates,
            kmeans_iters,
            explore,
            seed,
        )
    )


def kmeans(
    points: Any,
    k: int,
    *,
    iterations: int = 25,
    seed: int = 0,
    initial_centroids: Any = None,
    resources: Resources | None = None,
) -> KMeansResult:
    """Clusters ``points`` ([N, D] float32/float16/bfloat16) into ``k`` clusters with Lloyd's
    k-means (FAISS on the CPU, on the device on CUDA), from a seeded k-means++ start or from
    ``initial_centroids`` ([k, D] float32)."""
    res = _resources(resources)
    return KMeansResult(
        *_quarry.kmeans(res, _input(points, res), k, iterations, seed, initial_centroids)
    )


def info() -> dict[str, Any]:
    """quarry's version, whether it was built with CUDA, the GPUs found and the CPU setup."""
    return _quarry.info()
