"""A progress callback is owned by the call it reports on: replacing Resources.progress while a
call over shards runs (from the callback itself, or from another thread) is safe, and a callback
that calls quarry on the same Resources gets a clear error instead of waiting forever. The crash
and the hang ran in child processes; they still do, so that a regression fails the test rather
than the run."""

import subprocess
import sys
import textwrap

import quarry  # noqa: F401  (the child imports the same package)


def run(code, timeout=120):
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout + p.stderr


SETUP = """
    import gc
    import threading
    import numpy as np
    import quarry
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(6000, 8))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    pool = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    shards = np.split(pool, [1500, 3000, 4500])
    want = quarry.select(pool, 9, resources=quarry.Resources("cpu"))
"""


def test_callback_replaces_itself_during_a_call_over_shards():
    rc, out = run(
        SETUP
        + """
    res = quarry.Resources("cpu", memory_budget=32 << 10)
    seen = []
    def progress(done, total):
        seen.append((done, total))
        # Drops the only reference to this callable (and to a fresh one each time).
        res.progress = lambda d, t: seen.append(("new", d, t))
        gc.collect()
    res.progress = progress
    del progress
    got = quarry.select(shards, 9, resources=res)
    assert (got.indices == want.indices).all()
    # The call kept the callback it started with, for every shard.
    assert seen == [(1500, 6000), (3000, 6000), (4500, 6000), (6000, 6000)], seen
    # The next call uses the callable set last.
    quarry.select(shards, 9, resources=res)
    assert seen[-1] == ("new", 6000, 6000), seen[-1]
    print("ok")
    """
    )
    assert rc == 0, out
    assert "ok" in out, out


def test_another_thread_replaces_the_callback_during_calls():
    rc, out = run(
        SETUP
        + """
    res = quarry.Resources("cpu", memory_budget=32 << 10)
    stop = threading.Event()
    def churn():
        i = 0
        while not stop.is_set():
            res.progress = (lambda d, t, i=i: None) if i % 2 else None
            i += 1
    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(30):
            got = quarry.select(shards, 9, resources=res)
            assert (got.indices == want.indices).all()
    finally:
        stop.set()
        t.join()
    print("ok")
    """
    )
    assert rc == 0, out
    assert "ok" in out, out


def test_callback_calling_quarry_on_the_same_resources_raises():
    rc, out = run(
        SETUP
        + """
    res = quarry.Resources("cpu", memory_budget=32 << 10)
    other = quarry.Resources("cpu")
    def progress(done, total):
        quarry.score(pool[:10], resources=other)  # another Resources: allowed
        quarry.score(pool[:10], resources=res)
    res.progress = progress
    try:
        quarry.select(shards, 9, resources=res)
    except quarry.InvalidArgument as e:
        assert "progress callback" in str(e), e
        print("refused:", e)
    # The Resources works afterwards.
    res.progress = None
    assert (quarry.select(shards, 9, resources=res).indices == want.indices).all()
    """,
        timeout=60,
    )
    assert rc == 0, out
    assert "refused:" in out, out
