"""select and score on numpy arrays equal the quarry program's answers on the same .npy files."""

import json

import numpy as np
import pytest

import quarry
from conftest import random_probs


@pytest.mark.parametrize("measure", ["entropy", "margin", "least_confidence", "ratio"])
def test_select_equals_cli(tmp_path, cli, rng, measure):
    pool = random_probs(rng, 2000, 7)
    np.save(tmp_path / "pool.npy", pool)
    cli(
        "select",
        tmp_path / "pool.npy",
        "-k",
        50,
        "--measure",
        measure,
        "--device",
        "cpu",
        "-o",
        tmp_path / "picks.json",
    )
    expected = json.loads((tmp_path / "picks.json").read_text())
    got = quarry.select(pool, 50, measure=measure, resources=quarry.Resources("cpu"))
    np.testing.assert_array_equal(got.indices, expected["indices"])
    np.testing.assert_array_equal(got.scores, np.float32(expected["scores"]))
    assert list(got.reasons) == expected["reasons"]


def test_score_equals_cli(tmp_path, cli, rng):
    pool = random_probs(rng, 3000, 5)
    np.save(tmp_path / "pool.npy", pool)
    cli("score", tmp_path / "pool.npy", "--device", "cpu", "-o", tmp_path / "scores.npy")
    got = quarry.score(pool, resources=quarry.Resources("cpu"))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.load(tmp_path / "scores.npy"))


def test_bad_row_raises_invalid_input_with_row():
    pool = np.full((10, 4), 0.25, dtype=np.float32)
    pool[6, 0] = np.nan
    with pytest.raises(quarry.InvalidInput, match="row 6") as info:
        quarry.select(pool, 3)
    assert info.value.row == 6
    assert isinstance(info.value, ValueError)


def test_the_package_carries_the_quarry_program():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "quarry"  # the console script pip installed
    assert script.exists()
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == quarry.__version__
