"""The device-array handshakes, checked without a GPU: which stream quarry hands a DLPack
producer, and how a __cuda_array_interface__ is read (the CPU backend then refuses device memory
with a clear error rather than reading it)."""

import numpy as np
import pytest

import quarry

CPU = quarry.Resources("cpu")


class FakeCudaResources:
    device = "cuda"
    cuda_stream = 0x5EED


class FakeCudaArray:
    """Looks like a CUDA array to DLPack consumers; records how it was asked for its capsule."""

    def __init__(self, accepts_max_version=True):
        self.accepts_max_version = accepts_max_version
        self.calls = []

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, stream=None, max_version=None):
        if max_version is not None and not self.accepts_max_version:
            raise TypeError("unexpected keyword argument 'max_version'")
        self.calls.append({"stream": stream, "max_version": max_version})
        return "capsule"


def test_device_arrays_are_exported_on_quarrys_stream():
    array = FakeCudaArray()
    assert quarry._input(array, FakeCudaResources()) == "capsule"
    assert array.calls == [{"stream": 0x5EED, "max_version": (1, 0)}]
    old = FakeCudaArray(accepts_max_version=False)  # a producer older than DLPack 1.0
    assert quarry._input(old, FakeCudaResources()) == "capsule"
    assert old.calls == [{"stream": 0x5EED, "max_version": None}]


def test_host_arrays_and_cpu_resources_pass_through():
    host = np.zeros((2, 2), np.float32)
    assert quarry._input(host, FakeCudaResources()) is host
    device = FakeCudaArray()
    assert quarry._input(device, CPU) is device and device.calls == []


class CudaArrayInterface:
    def __init__(self, **fields):
        self.__cuda_array_interface__ = {
            "shape": (4, 3),
            "typestr": "<f4",
            "data": (0x7000_0000, False),
            "version": 3,
            **fields,
        }


def test_cuda_array_interface_is_read_as_device_memory():
    with pytest.raises(quarry.InvalidArgument, match="CPU backend needs the pool in host memory"):
        quarry.select(CudaArrayInterface(stream=1), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="CPU backend"):
        quarry.select(CudaArrayInterface(strides=(24, 4)), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="contiguous"):
        quarry.select(CudaArrayInterface(strides=(4, 16)), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="multiple of the element size"):
        quarry.select(CudaArrayInterface(strides=(14, 4)), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="little-endian"):
        quarry.select(CudaArrayInterface(typestr=">f4"), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="unsupported dtype uint8"):
        quarry.select(CudaArrayInterface(typestr="|u1"), 1, resources=CPU)
    with pytest.raises(quarry.InvalidArgument, match="masked"):
        quarry.select(CudaArrayInterface(mask=object()), 1, resources=CPU)
