"""quarry.dask.select on a dask.distributed LocalCluster of 2 worker processes: the same picks as
quarry.select on the concatenated pool, for every measure family, diversity and exploration, from
Dask arrays and from lists of .npy paths; and the same answer when a worker is killed mid-job."""

import os
import signal
import sys
import time

import numpy as np
import pytest

import quarry
from conftest import random_probs

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
import quarry.dask  # noqa: E402

# The workers cannot import this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CPU = quarry.Resources("cpu")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def assert_same(got, want):
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.reasons, want.reasons)
    np.testing.assert_array_equal(got.clusters, want.clusters)


ROW_CHUNKS = (1, 60, 2, 200, 1, 136)  # 400 rows: one-row chunks and chunks smaller than k


@pytest.mark.parametrize(
    "family, options",
    [
        ("single", dict(measure="entropy")),
        ("single", dict(measure="ratio", explore=0.25, seed=2)),
        ("committee", dict(measure="bald")),
        ("committee", dict(measure="consensus_entropy", explore=0.2, seed=8)),
        ("votes", dict(measure="variation_ratio")),
        ("single-diverse", dict(measure="margin", seed=4)),
        ("committee-diverse", dict(measure="kl_max", explore=0.25, seed=6)),
    ],
)
def test_dask_arrays_equal_the_whole_pool(client, rng, family, options):
    n, k = sum(ROW_CHUNKS), 16
    emb = None
    if family.startswith("single"):
        pool = random_probs(rng, n, 5)
        chunks = (ROW_CHUNKS, (5,))
    elif family.startswith("committee"):
        pool = random_probs(rng, 3, n, 4)
        chunks = ((3,), ROW_CHUNKS, (4,))
    else:
        pool = rng.integers(-1, 4, size=(7, n)).astype(np.int32)
        chunks = ((7,), ROW_CHUNKS)
    if family.endswith("diverse"):
        emb = rng.normal(size=(n, 6)).astype(np.float32)
    want = quarry.select(pool, k, embeddings=emb, resources=CPU, **options)
    got = quarry.dask.select(
        da.from_array(pool, chunks=chunks),
        k,
        embeddings=None if emb is None else da.from_array(emb, chunks=(100, 6)),
        device="cpu",
        split_every=2,
        **options,
    )
    assert_same(got, want)


def test_lists_of_npy_paths(client, tmp_path, rng):
    pool = random_probs(rng, 500, 8)
    emb = rng.normal(size=(500, 3)).astype(np.float32)
    paths, emb_paths = [], []
    for i, (a, b) in enumerate([(0, 1), (1, 250), (250, 251), (251, 500)]):
        paths.append(str(tmp_path / f"pool{i}.npy"))
        emb_paths.append(str(tmp_path / f"emb{i}.npy"))
        np.save(paths[-1], pool[a:b])
        np.save(emb_paths[-1], emb[a:b])
    for options in (dict(), dict(explore=0.3, seed=1)):
        want = quarry.select(pool, 20, embeddings=emb, resources=CPU, **options)
        got = quarry.dask.select(paths, 20, embeddings=emb_paths, device="cpu", **options)
        assert_same(got, want)


def slowly(block):
    time.sleep(0.25)
    return block


def test_a_worker_killed_mid_job_does_not_change_the_answer(client, rng):
    pool = random_probs(rng, 2400, 6)
    want = quarry.select(pool, 30, explore=0.2, seed=3, resources=CPU)
    # 24 chunks that each take a quarter of a second to arrive: the job runs for about 3 s.
    slow_pool = da.from_array(pool, chunks=(100, 6)).map_blocks(slowly, dtype=pool.dtype)
    future = client.compute(
        quarry.dask.select(slow_pool, 30, explore=0.2, seed=3, device="cpu", compute=False)
    )
    deadline = time.monotonic() + 30
    while not all(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    time.sleep(0.5)  # some chunks are done and held by the victim, others are running there
    assert not future.done()
    os.kill(pids[victim], signal.SIGKILL)
    assert_same(future.result(timeout=120), want)
    # The victim really went: its process is gone (its nanny started a new one).
    assert pids[victim] not in client.run(os.getpid).values()


def test_bad_pools_are_refused(client, rng):
    pool = da.from_array(random_probs(rng, 50, 3), chunks=(10, 3))
    with pytest.raises(quarry.InvalidArgument, match="split_every"):
        quarry.dask.select(pool, 3, split_every=1)
    with pytest.raises(quarry.InvalidArgument, match="embeddings"):
        quarry.dask.select(pool, 3, embeddings=["a.npy"], device="cpu")
    with pytest.raises(quarry.InvalidArgument, match="k must be"):
        quarry.dask.select(pool, 51, device="cpu")
