"""The GIL is released while the engine works: another Python thread keeps running."""

import threading
import time

import numpy as np

import quarry


def test_other_threads_run_during_select():
    rng = np.random.default_rng(7)
    pool = rng.standard_normal((400_000, 64), dtype=np.float32)  # logits
    res = quarry.Resources("cpu")
    quarry.select(pool[:1000], 10, logits=True, resources=res)  # warm up
    done = threading.Event()
    timing = {}

    def work():
        start = time.perf_counter()
        for _ in range(10):
            quarry.select(pool, 100, logits=True, resources=res)
        timing["select"] = time.perf_counter() - start
        done.set()

    worker = threading.Thread(target=work)
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1  # pure Python: runs only while the worker does not hold the GIL
        time.sleep(0.001)
    worker.join()
    # Holding the GIL, the ten calls would let this loop run only between them: a handful of
    # ticks. Released, the loop ticks about once per millisecond throughout (a tenth of that
    # allows for a busy machine's late wake-ups).
    assert timing["select"] > 0.05, "the calls were too short to measure anything"
    assert ticks >= 20 and ticks > 0.1 * timing["select"] / 0.001, (ticks, timing)


def test_threads_share_one_resources_and_each_their_own():
    rng = np.random.default_rng(8)
    pools = [rng.standard_normal((20_000, 10), dtype=np.float32) for _ in range(4)]
    want = [quarry.select(p, 50, logits=True).indices for p in pools]
    shared = quarry.Resources("cpu")
    results = {}

    def run(i, resources):
        for _ in range(5):
            got = quarry.select(pools[i], 50, logits=True, resources=resources).indices
            results.setdefault(i, []).append(np.array_equal(got, want[i]))

    threads = [threading.Thread(target=run, args=(i, shared if i % 2 else None)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(r) and len(r) == 5 for r in results.values()) and len(results) == 4
