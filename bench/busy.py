"""The CPU backend on an idle and on a busy machine: the default thread count against one thread.

Each job runs with ``quarry.Resources(device="cpu")`` (the default: every CPU this process may
use) and with ``threads=1``, alternating, first on an idle machine and then under a synthetic
load of one busy-looping process per CPU. Prints a Markdown table of medians (and numpy's time
for the same selection where there is a numpy equivalent). With ``--file``, also times the whole
``quarry select`` process on a page-cached ``.npy`` against ``dd`` of the same file.

    python bench/busy.py                      # every job, idle and loaded
    python bench/busy.py --jobs margin-1k,coreset --repeats 50
    python bench/busy.py --file --cli build/quarry
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import quarry


def spin() -> None:
    while True:
        pass


class Load:
    """One busy-looping process per CPU this process may use, while the block runs."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.workers: list[mp.Process] = []

    def __enter__(self) -> Load:
        self.workers = [mp.Process(target=spin, daemon=True) for _ in range(self.processes)]
        for w in self.workers:
            w.start()
        time.sleep(0.5)  # let the scheduler settle
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            w.join()


def probabilities(rows: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.random((rows, classes), dtype=np.float32) + 1e-3
    p /= p.sum(axis=1, keepdims=True)
    return p


def numpy_margin_top(p: np.ndarray, k: int) -> np.ndarray:
    part = np.partition(p, -2, axis=1)
    score = -(part[:, -1] - part[:, -2])
    top = np.argpartition(-score, k)[:k]
    return top[np.argsort(-score[top], kind="stable")]


def numpy_entropy_top(p: np.ndarray, k: int) -> np.ndarray:
    score = -(p * np.log(p)).sum(axis=1)
    top = np.argpartition(-score, k)[:k]
    return top[np.argsort(-score[top], kind="stable")]


def make_jobs(seed: int) -> dict:
    """name -> (quarry call taking Resources, numpy call or None, repeats scale)."""
    jobs = {}
    for label, rows in (("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)):
        p = probabilities(rows, 10, seed)
        for measure, reference in (("margin", numpy_margin_top), ("entropy", numpy_entropy_top)):
            jobs[f"{measure}-{label}"] = (
                lambda r, p=p, measure=measure: quarry.select(p, 10, measure=measure, resources=r),
                lambda p=p, reference=reference: reference(p, 10),
                1 if rows < 1_000_000 else 10,
            )
    rng = np.random.default_rng(seed + 1)
    emb = rng.standard_normal((10_000, 64), dtype=np.float32)
    p = probabilities(10_000, 10, seed + 2)
    jobs["coreset"] = (
        lambda r: quarry.select(p, 100, strategy="coreset", embeddings=emb, resources=r),
        None,
        20,
    )
    jobs["badge"] = (
        lambda r: quarry.select(p, 100, strategy="badge", features=emb, resources=r),
        None,
        20,
    )
    return jobs


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run_jobs(names: list[str], repeats: int, seed: int, default_only: bool) -> list[tuple]:
    """(job, default ms, one-thread ms, numpy ms or None) per job, medians of alternating rounds."""
    jobs = make_jobs(seed)
    default = quarry.Resources(device="cpu")
    rows = []
    for name in names:
        call, reference, scale = jobs[name]
        n = max(3, repeats // scale)
        timed = {"default": functools.partial(call, default)}
        if not default_only:  # a build without Resources(threads=): OMP_NUM_THREADS=1 instead
            timed["one"] = functools.partial(call, quarry.Resources(device="cpu", threads=1))
        if reference is not None:
            timed["numpy"] = reference
        for job in timed.values():  # warm: pools, pages, the thread pool
            job()
        # Alternating rounds, so that every setting sees the same machine.
        rounds = [{key: median_ms(job, n) for key, job in timed.items()} for _ in range(5)]
        medians = {key: statistics.median(r[key] for r in rounds) for key in timed}
        rows.append(
            (name, medians["default"], medians.get("one", medians["default"]), medians.get("numpy"))
        )
    return rows


def file_case(cli: str, rows: int, classes: int, measures: list[str], repeats: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pool.npy")
        p = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, classes))
        step = 100_000
        for i in range(0, rows, step):
            p[i : i + step] = probabilities(min(step, rows - i), classes, i)
        del p

        def timed(argv: list[str]) -> float:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - start)
            return 1e3 * statistics.median(times)

        dd = ["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"]
        timed(dd)  # page-cached from here on
        out = [("dd", timed(dd))]
        for m in measures:
            argv = [cli, "select", path, "-k", "1000", "--measure", m, "--device", "cpu", "-o", "-"]
            out.append((m, timed(argv)))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    everything = list(make_jobs(0))
    parser.add_argument("--jobs", default=",".join(everything))
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing of a 1k job")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-load", action="store_true", help="idle machine only")
    parser.add_argument(
        "--default-only", action="store_true", help="for builds without Resources(threads=)"
    )
    parser.add_argument("--file", action="store_true", help="also time quarry select against dd")
    parser.add_argument("--cli", default="build/quarry")
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--file-classes", type=int, default=100)
    args = parser.parse_args()
    names = [n for n in args.jobs.split(",") if n]
    unknown = set(names) - set(everything)
    if unknown:
        sys.exit(f"unknown jobs: {sorted(unknown)}; choose from {everything}")
    cpus = len(os.sched_getaffinity(0))
    print(f"seed {args.seed}; {cpus} CPUs; {quarry.Resources(device='cpu').describe()}")
    conditions = [("idle", None)] if args.no_load else [("idle", None), ("loaded", cpus)]
    print("\n| job | machine | default threads (ms) | one thread (ms) | default / one |", end="")
    print(" numpy (ms) |\n|---|---|---|---|---|---|")
    for label, load in conditions:
        if load:
            with Load(load):
                results = run_jobs(names, args.repeats, args.seed, args.default_only)
        else:
            results = run_jobs(names, args.repeats, args.seed, args.default_only)
        for name, a, b, c in results:
            numpy_ms = f"{c:.3f}" if c is not None else "-"
            print(f"| {name} | {label} | {a:.3f} | {b:.3f} | {a / b:.2f} | {numpy_ms} |")
        sys.stdout.flush()
    if args.file:
        # Idle only: the file case compares quarry with dd, not thread counts.
        print(f"\n| whole process, {args.file_rows:,} x {args.file_classes}, 1000 picks |", end="")
        print(" median (ms) | / dd |\n|---|---|---|")
        results = file_case(args.cli, args.file_rows, args.file_classes, ["entropy", "margin"], 11)
        dd_ms = results[0][1]
        for name, ms in results:
            print(f"| {name} | {ms:.1f} | {ms / dd_ms:.2f} |")


if __name__ == "__main__":
    main()
