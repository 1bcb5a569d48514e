"""Shared fixtures: the quarry program to compare with, and random pools."""

import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import quarry

REPO = Path(__file__).resolve().parents[2]


def cli_path() -> Path:
    """$QUARRY_CLI, else the build's program, else the one installed inside the package."""
    if os.environ.get("QUARRY_CLI"):
        return Path(os.environ["QUARRY_CLI"])
    for candidate in (REPO / "build" / "quarry", REPO / "build-cpu" / "quarry"):
        if candidate.exists():
            return candidate
    return Path(quarry.__file__).parent / "bin" / "quarry"


@pytest.fixture(scope="session")
def cli():
    path = cli_path()
    assert path.exists(), f"quarry program not found at {path}"

    def run(*args, check=True):
        result = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.fixture
def rng(request):
    seed = zlib.crc32(request.node.name.encode())  # fixed per test, unlike hash()
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def random_probs(rng, *shape, dtype=np.float32):
    logits = rng.normal(size=shape) * 2.0
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)).astype(dtype)
