"""Python results equal the quarry program's on the same arrays: indices bitwise, scores to the
float, for every kind of pool and every option the program has."""

import json

import numpy as np
import pytest

import quarry
from conftest import random_probs

CPU = quarry.Resources("cpu")


def cli_select(cli, tmp_path, pool, k, *flags, embeddings=None):
    np.save(tmp_path / "pool.npy", pool)
    extra = []
    if embeddings is not None:
        np.save(tmp_path / "emb.npy", embeddings)
        extra = ["--embeddings", tmp_path / "emb.npy"]
    out = tmp_path / "picks.json"
    cli("select", tmp_path / "pool.npy", "-k", k, *flags, *extra, "--device", "cpu", "-o", out)
    return json.loads(out.read_text())


def cli_score(cli, tmp_path, pool, *flags):
    np.save(tmp_path / "pool.npy", pool)
    cli("score", tmp_path / "pool.npy", *flags, "--device", "cpu", "-o", tmp_path / "s.npy")
    return np.load(tmp_path / "s.npy")


def assert_same(selection, expected):
    np.testing.assert_array_equal(selection.indices, expected["indices"])
    np.testing.assert_array_equal(selection.scores, np.float32(expected["scores"]))
    assert list(selection.reasons) == expected["reasons"]
    assert selection.measure == expected["measure"]
    if "clusters" in expected:
        np.testing.assert_array_equal(selection.clusters, expected["clusters"])


@pytest.mark.parametrize(
    "measure", ["vote_entropy", "consensus_entropy", "kl_max", "bald", "variation_ratio", None]
)
def test_committee_members_first(tmp_path, cli, rng, measure):
    pool = random_probs(rng, 4, 1500, 6)
    flags = ["--measure", measure] if measure else []
    expected = cli_select(cli, tmp_path, pool, 40, *flags)
    assert_same(quarry.select(pool, 40, measure=measure, resources=CPU), expected)
    np.testing.assert_array_equal(
        quarry.score(pool, measure, resources=CPU), cli_score(cli, tmp_path, pool, *flags)
    )


def test_committee_rows_first_logits_with_temperature(tmp_path, cli, rng):
    pool = (rng.normal(size=(1200, 5, 4)) * 3).astype(np.float32)  # [N, M, C] logits
    flags = ["--measure", "bald", "--layout", "rows-first", "--logits", "--temperature", "2.5"]
    expected = cli_select(cli, tmp_path, pool, 25, *flags)
    got = quarry.select(
        pool, 25, measure="bald", layout="rows-first", logits=True, temperature=2.5, resources=CPU
    )
    assert_same(got, expected)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_votes(tmp_path, cli, rng, dtype):
    votes = rng.integers(-1, 5, size=(7, 900)).astype(dtype)
    for measure in ["vote_entropy", "variation_ratio"]:
        expected = cli_select(cli, tmp_path, votes, 30, "--measure", measure, "--classes", 5)
        got = quarry.select(votes, 30, measure=measure, classes=5, resources=CPU)
        assert_same(got, expected)


@pytest.mark.parametrize("measure", ["entropy", "margin", "least_confidence", "ratio"])
def test_logits_and_float16(tmp_path, cli, rng, measure):
    logits = (rng.normal(size=(2500, 9)) * 4).astype(np.float16)
    expected = cli_select(cli, tmp_path, logits, 60, "--measure", measure, "--logits")
    assert_same(quarry.select(logits, 60, measure=measure, logits=True, resources=CPU), expected)


def test_diversity_and_exploration(tmp_path, cli, rng):
    pool = random_probs(rng, 3000, 8)
    emb = rng.normal(size=(3000, 16)).astype(np.float32)
    flags = ["--candidates", 400, "--explore", 0.2, "--seed", 11, "--kmeans-iters", 10]
    expected = cli_select(cli, tmp_path, pool, 20, *flags, embeddings=emb)
    got = quarry.select(
        pool,
        20,
        embeddings=emb,
        candidates=400,
        explore=0.2,
        seed=11,
        kmeans_iters=10,
        resources=CPU,
    )
    assert_same(got, expected)
    assert set(got.reasons) <= {"cluster", "rank", "exploration"}
    assert list(got.reasons).count("exploration") == 4


def test_memory_budget_chunks_give_the_same_answer(tmp_path, cli, rng):
    pool = random_probs(rng, 20000, 10)
    expected = cli_select(cli, tmp_path, pool, 100, "--memory-budget", "64K")
    calls = []
    res = quarry.Resources("cpu", memory_budget="64K", progress=lambda d, t: calls.append((d, t)))
    assert res.memory_budget == 64 * 1024
    assert_same(quarry.select(pool, 100, resources=res), expected)
    assert len(calls) > 1 and calls[-1] == (20000, 20000)
