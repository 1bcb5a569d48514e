"""Zero copy: a memory-mapped pool is selected in a child process whose anonymous memory
(RssAnon: not the file's pages, which plain RSS would count as they are read) does not grow by
anything near the pool's size; float64 is converted a bounded chunk at a time."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import quarry

    def rss_anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

    path, kind = sys.argv[1], sys.argv[2]
    pool = np.load(path, mmap_mode="c" if kind == "torch" else "r")
    if kind == "strided":
        pool = pool[:, : pool.shape[1] // 2]
    if kind == "torch":
        import torch
        pool = torch.from_numpy(pool)
    res = quarry.Resources("cpu")
    quarry.select(np.full((10, 4), 0.25, np.float32), 2, resources=res)  # load everything once
    before = rss_anon()
    sel = quarry.select(pool, 100, logits=True, resources=res)
    print(rss_anon() - before, int(sel.indices[0]))
    """
)


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("numpy", np.float32),
        ("strided", np.float32),
        ("float64", np.float64),
        ("torch", np.float32),
    ],
)
def test_memory_mapped_pool_is_not_copied(tmp_path, kind, dtype):
    if kind == "torch":
        pytest.importorskip("torch")
    rows, cols = 400_000, 128 if kind == "strided" else 64
    path = tmp_path / "pool.npy"
    pool = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, cols))
    rng = np.random.default_rng(3)
    for r0 in range(0, rows, 50_000):
        pool[r0 : r0 + 50_000] = rng.standard_normal((50_000, cols))
    expected = np.asarray(pool[:, :64]).astype(np.float32)
    del pool
    pool_bytes = rows * 64 * np.dtype(dtype).itemsize
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), kind], capture_output=True, text=True, check=True
    ).stdout.split()
    growth, best = int(out[0]), int(out[1])
    import quarry

    assert best == quarry.select(expected, 1, logits=True).indices[0]
    # The pool is 102-205 MB; what may grow: the scores of one chunk of rows, the converted
    # float64 chunk (16 MiB), thread stacks.
    assert growth < pool_bytes / 4, f"anonymous memory grew by {growth} bytes"
