"""CPU threads: Resources(threads=...), --threads, the process's CPU affinity, and fork()."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import quarry


def pool(rows=200_000, classes=10, seed=5):
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(classes), size=rows).astype(np.float32)


def test_threads_setting_is_kept_checked_and_described():
    res = quarry.Resources("cpu", threads=3)
    assert res.threads == 3
    assert res.describe() == "cpu (3 threads)"
    res.threads = None
    assert res.threads is None
    assert res.describe() == f"cpu ({quarry.Resources('cpu').describe().split('(')[1]}"
    for bad in (-1, 4097):
        with pytest.raises(quarry.InvalidArgument, match="threads"):
            quarry.Resources("cpu", threads=bad)
    with pytest.raises(TypeError, match="threads"):
        quarry.Resources("cpu", threads=1.5)


@pytest.mark.parametrize("measure", ["margin", "entropy", "bald"])
def test_picks_are_the_same_on_one_thread_and_many(measure):
    x = pool()
    if measure == "bald":
        x = np.stack([x, pool(seed=6), pool(seed=7)])
    one = quarry.select(x, 500, measure=measure, resources=quarry.Resources("cpu", threads=1))
    many = quarry.select(x, 500, measure=measure, resources=quarry.Resources("cpu", threads=6))
    np.testing.assert_array_equal(one.indices, many.indices)
    np.testing.assert_array_equal(one.scores, many.scores)


def test_cli_threads_flag(cli, tmp_path):
    path = tmp_path / "pool.npy"
    np.save(path, pool())
    one = cli("select", path, "-k", "50", "--device", "cpu", "--threads", "1").stdout
    many = cli("select", path, "-k", "50", "--device", "cpu", "--threads", "5").stdout
    assert one == many and len(one.split()) == 50
    for bad in ("-1", "4097", "two"):
        result = cli("select", path, "-k", "5", "--threads", bad, check=False)
        assert result.returncode == 2, result.stderr
        assert "--threads" in result.stderr


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_the_thread_count_follows_the_cpu_affinity(cli):
    cpus = sorted(os.sched_getaffinity(0))
    script = "import quarry; print(quarry.Resources('cpu').describe())"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus[:1]),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cpu (1 thread)"
    info = subprocess.run(
        ["taskset", "-c", str(cpus[0]), str(cli("info").args[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if info.returncode == 0:  # taskset is in util-linux; absent on some minimal systems
        assert "cpu: 1 thread;" in info.stdout


_FORKED = textwrap.dedent(
    """
    import multiprocessing as mp
    import numpy as np
    import quarry

    x = np.random.default_rng(0).dirichlet(np.ones(8), size=400_000).astype(np.float32)
    res = quarry.Resources("cpu", threads=4)

    def picks():
        # Scoring on the pool's helpers, and k-means on FAISS's OpenMP threads.
        top = quarry.select(x, 20, resources=res).indices.tolist()
        clusters = quarry.kmeans(x[:20_000], 8, resources=res).assignments.tolist()
        return top, clusters

    def work(queue):
        queue.put(picks())

    if __name__ == "__main__":
        parent = picks()
        queue = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(target=work, args=(queue,))
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            raise SystemExit("the child hung")
        assert queue.get(timeout=30) == parent
        print("same picks")
    """
)


def test_a_forked_child_starts_its_own_helpers(tmp_path):
    script = tmp_path / "forked.py"
    script.write_text(_FORKED)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "same picks" in result.stdout
