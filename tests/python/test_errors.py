"""The quarry program's catalogue of bad input (docs/cli.md: "Bad input that is refused"), through
Python: each raises the documented exception with the engine's message, and .row where the
program names a row."""

import numpy as np
import pytest

import quarry

CPU = quarry.Resources("cpu")
GOOD = np.full((20, 4), 0.25, dtype=np.float32)


def bad_row(pool, row, text, **kwargs):
    with pytest.raises(quarry.InvalidInput, match=text) as info:
        quarry.select(pool, 2, resources=CPU, **kwargs)
    assert info.value.row == row
    assert isinstance(info.value, ValueError) and isinstance(info.value, quarry.Error)
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.score(pool, resources=CPU, **kwargs)
    assert info.value.row == row


def with_value(row, col, value, pool=GOOD):
    pool = pool.copy()
    pool[row, col] = value
    return pool


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite(value):
    bad_row(with_value(13, 2, value), 13, "row 13: non-finite")


def test_negative_probability():
    bad_row(with_value(4, 0, -0.25), 4, "row 4: negative probability.*logits")


def test_probability_above_one():
    pool = with_value(7, 0, 1.5)
    pool[7, 1:] = -0.5 / 3
    bad_row(pool, 7, "row 7: ")


def test_rows_not_summing_to_one():
    bad_row(with_value(9, 1, 0.3), 9, "row 9: probabilities do not sum to 1")


def test_committee_member_row_not_summing_to_one():
    committee = np.full((3, 20, 4), 0.25, dtype=np.float32)
    committee[2, 11, 0] = 0.5
    bad_row(committee, 11, "row 11")


def test_votes_below_minus_one_or_past_classes():
    votes = np.zeros((3, 20), dtype=np.int32)
    votes[1, 5] = -2
    bad_row(votes, 5, "row 5: vote outside")
    votes[1, 5] = 4
    bad_row(votes, 5, "row 5: vote outside", classes=4)


@pytest.mark.parametrize("k", [0, -1, 21])
def test_k_out_of_range(k):
    with pytest.raises(quarry.InvalidArgument, match="k must be"):
        quarry.select(GOOD, k, resources=CPU)


@pytest.mark.parametrize("shape", [(12,), (2, 2, 2, 2), ()])
def test_arrays_not_2d_or_3d(shape):
    with pytest.raises(quarry.InvalidArgument, match="shape"):
        quarry.select(np.full(shape, 0.5, dtype=np.float32), 1, resources=CPU)


def test_measure_that_does_not_fit_the_pool():
    with pytest.raises(quarry.InvalidArgument, match="needs a committee"):
        quarry.select(GOOD, 2, measure="bald", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="scores a single model"):
        quarry.select(GOOD[None].repeat(2, 0), 2, measure="entropy", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="votes"):
        quarry.select(np.zeros((3, 5), np.int32), 2, measure="bald", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="unknown measure"):
        quarry.select(GOOD, 2, measure="nonsense", resources=CPU)


@pytest.mark.parametrize(
    ("array", "text"),
    [
        (GOOD.astype(np.complex64), "complex"),
        (GOOD.astype(np.uint8), "uint8"),
        (GOOD.astype(bool), "bool"),
        (np.empty((20, 4), dtype=object), "dtype object"),
        (np.zeros(20, dtype=[("a", "<f4"), ("b", "<f4")]), "unsupported dtype"),
        (GOOD.astype(">f4"), "big-endian"),
        (np.asfortranarray(np.full((20, 4), 0.25, np.float32)), "Fortran"),
        (GOOD[::-1], "negative strides"),
        ((GOOD * 2)[:, ::2], "contiguous"),
        (np.zeros((0, 4), np.float32), "no rows"),
        (np.zeros((4, 0), np.float32), "no classes"),
        ([[0.5, 0.5]], "expected an array"),
    ],
)
def test_arrays_quarry_cannot_read(array, text):
    with pytest.raises(quarry.InvalidArgument, match=text):
        quarry.select(array, 1, resources=CPU)


def test_bad_options():
    with pytest.raises(quarry.InvalidArgument, match="temperature"):
        quarry.select(GOOD, 2, logits=True, temperature=0.0, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="temperature"):
        quarry.select(GOOD, 2, logits=True, temperature=float("nan"), resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="layout"):
        quarry.select(GOOD[None], 2, layout="sideways", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="classes"):
        quarry.select(GOOD, 2, classes=3, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="exploration"):
        quarry.select(GOOD, 2, explore=1.5, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="unknown device"):
        quarry.Resources("tpu")
    with pytest.raises(quarry.InvalidArgument, match="memory size"):
        quarry.Resources("cpu", memory_budget="lots")
    with pytest.raises(quarry.InvalidArgument, match="memory_budget"):
        quarry.Resources("cpu", memory_budget=0)
    with pytest.raises(quarry.InvalidArgument, match="too small"):
        quarry.select(GOOD, 2, resources=quarry.Resources("cpu", memory_budget=10))


def test_embeddings():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(20, 3)).astype(np.float32)
    with pytest.raises(quarry.InvalidArgument, match="rows"):
        quarry.select(GOOD, 2, embeddings=emb[:10], resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="candidates"):
        quarry.select(GOOD, 4, embeddings=emb, candidates=2, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="D = 0|dimension|no classes|shape"):
        quarry.select(GOOD, 2, embeddings=np.zeros((20, 0), np.float32), resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="2-D float"):
        quarry.select(GOOD, 2, embeddings=np.zeros(20, np.float32), resources=CPU)
    bad = emb.copy()
    bad[6, 1] = np.nan
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(GOOD, 2, embeddings=bad, candidates=20, resources=CPU)
    assert info.value.row == 6


def test_cuda_without_cuda():
    if quarry.info()["gpus"]:
        pytest.skip("this machine has a GPU")
    with pytest.raises(quarry.BackendUnavailable) as info:
        quarry.Resources("cuda")
    assert isinstance(info.value, RuntimeError)
    assert str(info.value)


def test_exception_hierarchy():
    assert issubclass(quarry.InvalidInput, ValueError)
    assert issubclass(quarry.InvalidArgument, ValueError)
    assert issubclass(quarry.BackendUnavailable, RuntimeError)
    assert issubclass(quarry.OutOfMemory, MemoryError)
    for error in (quarry.InvalidInput, quarry.InvalidArgument, quarry.BackendUnavailable,
                  quarry.OutOfMemory, quarry.CudaError):  # fmt: skip
        assert issubclass(error, quarry.Error)


def test_kmeans_arguments():
    points = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    with pytest.raises(quarry.InvalidArgument, match="k must be"):
        quarry.kmeans(points, 0, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="initial_centroids"):
        quarry.kmeans(points, 4, initial_centroids=np.zeros((3, 3), np.float32), resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="initial_centroids"):
        quarry.kmeans(points, 4, initial_centroids="nonsense", resources=CPU)
    bad = points.copy()
    bad[17, 0] = np.inf
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.kmeans(bad, 4, resources=CPU)
    assert info.value.row == 17
