"""Pools in shards from Python: lists of arrays or .npy paths, select_partial / merge / combine,
pickled and JSON partials, and partials from the quarry program, all equal to the single pool."""

import json
import pickle

import numpy as np
import pytest

import quarry
from conftest import random_probs

CPU = quarry.Resources("cpu")


def assert_same(got, want):
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.reasons, want.reasons)
    np.testing.assert_array_equal(got.clusters, want.clusters)
    assert got.measure == want.measure


def cut(array, sizes, axis=0):
    """The array split into consecutive pieces of `sizes` rows along `axis`."""
    assert sum(sizes) == array.shape[axis]
    return np.split(array, np.cumsum(sizes)[:-1], axis=axis)


# (pool, rows axis, select options): one of each measure family, diversity and exploration.
def cases(rng):
    n = 240
    probs = random_probs(rng, n, 6)
    committee = random_probs(rng, 4, n, 3)
    votes = rng.integers(-1, 3, size=(5, n)).astype(np.int32)
    votes[:, 7] = -1  # nobody voted: scores -inf
    emb = rng.normal(size=(n, 4)).astype(np.float32)
    return [
        (probs, 0, dict(measure="margin"), None),
        (committee, 1, dict(measure="bald"), None),
        (votes, 1, dict(measure="vote_entropy"), None),
        (probs, 0, dict(seed=3), emb),
        (probs, 0, dict(explore=0.25, seed=5), None),
        (committee, 1, dict(measure="kl_max", explore=0.3, seed=9), emb),
    ]


SIZES = [1, 3, 100, 1, 135]  # one-row shards and shards smaller than k


@pytest.mark.parametrize("case", range(6))
def test_lists_of_arrays_and_paths_equal_the_whole_pool(tmp_path, rng, case):
    pool, axis, options, emb = cases(rng)[case]
    k = 12
    want = quarry.select(pool, k, embeddings=emb, resources=CPU, **options)
    shards = cut(pool, SIZES, axis)
    emb_shards = None if emb is None else cut(emb, SIZES)
    assert_same(quarry.select(shards, k, embeddings=emb_shards, resources=CPU, **options), want)
    paths, emb_paths = [], []
    for i, shard in enumerate(shards):
        paths.append(tmp_path / f"s{i}.npy")
        np.save(paths[-1], shard)
        if emb is not None:
            emb_paths.append(str(tmp_path / f"e{i}.npy"))
            np.save(emb_paths[-1], emb_shards[i])
    got = quarry.select(paths, k, embeddings=emb_paths or None, resources=CPU, **options)
    assert_same(got, want)
    np.testing.assert_array_equal(
        quarry.score(paths, measure=options.get("measure"), resources=CPU),
        quarry.score(pool, measure=options.get("measure"), resources=CPU),
    )


@pytest.mark.parametrize("case", range(6))
def test_partials_merged_equal_the_whole_pool(rng, case):
    pool, axis, options, emb = cases(rng)[case]
    k = 12
    n = pool.shape[axis]
    want = quarry.select(pool, k, embeddings=emb, resources=CPU, **options)
    offsets = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    partials = [
        quarry.select_partial(
            shard,
            k,
            row_offset=int(offset),
            pool_rows=n,
            embeddings=None if emb is None else emb[offset : offset + len(emb_rows)],
            resources=CPU,
            **options,
        )
        for shard, emb_rows, offset in zip(
            cut(pool, SIZES, axis), cut(np.arange(n), SIZES), offsets, strict=True
        )
    ]
    # What travels: k rows, or max(k, candidates) with diversity, and <= k exploration scores.
    for p, rows in zip(partials, SIZES, strict=True):
        kept = k if emb is None else 10 * (k - round(options.get("explore", 0) * k))
        assert len(p.indices) == min(rows, max(k, kept))
        assert len(p.explore_rows) <= (k if options.get("explore") else 0)
    shuffled = [pickle.loads(pickle.dumps(p)) for p in reversed(partials)]
    assert_same(quarry.merge(shuffled, k, resources=CPU), want)
    assert_same(quarry.merge([p.to_json() for p in partials], k, resources=CPU), want)
    tree = [quarry.combine(partials[:2]), quarry.combine(partials[2:])]
    assert_same(quarry.merge(tree, k, resources=CPU), want)
    fewer = quarry.select(pool, 5, embeddings=emb, resources=CPU, **options)
    assert_same(quarry.merge(partials, 5, resources=CPU), fewer)


def test_partials_of_the_program_merge_in_python(tmp_path, cli, rng):
    pool = random_probs(rng, 300, 5)
    parts = []
    for i, (offset, rows) in enumerate([(0, 120), (120, 1), (121, 179)]):
        np.save(tmp_path / f"s{i}.npy", pool[offset : offset + rows])
        parts.append(tmp_path / f"p{i}.json")
        cli(
            "select", tmp_path / f"s{i}.npy", "-k", 20, "--explore", 0.2, "--seed", 4,
            "--row-offset", offset, "--pool-rows", 300, "--device", "cpu", "-o", parts[-1],
        )  # fmt: skip
    want = quarry.select(pool, 20, explore=0.2, seed=4, resources=CPU)
    assert_same(quarry.merge(parts, 20, resources=CPU), want)
    # And a Python partial written as JSON merges with the program.
    partial = quarry.select_partial(
        pool[121:], 20, row_offset=121, pool_rows=300, explore=0.2, seed=4, resources=CPU
    )
    (tmp_path / "py.json").write_text(partial.to_json())
    for threads in ("0", "1", "3"):
        merged = cli("merge", parts[0], parts[1], tmp_path / "py.json", "-k", 20,
                     "--threads", threads, "-o", "-")  # fmt: skip
        assert [int(x) for x in merged.stdout.split()] == want.indices.tolist()
    refused = cli("merge", parts[0], "-k", 20, "--threads", "-2", check=False)
    assert refused.returncode == 2 and "--threads" in refused.stderr
    assert json.loads(partial.to_json())["format"] == "quarry-partial/1"


def test_bad_shards_and_partials_are_refused(rng):
    a, b = random_probs(rng, 20, 4), random_probs(rng, 20, 5)
    with pytest.raises(quarry.InvalidArgument, match="5 classes"):
        quarry.select([a, b], 3, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="no shards"):
        quarry.select([], 3, resources=CPU)
    first = quarry.select_partial(a, 3, row_offset=0, resources=CPU)
    margin = quarry.select_partial(a, 3, row_offset=20, measure="margin", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="measure margin"):
        quarry.merge([first, margin], 3, resources=CPU)
    second = quarry.select_partial(a, 3, row_offset=20, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="made with k = 3"):
        quarry.merge([first, second], 4, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="overlap"):
        quarry.merge([first, first], 3, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="pool-rows"):
        quarry.select_partial(a, 3, row_offset=0, explore=0.5, resources=CPU)
    with pytest.raises(quarry.InvalidInput, match="not a quarry partial"):
        quarry.merge(['{"indices": [1]}'], 1, resources=CPU)
