"""Selections with the installed wheel (tests/wheel/check.sh), each checked against numpy.

The quarry program ranks examples/pool.npy by entropy; quarry.select and the program pick, with
diversity, one row per cluster of a pool whose embeddings are five far-apart blobs: the
highest-entropy row of each blob.
"""

import json
import subprocess
import sys

import numpy as np

import quarry


def entropy(probs: np.ndarray) -> np.ndarray:
    p = probs.astype(np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def best_first(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]  # ties: the lower row


def main() -> None:
    program = sys.argv[1]
    assert quarry.__file__ and "site-packages" in quarry.__file__, quarry.__file__

    pool = np.load("pool.npy")
    out = subprocess.run(
        [program, "select", "pool.npy", "-k", "5"], check=True, capture_output=True, text=True
    ).stdout
    picks = [int(line) for line in out.split()]
    assert picks == best_first(entropy(pool), 5), (picks, best_first(entropy(pool), 5))

    rng = np.random.default_rng(20261207)
    blobs, per_blob, k = 5, 100, 5
    probs = rng.dirichlet(np.ones(8), size=blobs * per_blob).astype(np.float32)
    centers = rng.normal(size=(blobs, 16)) * 100.0
    blob = np.repeat(np.arange(blobs), per_blob)
    emb = (centers[blob] + rng.normal(size=(blobs * per_blob, 16)) * 0.01).astype(np.float32)
    scores = entropy(probs)
    expected = sorted(
        int(np.flatnonzero(blob == b)[np.argmax(scores[blob == b])]) for b in range(blobs)
    )

    selection = quarry.select(
        probs,
        k,
        embeddings=emb,
        candidates=blobs * per_blob,
        seed=7,
        resources=quarry.Resources(device="cpu"),
    )
    assert sorted(selection.indices.tolist()) == expected, (selection.indices, expected)
    assert sorted(blob[selection.indices].tolist()) == list(range(blobs))
    assert set(selection.reasons) == {"cluster"}, selection.reasons

    np.save("probs.npy", probs)
    np.save("emb.npy", emb)
    subprocess.run(
        [
            program,
            "select",
            "probs.npy",
            "-k",
            str(k),
            "--embeddings",
            "emb.npy",
            "--candidates",
            str(blobs * per_blob),
            "--seed",
            "7",
            "--output",
            "picks.json",
        ],
        check=True,
    )
    with open("picks.json") as f:
        cli = json.load(f)
    assert cli["indices"] == selection.indices.tolist(), (cli["indices"], selection.indices)
    print(
        f"select with diversity: {selection.indices.tolist()} (numpy: {expected}), program: "
        f"{picks} by entropy"
    )


if __name__ == "__main__":
    main()
