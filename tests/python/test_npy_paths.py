""".npy paths given to the Python functions are read with the command line's reader (quarry_io):
a FIFO is refused without blocking, a text file gets quarry's error, and a file truncated during
the call is never a SIGBUS. Each case runs in its own process: before the reader was shared, these
hung, crashed or raised numpy's errors."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import quarry
from conftest import random_probs


def run(code, timeout=60):
    """Runs `code` in a fresh interpreter; returns (returncode, stdout + stderr)."""
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout + p.stderr


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pool.npy"
    os.mkfifo(fifo)
    try:
        rc, out = run(
            f"""
            import quarry
            try:
                quarry.score([{str(fifo)!r}], resources=quarry.Resources("cpu"))
            except quarry.InvalidInput as e:
                print("refused:", e)
            """,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("opening a FIFO blocked")
    assert rc == 0, out
    assert "refused:" in out and "FIFO" in out, out


def test_text_file_gets_quarrys_error(tmp_path):
    path = tmp_path / "pool.npy"
    path.write_text("0.5, 0.5\n0.1, 0.9\n")
    with pytest.raises(quarry.InvalidInput, match="not a .npy file"):
        quarry.score([path], resources=quarry.Resources("cpu"))


def test_float64_file_is_read(tmp_path):
    rng = np.random.default_rng(3)
    pool = random_probs(rng, 50, 4).astype(np.float64)
    np.save(tmp_path / "a.npy", pool[:20])
    np.save(tmp_path / "b.npy", pool[20:])
    cpu = quarry.Resources("cpu")
    got = quarry.select([tmp_path / "a.npy", str(tmp_path / "b.npy")], 7, resources=cpu)
    want = quarry.select(pool, 7, resources=cpu)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)


def test_file_truncated_during_the_call_is_not_sigbus(tmp_path):
    # Two shards scored in turn: after the first shard's chunks, the progress callback
    # truncates the second shard's file, before the engine reads it. A memory map of it would
    # raise SIGBUS; quarry has read it already (or refuses it), and answers as for the old file.
    rng = np.random.default_rng(8)
    pool = random_probs(rng, 4000, 16)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, pool[:2000])
    np.save(b, pool[2000:])
    want = quarry.score(pool, resources=quarry.Resources("cpu"))
    np.save(tmp_path / "want.npy", want)
    rc, out = run(
        f"""
        import os
        import numpy as np
        import quarry
        calls = []
        def progress(done, total):
            calls.append(done)
            if len(calls) == 1:
                os.truncate({str(b)!r}, 200)
        res = quarry.Resources("cpu", memory_budget=64 << 10, progress=progress)
        try:
            got = quarry.score([{str(a)!r}, {str(b)!r}], resources=res)
        except quarry.InvalidInput as e:
            print("refused:", e)
        else:
            assert calls[-1] == 4000, calls
            np.testing.assert_array_equal(got, np.load({str(tmp_path / "want.npy")!r}))
            print("same scores")
        """
    )
    assert rc != -signal.SIGBUS, "SIGBUS: the truncated file was memory-mapped"
    assert rc == 0, out
    assert "same scores" in out or "refused:" in out, out
