"""Sharded selection at scale: a pool of ROWS x CLASSES float32 probabilities in SHARDS .npy files,
selected through a dask.distributed LocalCluster (quarry.dask.select over the list of paths)
against one `quarry select` on the same data (the whole pool in one file, and the shard files),
plus the merge's own cost per shard and the bytes a partial carries.

    python bench/scale_dask.py                       # 50M x 10 f32 (2 GB) in 64 shards, k = 1000
    python bench/scale_dask.py --rows 2000000 --shards 8 --repeat 1   # a quick run

The data is written once under --dir and reused; timings are taken with the files in the page
cache (a first, untimed run warms it). Prints one table and writes --json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

import quarry
import quarry.dask


def write_pool(directory: Path, rows: int, classes: int, shards: int) -> tuple[Path, list[Path]]:
    """The pool as one .npy and as `shards` .npy files of consecutive rows (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    whole = directory / f"pool_{rows}x{classes}.npy"
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    parts = [directory / f"pool_{rows}x{classes}_{i:03d}of{shards}.npy" for i in range(shards)]
    if whole.exists() and all(p.exists() for p in parts):
        return whole, parts
    out = np.lib.format.open_memmap(whole, mode="w+", dtype=np.float32, shape=(rows, classes))
    rng = np.random.default_rng(2026)
    for i, part in enumerate(parts):
        n = int(bounds[i + 1] - bounds[i])
        z = rng.standard_normal((n, classes), dtype=np.float32) * 2
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        np.save(part, z)
        out[bounds[i] : bounds[i + 1]] = z
    out.flush()
    del out
    return whole, parts


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median wall seconds of `repeat` runs after one untimed warm-up run, and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("-k", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/quarry_scale"))
    ap.add_argument("--json", type=Path, default=Path("scale_dask.json"))
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    whole, parts = write_pool(args.dir, args.rows, args.classes, args.shards)
    program = Path(quarry.__file__).parent / "bin" / "quarry"
    gb = args.rows * args.classes * 4 / 1e9
    k = args.k

    def cli(*files):
        out = subprocess.run(
            [program, "select", *map(str, files), "-k", str(k), "--device", "cpu"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return np.array(out.split(), dtype=np.int64)

    t_whole, picks_whole = timed(lambda: cli(whole), args.repeat)
    t_files, picks_files = timed(lambda: cli(*parts), args.repeat)

    # One thread per worker, one OpenMP thread each: the workers share the cores, as the
    # program's OpenMP threads do.
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        Client(cluster),
    ):
        paths = [str(p) for p in parts]
        t_dask, sel = timed(lambda: quarry.dask.select(paths, k, device="cpu"), args.repeat)
    assert np.array_equal(sel.indices, picks_whole), "LocalCluster's picks differ"
    assert np.array_equal(picks_files, picks_whole), "the shard files' picks differ"

    # The merge alone: the shards' partials made here, then merged (and combined) in memory and
    # through their JSON, timed per shard.
    res = quarry.Resources("cpu")
    bounds = np.linspace(0, args.rows, args.shards + 1).astype(np.int64)
    partials = [
        quarry.select_partial(str(p), k, row_offset=int(b), pool_rows=args.rows, resources=res)
        for p, b in zip(parts, bounds[:-1], strict=True)
    ]
    t_merge, merged = timed(lambda: quarry.merge(partials, k, resources=res), max(args.repeat, 5))
    assert np.array_equal(merged.indices, picks_whole)
    t_combine, _ = timed(lambda: quarry.combine(partials), max(args.repeat, 5))
    texts = [p.to_json() for p in partials]
    t_json, _ = timed(lambda: quarry.merge(texts, k, resources=res), max(args.repeat, 5))
    json_bytes = statistics.mean(len(t) for t in texts)
    pickle_bytes = statistics.mean(len(pickle.dumps(p)) for p in partials)

    report = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "date": time.strftime("%Y-%m-%d"),
        "quarry": quarry.__version__,
        "pool": f"{args.rows} x {args.classes} f32 ({gb:.2f} GB) in {args.shards} shards",
        "k": k,
        "workers": args.workers,
        "quarry_select_one_file_s": t_whole,
        "quarry_select_shard_files_s": t_files,
        "dask_localcluster_s": t_dask,
        "merge_in_memory_s": t_merge,
        "merge_in_memory_per_shard_us": t_merge / args.shards * 1e6,
        "combine_per_shard_us": t_combine / args.shards * 1e6,
        "merge_from_json_per_shard_us": t_json / args.shards * 1e6,
        "partial_json_bytes": json_bytes,
        "partial_pickle_bytes": pickle_bytes,
    }
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"pool {report['pool']}, k = {k}, {report['machine']}")
    for name, t in (
        ("quarry select, one file", t_whole),
        (f"quarry select, {args.shards} shard files", t_files),
        (f"quarry.dask.select, {args.workers} workers", t_dask),
    ):
        print(f"  {name:32s} {t:8.3f} s  ({gb / t:.2f} GB/s)")
    print(
        f"  merge of {args.shards} partials           {t_merge * 1e3:8.3f} ms "
        f"({report['merge_in_memory_per_shard_us']:.1f} us per shard; from JSON "
        f"{report['merge_from_json_per_shard_us']:.1f} us; combine "
        f"{report['combine_per_shard_us']:.1f} us)"
    )
    print(f"  a partial: {json_bytes / 1e3:.1f} kB of JSON, {pickle_bytes / 1e3:.1f} kB pickled")


if __name__ == "__main__":
    main()
