"""quarry.eval's parts that need no engine: data, splits, budgets, stopping rules, report, plots,
command-line errors. The engine's end-to-end runs are in test_eval.py."""

import json
import math

import numpy as np
import pytest

from quarry.eval import (
    accuracy_plateau_stop,
    aulc,
    cli,
    cohen_kappa,
    kappa_stability_stop,
    load_dataset,
    make_split,
    markdown,
    models,
    parse_strategies,
    parse_strategy,
    plots,
    run_strategy,
    stable_kappa_round,
    strategies,
    stratified_sample,
    summarize,
)
from quarry.eval.data import Dataset, Split
from quarry.eval.simulate import Settings, simulate


def test_stratified_sample_holds_every_class_in_proportion():
    y = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
    rows = np.arange(0, 1000)
    rng = np.random.default_rng(1)
    picked = stratified_sample(y, rows, 20, rng)
    assert len(picked) == 20 and len(np.unique(picked)) == 20
    assert np.array_equal(np.bincount(y[picked], minlength=4), [10, 6, 3, 1])
    # A class too rare for its share still gets one row; the total stays exact.
    y = np.repeat([0, 1, 2], [990, 5, 5])
    counts = np.bincount(y[stratified_sample(y, np.arange(1000), 10, rng)], minlength=3)
    assert counts.sum() == 10 and counts.min() >= 1 and counts[0] == 8
    with pytest.raises(ValueError, match="cannot hold all 3 classes"):
        stratified_sample(y, np.arange(1000), 2, rng)
    with pytest.raises(ValueError, match="larger than the pool"):
        stratified_sample(y, np.arange(990, 1000), 11, rng)


def test_split_is_disjoint_stratified_and_repeatable():
    digits = load_dataset("digits")
    split = make_split(digits, 3, seed_size=20, test_fraction=0.25, stop_size=500)
    n = len(digits.y)
    assert len(np.intersect1d(split.pool, split.test)) == 0
    assert len(split.pool) + len(split.test) == n
    assert abs(len(split.test) - 0.25 * n) <= 1
    assert np.all(np.isin(split.seed_rows, split.pool)) and len(split.seed_rows) == 20
    assert set(digits.y[split.seed_rows]) == set(range(10))
    assert np.all(np.isin(split.stop_rows, split.pool)) and len(split.stop_rows) == 500
    again = make_split(digits, 3, seed_size=20, test_fraction=0.25, stop_size=500)
    for a, b in zip(split.__dict__.values(), again.__dict__.values(), strict=True):
        assert np.array_equal(a, b)
    other = make_split(digits, 4, seed_size=20, test_fraction=0.25, stop_size=500)
    assert not np.array_equal(split.seed_rows, other.seed_rows)


def test_datasets_from_files(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    y = np.array([5, 7, 5, 7, 9, 9])
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "labels.npy", y)
    for spec in (
        str(tmp_path / "X.npy"),
        f"{tmp_path / 'X.npy'}:{tmp_path / 'labels.npy'}",
    ):
        d = load_dataset(spec)
        assert np.array_equal(d.X, X) and np.array_equal(d.classes, [5, 7, 9])
        assert np.array_equal(d.y, [0, 1, 0, 1, 2, 2])
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
    d = load_dataset(str(tmp_path / "d.csv"))
    assert np.array_equal(d.X, [[1, 2], [3, 4], [5, 6]]) and list(d.classes) == [
        "cat",
        "dog",
    ]
    (tmp_path / "bad.csv").write_text("1,2,0\n3,x,1\n")
    with pytest.raises(ValueError, match="row 1"):
        load_dataset(str(tmp_path / "bad.csv"))
    np.save(tmp_path / "nan.npy", np.array([[1.0], [np.nan], [2.0]]))
    np.save(tmp_path / "y3.npy", np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="row 1: non-finite"):
        load_dataset(f"{tmp_path / 'nan.npy'}:{tmp_path / 'y3.npy'}")
    with pytest.raises(ValueError, match="one label per row"):
        load_dataset(f"{tmp_path / 'X.npy'}:{tmp_path / 'y3.npy'}")
    with pytest.raises(ValueError, match="name the labels too"):
        load_dataset(str(tmp_path / "nan.npy"))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    synthetic = load_dataset("synthetic:500")
    assert synthetic.X.shape == (500, 20) and synthetic.n_classes == 4
    assert synthetic.name == "synthetic-500"


def test_strategy_names():
    s = parse_strategy("margin+pca+explore=0.2", candidates=50)
    assert (s.measure, s.diversity, s.explore, s.candidates) == (
        "margin",
        "pca",
        0.2,
        50,
    )
    assert parse_strategy("entropy+explore", explore=0.3).explore == 0.3
    assert parse_strategy("bald").committee and not parse_strategy("ratio").committee
    assert parse_strategy("random").measure is None
    assert [s.name for s in parse_strategies("random, margin,kl_max+diversity")] == [
        "random",
        "margin",
        "kl_max+diversity",
    ]
    for bad, message in (
        ("random+explore", "takes no modifiers"),
        ("uncertainty", "unknown measure"),
        ("margin+diversity+pca", "diversity named twice"),
        ("margin+explore=1", r"\[0, 1\)"),
        ("margin+explore=x", "not explore=EPS"),
        ("margin+badge", "unknown modifier"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_strategy(bad)
    with pytest.raises(ValueError, match="named twice"):
        parse_strategies("margin,margin")


def test_plateau_rule():
    assert accuracy_plateau_stop([0.5, 0.6, 0.7, 0.72, 0.73, 0.731]) is None
    # Round 4 gained 0.704 - 0.70 = 0.004 over round 1: below the 0.005 threshold.
    assert accuracy_plateau_stop([0.5, 0.70, 0.70, 0.703, 0.704, 0.9]) == 4
    assert accuracy_plateau_stop([0.5, 0.6, 0.6], window=1) == 2
    assert accuracy_plateau_stop([0.5, 0.6, 0.65], window=1, min_gain=0.1) == 1
    assert accuracy_plateau_stop([0.5, 0.6]) is None
    with pytest.raises(ValueError):
        accuracy_plateau_stop([0.5], window=0)


def test_kappa_rule():
    # Observed agreement 3/4, chance agreement 1/2 · 1/4 + 1/2 · 3/4 = 1/2: κ = (3/4 − 1/2) / (1/2).
    assert cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.5)
    assert cohen_kappa(np.array([2, 2, 2]), np.array([2, 2, 2])) == 1.0
    assert cohen_kappa(np.array([0, 1]), np.array([1, 0])) == pytest.approx(-1.0)
    a, b, c = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([1, 1, 0, 0])
    # κ per round: −, 0.5, 1, 1, 1 → three agreeing rounds in a row end at round 4.
    assert kappa_stability_stop([a, b, b, b, b]) == 4
    assert kappa_stability_stop([a, b, b, b, c, c]) is None
    assert kappa_stability_stop([a, a, b, b], window=1) == 1
    assert stable_kappa_round([None, 0.995, 0.98, 0.99, 0.999, 1.0]) == 5
    assert stable_kappa_round([None, 0.9, 0.95], window=2, threshold=0.9) == 2


def test_aulc_closed_forms():
    assert aulc([20, 30, 40], [0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert aulc([0, 10], [0.5, 1.0]) == pytest.approx(0.75)
    # Uneven steps: (0.5 + 0.7) / 2 · 10 + (0.7 + 0.9) / 2 · 30, over 40.
    assert aulc([10, 20, 50], [0.5, 0.7, 0.9]) == pytest.approx((6 + 24) / 40)
    with pytest.raises(ValueError):
        aulc([10], [0.5])


class FixedOrder:
    """Stands in for quarry: ranks the open rows by a fixed score per dataset row."""

    def __init__(self, order_key, rows_of_call):
        self.key = order_key
        self.calls = rows_of_call

    def __call__(self, strategy, pool, k, embeddings, seed, **_):
        self.calls.append((pool.shape, k, None if embeddings is None else embeddings.shape))
        return np.argsort(self.key[: pool.shape[-2]], kind="stable")[:k]


def _small_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    d = Dataset("toy", X, y, np.array([0, 1]))
    pool = np.arange(150)
    split = Split(pool, np.arange(150, 200), np.array([0, 1, 2, 3, 4, 5]), pool[:40])
    return d, split


def test_label_budget_is_spent_exactly(monkeypatch):
    d, split = _small_problem()
    make = models.model_factory("logreg")
    settings = Settings(batch_size=10, budget=25)
    records = run_strategy(d, split, parse_strategy("random"), make, 0, settings)
    assert [r["labels"] for r in records] == [6, 16, 26, 31]
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    assert records[0]["kappa"] is None and all(-1 <= r["kappa"] <= 1 for r in records[1:])
    calls = []
    monkeypatch.setattr(strategies, "quarry_pick", FixedOrder(np.arange(200), calls))
    records = run_strategy(d, split, parse_strategy("margin"), make, 0, settings)
    # Each call sees the open pool rows only: 150 − 6, then 10 fewer per round.
    assert [c[0] for c in calls] == [(144, 2), (134, 2), (124, 2)]
    assert [c[1] for c in calls] == [10, 10, 5]
    records = run_strategy(d, split, parse_strategy("bald"), make, 0, settings)
    assert [c[0] for c in calls[3:]] == [(5, 144, 2), (5, 134, 2), (5, 124, 2)]


def test_cost_budget_buys_in_rank_order_until_unaffordable(monkeypatch):
    d, split = _small_problem()
    costs = np.ones(200)
    costs[6:12] = [1, 1, 5, 3, 1, 1]  # dataset rows 6.. are the first open pool rows
    calls = []
    monkeypatch.setattr(strategies, "quarry_pick", FixedOrder(np.arange(200), calls))
    settings = Settings(batch_size=4, budget=8.5)
    records = run_strategy(
        d,
        split,
        parse_strategy("margin"),
        models.model_factory("gnb"),
        0,
        settings,
        costs=costs,
    )
    # Round 1 ranks rows 6..9 and buys 6, 7 and 8 (cost 7) but not 9 (cost 3), past the budget;
    # round 2 sees only rows it can afford (1.5 left: not row 9) and buys row 10 of its four
    # picks; then 0.5 is left and nothing is affordable.
    assert [r["cost"] for r in records] == [6.0, 13.0, 14.0]
    assert [r["labels"] for r in records] == [6, 9, 10]
    assert calls[1][1] == 4 and calls[1][0][0] == 144 - 3 - 1  # row 8 (cost 5) unaffordable


def test_committee_members_see_every_class():
    d, split = _small_problem()
    rows = np.r_[split.seed_rows, 7]
    committee = models.fit_committee(
        models.model_factory("gnb"),
        0,
        d.X[rows],
        d.y[rows],
        5,
        np.random.default_rng(0),
    )
    proba = models.committee_proba(committee, d.X[:20], 2)
    assert proba.shape == (5, 20, 2)
    assert np.allclose(proba.sum(axis=2), 1)
    lonely = models.fit(models.model_factory("gnb")(0), d.X[:4], np.array([0, 0, 2, 2]))
    aligned = models.aligned_proba(lonely, d.X[:3], 3)
    assert aligned.shape == (3, 3) and np.all(aligned[:, 1] == 0)


def test_models_by_name_object_or_factory():
    from sklearn.naive_bayes import GaussianNB

    rf = models.model_factory("rf")(3)
    assert rf.random_state == 3 and rf.n_estimators == 100
    logreg = models.model_factory("logreg")(4)
    assert logreg.get_params()["logisticregression__random_state"] == 4
    assert isinstance(models.model_factory("sklearn.naive_bayes:GaussianNB")(0), GaussianNB)
    template = GaussianNB(var_smoothing=1e-3)
    made = models.model_factory(template)(0)
    assert made is not template and made.var_smoothing == 1e-3
    assert models.model_factory(lambda seed: ("made", seed))(5) == ("made", 5)
    with pytest.raises(ValueError, match="unknown model"):
        models.model_factory("xgboost")
    with pytest.raises(ValueError, match="no predict_proba"):
        models.model_factory("sklearn.svm:LinearSVC")


def _record(strategy, seed, round_, labels, accuracy, kappa=None):
    return {
        "dataset": "toy",
        "strategy": strategy,
        "seed": seed,
        "round": round_,
        "labels": labels,
        "cost": float(labels),
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "kappa": kappa,
        "select_seconds": 0.001,
        "predict_seconds": 0.0,
        "fit_seconds": 0.01,
    }


def _document():
    curves = {
        ("random", 0): [0.5, 0.6, 0.7, 0.8],
        ("random", 1): [0.5, 0.7, 0.7, 0.75],
        ("margin", 0): [0.5, 0.8, 0.85, 0.85],
        ("margin", 1): [0.5, 0.6, 0.76, 0.8],
    }
    rounds = [
        _record(s, seed, r, 10 + 10 * r, a, None if r == 0 else 0.995)
        for (s, seed), accs in curves.items()
        for r, a in enumerate(accs)
    ]
    return {
        "format": "quarry-eval/1",
        "config": {
            "model": "logreg",
            "strategies": ["random", "margin"],
            "batch_size": 10,
            "budget": 30,
            "budget_unit": "labels",
            "seed_size": 10,
            "seeds": [0, 1],
            "test_fraction": 0.25,
            "stop_size": 100,
            "stop_window": 2,
            "stop_min_gain": 0.06,
            "stop_kappa": 0.99,
        },
        "datasets": [{"name": "toy", "rows": 100, "features": 3, "classes": 2}],
        "references": [
            {"dataset": "toy", "seed": 0, "accuracy": 0.85},
            {"dataset": "toy", "seed": 1, "accuracy": 0.80},
        ],
        "rounds": rounds,
    }


def test_summary_numbers_by_hand():
    part = summarize(_document())["toy"]
    random, margin = part["strategies"]["random"], part["strategies"]["margin"]
    # Seed 0: random ends at 0.8, reached at 40 labels; margin reaches 0.8 at 20: 50% saved.
    # Seed 1: random ends at 0.75, first reached at 40; margin reaches it at 30: 25% saved.
    assert margin["needed_random_final"]["mean"] == pytest.approx(25)
    assert margin["saved_random_final"]["mean"] == pytest.approx(37.5)
    assert margin["saved_random_final"]["std"] == pytest.approx(math.sqrt(2 * 12.5**2))
    assert random["saved_random_final"]["mean"] == 0
    # 99% of full: 0.8415 (seed 0): margin at 30; 0.792 (seed 1): margin at 40; random never.
    assert margin["needed_full_99"] == pytest.approx(
        {"n": 2, "of": 2, "mean": 35.0, "std": math.sqrt(50)}
    )
    assert random["needed_full_99"]["n"] == 0
    # Every seed counts: random, which never got there, is charged its final 40 labels, so
    # margin saved (40 − 30) / 40 = 25% on seed 0 and 0% on seed 1.
    assert margin["saved_full_99"] == pytest.approx(
        {"n": 2, "of": 2, "mean": 12.5, "std": math.sqrt(2 * 12.5**2)}
    )
    # And a strategy that never reaches a target is charged its final labels: random saves 0%
    # against itself on both seeds.
    assert random["saved_full_99"] == {"n": 2, "of": 2, "mean": 0.0, "std": 0.0}
    # AULC over 10..40 labels: seed 0 = (0.65 + 0.825 + 0.85) · 10 / 30.
    assert margin["aulc"]["mean"] == pytest.approx(
        ((0.65 + 0.825 + 0.85) + (0.55 + 0.68 + 0.78)) / 6
    )
    # Plateau (window 2, gain < 0.06): random seed 1 stops at round 3 (0.75 − 0.7); seed 0 never.
    assert random["stop_plateau"]["round"] == {"n": 1, "of": 2, "mean": 3.0, "std": 0.0}
    assert margin["stop_plateau"]["labels"]["mean"] == pytest.approx(40)
    # κ 0.995 from round 1 on: two in a row at round 2.
    assert margin["stop_kappa"]["round"]["mean"] == 2.0
    text = markdown(_document(), plots={"toy": "toy.png"})
    assert "| margin | 0.8250 ± 0.0354 |" in text and "37.5 ± 17.7%" in text
    assert "![toy learning curves](toy.png)" in text


def test_plots_average_and_write_png(tmp_path):
    runs = {
        0: [{"cost": 0.0, "accuracy": 0.5}, {"cost": 10.0, "accuracy": 0.7}],
        1: [
            {"cost": 0.0, "accuracy": 0.6},
            {"cost": 5.0, "accuracy": 0.6},
            {"cost": 8.0, "accuracy": 0.9},
        ],
    }
    grid, mean, _ = plots.mean_curve(runs, "cost")
    # Only 0..8 is covered by both seeds; seed 0 is interpolated at 5 and 8.
    assert np.array_equal(grid, [0, 5, 8])
    assert np.allclose(mean, [0.55, (0.6 + 0.6) / 2, (0.66 + 0.9) / 2])
    names = ["random", "margin", "entropy", "ratio", "least_confidence", "margin+pca", "ratio+pca"]
    assert plots.panels(names[:-1]) == [("", names[:-1])]
    assert plots.panels(["random", "bald", "kl_max"]) == [("", ["random", "bald", "kl_max"])]
    assert plots.panels([*names, "bald+explore"]) == [
        ("one model", names),
        ("committee", ["random", "bald+explore"]),
    ]
    paths = plots.plot(_document(), str(tmp_path))
    with open(paths["toy"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_rebuilds_report_from_json(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(_document()))
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "--report-only",
                str(tmp_path / "in.json"),
                "--output-dir",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "report.md").read_text() == markdown(_document(), plots={"toy": "toy.png"})
    assert json.loads((out / "rounds.json").read_text()) == _document()
    assert (out / "toy.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--dataset", "wine", "--strategies", "margin+x"], "unknown modifier"),
        (["--dataset", "wine", "--budget", "0"], "budget must be positive"),
        (["--dataset", "wine", "--budget", "2.5"], "whole number"),
        (["--dataset", "wine", "--seed-size", "2"], "cannot hold all 3 classes"),
        (
            [
                "--dataset",
                "wine",
                "--strategies",
                "margin+diversity",
                "--candidates",
                "5",
            ],
            "cannot fill",
        ),
        (["--dataset", "wine", "--costs", "missing.npy"], "missing.npy: no such file"),
        (["--strategies", "random"], "name at least one --dataset"),
        (["--dataset", "wine", "--blas-threads", "-1"], "BLAS threads must be at least 1"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2(argv, message, capsys, tmp_path):
    assert cli.main([*argv, "--output-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quarry-eval: error: ") and message in err and err.count("\n") == 1


def test_costs_must_match_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="one value per row of wine"):
        simulate(["wine"], ["random"], costs=np.ones(5), seeds=1)
    costs = np.ones(178)
    costs[3] = 0
    with pytest.raises(ValueError, match="row 3: cost must be finite and positive"):
        simulate(["wine"], ["random"], costs=costs, seeds=1)
    with pytest.raises(ValueError, match="mapping"):
        simulate(["wine", "digits"], ["random"], costs=np.ones(178), seeds=1)
