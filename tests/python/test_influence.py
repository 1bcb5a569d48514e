"""egl, BADGE, core-set and budgets through Python: the picks, scores, reasons and cost spent equal
the quarry program's on the same arrays; bad costs and labeled rows are refused."""

import json

import numpy as np
import pytest
from test_cli_parity import assert_same

import quarry
from conftest import random_probs

CPU = quarry.Resources("cpu")


def cli_select(cli, tmp_path, pool, *flags, **arrays):
    """`quarry select` with each keyword array saved and passed as --<name> FILE."""
    np.save(tmp_path / "pool.npy", pool)
    extra = []
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        extra += [f"--{name}", tmp_path / f"{name}.npy"]
    out = tmp_path / "picks.json"
    cli("select", tmp_path / "pool.npy", *flags, *extra, "--device", "cpu", "-o", out)
    return json.loads(out.read_text())


def test_egl_scores_and_picks_equal_the_program(tmp_path, cli, rng):
    probs = random_probs(rng, 800, 6)
    feat = rng.normal(size=(800, 5)).astype(np.float32)
    got = quarry.score(probs, "egl", features=feat, resources=CPU)
    np.save(tmp_path / "pool.npy", probs)
    np.save(tmp_path / "feat.npy", feat)
    cli("score", tmp_path / "pool.npy", "--measure", "egl", "--features", tmp_path / "feat.npy",
        "--device", "cpu", "-o", tmp_path / "s.npy")  # fmt: skip
    np.testing.assert_array_equal(got, np.load(tmp_path / "s.npy"))
    # The closed form against its definition, in float64.
    p, h = probs.astype(np.float64), feat.astype(np.float64)
    eye = np.eye(6)
    grad = np.linalg.norm(p[:, None, :] - eye[None], axis=2)  # ‖p − e_y‖
    reference = np.sqrt((h * h).sum(1) + 1) * (p * grad).sum(1)
    np.testing.assert_allclose(got, reference, rtol=1e-5)
    expected = cli_select(cli, tmp_path, probs, "-k", 25, "--measure", "egl", features=feat)
    assert_same(quarry.select(probs, 25, measure="egl", features=feat, resources=CPU), expected)


def test_badge_equals_the_program(tmp_path, cli, rng):
    probs = random_probs(rng, 1000, 7)
    feat = rng.normal(size=(1000, 12)).astype(np.float32)
    flags = ["-k", 30, "--strategy", "badge", "--seed", 7]
    expected = cli_select(cli, tmp_path, probs, *flags, features=feat)
    got = quarry.select(probs, 30, strategy="badge", features=feat, seed=7, resources=CPU)
    assert_same(got, expected)
    assert set(got.reasons) == {"badge"} and len(set(got.indices)) == 30
    flags = ["-k", 10, "--strategy", "badge", "--seed", 1, "--candidates", 200]
    expected = cli_select(cli, tmp_path, probs, *flags, features=feat)
    got = quarry.select(
        probs, 10, strategy="badge", features=feat, seed=1, candidates=200, resources=CPU
    )
    assert_same(got, expected)


@pytest.mark.parametrize("labeled_kind", ["none", "rows", "embeddings"])
def test_coreset_equals_the_program(tmp_path, cli, rng, labeled_kind):
    probs = random_probs(rng, 900, 4)
    emb = rng.normal(size=(900, 6)).astype(np.float32)
    labeled = {
        "none": None,
        "rows": rng.choice(900, 15, replace=False).astype(np.int32),
        "embeddings": rng.normal(size=(8, 6)).astype(np.float32),
    }[labeled_kind]
    arrays = {"embeddings": emb} | ({} if labeled is None else {"labeled": labeled})
    expected = cli_select(cli, tmp_path, probs, "-k", 20, "--strategy", "coreset", **arrays)
    got = quarry.select(
        probs, 20, strategy="coreset", embeddings=emb, labeled=labeled, resources=CPU
    )
    assert_same(got, expected)
    assert set(got.reasons) == {"coreset"}
    if labeled_kind == "rows":
        assert not set(got.indices) & set(labeled.tolist())


def assert_same_budget(selection, expected):
    assert_same(selection, expected)
    assert selection.cost_spent == expected["cost_spent"]


def test_greedy_budget_equals_the_program(tmp_path, cli, rng):
    probs = random_probs(rng, 1500, 5)
    costs = rng.uniform(0.5, 3.0, size=1500).astype(np.float32)
    expected = cli_select(cli, tmp_path, probs, "--budget", 40, costs=costs)
    got = quarry.select(probs, costs=costs, budget=40, resources=CPU)
    assert_same_budget(got, expected)
    assert 0 < got.cost_spent <= 40
    assert got.cost_spent == pytest.approx(costs[got.indices].astype(np.float64).sum())
    # Exploration takes a share of the budget; a list of costs is read as an array.
    flags = ["--budget", 25, "--explore", 0.3, "--seed", 4]
    expected = cli_select(cli, tmp_path, probs, *flags, costs=costs)
    got = quarry.select(probs, costs=costs.tolist(), budget=25, explore=0.3, seed=4, resources=CPU)
    # The program read float32 costs, Python the same values as float64: the same doubles.
    assert_same_budget(got, expected)
    assert "exploration" in set(got.reasons)


def test_exact_budget_and_batch_strategies_equal_the_program(tmp_path, cli, rng):
    probs = random_probs(rng, 600, 5)
    costs = rng.integers(1, 6, size=600).astype(np.int64)
    flags = ["--budget", 17.5, "--exact-budget", "--candidates", 60]
    expected = cli_select(cli, tmp_path, probs, *flags, costs=costs)
    got = quarry.select(
        probs, costs=costs, budget=17.5, exact_budget=True, candidates=60, resources=CPU
    )
    assert_same_budget(got, expected)
    assert got.cost_spent <= 17
    emb = rng.normal(size=(600, 4)).astype(np.float32)
    flags = ["-k", 12, "--budget", 20, "--strategy", "coreset"]
    expected = cli_select(cli, tmp_path, probs, *flags, costs=costs, embeddings=emb)
    got = quarry.select(
        probs, 12, strategy="coreset", embeddings=emb, costs=costs, budget=20, resources=CPU
    )
    assert_same_budget(got, expected)
    assert len(got) <= 12


def test_bad_budgets_costs_and_labeled_rows():
    probs = np.full((50, 2), 0.5, np.float32)
    costs = np.ones(50, np.float32)
    for bad in (0.0, -1.0, np.nan):
        c = costs.copy()
        c[17] = bad
        with pytest.raises(quarry.Error, match="costs row 17"):
            quarry.select(probs, costs=c, budget=10, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="costs have 49"):
        quarry.select(probs, costs=costs[:49], budget=10, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="costs must be 1-D"):
        quarry.select(probs, costs=costs.reshape(5, 10), budget=10, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="select needs k"):
        quarry.select(probs, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="budget"):
        quarry.select(probs, costs=costs, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="labeled rows must be"):
        quarry.select(
            probs,
            5,
            strategy="coreset",
            embeddings=np.zeros((50, 2), np.float32),
            labeled=np.zeros((3, 2), np.int64),
            resources=CPU,
        )
    with pytest.raises(quarry.InvalidArgument, match="strategy"):
        quarry.select(probs, 5, strategy="kcenter", resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="features"):
        quarry.select(probs, 5, strategy="badge", resources=CPU)
    with pytest.raises(quarry.InvalidInput, match="features") as e:
        feat = np.ones((50, 3), np.float32)
        feat[42, 1] = np.nan
        quarry.score(probs, "egl", features=feat, resources=CPU)
    assert e.value.row == 42
