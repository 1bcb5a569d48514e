"""Records, or compares with a record, the CPU picks of every measure x strategy of the quarry CLI.

Used around refactors that must not change behaviour: record the picks with the old binary, then
compare with the new one. Pools are seeded random, so the record is reproducible.

    python scripts/picks_snapshot.py record build/quarry /tmp/picks.json
    python scripts/picks_snapshot.py compare build/quarry /tmp/picks.json
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

N = 300


def pools(rng):
    """Each pool kind with the measures that read it and their extra flags."""
    probs = rng.dirichlet(np.full(7, 0.4), size=N).astype(np.float32)
    committee = rng.dirichlet(np.full(5, 0.5), size=(4, N)).astype(np.float32)
    votes = rng.integers(-1, 5, size=(6, N)).astype(np.int32)
    tokens = np.log(rng.uniform(0.01, 1.0, size=(N, 12))).astype(np.float32)
    lengths = rng.integers(1, 10, size=N).astype(np.int64)
    top = rng.dirichlet(np.full(4, 0.5), size=(N, 9))
    top_logprobs = np.log(np.sort(top, axis=2)[:, :, ::-1] * 0.9).astype(np.float32)
    samples = rng.normal(size=(N, 5, 6)).astype(np.float32)
    samples[:, 1] = samples[:, 0] + 0.05 * rng.normal(size=(N, 6))
    return {
        "probs": (probs, ["least_confidence", "margin", "ratio", "entropy", "egl"], []),
        "logits": (
            rng.normal(size=(N, 7)).astype(np.float32) * 3,
            ["entropy", "margin"],
            ["--logits", "--temperature", "1.5"],
        ),
        "committee": (
            committee,
            ["vote_entropy", "consensus_entropy", "kl_max", "bald", "variation_ratio"],
            [],
        ),
        "votes": (votes, ["vote_entropy", "variation_ratio"], []),
        "tokens": (tokens, ["sequence_nll", "perplexity", "min_token_prob"], ["lengths"]),
        "top": (
            top_logprobs,
            ["mean_token_entropy", "max_token_entropy", "mean_token_margin"],
            ["lengths"],
        ),
        "samples": (
            samples,
            ["sample_dispersion", "eigenscore", "semantic_sets", "semantic_entropy"],
            ["--samples"],
        ),
    }, lengths


def strategies(kind):
    """(name, select flags) of every strategy that applies to a pool kind."""
    out = [
        ("rank", ["-k", "17"]),
        ("rank_explore", ["-k", "17", "--explore", "0.3", "--seed", "5"]),
        ("cluster", ["-k", "9", "--embeddings", "EMB", "--seed", "3"]),
        ("cluster_explore", ["-k", "9", "--embeddings", "EMB", "--explore", "0.25"]),
        ("coreset", ["-k", "11", "--strategy", "coreset", "--embeddings", "EMB"]),
        (
            "coreset_labeled",
            ["-k", "11", "--strategy", "coreset", "--embeddings", "EMB", "--labeled", "LAB"],
        ),
        ("greedy_budget", ["--costs", "COST", "--budget", "9.5"]),
        ("greedy_budget_explore", ["--costs", "COST", "--budget", "9.5", "--explore", "0.2"]),
        ("exact_budget", ["--costs", "COSTI", "--budget", "20", "--exact-budget"]),
        ("cluster_budget", ["--costs", "COST", "--budget", "9.5", "--embeddings", "EMB"]),
        (
            "coreset_budget",
            ["--costs", "COST", "--budget", "9.5", "--strategy", "coreset", "--embeddings", "EMB"],
        ),
    ]
    if kind == "probs":
        out += [
            ("badge", ["-k", "10", "--strategy", "badge", "--features", "FEAT", "--seed", "2"]),
            (
                "badge_candidates",
                ["-k", "10", "--strategy", "badge", "--features", "FEAT", "--candidates", "40"],
            ),
            (
                "badge_budget",
                ["--costs", "COST", "--budget", "9.5", "--strategy", "badge", "--features", "FEAT"],
            ),
        ]
    return out


def run_all(cli):
    rng = np.random.default_rng(20261207)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kinds, lengths = pools(rng)
        files = {
            "EMB": rng.normal(size=(N, 8)).astype(np.float32),
            "FEAT": rng.normal(size=(N, 6)).astype(np.float32),
            "LAB": np.array([3, 50, 51, 200], dtype=np.int64),
            "COST": rng.uniform(0.2, 2.0, size=N).astype(np.float32),
            "COSTI": rng.integers(1, 6, size=N).astype(np.float32),
            "LEN": lengths,
        }
        for name, array in files.items():
            np.save(tmp / f"{name}.npy", array)
        results = {}
        for kind, (pool, measures, extra) in kinds.items():
            np.save(tmp / f"{kind}.npy", pool)
            for measure in measures:
                flags = ["--measure", measure]
                for e in extra:
                    flags += ["--lengths", str(tmp / "LEN.npy")] if e == "lengths" else [e]
                if measure == "egl":
                    flags += ["--features", str(tmp / "FEAT.npy")]
                for strategy, sflags in strategies(kind):
                    sflags = [str(tmp / f"{s}.npy") if s in files else s for s in sflags]
                    if measure == "egl" and "--features" in sflags:
                        continue
                    # Sharded runs for the first measure of each pool kind: the strategy decides.
                    for shard in (False, True) if measure == measures[0] else (False,):
                        key = f"{kind}/{measure}/{strategy}" + ("/sharded" if shard else "")
                        results[key] = run(cli, tmp, kind, flags + sflags, shard)
        return results


def run(cli, tmp, kind, flags, shard):
    out = tmp / "out.json"
    base = [cli, "select", "--device", "cpu", "--quiet"]
    if not shard:
        p = subprocess.run(
            base + [str(tmp / f"{kind}.npy")] + flags + ["-o", str(out)],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            return {"rc": p.returncode, "error": p.stderr.strip()}
        j = json.loads(out.read_text())
        return {"indices": j["indices"], "scores": j["scores"], "reasons": j["reasons"]}
    # Two shards of the pool (split on rows), then merge.
    pool = np.load(tmp / f"{kind}.npy")
    row_axis = 1 if pool.ndim == 3 and kind == "committee" or kind == "votes" else 0
    half = N // 2
    parts = []
    for i, (a, b) in enumerate(((0, half), (half, N))):
        shard_pool = np.take(pool, range(a, b), axis=row_axis)
        np.save(tmp / f"shard{i}.npy", shard_pool)
        shard_flags = []
        it = iter(flags)
        for f in it:
            if f in ("--embeddings", "--features", "--lengths"):
                path = next(it)
                side = np.load(path)[a:b]
                np.save(tmp / f"shard{i}{f[2:]}.npy", side)
                shard_flags += [f, str(tmp / f"shard{i}{f[2:]}.npy")]
            else:
                shard_flags.append(f)
        part = tmp / f"part{i}.json"
        p = subprocess.run(
            base
            + [str(tmp / f"shard{i}.npy")]
            + shard_flags
            + ["--row-offset", str(a), "--pool-rows", str(N), "-o", str(part)],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            return {"rc": p.returncode, "error": p.stderr.strip()}
        parts.append(str(part))
    k = flags[flags.index("-k") + 1] if "-k" in flags else "5"
    p = subprocess.run(
        [cli, "merge", *parts, "-k", k, "--device", "cpu", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        return {"rc": p.returncode, "error": p.stderr.strip()}
    j = json.loads(out.read_text())
    return {"indices": j["indices"], "scores": j["scores"], "reasons": j["reasons"]}


def main():
    mode, cli, path = sys.argv[1:4]
    results = run_all(cli)
    if mode == "record":
        Path(path).write_text(json.dumps(results, indent=0, sort_keys=True))
        ok = sum("indices" in r for r in results.values())
        print(f"recorded {len(results)} cases ({ok} with picks) to {path}")
        return 0
    ref = json.loads(Path(path).read_text())
    bad = [k for k in ref if results.get(k) != ref[k]]
    bad += [k for k in results if k not in ref]
    for k in bad:
        print("DIFF", k, "\n  before:", ref.get(k), "\n  after: ", results.get(k))
    print(f"{len(ref)} cases, {len(bad)} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
