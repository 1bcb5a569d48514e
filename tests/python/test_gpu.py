"""CUDA arrays: PyTorch tensors and CuPy arrays read on the device, in order with their
producer's stream, scores returned on the device; the CPU backend is the reference. Skipped
without a CUDA device (and a quarry built with CUDA)."""

import numpy as np
import pytest

import quarry

if not quarry.info()["gpus"]:
    pytest.skip("no CUDA device (or quarry built without CUDA)", allow_module_level=True)

CPU = quarry.Resources("cpu")


def reference(pool: np.ndarray, k: int, **options):
    return quarry.select(pool, k, resources=CPU, **options)


@pytest.fixture
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    return torch


def test_torch_cuda_tensor_select_and_score(torch_cuda):
    torch = torch_cuda
    gen = torch.Generator(device="cuda").manual_seed(5)
    logits = torch.randn(50_000, 17, device="cuda", generator=gen)
    gpu = quarry.Resources("cuda")
    want = reference(logits.cpu().numpy(), 200, logits=True)
    got = quarry.select(logits, 200, logits=True, resources=gpu)
    # CPU and GPU agree to 1e-5 relative: rankings can differ only among nearly equal scores.
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
    assert len(set(got.indices) ^ set(want.indices)) <= 4
    scores = quarry.score(logits, logits=True, resources=gpu)
    assert isinstance(scores, torch.Tensor) and scores.is_cuda and scores.dtype == torch.float32
    np.testing.assert_allclose(
        scores.cpu().numpy(), quarry.score(logits.cpu().numpy(), logits=True, resources=CPU),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_tensor_written_on_a_side_stream_is_read_after_the_write(torch_cuda):
    torch = torch_cuda
    gpu = quarry.Resources("cuda")
    confident = torch.tensor([0.93] + [0.01] * 7, device="cuda")
    pool = confident.repeat(2_000_000, 1)  # every row scores 1 - 0.93 = 0.07
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # keep the side stream busy, then make one row uniform
        pool[1_234_567] = 0.125
        # quarry is called while the write is still queued: __dlpack__(stream=quarry's stream)
        # makes quarry's stream wait for the side stream (the current stream here).
        picks = quarry.select(pool, 1, measure="least_confidence", resources=gpu)
    # Read after the write, the uniform row (0.875) is the one pick; read early, row 0 would be.
    assert picks.indices[0] == 1_234_567
    np.testing.assert_allclose(picks.scores[0], 0.875, rtol=1e-6)


def test_device_scores_are_written_after_the_frameworks_stream(torch_cuda):
    # The scores come from PyTorch's caching allocator on the current (side) stream. A block freed
    # there goes to the next allocation at once, while a kernel queued on the stream still writes
    # it: quarry's stream must wait for the side stream before writing the scores.
    torch = torch_cuda
    gpu = quarry.Resources("cuda")
    rows = 1_000_000
    pool = torch.softmax(torch.randn(rows, 6, device="cuda"), dim=1)
    want = quarry.score(pool.cpu().numpy(), resources=CPU)
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        stale = torch.empty(rows, dtype=torch.float32, device="cuda")
        torch.cuda._sleep(50_000_000)
        stale.fill_(float("nan"))  # queued behind the sleep
        del stale  # its block is free for the next allocation on this stream
        scores = quarry.score(pool, resources=gpu)
    torch.cuda.synchronize()
    got = scores.cpu().numpy()
    assert not np.isnan(got).any(), "the scores were overwritten by work queued before them"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_stream_zero_is_the_legacy_default_stream(torch_cuda):
    # stream=0 (PyTorch's default stream) is borrowed as CUDA's legacy default stream
    # (cudaStreamLegacy, 1 in DLPack's numbering), which orders with the default stream's work.
    torch = torch_cuda
    res = quarry.Resources("cuda", stream=0)
    assert res.cuda_stream == 1
    confident = torch.tensor([0.93] + [0.01] * 7, device="cuda")
    pool = confident.repeat(2_000_000, 1)
    torch.cuda.synchronize()
    torch.cuda._sleep(50_000_000)  # on the default stream, then one row made uniform
    pool[1_234_567] = 0.125
    picks = quarry.select(pool, 1, measure="least_confidence", resources=res)
    assert picks.indices[0] == 1_234_567


def test_borrowed_stream(torch_cuda):
    torch = torch_cuda
    stream = torch.cuda.Stream()
    res = quarry.Resources("cuda", stream=stream)
    assert res.cuda_stream == stream.cuda_stream
    probs = torch.softmax(torch.randn(10_000, 5, device="cuda"), dim=1)
    want = reference(probs.cpu().numpy(), 50)
    np.testing.assert_allclose(
        quarry.select(probs, 50, resources=res).scores, want.scores, rtol=1e-5
    )


def test_float16_bfloat16_and_strided_tensors(torch_cuda):
    torch = torch_cuda
    gpu = quarry.Resources("cuda")
    base = torch.randn(30_000, 24, device="cuda")
    for pool in (base.half(), base.bfloat16(), base[:, :12], base[::2]):
        host = pool.float().cpu().numpy()
        np.testing.assert_allclose(
            quarry.score(pool, logits=True, resources=gpu).cpu().numpy(),
            quarry.score(host, logits=True, resources=CPU),
            rtol=1e-5, atol=1e-6,
        )  # fmt: skip


def test_cupy_arrays():
    cupy = pytest.importorskip("cupy")
    gpu = quarry.Resources("cuda")
    committee = cupy.random.dirichlet(cupy.ones(6), size=(5, 20_000)).astype(cupy.float32)
    want = reference(cupy.asnumpy(committee), 100, measure="bald")
    got = quarry.select(committee, 100, measure="bald", resources=gpu)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4)
    scores = quarry.score(committee, "bald", resources=gpu)
    assert isinstance(scores, cupy.ndarray)


def test_cuda_array_interface_only(torch_cuda):
    torch = torch_cuda

    class Wrapped:  # a producer with __cuda_array_interface__ and nothing else (numba-like)
        def __init__(self, tensor):
            self.tensor = tensor
            self.__cuda_array_interface__ = tensor.__cuda_array_interface__

    probs = torch.softmax(torch.randn(5_000, 7, device="cuda"), dim=1)
    got = quarry.select(Wrapped(probs), 20, resources=quarry.Resources("cuda"))
    np.testing.assert_allclose(got.scores, reference(probs.cpu().numpy(), 20).scores, rtol=1e-5)


def test_device_float64_is_refused(torch_cuda):
    torch = torch_cuda
    with pytest.raises(quarry.InvalidArgument, match="host memory"):
        quarry.select(torch.full((10, 2), 0.5, device="cuda", dtype=torch.float64), 1)
