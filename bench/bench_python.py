"""The cost of calling quarry from Python: quarry.select() against the same C++ call
(quarry::select on the same view and Resources, timed in C++ by quarry._quarry._time_select_call).

    python bench/bench_python.py                 # both cases
    OMP_NUM_THREADS=1 python bench/bench_python.py --case small

Rounds alternate the two loops; the overhead is the median over rounds of (Python - C++) per
call, so slow drifts of a busy machine cancel; min-max show the noise. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import quarry
from quarry import _quarry


def probabilities(rows: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((rows, classes), dtype=np.float32)
    for r0 in range(0, rows, 100_000):
        z = rng.standard_normal((min(100_000, rows - r0), classes), dtype=np.float32) * 2
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out[r0 : r0 + len(z)] = z / z.sum(axis=1, keepdims=True)
    return out


def measure(pool: np.ndarray, k: int, calls: int, rounds: int, res: quarry.Resources):
    quarry.select(pool, k, resources=res)  # warm up: threads, scratch memory
    cpp, python, overhead = [], [], []
    for _ in range(rounds):
        c = _quarry._time_select_call(res, pool, k, calls)
        start = time.perf_counter()
        for _ in range(calls):
            quarry.select(pool, k, resources=res)
        p = (time.perf_counter() - start) / calls
        cpp.append(c)
        python.append(p)
        overhead.append(p - c)
    return cpp, python, overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["small", "large", "all"], default="all")
    args = parser.parse_args()
    res = quarry.Resources("cpu")
    cases = []
    if args.case in ("small", "all"):
        cases.append(("1,000 x 10, k = 10", probabilities(1000, 10, 1), 10, 2000, 25))
    if args.case in ("large", "all"):
        cases.append(("1M x 100, k = 100", probabilities(1_000_000, 100, 2), 100, 1, 15))
    print(f"backend: {res.describe()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    print("| pool | C++ call: median (min-max) | Python call: median (min-max) | overhead |")
    print("|---|---|---|---|")

    def spread(times):
        low, mid, high = (1e6 * f(times) for f in (min, statistics.median, max))
        return f"{mid:,.1f} µs ({low:,.1f}-{high:,.1f})"

    for name, pool, k, calls, rounds in cases:
        cpp, python, overhead = measure(pool, k, calls, rounds, res)
        extra = statistics.median(overhead)
        print(
            f"| {name} | {spread(cpp)} | {spread(python)} | "
            f"{extra * 1e6:+,.1f} µs ({extra / statistics.median(cpp):+.1%}) |"
        )


if __name__ == "__main__":
    main()
