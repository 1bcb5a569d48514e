"""The Python module loads no CUDA library unless a GPU is there: `ldd` of the module lists
none, and a CPU selection with device="auto" in a process that does not import torch (PyPI's
torch loads cuBLAS itself) leaves none mapped."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import quarry

CUDA_LIBRARIES = ("libcudart", "libcublas", "libcuda.so", "libquarry_cuda")


def test_info_says_why_cuda_is_unavailable():
    cuda = quarry.info()["cuda"]
    assert cuda["status"] in {"available", "not_built", "no_plugin", "no_driver", "no_device"}
    if not quarry.info()["gpus"]:
        assert cuda["status"] != "available"
        assert cuda["detail"]
        assert cuda["device_count"] == 0


@pytest.mark.skipif(shutil.which("ldd") is None, reason="no ldd")
def test_module_links_no_cuda_library():
    module = Path(quarry._quarry.__file__)
    linked = subprocess.run(["ldd", str(module)], capture_output=True, text=True).stdout
    assert "libquarry.so" in linked  # the check reads the real dependency list
    for name in CUDA_LIBRARIES:
        assert name not in linked, linked


def test_cpu_selection_with_device_auto_maps_no_cuda_library():
    if quarry.info()["gpus"]:
        pytest.skip("a GPU is present: device='auto' loads the CUDA backend")
    child = """
import numpy as np, quarry
rng = np.random.default_rng(5)
p = rng.random((2000, 10), dtype=np.float32); p /= p.sum(axis=1, keepdims=True)
picks = quarry.select(p, 10, resources=quarry.Resources("auto"))
assert quarry.Resources("auto").device == "cpu"
assert len(picks.indices) == 10
print(open("/proc/self/maps").read())
"""
    maps = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True
    ).stdout
    assert "libquarry" in maps  # the check can see the libraries the process mapped
    for name in CUDA_LIBRARIES:
        assert name not in maps, [line for line in maps.splitlines() if name in line]
