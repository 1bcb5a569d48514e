"""Rows per second of quarry.select from table pools (Parquet streamed under a memory budget,
Parquet whole, Arrow IPC memory-mapped) beside the same pool as an in-memory array, and the
output writers. Run: python bench/bench_tables.py [--rows 1000000] [--classes 10]."""

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

import quarry
from quarry import outputs


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, c, k = args.rows, args.classes, args.k
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) * 10 + 7
    table = pa.table({
        "id": ids, "probs": pa.FixedSizeListArray.from_arrays(pa.array(p.reshape(-1)), c),
    })  # fmt: skip
    cpu = quarry.Resources("cpu")
    with tempfile.TemporaryDirectory() as d:
        parquet = os.path.join(d, "pool.parquet")
        arrow = os.path.join(d, "pool.arrow")
        pq.write_table(table, parquet, row_group_size=n // 8)
        feather.write_feather(table, arrow, compression="uncompressed")
        mb = p.nbytes / 1e6
        print(f"pool {n} x {c} float32 ({mb:.0f} MB), k = {k}; Parquet (snappy, 8 row groups) "
              f"{os.path.getsize(parquet) / 1e6:.0f} MB; best of {args.repeat}")  # fmt: skip
        ref = quarry.select(p, k, resources=cpu)
        cases = [
            ("numpy array in memory", lambda: quarry.select(p, k, resources=cpu)),
            ("pyarrow.Table with an id column", lambda: quarry.select(
                table, k, column="probs", id_column="id", resources=cpu)),
            ("Arrow IPC file (memory-mapped), ids", lambda: quarry.select(
                arrow, k, column="probs", id_column="id", resources=cpu)),
            ("Parquet, batches of 64 Ki rows, ids", lambda: quarry.select(
                parquet, k, column="probs", id_column="id", resources=cpu)),
            ("Parquet streamed, 64 MB budget, ids", lambda: quarry.select(
                parquet, k, column="probs", id_column="id", memory_budget=64 << 20,
                device="cpu")),
            ("Parquet streamed, 8 MB budget, ids", lambda: quarry.select(
                parquet, k, column="probs", id_column="id", memory_budget=8 << 20,
                device="cpu")),
        ]  # fmt: skip
        for name, fn in cases:
            seconds, sel = best_of(fn, args.repeat)
            assert np.array_equal(sel.indices, ref.indices)
            print(f"  {name:40s} {seconds * 1000:8.1f} ms  {n / seconds / 1e6:6.2f} M rows/s")
        sel = quarry.select(table, k, column="probs", id_column="id", resources=cpu)
        for suffix in (".jsonl", ".csv", ".parquet"):
            path = os.path.join(d, "picks" + suffix)
            seconds, _ = best_of(lambda path=path: outputs.write_selection(path, sel), args.repeat)
            print(f"  write {k} picks as {suffix:8s}              {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
