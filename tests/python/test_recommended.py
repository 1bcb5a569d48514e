"""quarry.recommended, the seeded tie-break from Python, and the simulator's fixes of issue 28:
two-class data with every built-in model, datasets named alike, badge/coreset/recommended."""

from __future__ import annotations

import numpy as np
import pytest

import quarry
from quarry.eval.data import Dataset, make_split
from quarry.eval.simulate import simulate, unique_names
from quarry.eval.strategies import parse_strategy


def _probs(n, c, seed):
    p = np.random.default_rng(seed).random((n, c)).astype(np.float32)
    return p / p.sum(1, keepdims=True)


def test_recommended_is_margin_with_diversity_or_margin():
    p = _probs(500, 4, 1)
    emb = np.random.default_rng(2).normal(size=(500, 3)).astype(np.float32)
    want = quarry.select(p, 12, measure="margin", embeddings=emb, seed=5, tie_break="random")
    got = quarry.recommended(p, 12, embeddings=emb, seed=5)
    assert got.indices.tolist() == want.indices.tolist()
    assert got.measure == "margin"
    # Features stand in for embeddings; nothing else: plain margin, best first.
    assert quarry.recommended(p, 12, features=emb, seed=5).indices.tolist() == want.indices.tolist()
    top = np.sort(p, 1)
    margin = top[:, -1] - top[:, -2]
    assert (
        quarry.recommended(p, 7).indices.tolist() == np.argsort(margin, kind="stable")[:7].tolist()
    )


def test_random_tie_break_from_python_is_seeded_and_shard_invariant():
    p = np.full((600, 3), 1 / 3, np.float32)
    by_row = quarry.select(p, 20).indices
    assert by_row.tolist() == list(range(20))
    a = quarry.select(p, 20, tie_break="random", seed=11).indices
    assert a.tolist() == quarry.select(p, 20, tie_break="random", seed=11).indices.tolist()
    assert a.tolist() != by_row.tolist()
    assert a.tolist() != quarry.select(p, 20, tie_break="random", seed=12).indices.tolist()
    shards = [p[:250], p[250:251], p[251:]]
    assert quarry.select(shards, 20, tie_break="random", seed=11).indices.tolist() == a.tolist()
    partials = [
        quarry.select_partial(s, 20, row_offset=o, tie_break="random", seed=11)
        for s, o in zip(shards, (0, 250, 251), strict=True)
    ]
    assert quarry.merge(partials[::-1], 20).indices.tolist() == a.tolist()
    with pytest.raises(quarry.InvalidArgument, match="tie-break"):
        quarry.select(p, 5, tie_break="hash")


@pytest.mark.parametrize("model", ["logreg", "mlp", "rf", "gnb"])
def test_two_class_data_runs_with_every_builtin_model(model):
    doc = simulate(
        ["breast_cancer"], ["random", "margin", "recommended"], model=model, seeds=1, budget=20
    )
    finals = [r for r in doc["rounds"] if r["round"] == 2]
    assert {r["strategy"] for r in finals} == {"random", "margin", "recommended"}
    assert all(r["labels"] == 40 and 0.5 < r["accuracy"] <= 1 for r in finals)


def test_badge_and_coreset_run_in_the_simulator():
    doc = simulate(["wine"], ["badge", "coreset", "recommended+ties"], seeds=1, budget=10)
    assert {r["strategy"] for r in doc["rounds"]} == {"badge", "coreset", "recommended+ties"}
    assert all(r["labels"] == 30 for r in doc["rounds"] if r["round"] == 1)
    with pytest.raises(ValueError, match="takes only"):
        parse_strategy("badge+explore")


def test_two_x_npy_files_get_distinct_names(tmp_path):
    rng = np.random.default_rng(0)
    specs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "X.npy", rng.normal(size=(120, 3)))
        np.save(tmp_path / name / "y.npy", rng.integers(0, 2, 120))
        specs.append(str(tmp_path / name / "X.npy"))
    doc = simulate(specs, ["random"], seeds=1, budget=10, seed_size=4, stop_size=10)
    assert [d["name"] for d in doc["datasets"]] == specs
    # A name given twice, as such, is still an error.
    d = Dataset("x", np.zeros((4, 1)), np.array([0, 1, 0, 1]), np.array([0, 1]))
    with pytest.raises(ValueError, match="named twice"):
        unique_names([d, d], [None, None])


def test_cold_start_leaves_a_class_out_of_the_seed_set():
    rng = np.random.default_rng(3)
    d = Dataset("toy", rng.normal(size=(300, 2)), np.repeat([0, 1, 2], 100), np.arange(3))
    for seed in range(4):
        split = make_split(d, seed, seed_size=10, stop_size=50, unseen_classes=1)
        assert len(np.unique(d.y[split.seed_rows])) == 2
        assert len(np.unique(d.y[split.pool])) == 3
    with pytest.raises(ValueError, match="cannot leave"):
        make_split(d, 0, seed_size=10, unseen_classes=2)
