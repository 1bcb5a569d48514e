"""quarry: pick the pool rows most worth labeling.

Give :func:`select` what a model (or a committee) predicts for every row of an unlabeled pool
and it returns the rows to label next; :func:`score` gives every row's score. Arrays are read in
place: numpy (memory-mapped too), PyTorch, CuPy, JAX, anything with ``__dlpack__``,
``__cuda_array_interface__`` or the buffer protocol. Host arrays are read on the host path, CUDA
arrays on the device, in order with the producer's stream. The GIL is released while the engine
works.

Measures (higher always means "select first"; :func:`measures` gives the table, with each one's
options and formula):

{measures}

:func:`select` also chooses by BADGE or core-set (``strategy=``) and within a labeling budget
(``costs=``, ``budget=``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
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
    Partial,
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
    "Partial",
    "Resources",
    "Selection",
    "__version__",
    "info",
    "combine",
    "kmeans",
    "measures",
    "merge",
    "option_schema",
    "recommended",
    "score",
    "select",
    "select_partial",
]

__version__: str = _quarry.__version__

# What each kind of pool is, for the measure list of this docstring (made from the table).
_POOL_KINDS = {
    "predictions": "one model's ``[N, C]`` probabilities or logits",
    "committee": 'a committee\'s ``[M, N, C]`` (``layout="rows-first"``: ``[N, M, C]``) or '
    "``[M, N]`` integer votes",
    "token_logprobs": "``[N, T]`` token log-probabilities (with ``lengths``; no default)",
    "top_logprobs": "``[N, T, K]`` top-K log-probabilities (with ``lengths``; no default)",
    "samples": "``[N, S, D]`` sampled answers' embeddings (no default)",
}


def _measure_list() -> str:
    """The docstring's measure list, one line per kind of pool, from the measure table."""
    lines = []
    for kind, what in _POOL_KINDS.items():
        names = ", ".join(
            f"``{m['name']}``" + (" (with ``features``)" if m["features"] else "")
            for m in _quarry.measures()
            if m["pool_kind"] == kind
        )
        lines.append(f"- {what}: {names}")
    return "\n".join(lines)


__doc__ = __doc__.replace("{measures}", _measure_list())

_REASONS = np.array(["rank", "cluster", "exploration", "badge", "coreset"])
_thread_state = threading.local()


_SCHEMA = {o["name"]: o for o in _quarry.option_schema()}


def _not_carried_by_partials(**given: Any) -> list[str]:
    """The options given (not None or False) that a partial result cannot carry: those without a
    key in a partial's JSON (the options schema), which a pool of shards therefore refuses."""
    return [
        name
        for name, value in given.items()
        if value is not None and value is not False and not _SCHEMA[name]["json_key"]
    ]


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
    if res.device != "cuda":  # the module reports that the CPU backend cannot read it
        return array
    stream = res.cuda_stream
    try:
        return array.__dlpack__(stream=stream, max_version=(1, 0))
    except TypeError:  # producers older than DLPack 1.0's max_version
        return array.__dlpack__(stream=stream)


def _is_shard_list(pool: Any) -> bool:
    """A pool given as several shards: a list or tuple of arrays or of .npy paths."""
    return isinstance(pool, (list, tuple))


def _shards(shards: Sequence[Any], res: Resources) -> list[Any]:
    """The shards as arrays: .npy paths read with the command line's reader (a FIFO, a text file
    or a file truncated while it is read is refused with InvalidInput)."""
    if not isinstance(shards, (list, tuple)):  # an array would be read as one shard per row
        raise InvalidArgument(
            "a sharded pool takes its embeddings as a list with one array (or .npy path) per "
            f"shard, got {type(shards).__name__}"
        )
    if len(shards) == 0:
        raise InvalidArgument("the pool has no shards")
    return [
        _input(_quarry.load_npy(os.fspath(s)) if isinstance(s, (str, os.PathLike)) else s, res)
        for s in shards
    ]


def _optional_input(array: Any, res: Resources) -> Any:
    return None if array is None else _input(array, res)


def _device_empty(pool: Any):
    """A function making writable float32 arrays on ``pool``'s CUDA device: PyTorch's or CuPy's
    for their own arrays, else whichever of them is installed (see :func:`_as_framework_of`).
    It returns the array and the framework's current stream (the caching allocator may hand out
    memory that kernels queued there still use: quarry's stream waits for it before writing)."""

    def empty(rows: int) -> Any:
        framework = type(pool).__module__.split(".")[0]
        device = pool.__dlpack_device__()[1] if hasattr(pool, "__dlpack_device__") else None
        if framework != "cupy":
            try:
                import torch

                where = pool.device if framework == "torch" else f"cuda:{device or 0}"
                out = torch.empty(rows, dtype=torch.float32, device=where)
                return out, torch.cuda.current_stream(out.device).cuda_stream
            except ImportError:
                pass
        try:
            import cupy

            with cupy.cuda.Device(pool.device.id if framework == "cupy" else device or 0):
                return cupy.empty(rows, dtype=cupy.float32), cupy.cuda.get_current_stream().ptr
        except ImportError:
            raise InvalidArgument(
                f"score() of a {framework} device array needs PyTorch or CuPy to allocate the "
                "scores on the device"
            ) from None

    return empty


def _as_framework_of(pool: Any, scores: Any) -> Any:
    """Device scores handed to ``pool``'s own framework through DLPack, without a copy."""
    framework = type(pool).__module__.split(".")[0]
    if framework in ("torch", "cupy") or type(scores).__module__.split(".")[0] == framework:
        return scores
    if framework in ("jax", "jaxlib"):
        import jax.numpy as jnp

        return jnp.from_dlpack(scores)
    namespace = getattr(pool, "__array_namespace__", None)
    return namespace().from_dlpack(scores) if namespace is not None else scores


class Selection:
    """The rows :func:`select` picked, best first (rank and cluster picks, then exploration).

    Attributes:
        indices: int64 pool rows.
        scores: float32 score of each pick.
        reasons: why each row was picked: ``"rank"``, ``"cluster"`` (best of its k-means
            cluster), ``"exploration"`` (drawn at random), ``"badge"`` or ``"coreset"`` (picks of
            those strategies, in the order they were taken).
        clusters: int32 k-means cluster of each pick, -1 without diversity.
        measure: the measure that scored the pool.
        cost_spent: with ``costs``, the total cost of the picks (0.0 without).
    """

    __slots__ = ("indices", "scores", "_reason_codes", "clusters", "measure", "cost_spent")

    def __init__(self, indices, scores, reason_codes, clusters, measure, cost_spent=0.0):
        self.indices = np.frombuffer(indices, np.int64)
        self.scores = np.frombuffer(scores, np.float32)
        self._reason_codes = np.frombuffer(reason_codes, np.int8)
        self.clusters = np.frombuffer(clusters, np.int32)
        self.measure = measure
        self.cost_spent = cost_spent

    @property
    def reasons(self) -> np.ndarray:
        return _REASONS.take(self._reason_codes)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return (
            f"Selection(indices={self.indices!r}, scores={self.scores!r}, "
            f"reasons={self.reasons!r}, clusters={self.clusters!r}, measure={self.measure!r}, "
            f"cost_spent={self.cost_spent!r})"
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
    lengths: Any = None,
    alpha: float | None = None,
    threshold: float | None = None,
    features: Any = None,
    resources: Resources | None = None,
    **table: Any,
) -> Any:
    """Scores every row of ``pool``; a higher score means "select first".

    Args:
        pool: ``[N, C]`` one model's probabilities (or logits), ``[M, N, C]`` a committee's
            (``[N, M, C]`` with ``layout="rows-first"``), or ``[M, N]`` int32/int64 votes
            (-1 = abstained). float32, float16, bfloat16; read in place. For an LLM measure,
            ``[N, T]`` token log-probabilities, ``[N, T, K]`` top-K log-probabilities (-inf where
            fewer than K were returned) or ``[N, S, D]`` embeddings of S sampled answers. A list of
            arrays, or of ``.npy`` paths, is one pool made of shards (rows in list order; they must
            agree in everything but the row count); its scores come back as one numpy array.
        measure: the measure's name; None picks the pool's natural one: ``entropy`` for
            ``[N, C]``, ``consensus_entropy`` for a committee, ``vote_entropy`` for votes. LLM
            outputs have no default: the measure says how the array is read.
        logits: the pool holds logits: ``softmax(z / temperature)`` is fused into the scoring.
        temperature: softmax temperature for logits (finite, > 0).
        layout: axis order of a 3-D pool, ``"members-first"`` or ``"rows-first"``.
        classes: votes only: the number of classes (a vote >= classes is an error).
        lengths: token and top-K log-probabilities: ``[N]`` int32/int64 row lengths
            (1 <= length <= T; steps past a row's length are never read); None = every row has T.
        alpha: ``eigenscore``'s alpha (finite, >= 0; default 1e-3).
        threshold: ``semantic_sets`` and ``semantic_entropy``: answers whose cosine similarity is
            >= threshold are joined (default 0.9).
        features: ``[N, D]`` float penultimate-layer features of the pool rows, for ``egl``
            (and ``strategy="badge"`` in :func:`select`).
        resources: the :class:`Resources` to run on; None uses this thread's default.
        table: for a table pool, ``column=`` (see :func:`select`).

    Returns:
        float32 scores, one per row: a numpy array for a host pool; for a CUDA pool an array of
        the pool's framework on its device (PyTorch, CuPy, JAX), never copied to the host.

    Raises:
        InvalidInput: bad data (``.row`` is the first bad row).
        InvalidArgument: bad shapes, dtypes or options.
    """
    from . import tables as _tables  # pyarrow is imported only for a table

    if table or _tables.is_table_source(pool):
        return _tables.score_from_call(locals())
    res = _resources(resources)
    if _is_shard_list(pool):
        given = _not_carried_by_partials(
            lengths=lengths, alpha=alpha, threshold=threshold, features=features
        )
        if given:
            raise InvalidArgument("a pool of shards does not take " + ", ".join(given))
        return _quarry.score_shards(
            res,
            _shards(pool, res),
            dict(
                measure=measure,
                logits=logits,
                temperature=temperature,
                layout=layout,
                classes=classes,
            ),
        )
    scores = _quarry.score(
        res,
        _input(pool, res),
        dict(
            measure=measure,
            logits=logits,
            temperature=temperature,
            layout=layout,
            classes=classes,
            lengths=_optional_input(lengths, res),
            alpha=alpha,
            threshold=threshold,
            features=_optional_input(features, res),
        ),
        _device_empty(pool),
    )
    return scores if type(scores) is np.ndarray else _as_framework_of(pool, scores)


def select(
    pool: Any,
    k: int | None = None,
    *,
    measure: str | None = None,
    logits: bool = False,
    temperature: float = 1.0,
    layout: str = "members-first",
    classes: int | None = None,
    lengths: Any = None,
    alpha: float | None = None,
    threshold: float | None = None,
    features: Any = None,
    embeddings: Any = None,
    candidates: int = 0,
    kmeans_iters: int = 25,
    explore: float = 0.0,
    seed: int = 0,
    strategy: str = "rank",
    tie_break: str = "row",
    labeled: Any = None,
    costs: Any = None,
    budget: float | None = None,
    exact_budget: bool = False,
    resources: Resources | None = None,
    **table: Any,
) -> Selection:
    """Returns the ``k`` rows most worth labeling, best first, or the rows a budget buys.

    Rows are ranked by descending score, equal scores in ascending row order. With
    ``embeddings`` the top ``candidates`` rows are clustered with k-means and the best row of each
    cluster is kept; with ``explore`` a fraction of the picks is drawn at random (seeded) from the
    rest. The same inputs, seed and backend give the same picks.

    Args:
        pool: the predictions, as for :func:`score`; a list of arrays or ``.npy`` paths is one
            pool made of shards, with the same picks as the concatenated pool.
        k: rows to return, 1 <= k <= N; optional with a budget (then the most picks a batch
            strategy takes).
        measure, logits, temperature, layout, classes, lengths, alpha, threshold, features: how
            rows are scored, as for :func:`score`.
        embeddings: ``[N, D]`` float embeddings of the pool rows, for diversity, or the space
            ``strategy="coreset"`` covers (for a pool of shards, a list with one array or path
            per shard).
        candidates: rows to choose among: with embeddings the rows to cluster (0 = 10 * k, capped
            at N); badge and coreset (0 = every row); ``exact_budget`` (0 = 1,000).
        kmeans_iters: k-means iterations at most.
        explore: fraction of the k picks (or of the budget) drawn at random, 0 <= explore < 1.
        seed: seeds k-means++, BADGE's draws, exploration and the random tie-break.
        tie_break: equal scores rank ``"row"`` (lowest row first) or ``"random"`` (by a seeded
            hash of the seed and the global row: reproducible on every backend and sharding).
        strategy: ``"rank"`` (by score; with embeddings, k-means diversity), ``"badge"``
            (k-means++ seeding on gradient embeddings; needs probabilities and ``features``) or
            ``"coreset"`` (k-center greedy on ``embeddings``).
        labeled: coreset's labeled rows, its first centers: an integer array of pool row
            indices ``[L]``, or a float array ``[L, D]`` of their embeddings.
        costs: ``[N]`` labeling cost of every row (positive, finite; float or integer), with
            ``budget``.
        budget: the total cost to spend: ranking maximises the total score within it (greedy by
            score / cost); batch strategies take their picks in order while they fit.
        exact_budget: the exact 0/1 knapsack over the top ``candidates`` rows (integer costs).
        resources: the :class:`Resources` to run on; None uses this thread's default.
        table: for a table pool (a ``pyarrow.Table``, a ``datasets.Dataset`` or a ``.parquet``,
            ``.arrow``, ``.feather`` path): ``column=``, ``id_column=`` and the other columns of
            :func:`quarry.tables.select_table`, which reads it; the picks then carry ``ids``.

    Returns:
        A :class:`Selection` (``indices``, ``scores``, ``reasons``, ``clusters``,
        ``cost_spent``).

    Raises:
        InvalidInput: bad data (``.row`` is the first bad row).
        InvalidArgument: bad k, shapes, dtypes or options.
    """
    from . import tables as _tables  # pyarrow is imported only for a table

    if table or _tables.is_table_source(pool):
        return _tables.select_from_call(locals())
    budgeted = costs is not None or budget is not None or exact_budget
    if k is None and not budgeted:
        raise InvalidArgument("select needs k, or costs with a budget")
    res = _resources(resources)
    if _is_shard_list(pool):
        _quarry.check_shardable(strategy, budgeted, exact_budget)  # the strategy decides
        given = _not_carried_by_partials(
            lengths=lengths,
            alpha=alpha,
            threshold=threshold,
            features=features,
            labeled=labeled,
            costs=costs,
            budget=budget,
            exact_budget=exact_budget,
        )
        if given:
            raise InvalidArgument(
                "a pool of shards is selected with strategy='rank' by score and k only; "
                "it does not take " + ", ".join(given)
            )
        return Selection(
            *_quarry.select_shards(
                res,
                _shards(pool, res),
                dict(
                    k=k,
                    measure=measure,
                    logits=logits,
                    temperature=temperature,
                    layout=layout,
                    classes=classes,
                    embeddings=None if embeddings is None else _shards(embeddings, res),
                    candidates=candidates,
                    kmeans_iters=kmeans_iters,
                    explore=explore,
                    seed=seed,
                    tie_break=tie_break,
                ),
            )
        )
    if isinstance(labeled, (list, tuple)):
        labeled = np.asarray(labeled)
    if isinstance(costs, (list, tuple)):
        costs = np.asarray(costs)
    return Selection(
        *_quarry.select(
            res,
            _input(pool, res),
            dict(
                k=k,
                measure=measure,
                logits=logits,
                temperature=temperature,
                layout=layout,
                classes=classes,
                lengths=_optional_input(lengths, res),
                alpha=alpha,
                threshold=threshold,
                features=_optional_input(features, res),
                embeddings=_optional_input(embeddings, res),
                candidates=candidates,
                kmeans_iters=kmeans_iters,
                explore=explore,
                seed=seed,
                tie_break=tie_break,
                strategy=strategy,
                labeled=_optional_input(labeled, res),
                costs=_optional_input(costs, res),
                budget=budget,
                exact_budget=exact_budget,
            ),
        )
    )


def recommended(
    pool: Any,
    k: int,
    *,
    embeddings: Any = None,
    features: Any = None,
    candidates: int = 0,
    seed: int = 0,
    **options: Any,
) -> Selection:
    """The selection to start with: the batch of ``k`` rows that held up best in quarry's
    simulations on datasets nobody tuned for (bench/EVAL.md), from one model's ``[N, C]``
    probabilities (or logits with ``logits=True``) and what else is given:

    - ``embeddings`` (``[N, D]``, any representation of the rows), or else ``features`` (the
      input of the model's last layer, used as the embeddings): margin with k-means diversity,
      the top ``candidates`` rows by margin (0 = 10 * k) clustered into k clusters and the best
      of each kept;
    - neither: margin, best first.

    Equal scores are ordered by the seeded random tie-break (``tie_break="random"``, seeded by
    ``seed``): with a model that ties many rows (trees) it kept picks from following the file's
    order, which cost accuracy on class-sorted data; pass ``tie_break="row"`` for row order.
    ``seed`` also seeds k-means++; ``options`` go to :func:`select` as they are (``logits``,
    ``temperature``, ``explore``, ``resources``, ...). BADGE (``select(strategy="badge")``)
    stays available: it was the runner-up (docs/strategies.md).
    """
    if embeddings is None:
        embeddings = features
    options.setdefault("tie_break", "random")
    return select(
        pool,
        k,
        measure="margin",
        embeddings=embeddings,
        candidates=candidates,
        seed=seed,
        **options,
    )


def select_partial(
    pool: Any,
    k: int,
    *,
    row_offset: int,
    pool_rows: int = 0,
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
    tie_break: str = "row",
    resources: Resources | None = None,
) -> Partial:
    """One shard's partial result, for :func:`merge`: the shard's best ``k`` rows (all of them
    when it has fewer) with global row numbers, and with ``embeddings`` its best candidates'
    embeddings, with ``explore`` the scores of its rows that the exploration draw may pick.

    Args:
        pool: the shard (an array, a ``.npy`` path, or a list of them: consecutive shards).
        k: the most picks a merge of this partial may ask for.
        row_offset: the shard's first row in the whole pool.
        pool_rows: the whole pool's row count; required with ``explore`` (the draw is over the
            whole pool), optional otherwise (the merge then also checks for a missing last shard).
        Other arguments: as for :func:`select`; every shard must use the same.

    Returns:
        A picklable :class:`Partial` (``to_json()`` gives the text ``quarry merge`` reads).
    """
    res = _resources(resources)
    shards = pool if _is_shard_list(pool) else [pool]
    if embeddings is not None and not _is_shard_list(embeddings):
        embeddings = [embeddings]
    return _quarry.select_partial(
        res,
        _shards(shards, res),
        dict(
            k=k,
            measure=measure,
            logits=logits,
            temperature=temperature,
            layout=layout,
            classes=classes,
            embeddings=None if embeddings is None else _shards(embeddings, res),
            candidates=candidates,
            kmeans_iters=kmeans_iters,
            explore=explore,
            seed=seed,
            tie_break=tie_break,
            row_offset=row_offset,
            pool_rows=pool_rows,
        ),
    )


def _partials(partials: Any) -> list[Partial]:
    """Partial objects from Partials, their JSON text, or paths of JSON files."""
    if isinstance(partials, (Partial, str, bytes, os.PathLike)):
        partials = [partials]
    out = []
    for p in partials:
        if isinstance(p, Partial):
            out.append(p)
        elif isinstance(p, bytes):
            out.append(Partial.from_json(p.decode()))
        elif isinstance(p, str) and p.lstrip().startswith("{"):
            out.append(Partial.from_json(p))
        elif isinstance(p, (str, os.PathLike)):
            with open(p, encoding="utf-8") as f:
                out.append(Partial.from_json(f.read()))
        else:
            raise InvalidArgument(
                f"expected a quarry.Partial, its JSON text or a path, got {type(p).__name__}"
            )
    return out


def merge(partials: Any, k: int, *, resources: Resources | None = None) -> Selection:
    """The ``k`` picks of the whole pool from the partial results of its shards: exactly what
    :func:`select` gives on the whole pool with the partials' options (for partials scored by one
    backend). With diversity the k-means runs here, on ``resources``.

    Args:
        partials: :class:`Partial` objects (or their JSON text, or paths of JSON files), in any
            order, covering the pool's rows exactly once.
        k: picks to return; at most the ``k`` the partials were made with.

    Raises:
        InvalidArgument: partials made with different options or shapes, a k above theirs,
            overlapping or missing rows.
    """
    return Selection(*_quarry.merge(_resources(resources), _partials(partials), k))


def combine(partials: Any) -> Partial:
    """One partial holding what ``partials`` (of disjoint rows) hold: a step of a tree
    reduction; ``merge([combine(a), combine(b)], k) == merge(a + b, k)``."""
    return _quarry.combine(_partials(partials))


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


def measures() -> list[dict[str, Any]]:
    """The measure table, one dict per measure in the order of the C++ ``quarry::Measure`` enum:
    ``name``; ``pool_kind`` (what it reads: ``"predictions"``, ``"committee"``,
    ``"token_logprobs"``, ``"top_logprobs"`` or ``"samples"``); ``family``; whether it takes
    ``logits``, integer ``votes``, ``lengths``, ``alpha``, ``threshold`` and (needs)
    ``features``; whether a partial result carries it (``shardable``: :func:`select_partial`,
    a pool of shards); and its ``formula``."""
    return _quarry.measures()


def option_schema() -> list[dict[str, Any]]:
    """The options schema, one dict per option: its Python keyword (``name``), command-line flag
    (``cli_flag``), key in a partial's JSON (``json_key``), C++ field (``cpp_field``), ``type``
    (``"integer"``, ``"number"``, ``"flag"``, ``"text"`` or ``"array"``), for integers the
    inclusive range ``min``..``max``, the ``default`` as the command line shows it, what it
    ``applies_to`` and its ``help``. Keyword arguments are checked against it: an integer
    outside its range raises :class:`InvalidArgument` naming it and the range."""
    return _quarry.option_schema()


def info() -> dict[str, Any]:
    """quarry's version, whether it was built with CUDA, the GPUs found, the CPU setup, and under
    ``"cuda"`` whether the CUDA backend can run here: ``status`` is ``"available"``,
    ``"not_built"``, ``"no_plugin"``, ``"no_driver"`` or ``"no_device"``, with a one-line
    ``detail``, the plugin's path, the device count and the driver's CUDA version."""
    return _quarry.info()
