"""Table pools (Parquet, Arrow IPC, pyarrow.Table, datasets.Dataset) with row IDs, from Python
and from the pip-installed `quarry` command: the same picks, scores and IDs as the .npy pool,
streaming under a memory budget, bad tables refused with one line, atomic outputs."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import quarry
from conftest import random_probs

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")
from quarry import outputs, tables  # noqa: E402

CPU = quarry.Resources("cpu")


def run_quarry(*args):
    """The console script as pip installs it (quarry._cli.main), in a fresh interpreter."""
    code = "import sys; from quarry._cli import main; sys.argv[0] = 'quarry'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )


def fixed(p):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(p).reshape(-1)),
                                             p.shape[1])  # fmt: skip


def make_table(p, ids, emb=None, costs=None):
    cols = {"id": pa.array(ids), "probs": fixed(p), "plain": pa.array(list(p))}
    if emb is not None:
        cols["emb"] = fixed(emb)
    if costs is not None:
        cols["cost"] = pa.array(costs)
    return pa.table(cols)


@pytest.fixture
def pool(rng, tmp_path):
    n, c, d = 3000, 7, 4
    p = random_probs(rng, n, c)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    costs = rng.uniform(0.5, 3.0, n)
    ids = np.array([f"doc-{i:05d}" for i in rng.permutation(n)], dtype=object)
    t = make_table(p, ids, emb, costs)
    pq.write_table(t, tmp_path / "pool.parquet", row_group_size=700)  # 5 row groups
    feather.write_feather(t, tmp_path / "pool.arrow", compression="uncompressed")
    np.save(tmp_path / "pool.npy", p)
    np.save(tmp_path / "emb.npy", emb)
    np.save(tmp_path / "ids.npy", ids.astype(str))
    return dict(p=p, emb=emb, costs=costs, ids=ids, table=t, dir=tmp_path)


CASES = [
    ("rank", dict(measure="margin"), []),
    ("diversity+explore", dict(candidates=80, explore=0.2, seed=11),
     ["--embeddings-column", "emb", "--candidates", 80, "--explore", 0.2, "--seed", 11]),
]  # fmt: skip


def assert_same(sel, ref, ids):
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_array_equal(sel.scores, ref.scores)
    assert list(sel.reasons) == list(ref.reasons)
    np.testing.assert_array_equal(sel.clusters, ref.clusters)
    assert list(sel.ids) == list(ids[ref.indices])


@pytest.mark.parametrize("name,options,flags", CASES, ids=[c[0] for c in CASES])
def test_every_source_gives_the_npy_pools_picks(pool, name, options, flags):
    datasets = pytest.importorskip("datasets")
    p, ids = pool["p"], pool["ids"]
    emb = pool["emb"] if "--embeddings-column" in flags else None
    ref = quarry.select(p, 40, embeddings=emb, resources=CPU, **options)
    cols = {"embeddings_column": "emb"} if emb is not None else {}
    sources = [pool["table"], pool["dir"] / "pool.parquet", pool["dir"] / "pool.arrow",
               str(pool["dir"] / "pool.parquet"), datasets.Dataset(pool["table"])]  # fmt: skip
    for source in sources:
        for column in ("probs", "plain"):
            sel = quarry.select(source, 40, column=column, id_column="id", resources=CPU,
                                **cols, **options)  # fmt: skip
            assert_same(sel, ref, ids)
    # Several record batches in the table (a chunked column) read the same.
    chunked = pa.Table.from_batches(pool["table"].to_batches(max_chunksize=999))
    assert chunked.column("probs").num_chunks == 4
    assert_same(quarry.select(chunked, 40, column="probs", id_column="id", resources=CPU,
                              **cols, **options), ref, ids)  # fmt: skip
    # An array pool with ids= (and its embeddings as an array).
    arrays = {"embeddings": emb} if emb is not None else {}
    assert_same(quarry.select(p, 40, ids=ids, resources=CPU, **arrays, **options), ref, ids)


@pytest.mark.parametrize("name,options,flags", CASES, ids=[c[0] for c in CASES])
def test_the_command_line_gives_the_programs_picks_with_ids(cli, pool, name, options, flags):
    d = pool["dir"]
    npy_flags = [f if f != "--embeddings-column" else "--embeddings" for f in flags]
    npy_flags = [d / "emb.npy" if f == "emb" else f for f in npy_flags]
    measure = ["--measure", options["measure"]] if "measure" in options else []
    cli("select", d / "pool.npy", "-k", 40, *measure, *npy_flags, "--device", "cpu",
        "-o", d / "ref.json")  # fmt: skip
    ref = json.loads((d / "ref.json").read_text())
    for source, extra, out in [
        (d / "pool.parquet", ["--column", "probs", "--id-column", "id"], "picks.jsonl"),
        (d / "pool.parquet", ["--column", "plain", "--id-column", "id", "--memory-budget", "20K"],
         "picks.csv"),
        (d / "pool.arrow", ["--column", "probs", "--id-column", "id", "--threads", "3"],
         "picks.parquet"),
        (d / "pool.npy", ["--ids", d / "ids.npy"], "picks.json"),
    ]:  # fmt: skip
        flags_here = flags if source.suffix != ".npy" else npy_flags
        r = run_quarry("select", source, "-k", 40, *measure, *extra, *flags_here,
                       "--device", "cpu", "-o", d / out)  # fmt: skip
        assert r.returncode == 0, r.stderr
        got = read_picks(d / out)
        assert got["row"] == ref["indices"]
        assert got["score"] == [float(np.float32(s)) for s in ref["scores"]]
        assert got["reason"] == ref["reasons"]
        assert got["id"] == [pool["ids"][i] for i in ref["indices"]]
        if "clusters" in ref:
            assert got["cluster"] == ref["clusters"]


def read_picks(path):
    """Columns rank/row/id/score/reason/cluster of any selection output."""
    suffix = path.suffix
    if suffix == ".json":
        doc = json.loads(path.read_text())
        n = len(doc["indices"])
        return {"row": doc["indices"], "id": doc["ids"], "score": doc["scores"],
                "reason": doc["reasons"], "cluster": doc.get("clusters", [-1] * n)}  # fmt: skip
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    elif suffix == ".csv":
        with open(path, newline="") as f:
            rows = [
                dict(
                    r,
                    rank=int(r["rank"]),
                    row=int(r["row"]),
                    score=float(r["score"]),
                    cluster=int(r["cluster"]),
                )  # fmt: skip
                for r in csv.DictReader(f)
            ]
    else:
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            r["score"] = float(np.float32(r["score"]))
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    return {key: [r[key] for r in rows] for key in ("row", "id", "score", "reason", "cluster")}


def test_a_parquet_pool_larger_than_the_memory_budget_streams(tmp_path, rng):
    """40 MB of probabilities in 8 row groups, read 1 MB at a time: Arrow's memory pool never
    holds more than a few batches, and the picks equal the in-memory ones."""
    n, c = 100_000, 100
    p = random_probs(rng, n, c)
    ids = np.arange(n, dtype=np.int64) * 3 + 17
    pq.write_table(pa.table({"id": ids, "probs": fixed(p)}), tmp_path / "big.parquet",
                   row_group_size=n // 8)  # fmt: skip
    np.save(tmp_path / "ref.npy", p)
    del p
    ref = quarry.select(np.load(tmp_path / "ref.npy"), 100, explore=0.1, seed=3, resources=CPU)
    script = f"""
import json, numpy as np, pyarrow as pa, quarry
sel = quarry.select({str(tmp_path / "big.parquet")!r}, 100, column="probs", id_column="id",
                    explore=0.1, seed=3, memory_budget=1 << 20, device="cpu")
print(json.dumps({{"peak": pa.default_memory_pool().max_memory(),
                  "indices": sel.indices.tolist(), "scores": sel.scores.tolist(),
                  "ids": sel.ids.tolist()}}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    pool_bytes = n * c * 4
    print("Arrow peak", got["peak"], "of a", pool_bytes, "byte pool")
    assert got["peak"] < pool_bytes / 4
    assert got["indices"] == ref.indices.tolist()
    np.testing.assert_array_equal(np.float32(got["scores"]), ref.scores)
    assert got["ids"] == (ref.indices * 3 + 17).tolist()


def test_labeled_ids_are_never_picked_and_rows_keep_their_numbers(pool):
    p, ids = pool["p"], pool["ids"]
    first = quarry.select(pool["table"], 30, column="probs", id_column="id", resources=CPU)
    labeled = list(first.ids[:20]) + [ids[0], ids[-1]]
    keep = ~np.isin(ids, labeled)
    ref = quarry.select(p[keep], 30, explore=0.1, seed=2, resources=CPU)
    rows = np.flatnonzero(keep)[ref.indices]
    for source in (pool["table"], pool["dir"] / "pool.parquet"):
        sel = quarry.select(source, 30, column="probs", id_column="id", labeled_ids=labeled,
                            explore=0.1, seed=2, resources=CPU, memory_budget=30_000)  # fmt: skip
        np.testing.assert_array_equal(sel.indices, rows)
        np.testing.assert_array_equal(sel.scores, ref.scores)
        assert not set(sel.ids) & set(labeled)
        assert list(sel.ids) == list(ids[rows])
    # A labeled column does the same.
    t = pool["table"].append_column("done", pa.array(~keep))
    sel = quarry.select(t, 30, column="probs", labeled_column="done", explore=0.1, seed=2,
                        resources=CPU)  # fmt: skip
    np.testing.assert_array_equal(sel.indices, rows)
    # From the command line, the previous round's picks.jsonl as the labeled set.
    d = pool["dir"]
    r = run_quarry("select", d / "pool.parquet", "--column", "probs", "--id-column", "id",
                   "-k", 30, "-o", d / "r1.jsonl")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_quarry("select", d / "pool.parquet", "--column", "probs", "--id-column", "id",
                   "-k", 30, "--labeled-ids", d / "r1.jsonl", "-o", d / "r2.jsonl")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r1, r2 = read_picks(d / "r1.jsonl"), read_picks(d / "r2.jsonl")
    keep = ~np.isin(ids, r1["id"])
    assert r2["row"] == np.flatnonzero(keep)[quarry.select(p[keep], 30).indices].tolist()


def test_costs_and_embeddings_from_columns(pool):
    p, costs, emb = pool["p"], pool["costs"], pool["emb"]
    ref = quarry.select(p, costs=costs, budget=25.0, resources=CPU)
    for source in (pool["table"], pool["dir"] / "pool.parquet"):
        sel = quarry.select(source, column="probs", id_column="id", cost_column="cost",
                            budget=25.0, resources=CPU)  # fmt: skip
        np.testing.assert_array_equal(sel.indices, ref.indices)
        assert sel.cost_spent == pytest.approx(ref.cost_spent)
    ref = quarry.select(p, 12, strategy="coreset", embeddings=emb, resources=CPU)
    sel = quarry.select(pool["dir"] / "pool.arrow", 12, column="probs", strategy="coreset",
                        embeddings_column="emb", resources=CPU)  # fmt: skip
    np.testing.assert_array_equal(sel.indices, ref.indices)
    r = run_quarry("select", pool["dir"] / "pool.parquet", "--column", "probs", "--cost-column",
                   "cost", "--budget", 25, "-o", pool["dir"] / "b.jsonl")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert read_picks(pool["dir"] / "b.jsonl")["row"] == ref_budget(p, costs)


def ref_budget(p, costs):
    return quarry.select(p, costs=costs, budget=25.0, resources=CPU).indices.tolist()


def test_scores_of_a_table(pool):
    ref = quarry.score(pool["p"], measure="ratio", resources=CPU)
    for source in (pool["table"], pool["dir"] / "pool.parquet"):
        got = quarry.score(source, column="plain", measure="ratio", resources=CPU,
                           memory_budget=50_000)  # fmt: skip
        np.testing.assert_array_equal(got, ref)
    d = pool["dir"]
    r = run_quarry("score", d / "pool.parquet", "--column", "probs", "--id-column", "id",
                   "--measure", "ratio", "-o", d / "s.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    t = pq.read_table(d / "s.parquet")
    np.testing.assert_array_equal(t.column("score").to_numpy(), ref)
    assert t.column("id").to_pylist() == list(pool["ids"])


def bad_tables(rng):
    """(name, table, column, expected message parts) of tables that must be refused."""
    p = random_probs(rng, 50, 4)
    ids = np.arange(50) + 1000
    rows = [list(map(float, r)) for r in p]
    ragged = [*rows[:13], rows[13][:3], *rows[14:]]
    null_row = [*rows[:21], None, *rows[22:]]
    null_value = [*rows[:8], [rows[8][0], None, *rows[8][2:]], *rows[9:]]
    nan = p.copy()
    nan[33, 2] = np.nan
    dup = ids.copy()
    dup[40] = dup[5]
    strings = [[str(v) for v in r] for r in rows]
    return [
        ("missing column", make_table(p, ids), "nope", ["no column 'nope'"]),
        ("ragged list", pa.table({"id": ids, "probs": pa.array(ragged)}), "probs",
         ["column 'probs'", "row 13", "id 1013", "length 3"]),
        ("null row", pa.table({"id": ids, "probs": pa.array(null_row)}), "probs",
         ["column 'probs'", "row 21", "id 1021", "null"]),
        ("null in a list", pa.table({"id": ids, "probs": pa.array(null_value)}), "probs",
         ["column 'probs'", "row 8", "id 1008", "null"]),
        ("NaN", make_table(nan, ids), "probs",
         ["column 'probs'", "row 33", "id 1033", "non-finite"]),
        ("duplicate IDs", make_table(p, dup), "probs",
         ["column 'id'", "row 40", "duplicate ID 1005", "first at row 5"]),
        ("wrong dtype", pa.table({"id": ids, "probs": pa.array(strings)}), "probs",
         ["column 'probs'", "string>"]),
        ("wrong ID type", pa.table({"id": p[:, 0], "probs": fixed(p)}), "probs",
         ["column 'id'", "IDs of type float"]),
    ]  # fmt: skip


def test_bad_tables_are_refused_with_one_line(tmp_path, rng):
    for name, table, column, parts in bad_tables(rng):
        print(name)
        with pytest.raises((quarry.InvalidInput, quarry.InvalidArgument)) as e:
            quarry.select(table, 3, column=column, id_column="id", resources=CPU)
        for part in parts:
            assert part in str(e.value), (name, str(e.value))
        # From the command line: every case as Parquet (row groups of 10 rows), half as Arrow.
        files = [".parquet"] + ([".arrow"] if len(name) % 2 else [])
        for suffix in files:
            path = tmp_path / f"bad{suffix}"
            if suffix == ".parquet":
                pq.write_table(table, path, row_group_size=10)
            else:
                feather.write_feather(table, path)
            out = tmp_path / "out.jsonl"
            r = run_quarry("select", path, "--column", column, "--id-column", "id", "-k", 3,
                           "-o", out)  # fmt: skip
            assert r.returncode == 2, (name, r.stderr)
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("quarry: error: ")
            for part in parts:
                assert part in r.stderr, (name, suffix, r.stderr)
            assert not out.exists()
            assert not [f for f in os.listdir(tmp_path) if f.startswith(".quarry-")]


def test_usage_errors_exit_2(pool):
    d = pool["dir"]
    for args, part in [
        (["select", d / "pool.parquet", "-k", 3], "needs --column"),
        (["select", d / "pool.parquet", "--column", "probs", "-k", 3, "-o", d / "x.txt"],
         "--output must end in"),
        (["select", d / "pool.parquet", "--column", "probs", "-k", 3, "--frobnicate"],
         "unrecognized arguments"),
        (["select", d / "missing.parquet", "--column", "probs", "-k", 3], "No such file"),
        (["select", d / "pool.parquet", "--column", "probs", "-k", 5000], "k must be"),
        (["select", d / "pool.npy", "-k", 3, "--ids", d / "emb.npy"], "IDs of dtype float32"),
        (["select", d / "pool.parquet", "--column", "probs", "--id-column", "id", "-k", 3,
          "--labeled-ids", d / "ids.npy"], "the pool has no rows"),
    ]:  # fmt: skip
        r = run_quarry(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("quarry: error: ") and r.stderr.count("\n") == 1, r.stderr
        assert part in r.stderr, r.stderr


def test_outputs_are_atomic(tmp_path, rng):
    p = random_probs(rng, 100, 3)
    sel = quarry.select(p, 5, ids=np.arange(100) * 2, resources=CPU)
    for suffix in (".jsonl", ".csv", ".parquet", ".json", ".npy"):
        path = tmp_path / f"picks{suffix}"
        path.write_text("old")
        os.chmod(path, 0o640)
        with pytest.raises(RuntimeError), outputs.atomic_path(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("interrupted")
        assert path.read_text() == "old"
        outputs.write_selection(str(path), sel)
        assert os.stat(path).st_mode & 0o777 == 0o640  # a file replaced keeps its mode
        if suffix == ".npy":
            np.testing.assert_array_equal(np.load(path), sel.indices)
        else:
            got = read_picks(path)
            assert got["row"] == sel.indices.tolist()
            # CSV has no types: its IDs read back as text.
            ids = (sel.indices * 2).tolist()
            assert got["id"] == ([str(i) for i in ids] if suffix == ".csv" else ids)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"picks{s}" for s in (".jsonl", ".csv", ".parquet", ".json", ".npy")
    )


def test_plain_npy_commands_still_run_the_program(cli, tmp_path, rng):
    """Without table inputs, flags or outputs the console script execs the C++ program."""
    from quarry._cli import wants_tables

    assert not wants_tables(["select", "pool.npy", "-k", "3", "-o", "x.json"])
    assert wants_tables(["select", "pool.npy", "-k", "3", "-o", "x.jsonl"])
    assert wants_tables(["select", "pool.parquet", "-k", "3"])
    assert wants_tables(["select", "pool.npy", "--ids=ids.npy", "-k", "3"])
    assert not wants_tables(["merge", "a.parquet"])


def test_arrow_ipc_is_read_without_a_copy(tmp_path, rng):
    """A memory-mapped IPC file's fixed-size and plain list columns reach the engine as numpy
    views of the mapping: Arrow allocates nothing for them, and the array is the file's bytes."""
    p = random_probs(rng, 20_000, 16)
    t = pa.table({"probs": fixed(p), "plain": pa.array(list(p))})
    path = tmp_path / "pool.arrow"
    feather.write_feather(t, path, compression="uncompressed")
    del t
    source = tables._open(path)
    batch = next(iter(source.batches(["probs", "plain"], 0)))
    before = pa.total_allocated_bytes()
    for column in ("probs", "plain"):
        array = tables._read_column(batch.column(column), column, 0, None)
        np.testing.assert_array_equal(array, p)
        assert not array.flags.owndata and not array.flags.writeable  # a view of the mapping
    assert pa.total_allocated_bytes() - before < 4096


def test_a_bad_row_in_a_later_batch_is_named_by_its_table_row(tmp_path, rng):
    """Streamed Parquet: the engine sees batches (and, with labeled rows, a pool with rows taken
    out), yet the error names the row of the table and its ID."""
    p = random_probs(rng, 3000, 4)
    p[2345] = [0.5, 0.6, -0.1, 0.0]
    ids = np.arange(3000) + 10**12
    pq.write_table(make_table(p, ids), tmp_path / "bad.parquet", row_group_size=500)
    expected = "column 'probs': row 2345 (id 1000000002345): negative probability"
    with pytest.raises(quarry.InvalidInput, match="column 'probs': row 2345: negative"):
        quarry.score(tmp_path / "bad.parquet", column="probs", memory_budget=4096)
    for labeled in (None, [int(ids[3]), int(ids[2000]), int(ids[2999])]):
        with pytest.raises(quarry.InvalidInput, match=re.escape(expected)):
            quarry.select(tmp_path / "bad.parquet", 5, column="probs", id_column="id",
                          labeled_ids=labeled, memory_budget=4096)  # fmt: skip


def test_token_log_probabilities_with_a_lengths_column(rng):
    """An LLM pool: [N, T] token log-probabilities as a list column, lengths from a column."""
    n, t = 400, 9
    logprobs = np.log(rng.uniform(0.05, 1.0, size=(n, t))).astype(np.float32)
    lengths = rng.integers(1, t + 1, n).astype(np.int32)
    ids = np.arange(n) * 5
    table = pa.table({"id": ids, "lp": fixed(logprobs), "len": lengths})
    ref = quarry.select(logprobs, 7, measure="sequence_nll", lengths=lengths, resources=CPU)
    sel = quarry.select(table, 7, column="lp", id_column="id", lengths_column="len",
                        measure="sequence_nll", resources=CPU)  # fmt: skip
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_array_equal(sel.scores, ref.scores)
    np.testing.assert_array_equal(sel.ids, ids[ref.indices])
