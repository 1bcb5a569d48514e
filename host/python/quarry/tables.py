"""Pools stored as tables: Parquet, Arrow IPC / Feather, ``pyarrow.Table`` and Hugging Face
``datasets.Dataset``, with row IDs.

A list column (fixed-size, or plain lists of one length) is read as ``[N, C]`` (nested lists as
``[N, T, K]`` ...), with the shape, dtype and error rules of ``.npy`` pools: a null or a row of
another length is refused, naming the column, the row and its ID. Arrow IPC files are memory-mapped
and their list values handed to the engine without a copy; Parquet files are read a batch of rows
at a time, each batch's best rows kept as a :class:`quarry.Partial` and the partials merged, which
gives exactly the answer of the whole pool in memory (docs/scale-out.md). pyarrow is imported only
here (``pip install quarry[arrow]``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import quarry

__all__ = [
    "TableSelection",
    "read_ids",
    "select_table",
    "score_table",
    "is_table_path",
]

TABLE_SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc")
# Options under which a pool can be selected in pieces and merged to the same answer.
_SHARDABLE = {"measure", "logits", "temperature", "layout", "classes", "embeddings",
              "candidates", "kmeans_iters", "explore", "seed"}  # fmt: skip


def is_table_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(TABLE_SUFFIXES)


def is_table_source(source: Any) -> bool:
    """A table path, a pyarrow Table / RecordBatch or a datasets.Dataset (no import needed)."""
    module = type(source).__module__.split(".")[0]
    return is_table_path(source) or (
        module in ("pyarrow", "datasets") and hasattr(source, "schema" if module == "pyarrow"
                                                       else "data")
    )  # fmt: skip


def array_table(pool: Any) -> Any:
    """An ``[N, ...]`` host array as a one-column table ``pool`` of fixed-size lists over the
    array's own memory (no copy for a C-order array)."""
    pa = _pa()
    pool = np.asarray(pool)
    if pool.ndim < 2:
        raise quarry.InvalidInput(f"a pool is at least 2-D, got shape {pool.shape}")
    column = pa.array(np.ascontiguousarray(pool).reshape(-1))
    for size in reversed(pool.shape[1:]):
        column = pa.FixedSizeListArray.from_arrays(column, size)
    return pa.table({"pool": column})


_TABLE_KEYWORDS = {"column", "id_column", "ids", "embeddings_column", "cost_column",
                   "lengths_column", "features_column", "labeled_column", "labeled_ids",
                   "memory_budget", "device"}  # fmt: skip
_ARRAY_KEYWORDS = ("embeddings", "costs", "lengths", "features", "labeled")


def _split_call(function: Any, call: dict[str, Any]) -> tuple[Any, dict[str, Any], dict]:
    """quarry.select/score's arguments (their locals) as (pool, table keywords, other options
    that differ from their defaults)."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()}
    pool = call["pool"]
    table = dict(call.get("table") or {})
    unknown = set(table) - _TABLE_KEYWORDS
    if unknown:
        raise quarry.InvalidArgument(
            f"unexpected keyword(s) {', '.join(sorted(unknown))}; a table pool takes "
            + ", ".join(sorted(_TABLE_KEYWORDS))
        )
    options = {
        name: value
        for name, value in call.items()
        if name in defaults and name not in ("pool", "k", "table")
        and value is not defaults[name] and not (
            isinstance(value, (bool, int, float, str)) and value == defaults[name])
    }  # fmt: skip
    given = [name for name in _ARRAY_KEYWORDS if options.get(name) is not None]
    if not is_table_source(pool):
        if set(table) - {"ids", "labeled_ids", "memory_budget", "device"}:
            raise quarry.InvalidArgument(
                f"{', '.join(sorted(table))}: column keywords need a table pool (a pyarrow.Table, "
                "a datasets.Dataset, or a .parquet/.arrow/.feather path)"
            )
        if "labeled" in given:
            raise quarry.InvalidArgument("with ids=, labeled rows are given as labeled_ids=")
        # The array and its companions as columns of one table, over their own memory.
        pool = array_table(pool)
        for name in given:
            value = np.asarray(options.pop(name))
            column = array_table(value).column(0) if value.ndim > 1 else _pa().array(value)
            pool = pool.append_column(name, column)
            table[("cost" if name == "costs" else name) + "_column"] = name
        table["column"] = "pool"
    elif given:
        raise quarry.InvalidArgument(
            f"with a table pool, {', '.join(given)} come from columns: "
            + ", ".join(f"{g}_column=" if g != "costs" else "cost_column=" for g in given)
        )
    if "column" not in table:
        raise quarry.InvalidArgument("a table pool needs column= (its list column)")
    return pool, table, options


def select_from_call(call: dict[str, Any]) -> TableSelection:
    """quarry.select of a table (or of an array with ``ids=``)."""
    pool, table, options = _split_call(quarry.select, call)
    return select_table(pool, call.get("k"), **table, **options)


def score_from_call(call: dict[str, Any]) -> np.ndarray:
    """quarry.score of a table."""
    pool, table, options = _split_call(quarry.score, call)
    if set(table) - {"column", "memory_budget", "ids"}:
        raise quarry.InvalidArgument("score of a table takes column= (and memory_budget=)")
    table.pop("ids", None)
    return score_table(pool, **table, **options)


def _pa():
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise quarry.InvalidArgument(
            "reading tables needs pyarrow: pip install 'quarry[arrow]'"
        ) from None
    return pyarrow


class TableSelection(quarry.Selection):
    """A :class:`quarry.Selection` of a table's rows, with ``ids``: the ID of each pick (None
    when the table has no ID column). ``indices`` are row numbers of the whole table."""

    __slots__ = ("ids",)

    @classmethod
    def of(cls, selection: quarry.Selection, rows: np.ndarray, ids: Any) -> TableSelection:
        out = cls.__new__(cls)
        out.indices = np.ascontiguousarray(rows, dtype=np.int64)
        out.scores = selection.scores
        out._reason_codes = selection._reason_codes
        out.clusters = selection.clusters
        out.measure = selection.measure
        out.cost_spent = selection.cost_spent
        out.ids = None if ids is None else ids[out.indices]
        return out

    def __repr__(self) -> str:
        return "Table" + super().__repr__()[:-1] + f", ids={self.ids!r})"


def _show_id(value: Any) -> str:
    return str(int(value)) if isinstance(value, (int, np.integer)) else repr(str(value))


def _id_text(ids: np.ndarray | None, row: int) -> str:
    return "" if ids is None or not 0 <= row < len(ids) else f" (id {_show_id(ids[row])})"


def _invalid(column: str, row: int, ids: np.ndarray | None, what: str) -> quarry.InvalidInput:
    err = quarry.InvalidInput(f"column {column!r}: row {row}{_id_text(ids, row)}: {what}")
    err.row = row
    return err


# ------------------------------------------------------------------------------------------
# Reading: a source as its schema, row count and batches of columns
# ------------------------------------------------------------------------------------------


@dataclass
class _Source:
    schema: Any
    rows: int
    batches: Any  # callable(columns, batch_rows) -> iterator of pyarrow.RecordBatch / Table
    streamed: bool  # read from a file a batch at a time (Parquet)
    name: str


def _open(source: Any) -> _Source:
    pa = _pa()
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise quarry.InvalidArgument(f"{path}: No such file or directory")
        if not os.path.isfile(path):
            raise quarry.InvalidArgument(f"{path}: not a regular file")
        if path.lower().endswith((".parquet", ".pq")):
            try:
                file = pa.parquet.ParquetFile(path, memory_map=True)
            except (pa.ArrowInvalid, OSError) as e:
                raise quarry.InvalidArgument(f"{path}: not a Parquet file ({e})") from None

            def parquet_batches(columns, batch_rows):
                return file.iter_batches(batch_size=batch_rows or 65536, columns=columns)

            return _Source(file.schema_arrow, file.metadata.num_rows, parquet_batches, True, path)
        try:  # the IPC file format (Feather v2), else the IPC stream format; memory-mapped
            mapped = pa.memory_map(path, "r")
            try:
                table = pa.ipc.open_file(mapped).read_all()
            except pa.ArrowInvalid:
                mapped.seek(0)
                table = pa.ipc.open_stream(mapped).read_all()
        except (pa.ArrowInvalid, OSError) as e:
            raise quarry.InvalidArgument(f"{path}: not an Arrow IPC file ({e})") from None
        return _table_source(table, path)
    if type(source).__module__.split(".")[0] == "datasets" and hasattr(source, "data"):
        # A datasets.Dataset: its Arrow table (memory-mapped from its cache), less any
        # select/filter it holds as an indices mapping.
        table = source.data.table if hasattr(source.data, "table") else source.data
        if getattr(source, "_indices", None) is not None:
            table = source.with_format("arrow")[:]
        return _table_source(table, "dataset")
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    if isinstance(source, pa.Table):
        return _table_source(source, "table")
    raise quarry.InvalidArgument(
        "expected a pyarrow.Table, a datasets.Dataset or a path ending in "
        + ", ".join(TABLE_SUFFIXES) + f"; got {type(source).__name__}"
    )  # fmt: skip


def _table_source(table: Any, name: str) -> _Source:
    def table_batches(columns, batch_rows):
        # Whole table in one piece: its chunks stay as they are (zero-copy) until combined.
        yield table.select(columns)

    return _Source(table.schema, table.num_rows, table_batches, False, name)


def _column_array(chunked: Any) -> Any:
    pa = _pa()
    if isinstance(chunked, pa.ChunkedArray):
        return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    return chunked


def _to_numpy(array: Any, column: str, row0: int, ids: np.ndarray | None) -> np.ndarray:
    """A list column (any nesting) as an ndarray [N, ...], without a copy where Arrow's buffers
    allow; a numeric column as [N]. Nulls and rows of another length are refused."""
    pa = _pa()
    t = array.type
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise _invalid(column, row0 + row, ids, "null value")
    shape = [len(array)]
    values = array
    while True:
        t = values.type
        if pa.types.is_fixed_size_list(t):
            size = t.list_size
            # Slicing a FixedSizeListArray keeps its offset: flatten() honours it.
            inner = values.flatten()
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            offsets = values.offsets.to_numpy()
            lengths = np.diff(offsets)
            size = int(lengths[0]) if len(lengths) else 0
            bad = np.flatnonzero(lengths != size)
            if len(bad):
                row = int(bad[0]) if len(shape) == 1 else int(bad[0]) // int(np.prod(shape[1:]))
                raise _invalid(
                    column, row0 + row, ids,
                    f"list of length {int(lengths[bad[0]])}, expected {size} as in the first row "
                    "(a ragged list)",
                )  # fmt: skip
            inner = values.flatten()
        else:
            break
        if inner.null_count:
            flat = int(np.flatnonzero(inner.is_null().to_numpy(zero_copy_only=False))[0])
            row = flat // (int(np.prod(shape[1:])) * size) if size else 0
            raise _invalid(column, row0 + row, ids, "null value in the list")
        shape.append(size)
        values = inner
    if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
        raise quarry.InvalidInput(
            f"column {column!r}: type {array.type}: quarry reads lists of float32/float16 "
            "(int32/int64 votes)"
        )
    try:
        flat = values.to_numpy(zero_copy_only=True)
    except pa.ArrowInvalid:
        flat = values.to_numpy(zero_copy_only=False)
    return flat.reshape(shape)


def _read_column(array: Any, column: str, row0: int, ids: Any) -> np.ndarray:
    return _to_numpy(_column_array(array), column, row0, ids)


def _check_columns(source: _Source, columns: dict[str, str | None]) -> None:
    names = set(source.schema.names)
    for flag, name in columns.items():
        if name is not None and name not in names:
            raise quarry.InvalidArgument(
                f"{source.name}: no column {name!r} ({flag}); it has "
                + ", ".join(repr(n) for n in source.schema.names)
            )


def read_ids(values: Any, column: str = "id") -> np.ndarray:
    """IDs as a numpy array: int64, or object (str). Nulls, other types and duplicates are
    refused naming the row (and, for a duplicate, the ID and its first row)."""
    pa = _pa()
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        array = _column_array(values)
        if array.null_count:
            row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
            raise _invalid(column, row, None, "null ID")
        t = array.type
        if pa.types.is_integer(t):
            ids = array.cast(pa.int64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            ids = array.to_numpy(zero_copy_only=False).astype(object)
        else:
            raise quarry.InvalidInput(
                f"column {column!r}: IDs of type {t}; IDs are strings or 64-bit integers"
            )
    else:
        ids = np.asarray(values)
        if ids.dtype.kind in "iu":
            if ids.dtype == np.uint64 and len(ids) and ids.max() > np.iinfo(np.int64).max:
                raise quarry.InvalidInput(f"{column}: IDs above 2^63 - 1")
            ids = ids.astype(np.int64)
        elif ids.dtype.kind in "UO":
            ids = ids.astype(object)
            bad = [i for i, v in enumerate(ids) if not isinstance(v, str)]
            if bad:
                raise _invalid(column, bad[0], None, "an ID that is not a string")
        else:
            raise quarry.InvalidInput(
                f"{column}: IDs of dtype {ids.dtype}; IDs are strings or 64-bit integers"
            )
        if ids.ndim != 1:
            raise quarry.InvalidInput(f"{column}: IDs must be 1-D, got shape {ids.shape}")
    _check_unique(ids, column)
    return ids


def _check_unique(ids: np.ndarray, column: str) -> None:
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(counts) == len(ids):
        return
    dup = ids[first[counts > 1]]
    rows = np.flatnonzero(np.isin(ids, dup))
    # The first row that repeats an earlier ID, and the row it repeats.
    seen: dict[Any, int] = {}
    for row in rows:
        value = ids[row]
        if value in seen:
            err = quarry.InvalidInput(
                f"column {column!r}: row {int(row)}: duplicate ID {_show_id(value)} (first at row "
                f"{seen[value]})"
            )
            err.row = int(row)
            raise err
        seen[value] = int(row)


def _labeled_mask(ids: np.ndarray | None, rows: int, labeled_ids: Any) -> np.ndarray | None:
    if labeled_ids is None:
        return None
    if ids is None:
        raise quarry.InvalidArgument("labeled IDs need an ID column (id_column=) or ids=")
    given = np.asarray(list(labeled_ids) if not isinstance(labeled_ids, np.ndarray)
                       else labeled_ids)  # fmt: skip
    if ids.dtype == object:
        given = given.astype(str).astype(object) if given.size else given.astype(object)
    elif given.size:
        given = given.astype(np.int64)
    unknown = np.setdiff1d(given, ids) if given.size else given
    if unknown.size:
        raise quarry.InvalidArgument(
            f"{unknown.size} labeled ID(s) are not in the pool, e.g. {_show_id(unknown[0])}"
        )
    return np.isin(ids, given)


def _original_rows(kept_rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Rows of the pool with ``excluded`` (sorted original rows) removed, mapped back to the
    original row numbers: o is the smallest row with o - |{e <= o}| == f."""
    if excluded.size == 0:
        return kept_rows
    out = kept_rows.astype(np.int64).copy()
    while True:
        shifted = kept_rows + np.searchsorted(excluded, out, side="right")
        if np.array_equal(shifted, out):
            return out
        out = shifted


# ------------------------------------------------------------------------------------------
# Selection
# ------------------------------------------------------------------------------------------


def _batch_rows(source: _Source, column: str, memory_budget: int | None) -> int:
    """Rows per batch: the budget over a row's bytes in the pool column (64 Ki rows without)."""
    if not memory_budget:
        return 65536
    pa = _pa()
    t = source.schema.field(column).type
    per_row = 1
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        per_row *= t.list_size if pa.types.is_fixed_size_list(t) else 1
        t = t.value_type
    width = getattr(t, "bit_width", 32) // 8
    return max(1, memory_budget // max(1, per_row * width * 2))


def select_table(
    source: Any,
    k: int | None = None,
    *,
    column: str,
    id_column: str | None = None,
    ids: Any = None,
    embeddings_column: str | None = None,
    cost_column: str | None = None,
    lengths_column: str | None = None,
    features_column: str | None = None,
    labeled_column: str | None = None,
    labeled_ids: Any = None,
    memory_budget: int | None = None,
    **options: Any,
) -> TableSelection:
    """Selects from a table's list column; see :func:`quarry.select` for ``options``.

    Args:
        source: a ``pyarrow.Table``, a ``datasets.Dataset``, or a ``.parquet`` / ``.arrow`` /
            ``.feather`` path.
        column: the list column of predictions ([N, C], or nested lists [N, T, K]).
        id_column: the row IDs (strings or 64-bit integers, unique); or ``ids`` as an array.
        embeddings_column, cost_column, lengths_column, features_column: other inputs from
            columns of the same table (``embeddings``, ``costs``, ``lengths``, ``features``).
        labeled_column: a boolean column, true for rows already labeled; ``labeled_ids``: IDs of
            rows already labeled. Labeled rows are never picked (with ``strategy="coreset"``
            they are the first centers).
        memory_budget: bytes of pool read at a time (with the engine's own working memory
            capped by the same figure): a Parquet file is read in batches of that many bytes.
    """
    src = _open(source)
    _check_columns(src, {"column": column, "id_column": id_column,
                         "embeddings_column": embeddings_column, "cost_column": cost_column,
                         "lengths_column": lengths_column, "features_column": features_column,
                         "labeled_column": labeled_column})  # fmt: skip
    row_ids = None
    if id_column is not None:
        if ids is not None:
            raise quarry.InvalidArgument("give id_column or ids, not both")
        row_ids = read_ids(_whole_column(src, id_column), id_column)
    elif ids is not None:
        row_ids = read_ids(ids, "ids")
        if len(row_ids) != src.rows:
            raise quarry.InvalidArgument(f"{len(row_ids)} ids for a pool of {src.rows} rows")
    labeled = _labeled_mask(row_ids, src.rows, labeled_ids)
    if labeled_column is not None:
        flags = _column_array(_whole_column(src, labeled_column))
        if flags.null_count:
            row = int(np.flatnonzero(flags.is_null().to_numpy(zero_copy_only=False))[0])
            raise _invalid(labeled_column, row, row_ids, "null value")
        flags = flags.to_numpy(zero_copy_only=False).astype(bool)
        labeled = flags if labeled is None else labeled | flags
    excluded = np.empty(0, np.int64) if labeled is None else np.flatnonzero(labeled)

    extra = {"embeddings": embeddings_column, "costs": cost_column, "lengths": lengths_column,
             "features": features_column}  # fmt: skip
    columns = [column] + [c for c in extra.values() if c is not None]
    columns = list(dict.fromkeys(columns))
    resources = options.pop("resources", None)
    device = options.pop("device", "auto")
    if resources is None and (memory_budget or device != "auto"):
        resources = quarry.Resources(device, int(memory_budget) if memory_budget else None)
    shardable = (
        set(options) | {name for name, c in extra.items() if c is not None}
    ) <= _SHARDABLE and options.get("strategy", "rank") == "rank"
    budgeted = options.get("costs") is not None or options.get("budget") is not None
    if k is None and not (budgeted or cost_column):
        raise quarry.InvalidArgument("select needs k, or costs with a budget")

    pool_rows = src.rows - excluded.size
    if shardable and k is not None and src.streamed:
        batch_rows = _batch_rows(src, column, memory_budget) if src.streamed else 0
        running = None
        row = kept = 0
        for batch in src.batches(columns, batch_rows):
            n = batch.num_rows
            arrays = {name: _read_column(batch.column(name), name, row, row_ids)
                      for name in columns}  # fmt: skip
            keep = None
            if excluded.size:
                local = excluded[(excluded >= row) & (excluded < row + n)] - row
                if local.size:
                    keep = np.ones(n, bool)
                    keep[local] = False
                    arrays = {name: a[keep] for name, a in arrays.items()}
            m = n if keep is None else int(keep.sum())
            if m:
                kwargs = dict(options)
                if embeddings_column is not None:
                    kwargs["embeddings"] = arrays[embeddings_column]
                try:
                    part = quarry.select_partial(arrays[column], k, row_offset=kept,
                                                 pool_rows=pool_rows, resources=resources,
                                                 **kwargs)  # fmt: skip
                except quarry.InvalidInput as e:
                    raise _located(e, column, excluded, row_ids) from None
                running = part if running is None else quarry.combine([running, part])
            row += n
            kept += m
        if running is None:
            raise quarry.InvalidArgument(f"{src.name}: the pool has no rows to select from")
        try:
            picked = quarry.merge([running], k, resources=resources)
        except quarry.InvalidArgument as e:
            if k > pool_rows:
                raise quarry.InvalidArgument(
                    f"k = {k} is more than the {pool_rows} rows of the pool"
                ) from None
            raise e
        rows = _original_rows(picked.indices, excluded)
        return TableSelection.of(picked, rows, row_ids)

    # Strategies and budgets need the whole pool: read it in one piece.
    table = next(iter(src.batches(columns, 0))) if not src.streamed else _read_all(src, columns)
    arrays = {name: _read_column(table.column(name), name, 0, row_ids) for name in columns}
    kwargs = dict(options)
    for name, col in extra.items():
        if col is not None:
            kwargs[name] = arrays[col]
    pool = arrays[column]
    if excluded.size:
        keep = np.ones(src.rows, bool)
        keep[excluded] = False
        if options.get("strategy") == "coreset" and kwargs.get("embeddings") is not None:
            kwargs["labeled"] = np.ascontiguousarray(kwargs["embeddings"][excluded])
        pool = pool[keep]
        for name in extra:
            if kwargs.get(name) is not None:
                kwargs[name] = kwargs[name][keep]
    try:
        picked = quarry.select(pool, k, resources=resources, **kwargs)
    except quarry.InvalidInput as e:
        raise _located(e, column, excluded, row_ids) from None
    rows = _original_rows(picked.indices, excluded)
    return TableSelection.of(picked, rows, row_ids)


def _read_all(src: _Source, columns: list[str]) -> Any:
    pa = _pa()
    return pa.Table.from_batches(list(src.batches(columns, 0)))


def _whole_column(src: _Source, name: str) -> Any:
    pa = _pa()
    parts = [b.column(name) for b in src.batches([name], 0)]
    if len(parts) == 1:
        return parts[0]
    return pa.chunked_array([c for p in parts
                             for c in (p.chunks if hasattr(p, "chunks") else [p])])  # fmt: skip


def _located(e: quarry.InvalidInput, column: str, excluded: np.ndarray, ids: Any, offset: int = 0):
    """The engine's error with the row as a row of the table (the engine's row + ``offset``,
    with the ``excluded`` rows put back), the column and the ID named."""
    row = getattr(e, "row", -1)
    message = str(e)
    if row is None or row < 0:
        return quarry.InvalidInput(f"column {column!r}: {message}")
    original = int(_original_rows(np.array([row + offset], np.int64), excluded)[0])
    prefix = f"row {row}: "
    rest = message[len(prefix) :] if message.startswith(prefix) else message
    return _invalid(column, original, ids, rest)


def score_table(
    source: Any, *, column: str, memory_budget: int | None = None, **options: Any
) -> np.ndarray:
    """Every row's score (float32, table row order), read a batch at a time like
    :func:`select_table`."""
    src = _open(source)
    _check_columns(src, {"column": column})
    resources = options.pop("resources", None)
    device = options.pop("device", "auto")
    if resources is None and (memory_budget or device != "auto"):
        resources = quarry.Resources(device, int(memory_budget) if memory_budget else None)
    out = np.empty(src.rows, np.float32)
    row = 0
    batch_rows = _batch_rows(src, column, memory_budget) if src.streamed else 0
    for batch in src.batches([column], batch_rows):
        pool = _read_column(batch.column(column), column, row, None)
        try:
            out[row : row + len(pool)] = quarry.score(pool, resources=resources, **options)
        except quarry.InvalidInput as e:
            raise _located(e, column, np.empty(0, np.int64), None, offset=row) from None
        row += len(pool)
    return out


def iter_pool(source: Any, column: str, batch_rows: int = 65536) -> Iterator[np.ndarray]:
    """The pool column a batch at a time, as ndarrays (for callers that score it themselves)."""
    src = _open(source)
    _check_columns(src, {"column": column})
    row = 0
    for batch in src.batches([column], batch_rows):
        arr = _read_column(batch.column(column), column, row, None)
        row += len(arr)
        yield arr
