"""Writing picks and scores with their row IDs: ``.jsonl``, ``.csv``, ``.parquet``, ``.json`` and
``.npy``, each atomically (a temporary file in the same folder, renamed when complete).

One record per pick, best first: ``rank`` (1 = first), ``row`` (row of the pool), ``id`` (the
row's ID, or null without IDs), ``score``, ``reason`` and ``cluster`` (-1 without diversity).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

import quarry

SELECTION_SUFFIXES = (".jsonl", ".csv", ".parquet", ".json", ".npy")


def output_kind(path: str) -> str:
    for suffix in SELECTION_SUFFIXES:
        if path.lower().endswith(suffix):
            return suffix[1:]
    raise quarry.InvalidArgument(
        "--output must end in " + ", ".join(SELECTION_SUFFIXES) + f", or be - for stdout; got "
        f"'{path}'"
    )


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path``, renamed onto it when the block ends without an error
    and removed otherwise (an interrupt included). A file replaced keeps its mode; a new one
    gets 0666 less the umask, as the C++ program's outputs do."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".quarry-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_score(s: float) -> Any:
    return s if math.isfinite(s) else ("inf" if s > 0 else "-inf")


def _python_ids(ids: Any, n: int) -> list[Any]:
    if ids is None:
        return [None] * n
    return [int(v) if isinstance(v, (np.integer, int)) else str(v) for v in ids]


def records(selection: quarry.Selection, ids: Any = None) -> list[dict[str, Any]]:
    """The picks as dicts (rank, row, id, score, reason, cluster), best first."""
    if ids is None:
        ids = getattr(selection, "ids", None)
    n = len(selection)
    return [
        {
            "rank": i + 1,
            "row": int(r),
            "id": d,
            "score": float(s),
            "reason": str(why),
            "cluster": int(c),
        }  # fmt: skip
        for i, (r, d, s, why, c) in enumerate(
            zip(
                selection.indices,
                _python_ids(ids, n),
                selection.scores,
                selection.reasons,
                selection.clusters if len(selection.clusters) == n else [-1] * n,
                strict=True,
            )  # fmt: skip
        )
    ]


def write_selection(
    path: str, selection: quarry.Selection, ids: Any = None, *, backend: str | None = None
) -> None:
    """Writes ``selection`` (with ``ids``, default ``selection.ids``) to ``path`` by its suffix."""
    kind = output_kind(path)
    if ids is None:
        ids = getattr(selection, "ids", None)
    with atomic_path(path) as tmp:
        if kind == "npy":
            np.save(tmp, np.asarray(selection.indices, np.int64), allow_pickle=False)
            # np.save appends .npy to a name without it
            if os.path.exists(tmp + ".npy"):
                os.replace(tmp + ".npy", tmp)
        elif kind == "parquet":
            _write_parquet(tmp, selection, ids)
        else:
            rows = records(selection, ids)
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                if kind == "jsonl":
                    for r in rows:
                        r["score"] = _json_score(r["score"])
                        f.write(json.dumps(r) + "\n")
                elif kind == "csv":
                    fields = ["rank", "row", "id", "score", "reason", "cluster"]
                    writer = csv.DictWriter(f, fieldnames=fields)
                    writer.writeheader()
                    for r in rows:
                        r["id"] = "" if r["id"] is None else r["id"]
                        r["score"] = repr(r["score"])  # shortest text that reads back exactly
                        writer.writerow(r)
                else:  # json: the C++ program's keys, plus ids
                    doc = {"measure": selection.measure, "backend": backend,
                           "indices": [int(i) for i in selection.indices],
                           "scores": [_json_score(float(s)) for s in selection.scores],
                           "reasons": [str(r) for r in selection.reasons]}  # fmt: skip
                    if backend is None:
                        del doc["backend"]
                    if np.any(selection.clusters >= 0):
                        doc["clusters"] = [int(c) for c in selection.clusters]
                    if ids is not None:
                        doc["ids"] = _python_ids(ids, len(selection))
                    if getattr(selection, "cost_spent", 0.0):
                        doc["cost_spent"] = selection.cost_spent
                    json.dump(doc, f, indent=1, sort_keys=True)
                    f.write("\n")


def _write_parquet(tmp: str, selection: quarry.Selection, ids: Any) -> None:
    from .tables import _pa

    pa = _pa()
    n = len(selection)
    if ids is None:
        id_array = pa.nulls(n, pa.int64())
    elif np.asarray(ids).dtype == object:
        id_array = pa.array([str(v) for v in ids], pa.string())
    else:
        id_array = pa.array(np.asarray(ids, np.int64))
    table = pa.table(
        {
            "rank": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "row": pa.array(np.asarray(selection.indices, np.int64)),
            "id": id_array,
            "score": pa.array(np.asarray(selection.scores, np.float32)),
            "reason": pa.array([str(r) for r in selection.reasons], pa.string()),
            "cluster": pa.array(
                np.asarray(selection.clusters, np.int32)
                if len(selection.clusters) == n
                else np.full(n, -1, np.int32)
            ),
        }
    )
    pa.parquet.write_table(table, tmp)


def write_scores(path: str, scores: np.ndarray, ids: Any = None) -> None:
    """Every row's score: ``.npy`` float32, or ``.jsonl`` / ``.csv`` / ``.parquet`` with row and
    id columns."""
    kind = output_kind(path)
    if kind == "json":
        raise quarry.InvalidArgument("scores are written as .npy, .jsonl, .csv or .parquet")
    with atomic_path(path) as tmp:
        if kind == "npy":
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(scores, np.float32), allow_pickle=False)
        elif kind == "parquet":
            from .tables import _pa

            pa = _pa()
            n = len(scores)
            cols = {"row": pa.array(np.arange(n, dtype=np.int64))}
            if ids is not None:
                cols["id"] = (
                    pa.array([str(v) for v in ids], pa.string())
                    if np.asarray(ids).dtype == object
                    else pa.array(np.asarray(ids, np.int64))
                )
            cols["score"] = pa.array(np.asarray(scores, np.float32))
            pa.parquet.write_table(pa.table(cols), tmp)
        else:
            idl = _python_ids(ids, len(scores))
            buf = io.StringIO()
            if kind == "jsonl":
                for r, (d, s) in enumerate(zip(idl, scores, strict=True)):
                    buf.write(json.dumps({"row": r, "id": d, "score": _json_score(float(s))}))
                    buf.write("\n")
            else:
                w = csv.writer(buf)
                w.writerow(["row", "id", "score"])
                for r, (d, s) in enumerate(zip(idl, scores, strict=True)):
                    w.writerow([r, "" if d is None else d, repr(float(s))])
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(buf.getvalue())
