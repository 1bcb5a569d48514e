"""Side by side: scikit-activeml's BADGE and core-set against quarry's CPU backend, in one run.

Writes a seeded pool (softmax probabilities [N, C] and features [N, D], float32, as .npy files),
runs each job in its own process, and prints one table: wall time and peak resident memory of the
process (from wait4), plus the time of the selection call alone for scikit-activeml. quarry runs
as the `quarry` program on the same files (--device cpu); its peak memory counts the pages of the
memory-mapped inputs it touched.

    python3 bench/compare_skactiveml.py --quarry build/quarry                   # 20,000 x 100 x 768
    python3 bench/compare_skactiveml.py --quarry build/quarry --rows 1000000 --quarry-only

scikit-activeml's BADGE forms the gradient embeddings, N x C x D values, in float64 (its one-hot
matrix is float64), and then their squares: 2 x 8 x N x C x D bytes, 24.6 GB at the default size.
When that exceeds the memory available (MemAvailable in /proc/meminfo), the script does not start
it, rather than let the kernel's OOM killer end it (and perhaps other processes), and says so.

Needs numpy and scikit-activeml (`pip install scikit-activeml`), except with --quarry-only.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def write_inputs(folder, rows, classes, dim, labeled, seed):
    """probs.npy, feat.npy (float32) and lab.npy (int64 row indices), written in pieces."""
    rng = np.random.default_rng(seed)
    probs = np.lib.format.open_memmap(
        os.path.join(folder, "probs.npy"), "w+", np.float32, (rows, classes)
    )
    feats = np.lib.format.open_memmap(
        os.path.join(folder, "feat.npy"), "w+", np.float32, (rows, dim)
    )
    step = 50_000
    for first in range(0, rows, step):
        last = min(rows, first + step)
        z = rng.standard_normal((last - first, classes), dtype=np.float32) * 2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs[first:last] = e / e.sum(axis=1, keepdims=True)
        feats[first:last] = rng.standard_normal((last - first, dim), dtype=np.float32)
    probs.flush()
    feats.flush()
    del probs, feats
    np.save(
        os.path.join(folder, "lab.npy"),
        np.sort(rng.choice(rows, labeled, replace=False)).astype(np.int64),
    )


def run_child_measured(command):
    """Runs a command; returns its stdout, wall seconds and peak RSS in bytes (wait4's rusage of
    exactly this child)."""
    start = time.perf_counter()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(write, 1)
        os.close(read)
        os.execvp(command[0], command)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} exited with status {status}")
    return b"".join(chunks).decode(), wall, usage.ru_maxrss * 1024


def child_skactiveml(args):
    """In a process of its own: one scikit-activeml query on the files; prints JSON."""
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import Badge, CoreSet

    probs = np.load(os.path.join(args.folder, "probs.npy"))
    feats = np.load(os.path.join(args.folder, "feat.npy"))
    labeled = np.load(os.path.join(args.folder, "lab.npy"))
    y = np.full(len(feats), np.nan)

    class Precomputed(SkactivemlClassifier):
        """Hands BADGE the given probabilities and features (penultimate layer)."""

        def __init__(self, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, **kwargs):
            return probs, feats

    start = time.perf_counter()
    if args.child == "badge":
        clf = Precomputed(classes=np.arange(probs.shape[1]))
        picks = Badge(random_state=args.seed).query(feats, y, clf, fit_clf=False, batch_size=args.k)
    else:
        y[labeled] = 0
        picks = CoreSet(random_state=args.seed).query(feats, y, batch_size=args.k)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "indices": [int(i) for i in picks]}))


def quarry_command(args, job):
    folder = args.folder
    base = [
        args.quarry,
        "select",
        os.path.join(folder, "probs.npy"),
        "--device",
        "cpu",
        "--quiet",
    ]
    out = ["-o", os.path.join(folder, job + ".json")]
    if job == "badge":
        return (
            base
            + [
                "-k",
                str(args.k),
                "--strategy",
                "badge",
                "--seed",
                str(args.seed),
                "--features",
                os.path.join(folder, "feat.npy"),
            ]
            + out
        )
    if job == "coreset":
        return (
            base
            + [
                "-k",
                str(args.k),
                "--strategy",
                "coreset",
                "--embeddings",
                os.path.join(folder, "feat.npy"),
                "--labeled",
                os.path.join(folder, "lab.npy"),
            ]
            + out
        )
    if job == "egl":
        return (
            base
            + [
                "-k",
                str(args.k),
                "--measure",
                "egl",
                "--features",
                os.path.join(folder, "feat.npy"),
            ]
            + out
        )
    raise ValueError(job)


def available_memory():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def skactiveml_badge_bytes(args):
    """The two N x C x D float64 arrays scikit-activeml's BADGE holds at once."""
    return 2 * 8 * args.rows * args.classes * args.dim


def gigabytes(n):
    return f"{n / 1e9:.2f} GB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quarry", default="build/quarry", help="the quarry program")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("-k", type=int, default=100, help="picks per job")
    parser.add_argument("--labeled", type=int, default=100, help="labeled rows for core-set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quarry-only", action="store_true", help="skip scikit-activeml")
    parser.add_argument("--folder", help="where the inputs go (default: a temporary folder)")
    parser.add_argument("--child", choices=["badge", "coreset"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_skactiveml(args)

    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        args.folder = folder
        shape = f"{args.rows:,} x {args.classes} x {args.dim}"
        print(f"writing {shape} float32 inputs to {folder} ...", file=sys.stderr)
        write_inputs(folder, args.rows, args.classes, args.dim, args.labeled, args.seed)
        rows = []
        for job in ["badge", "coreset"] + (["egl"] if args.quarry_only else []):
            _, wall, peak = run_child_measured(quarry_command(args, job))
            with open(os.path.join(folder, job + ".json")) as f:
                picks = json.load(f)["indices"]
            rows.append((job, "quarry cpu", wall, None, peak))
            if args.quarry_only or job == "egl":
                continue
            if job == "badge":
                needed, available = skactiveml_badge_bytes(args), available_memory()
                if available is not None and needed > 0.9 * available:
                    note = f"not run: needs {gigabytes(needed)}, {gigabytes(available)} available"
                    rows.append((job, "scikit-activeml", None, note, None))
                    continue
            child = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                job,
                "--folder",
                folder,
                "-k",
                str(args.k),
                "--seed",
                str(args.seed),
            ]
            out, peer_wall, peer_peak = run_child_measured(child)
            peer = json.loads(out)
            rows.append((job, "scikit-activeml", peer_wall, peer["seconds"], peer_peak))
            if job == "coreset":
                same = "same picks" if peer["indices"] == picks else "picks differ"
            else:  # random draws differ; the first pick (largest gradient) does not
                same = "same first pick" if peer["indices"][0] == picks[0] else "first pick differs"
            print(f"{job}: {same}", file=sys.stderr)
        print(f"\n{shape}, k = {args.k}, core-set from {args.labeled} labeled rows\n")
        print("| job | tool | process wall | selection call | peak RSS |")
        print("|---|---|---|---|---|")
        for job, tool, wall, call, peak in rows:
            if wall is None:  # not run: `call` says why
                print(f"| {job} | {tool} | {call} | | |")
                continue
            call_text = f"{call:.2f} s" if call is not None else "-"
            print(f"| {job} | {tool} | {wall:.2f} s | {call_text} | {gigabytes(peak)} |")


if __name__ == "__main__":
    main()
