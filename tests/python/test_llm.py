"""LLM outputs through Python: token and top-K log-probabilities with lengths, sampled answers'
embeddings. Results equal the quarry program's on the same arrays (indices bitwise, scores to the
float) and a float64 numpy reference; bad lengths and data are refused as on the command line."""

import json

import numpy as np
import pytest
from test_cli_parity import assert_same

import quarry

CPU = quarry.Resources("cpu")


def run_cli(cli, tmp_path, command, pool, *flags, lengths=None, k=None):
    """`quarry score` (scores) or `quarry select` (its .json) on files holding these arrays."""
    np.save(tmp_path / "pool.npy", pool)
    extra = []
    if lengths is not None:
        np.save(tmp_path / "len.npy", lengths)
        extra = ["--lengths", tmp_path / "len.npy"]
    if command == "score":
        cli(
            "score",
            tmp_path / "pool.npy",
            *flags,
            *extra,
            "--device",
            "cpu",
            "-o",
            tmp_path / "s.npy",
        )
        return np.load(tmp_path / "s.npy")
    out = tmp_path / "picks.json"
    cli("select", tmp_path / "pool.npy", "-k", k, *flags, *extra, "--device", "cpu", "-o", out)
    return json.loads(out.read_text())


def token_pool(rng, n=700, steps=12, dtype=np.float32):
    """Log-probabilities <= 0 with ragged lengths; the padding is garbage that must not be read."""
    lp = -rng.exponential(1.0, size=(n, steps))
    lengths = rng.integers(1, steps + 1, size=n)
    pad = np.arange(steps)[None, :] >= lengths[:, None]
    lp[pad] = np.where(rng.random(pad.sum()) < 0.5, np.nan, 3.0)
    return lp.astype(dtype), lengths


def top_pool(rng, n=500, steps=9, k=5):
    """Top-K log-probabilities with some -inf entries (never a whole step) and ragged lengths."""
    lp = -rng.exponential(2.0, size=(n, steps, k))
    lp[rng.random(lp.shape) < 0.25] = -np.inf
    lp[:, :, 0] = np.maximum(lp[:, :, 0], -5.0)  # a finite entry in every step
    lengths = rng.integers(1, steps + 1, size=n).astype(np.int32)
    return lp.astype(np.float32), lengths


def reference_token(measure, lp, lengths):
    lp = lp.astype(np.float64)
    valid = np.arange(lp.shape[1])[None, :] < lengths[:, None]
    total = np.where(valid, lp, 0.0).sum(axis=1)
    if measure == "sequence_nll":
        return -total
    if measure == "perplexity":
        return -total / lengths
    return -np.where(valid, lp, 0.0).min(axis=1)  # min_token_prob: the largest surprisal


def reference_top(measure, lp, lengths):
    p = np.exp(lp.astype(np.float64))
    p /= p.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=2)
    top2 = -np.sort(-p, axis=2)[:, :, :2]
    margin = 1.0 - (top2[:, :, 0] - top2[:, :, 1])
    valid = np.arange(lp.shape[1])[None, :] < lengths[:, None]
    if measure == "max_token_entropy":
        return np.where(valid, entropy, -np.inf).max(axis=1)
    per_step = entropy if measure == "mean_token_entropy" else margin
    return np.where(valid, per_step, 0.0).sum(axis=1) / lengths


@pytest.mark.parametrize("measure", ["sequence_nll", "perplexity", "min_token_prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_token_logprobs_equal_the_program(tmp_path, cli, rng, measure, dtype):
    lp, lengths = token_pool(rng, dtype=dtype)
    got = quarry.score(lp, measure, lengths=lengths, resources=CPU)
    np.testing.assert_array_equal(
        got, run_cli(cli, tmp_path, "score", lp, "--measure", measure, lengths=lengths)
    )
    np.testing.assert_allclose(got, reference_token(measure, lp, lengths), rtol=1e-5, atol=1e-6)
    expected = run_cli(cli, tmp_path, "select", lp, "--measure", measure, lengths=lengths, k=40)
    assert_same(quarry.select(lp, 40, measure=measure, lengths=lengths, resources=CPU), expected)


@pytest.mark.parametrize(
    "measure", ["mean_token_entropy", "max_token_entropy", "mean_token_margin"]
)
def test_top_logprobs_equal_the_program(tmp_path, cli, rng, measure):
    lp, lengths = top_pool(rng)
    got = quarry.score(lp, measure, lengths=lengths, resources=CPU)
    np.testing.assert_array_equal(
        got, run_cli(cli, tmp_path, "score", lp, "--measure", measure, lengths=lengths)
    )
    np.testing.assert_allclose(got, reference_top(measure, lp, lengths), rtol=1e-5, atol=1e-6)
    flags = ["--measure", measure, "--explore", 0.25, "--seed", 3]
    expected = run_cli(cli, tmp_path, "select", lp, *flags, lengths=lengths, k=24)
    got = quarry.select(
        lp, 24, measure=measure, lengths=lengths, explore=0.25, seed=3, resources=CPU
    )
    assert_same(got, expected)


@pytest.mark.parametrize(
    ("measure", "flags", "kwargs"),
    [
        ("sample_dispersion", [], {}),
        ("eigenscore", ["--alpha", 0.01], {"alpha": 0.01}),
        ("semantic_sets", ["--threshold", 0.3], {"threshold": 0.3}),
        ("semantic_entropy", ["--threshold", 0.3], {"threshold": 0.3}),
    ],
)
def test_samples_equal_the_program(tmp_path, cli, rng, measure, flags, kwargs):
    answers = rng.normal(size=(400, 6, 8)).astype(np.float32)
    answers[::5, 1:] = answers[::5, :1]  # some rows whose answers all agree
    got = quarry.score(answers, measure, resources=CPU, **kwargs)
    expected = run_cli(cli, tmp_path, "score", answers, "--samples", "--measure", measure, *flags)
    np.testing.assert_array_equal(got, expected)
    if measure == "sample_dispersion":
        e = answers.astype(np.float64)
        e /= np.linalg.norm(e, axis=2, keepdims=True)
        g = np.einsum("nsd,ntd->nst", e, e)
        iu = np.triu_indices(6, 1)
        np.testing.assert_allclose(got, 1.0 - g[:, iu[0], iu[1]].mean(axis=1), atol=1e-5)
    expected = run_cli(cli, tmp_path, "select", answers, "--measure", measure, *flags, k=30)
    assert_same(quarry.select(answers, 30, measure=measure, resources=CPU, **kwargs), expected)


def test_strided_views_read_in_place_give_the_contiguous_answer(rng):
    lp, lengths = token_pool(rng, n=300, steps=10)
    wide = np.full((300, 14), -0.25, np.float32)
    wide[:, :10] = lp
    assert not wide[:, :10].flags.c_contiguous
    np.testing.assert_array_equal(
        quarry.score(wide[:, :10], "perplexity", lengths=lengths, resources=CPU),
        quarry.score(lp, "perplexity", lengths=lengths, resources=CPU),
    )
    top, top_lengths = top_pool(rng, n=200)
    wider = np.full((200, 18, 7), -1.0, np.float32)
    wider[:, ::2][:, :9, :5] = top
    view = wider[:, ::2][:, :9, :5]  # steps and rows strided, each step's K values adjacent
    np.testing.assert_array_equal(
        quarry.score(view, "max_token_entropy", lengths=top_lengths[:200], resources=CPU),
        quarry.score(top, "max_token_entropy", lengths=top_lengths[:200], resources=CPU),
    )
    answers = rng.normal(size=(100, 4, 6)).astype(np.float32)
    padded = np.zeros((100, 4, 9), np.float32)
    padded[:, :, :6] = answers
    np.testing.assert_array_equal(
        quarry.score(padded[:, :, :6], "eigenscore", resources=CPU),
        quarry.score(answers, "eigenscore", resources=CPU),
    )


def test_a_length_out_of_range_names_the_row(tmp_path, cli, rng):
    lp, lengths = token_pool(rng, n=50, steps=6)
    for bad in (0, 7):
        lengths_bad = lengths.copy()
        lengths_bad[31] = bad
        with pytest.raises(quarry.InvalidInput, match="length outside") as e:
            quarry.score(lp, "perplexity", lengths=lengths_bad, resources=CPU)
        assert e.value.row == 31
        result = run_cli_error(cli, tmp_path, lp, lengths_bad)
        assert result.returncode == 2 and "row 31" in result.stderr


def run_cli_error(cli, tmp_path, lp, lengths):
    np.save(tmp_path / "pool.npy", lp)
    np.save(tmp_path / "len.npy", lengths)
    return cli(
        "score",
        tmp_path / "pool.npy",
        "--measure",
        "perplexity",
        "--lengths",
        tmp_path / "len.npy",
        "-o",
        tmp_path / "s.npy",
        check=False,
    )


def test_bad_llm_inputs():
    lp = np.full((20, 6), -0.5, np.float32)
    lengths = np.full(20, 3, np.int64)
    with pytest.raises(quarry.InvalidInput, match="positive log-probability") as e:
        bad = lp.copy()
        bad[12, 2] = 0.5
        quarry.score(bad, "sequence_nll", lengths=lengths, resources=CPU)
    assert e.value.row == 12
    bad[12, 2] = -0.5
    bad[12, 4] = 0.5  # past the row's length: never read
    quarry.score(bad, "sequence_nll", lengths=lengths, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="array of 20 values"):
        quarry.score(lp, "perplexity", lengths=lengths[:19], resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="lengths must be"):
        quarry.score(lp, "perplexity", lengths=lengths.astype(np.float32), resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="need an LLM measure"):
        quarry.score(lp, lengths=lengths, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="lengths do not apply to entropy"):
        quarry.score(lp, "entropy", lengths=lengths, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match=r"\[N, T, K\] top-K"):
        quarry.score(lp, "mean_token_entropy", resources=CPU)
    answers = np.ones((20, 3, 4), np.float32)
    with pytest.raises(quarry.InvalidArgument, match="lengths do not apply to sampled answers"):
        quarry.score(answers, "eigenscore", lengths=lengths, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="alpha applies to eigenscore"):
        quarry.score(lp, "perplexity", alpha=0.1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="threshold applies"):
        quarry.score(answers, "eigenscore", threshold=0.5, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="alpha must be finite"):
        quarry.score(answers, "eigenscore", alpha=-1.0, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="logits"):
        quarry.score(lp, "perplexity", logits=True, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="layout applies to committees"):
        quarry.score(answers, "eigenscore", layout="rows-first", resources=CPU)


def test_bfloat16_equals_the_same_values_in_float32(rng):
    torch = pytest.importorskip("torch")
    lp, lengths = token_pool(rng, n=200, steps=8)
    lp = np.where(np.arange(8)[None, :] < lengths[:, None], lp, -1.0).astype(np.float32)
    bf16 = torch.from_numpy(lp).to(torch.bfloat16)
    exact = bf16.to(torch.float32).numpy()  # bf16 -> f32 is exact
    for measure in ("sequence_nll", "min_token_prob"):
        np.testing.assert_array_equal(
            quarry.score(bf16, measure, lengths=torch.from_numpy(lengths), resources=CPU),
            quarry.score(exact, measure, lengths=lengths, resources=CPU),
        )
    answers = torch.from_numpy(rng.normal(size=(50, 4, 8)).astype(np.float32)).to(torch.bfloat16)
    np.testing.assert_array_equal(
        quarry.score(answers, "eigenscore", resources=CPU),
        quarry.score(answers.to(torch.float32).numpy(), "eigenscore", resources=CPU),
    )
