"""Arrays quarry reads in place: dtypes, strided rows, float64 converted as read, PyTorch CPU
tensors; and the Resources object."""

import subprocess
import sys

import numpy as np
import pytest

import quarry
from conftest import random_probs

CPU = quarry.Resources("cpu")


def test_strided_rows_are_read_in_place(rng):
    padded = random_probs(rng, 500, 12)
    view = padded[:, :8]  # rows 12 values apart, 8 read: the first 8 are not a distribution
    view = view / view.sum(axis=1, keepdims=True)
    padded[:, :8] = view
    strided = padded[:, :8]
    assert not strided.flags.c_contiguous
    want = quarry.select(np.ascontiguousarray(strided), 25, resources=CPU)
    got = quarry.select(strided, 25, resources=CPU)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    every_other_row = padded[::2, :8]
    np.testing.assert_array_equal(
        quarry.score(every_other_row, resources=CPU),
        quarry.score(np.ascontiguousarray(every_other_row), resources=CPU),
    )


def test_float64_is_converted_exactly_as_float32(rng):
    # 200,000 x 30 float64 is 24 MB of float32: converted in two chunks.
    wide = random_probs(rng, 200_000, 30, dtype=np.float64)
    narrow = wide.astype(np.float32)
    for measure in ["entropy", "margin"]:
        want = quarry.select(narrow, 50, measure=measure, explore=0.1, resources=CPU)
        got = quarry.select(wide, 50, measure=measure, explore=0.1, resources=CPU)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(
        quarry.score(wide, resources=CPU), quarry.score(narrow, resources=CPU)
    )
    wide[150_001, 3] = np.inf
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(wide, 5, resources=CPU)
    assert info.value.row == 150_001


def test_float16_and_int_votes_dtypes(rng):
    probs = random_probs(rng, 300, 4)
    half = probs.astype(np.float16)
    # float16 decodes exactly to float32, and rows are scored from the decoded values.
    np.testing.assert_array_equal(quarry.score(half), quarry.score(half.astype(np.float32)))
    votes32 = rng.integers(-1, 3, size=(5, 200)).astype(np.int32)
    np.testing.assert_array_equal(quarry.score(votes32), quarry.score(votes32.astype(np.int64)))


def test_torch_cpu_tensors_are_read_in_place(rng):
    torch = pytest.importorskip("torch")
    probs = random_probs(rng, 800, 6)
    tensor = torch.from_numpy(probs)
    want = quarry.select(probs, 30, resources=CPU)
    got = quarry.select(tensor, 30, resources=CPU)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    scores = quarry.score(tensor, resources=CPU)
    assert isinstance(scores, np.ndarray)  # host input, numpy output
    # bfloat16 has no numpy dtype: only DLPack carries it.
    bf16 = torch.from_numpy(probs).to(torch.bfloat16)
    np.testing.assert_allclose(
        quarry.score(bf16, logits=True, resources=CPU),
        quarry.score(bf16.float().numpy(), logits=True, resources=CPU),
        rtol=0,
    )
    strided = torch.from_numpy(np.ascontiguousarray(np.pad(probs, ((0, 0), (0, 3)))))[:, :6]
    np.testing.assert_array_equal(quarry.score(strided, resources=CPU), scores)


def test_kmeans(rng):
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    points = np.concatenate([c + rng.normal(size=(100, 2)).astype(np.float32) for c in centers])
    result = quarry.kmeans(points, 3, seed=1, resources=CPU)
    assert result.centroids.shape == (3, 2)
    assert result.assignments.shape == (300,)
    # Each true cluster lands in one k-means cluster, and the three are different.
    labels = [set(result.assignments[i * 100 : (i + 1) * 100]) for i in range(3)]
    assert all(len(s) == 1 for s in labels) and len(set.union(*labels)) == 3
    nearest = ((points[:, None, :] - result.centroids[None]) ** 2).sum(-1)
    np.testing.assert_allclose(result.inertia, nearest.min(1).sum(), rtol=1e-4)
    again = quarry.kmeans(points, 3, initial_centroids=result.centroids, resources=CPU)
    np.testing.assert_array_equal(again.assignments, result.assignments)


def test_resources():
    res = quarry.Resources("cpu", memory_budget="1M")
    assert res.device == "cpu"
    assert res.memory_budget == 1 << 20
    assert res.cuda_stream == 0
    assert res.describe().startswith("cpu")
    res.memory_budget = 4096
    assert res.memory_budget == 4096
    res.memory_budget = None
    assert res.memory_budget > 1 << 40  # the CPU default: no cap
    info = quarry.info()
    assert info["version"] == quarry.__version__
    assert isinstance(info["built_with_cuda"], bool)
    assert isinstance(info["gpus"], list)


def test_progress_callback_exception_propagates(rng):
    pool = random_probs(rng, 5000, 4)

    def stop(done, total):
        raise KeyboardInterrupt(f"stopped at {done} of {total}")

    res = quarry.Resources("cpu", memory_budget="16K", progress=stop)
    with pytest.raises(KeyboardInterrupt, match="stopped at"):
        quarry.select(pool, 5, resources=res)
    res.progress = None
    assert res.progress is None
    assert len(quarry.select(pool, 5, resources=res)) == 5


def test_nothing_leaks_at_exit():
    # A progress callable that refers back to its Resources (through the module's globals) is a
    # cycle the collector must be able to free; nanobind reports leftovers at exit.
    code = (
        "import numpy as np, quarry\n"
        "r = quarry.Resources('cpu', progress=lambda d, t: None)\n"
        "quarry.select(np.full((10, 4), 0.25, np.float32), 2)\n"
        "quarry.select(np.full((10, 4), 0.25, np.float32), 2, resources=r)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "leaked" not in out.stderr, out.stderr
