"""The measure table and the options schema as Python sees them: they agree with the docs, the
command line, the docstrings and the simulator; keyword arguments and partials are checked against
the schema; errors name their input."""

import inspect
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import quarry
from quarry.eval import strategies

REPO = Path(__file__).resolve().parents[2]
MEASURES = quarry.measures()
NAMES = [m["name"] for m in MEASURES]


def test_measure_table_shape():
    assert len(NAMES) == 20 and len(set(NAMES)) == 20
    kinds = {"predictions", "committee", "token_logprobs", "top_logprobs", "samples"}
    for m in MEASURES:
        assert m["pool_kind"] in kinds
        assert m["formula"]
    # The table drives the checks: alpha and threshold go to the measures that take them.
    pool = np.full((4, 3), 1 / 3, np.float32)
    with pytest.raises(quarry.InvalidArgument, match="^alpha applies to eigenscore, not to entr"):
        quarry.score(pool, alpha=0.1)
    with pytest.raises(
        quarry.InvalidArgument,
        match="^threshold applies to semantic_sets and semantic_entropy, not to margin",
    ):
        quarry.score(pool, "margin", threshold=0.5)


def _doc_rows():
    """(name, score cell) of every row of the measure tables in docs/measures.md and docs/llm.md."""
    rows = []
    for page in ("measures.md", "llm.md"):
        for line in (REPO / "docs" / page).read_text().splitlines():
            m = re.match(r"^\| `([a-z_]+)`[^|]*\|", line)
            if m and "--measure" not in line:
                cells = line.strip().strip("|").split(" | ")
                rows.append((m.group(1), cells[-1].replace("`", "")))
    return rows


def test_docs_tables_agree_with_the_measure_table():
    rows = _doc_rows()
    assert sorted(name for name, _ in rows) == sorted(NAMES), "each measure in one docs row"
    formulas = {m["name"]: m["formula"] for m in MEASURES}
    for name, cell in rows:
        assert formulas[name] in cell, (name, formulas[name], cell)


# Files that write every measure out, each for a reason: the enum, the table, the kernels' mirror
# enum and its compile-time check. Everything else derives the list or is checked against it.
ALLOWED = {
    "host/include/quarry/types.hpp",
    "host/src/measures.cpp",
    "kernels/measures.hpp",
    "engine/measure_ids.cpp",
}


def test_no_other_file_lists_the_measures_by_hand():
    offenders = []
    for path in [*REPO.glob("host/**/*"), *REPO.glob("engine/*"), *REPO.glob("docs/*")]:
        path_text = str(path.relative_to(REPO))
        if not path.is_file() or path_text in ALLOWED or path.suffix in (".so", ".pyc"):
            continue
        text = path.read_text(errors="replace")
        named = [n for n in NAMES if re.search(rf"(?<![a-z_]){n}(?![a-z_])", text)]
        if len(named) > 12:
            offenders.append((path_text, len(named)))
    readme = (REPO / "README.md").read_text()
    assert sum(bool(re.search(rf"`{n}`", readme)) for n in NAMES) <= 3
    assert offenders == []


def test_docstring_and_simulator_come_from_the_table():
    for name in NAMES:
        assert f"``{name}``" in quarry.__doc__
    assert strategies.SINGLE_MODEL_MEASURES == (
        "least_confidence",
        "margin",
        "ratio",
        "entropy",
    )
    assert strategies.COMMITTEE_MEASURES == tuple(
        m["name"] for m in MEASURES if m["pool_kind"] == "committee"
    )


def test_cli_lists_the_table(cli):
    out = cli("measures").stdout.splitlines()
    assert [line.split()[0] for line in out[1:]] == NAMES
    for line, m in zip(out[1:], MEASURES, strict=True):
        assert line.endswith(m["formula"])
        assert line.split()[1] == m["pool_kind"]
    help_text = " ".join(cli("select", "--help").stdout.split())
    for name in NAMES:
        assert name in help_text


SCHEMA = {o["name"]: o for o in quarry.option_schema()}


def test_schema_spellings_and_defaults():
    iters = SCHEMA["kmeans_iters"]
    assert (iters["cli_flag"], iters["json_key"], iters["cpp_field"]) == (
        "--kmeans-iters",
        "kmeans_iterations",
        "SelectOptions::kmeans.iterations",
    )
    # Python's keyword defaults are the schema's.
    for function in (quarry.select, quarry.select_partial, quarry.score):
        for name, parameter in inspect.signature(function).parameters.items():
            option = SCHEMA.get(name)
            if option is None or not option["default"] or parameter.default is None:
                continue
            default = option["default"]
            if option["type"] in ("integer", "number"):
                assert float(parameter.default) == float(default), name
            elif option["type"] == "flag":
                assert parameter.default is (default == "true"), name
            else:
                assert parameter.default == default, name


def test_schema_flags_are_the_cli_flags(cli):
    help_text = cli("select", "--help").stdout
    for option in SCHEMA.values():
        for flag in filter(None, option["cli_flag"].split(",")):
            assert re.search(rf"(^|[ ,]){re.escape(flag)}\b", help_text, re.M), flag


def test_schema_json_keys_are_the_partials(tmp_path):
    pool = np.full((6, 3), 1 / 3, np.float32)
    keys = json.loads(quarry.select_partial(pool, 2, row_offset=0).to_json())
    for option in SCHEMA.values():
        if option["json_key"]:
            assert option["json_key"] in keys, option["name"]


# Issue 23 item 15: integers outside a parameter's range, and pool=None.
POOL = np.full((6, 3), 1 / 3, np.float32)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: quarry.select(POOL, 2**63), "k"),
        (lambda: quarry.select(POOL, 2, seed=-1), "seed"),
        (lambda: quarry.select(POOL, 2, seed=2**64), "seed"),
        (lambda: quarry.select(POOL, 2, kmeans_iters=2**31), "kmeans_iters"),
        (lambda: quarry.select(POOL, 2, candidates=-(2**70)), "candidates"),
        (lambda: quarry.select([POOL, POOL], 2, seed=-1), "seed"),
        (lambda: quarry.select_partial(POOL, 2, row_offset=2**64), "row_offset"),
        (lambda: quarry.score(POOL, classes=2**63), "classes"),
        (lambda: quarry.kmeans(POOL, 2, iterations=2**31), "iterations"),
        (lambda: quarry.kmeans(POOL, 2**63), "k"),
        (lambda: quarry.Resources("cpu", cuda_device=2**40), "cuda_device"),
    ],
)
def test_integers_out_of_range_name_the_argument(call, name):
    with pytest.raises(quarry.InvalidArgument, match=rf"^{name}: '-?\d+' is not an integer from "):
        call()


def test_merge_k_out_of_range():
    partial = quarry.select_partial(POOL, 2, row_offset=0)
    with pytest.raises(quarry.InvalidArgument, match=r"^k: '9223372036854775808' is not an int"):
        quarry.merge([partial], 2**63)


def test_seed_at_its_limits_is_accepted():
    a = quarry.select(POOL, 2, seed=2**64 - 1, explore=0.5)
    assert len(a) == 2


def test_pool_none_and_non_integers():
    with pytest.raises(quarry.InvalidArgument, match="^pool: expected an array"):
        quarry.select(None, 2)
    with pytest.raises(quarry.InvalidArgument, match="^pool: expected an array"):
        quarry.score(None)
    with pytest.raises(TypeError, match="^k: expected an integer, got float"):
        quarry.select(POOL, 2.5)
    with pytest.raises(TypeError, match="^seed: expected an integer, got bool"):
        quarry.select(POOL, 2, seed=True)
    with pytest.raises(TypeError, match="^temperature: expected a number, got str"):
        quarry.select(POOL, 2, temperature="hot")
    assert len(quarry.select(POOL, np.int64(2), seed=np.uint64(3))) == 2


# Issue 23 item 11: merge validates every field of a partial, from JSON or a pickle.
def _partial_json():
    probs = np.linspace(0.5, 0.95, 10, dtype=np.float32)  # distinct scores
    pool = np.stack([probs, 1 - probs], axis=1)
    return json.loads(quarry.select_partial(pool, 5, row_offset=0, pool_rows=10).to_json())


def _from_pickle(fields):
    """A Partial holding `fields`, through a pickle (its arrays travel as raw bytes)."""
    return pickle.loads(pickle.dumps(quarry.Partial.from_json(json.dumps(fields))))


def test_merge_refuses_a_row_listed_five_times():
    fields = _partial_json()
    fields["indices"] = [7] * 5
    with pytest.raises(quarry.InvalidInput, match="row 7 is listed more than once"):
        quarry.merge([json.dumps(fields)], 5)
    with pytest.raises(quarry.InvalidInput, match="row 7 is listed more than once"):
        quarry.merge([_from_pickle(fields)], 5)


def test_merge_refuses_fractional_indices():
    fields = _partial_json()
    fields["indices"][0] = 0.5
    with pytest.raises(quarry.InvalidInput, match=r"indices: '0\.5' is not an integer"):
        quarry.merge([json.dumps(fields)], 5)


def test_merge_refuses_kmeans_iterations_past_32_bits():
    fields = _partial_json()
    fields["kmeans_iterations"] = 2**40
    with pytest.raises(quarry.InvalidInput, match="kmeans_iterations: '1099511627776'"):
        quarry.merge([json.dumps(fields)], 5)
    state = list(quarry.Partial.from_json(json.dumps(_partial_json())).__getstate__())
    state[0] = state[0].replace('"kmeans_iterations":25', f'"kmeans_iterations":{2**40}')
    restored = quarry.Partial.__new__(quarry.Partial)
    with pytest.raises(quarry.InvalidInput, match="kmeans_iterations"):
        restored.__setstate__(tuple(state))


def test_cli_merge_refuses_the_same(cli, tmp_path):
    fields = _partial_json()
    fields["indices"] = [7] * 5
    path = tmp_path / "part.json"
    path.write_text(json.dumps(fields))
    result = cli("merge", path, "-k", 5, check=False)
    assert result.returncode == 2 and "listed more than once" in result.stderr


# Errors carry the input they are about.
def test_errors_name_their_input():
    bad = POOL.copy()
    bad[2, 0] = np.nan
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(bad, 2)
    assert (info.value.input, info.value.row) == ("pool", 2)
    emb = np.ones((6, 2), np.float32)
    emb[4, 1] = np.inf
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(POOL, 2, embeddings=emb)
    assert (info.value.input, info.value.row) == ("embeddings", 4)
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(POOL, 2, measure="egl", features=emb)
    assert (info.value.input, info.value.row) == ("features", 4)
    with pytest.raises(quarry.InvalidInput) as info:
        quarry.select(POOL, costs=np.array([1, 1, 1, 0, 1, 1.0]), budget=2)
    assert (info.value.input, info.value.row) == ("costs", 3)


def test_cli_and_python_share_the_integer_ranges(cli, tmp_path):
    path = tmp_path / "pool.npy"
    np.save(path, POOL)
    calls = {
        "k": lambda v: quarry.select(POOL, v),
        "candidates": lambda v: quarry.select(POOL, 2, candidates=v),
        "kmeans_iters": lambda v: quarry.select(POOL, 2, kmeans_iters=v),
        "seed": lambda v: quarry.select(POOL, 2, seed=v),
        "classes": lambda v: quarry.select(POOL, 2, classes=v),
        "row_offset": lambda v: quarry.select_partial(POOL, 2, row_offset=v),
        "pool_rows": lambda v: quarry.select_partial(POOL, 2, row_offset=0, pool_rows=v),
    }
    for name, call in calls.items():
        option = SCHEMA[name]
        flag = option["cli_flag"].split(",")[0]
        too_big = option["max"] + 1
        expected = f"is not an integer from {option['min']} to {option['max']}"
        with pytest.raises(quarry.InvalidArgument, match=f"^{name}: '{too_big}' {expected}$"):
            call(too_big)
        args = ["select", path, flag, too_big]
        if name != "k":
            args += ["-k", 2]
        if name == "pool_rows":
            args += ["--row-offset", 0]
        result = cli(*args, check=False)
        assert result.returncode == 2
        assert f"{flag}: '{too_big}' {expected}" in result.stderr, result.stderr


def test_cli_help_defaults_are_the_schemas(cli):
    help_text = cli("select", "--help").stdout
    shown = dict(re.findall(r"^\s+(?:-\w,)?(--[a-z-]+) [A-Z]+=(\S+)", help_text, re.M))
    by_flag = {o["cli_flag"].split(",")[-1]: o for o in SCHEMA.values() if o["cli_flag"]}
    checked = 0
    for flag, default in shown.items():
        if flag in by_flag:
            assert default == by_flag[flag]["default"], flag
            checked += 1
    assert checked >= 6  # layout, temperature, kmeans-iters, explore, seed, strategy
