"""Side by side: quarry's CUDA backend against the PyTorch way of doing the same jobs, in one run.

Runs each job in PyTorch eager mode (CUDA-event timing, median of repeats), runs quarry_bench for
the same shapes, and prints one table: quarry, PyTorch, the ratio, and the bandwidth floor (the
pool's bytes read once at the device-to-device copy rate measured in the same run).

    python3 bench/compare_torch.py --quarry-bench build/quarry_bench
    python3 bench/compare_torch.py --quarry-json quarry.json   # quarry_bench's JSON from before

Needs PyTorch with CUDA and a GPU. If quarry_bench needs a library path that PyTorch must not see
(a staged build's env.sh), pass a wrapper script that sets it and execs the binary.
"""

import argparse
import json
import subprocess

import torch


def timed(fn, repeats=20):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def probabilities(rows, classes, dtype=torch.float32):
    return torch.softmax(torch.randn(rows, classes, device="cuda") * 2, dim=1).to(dtype)


def entropy_topk(p, k):
    h = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)
    return torch.topk(h, k)


def margin_topk(p, k):
    top2 = torch.topk(p, 2, dim=1).values
    return torch.topk(1 - (top2[:, 0] - top2[:, 1]), k)


def least_confidence_topk(p, k):
    return torch.topk(1 - p.max(dim=1).values, k)


def logits_entropy_topk(z, k):
    return entropy_topk(torch.softmax(z.float(), dim=1), k)


def bald_topk(p, k):  # p: [M, N, C]
    mean = p.mean(dim=0)
    h_mean = -(mean * torch.log(mean.clamp_min(1e-30))).sum(dim=1)
    h_members = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=2).mean(dim=0)
    return torch.topk(h_mean - h_members, k)


def vote_entropy_topk(p, k):  # p: [M, N, C]
    votes = p.argmax(dim=2)  # [M, N]
    counts = torch.nn.functional.one_hot(votes, p.shape[2]).sum(dim=0).float() / p.shape[0]
    return torch.topk(-(counts * torch.log(counts.clamp_min(1e-30))).sum(dim=1), k)


def kmeans_torch(x, k, iterations):
    """Lloyd's k-means the PyTorch way: distances by matrix product in row tiles, argmin,
    index_add for the centroid sums; starts from the first k points, empty clusters keep their
    centroid, and ends with the assignment to the final centroids (as quarry's kmeans() does).
    Whether matrix products use TF32 is set by the caller."""
    centroids = x[:k].clone()
    n = x.shape[0]
    tile = max(1, (1 << 28) // k)  # a 1 GiB distance tile
    assignment = torch.empty(n, dtype=torch.long, device=x.device)

    def assign():
        c_norms = (centroids * centroids).sum(dim=1)
        for r0 in range(0, n, tile):
            scores = c_norms[None, :] - 2 * (x[r0 : r0 + tile] @ centroids.T)
            assignment[r0 : r0 + tile] = scores.argmin(dim=1)

    for _ in range(iterations):
        assign()
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        counts = torch.bincount(assignment, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].float()
    assign()
    return centroids, assignment


def inertia_per_point(x, centroids, assignment):
    """Exact float32 squared distances to the assigned centroids, averaged."""
    return ((x - centroids[assignment]) ** 2).sum(dim=1).mean().item()


def kmeans_table(quarry):
    """quarry's k-means (quarry_bench, device-resident points) against PyTorch fp32 and TF32 on
    random normal points, the same shapes and iteration counts. The two sides draw their own points
    from the same distribution, so inertia per point is comparable, not identical."""
    cases = [(100_000, 256, 1000, 20), (1_000_000, 128, 1000, 20), (1_000_000, 256, 10_000, 5)]
    print(
        f"\n{'k-means (random normal points)':42s} {'quarry ms':>10s} {'fp32 ms':>9s} "
        f"{'tf32 ms':>9s} {'vs tf32':>8s}   inertia/point quarry, fp32, tf32; quarry iterations"
    )
    for n, dim, k, iterations in cases:
        x = torch.randn(n, dim, device="cuda")
        row = {}
        for tf32 in (False, True):
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            ms = timed(lambda x=x, k=k, it=iterations: kmeans_torch(x, k, it), repeats=3)
            centroids, assignment = kmeans_torch(x, k, iterations)
            torch.set_float32_matmul_precision("highest")
            row[tf32] = (ms, inertia_per_point(x, centroids, assignment))
        key = f"BM_CudaKMeans/n:{n}/D:{dim}/k:{k}/iters:{iterations}/kpp:0"
        q = quarry.get(key)
        q_ms, q_inertia = (q["ms"], q.get("inertia_per_point")) if q else (None, None)
        q_iterations = f"{q['lloyd_iterations']:.0f}" if q and "lloyd_iterations" in q else "n/a"
        qs = f"{q_ms:10.1f}" if q_ms else f"{'n/a':>10s}"
        ratio = f"{row[True][0] / q_ms:7.1f}x" if q_ms else f"{'':>8s}"
        qi = f"{q_inertia:.4f}" if q_inertia else "n/a"
        title = f"N'={n:,} D={dim} k={k:,} {iterations} iterations"
        print(
            f"{title:42s} {qs} {row[False][0]:9.1f} {row[True][0]:9.1f} {ratio}   "
            f"{qi}, {row[False][1]:.4f}, {row[True][1]:.4f}; {q_iterations}"
        )
        del x


def copy_bandwidth():
    a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a))
    return 2 * a.numel() / (ms * 1e-3)


def quarry_times(binary, saved_json=None):
    """quarry_bench's CUDA cases that have a PyTorch counterpart, as name -> {"ms": time, and the
    benchmark's counters}: run now, or read from a JSON file an earlier run wrote."""
    if saved_json:
        with open(saved_json) as f:
            report = json.load(f)
    else:
        run = subprocess.run(
            [
                binary,
                "--benchmark_filter=BM_Cuda(Select|Committee|TopK|KMeans)",
                "--benchmark_format=json",
                "--benchmark_min_time=0.2",
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise SystemExit(f"{binary} failed ({run.returncode}):\n{run.stderr[-4000:]}")
        report = json.loads(run.stdout)
    results = {}
    for b in report["benchmarks"]:
        if "error_message" in b:
            continue
        ms = b["real_time"] * {"s": 1e3, "ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
        results[b["name"].split("/manual_time")[0]] = dict(b, ms=ms)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quarry-bench", default="build/quarry_bench")
    parser.add_argument(
        "--quarry-json",
        help="quarry_bench --benchmark_format=json output to use instead of running it",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    bw = copy_bandwidth()
    torch.cuda.empty_cache()  # leave the device to quarry_bench
    quarry = quarry_times(args.quarry_bench, args.quarry_json)
    print(
        f"device: {torch.cuda.get_device_name()}  copy bandwidth (read+write): {bw / 1e12:.2f} TB/s"
    )
    bandwidth_table(quarry, bw)
    torch.cuda.empty_cache()
    kmeans_table(quarry)


def bandwidth_table(quarry, bw):
    """The scoring and top-k jobs, whose floor is reading their bytes once."""
    jobs = []
    p = probabilities(10_000_000, 100)
    name = "BM_CudaSelect/rows:10000000/C:100/measure:{}/logits:{}/dtype:{}/k:1000"
    jobs.append(
        (
            "entropy + top-1000, 10M x 100 f32",
            p.numel() * 4,
            lambda: entropy_topk(p, 1000),
            name.format(3, 0, 0),
        )
    )
    jobs.append(
        (
            "margin + top-1000, same pool",
            p.numel() * 4,
            lambda: margin_topk(p, 1000),
            name.format(1, 0, 0),
        )
    )
    jobs.append(
        (
            "least confidence + top-1000, same pool",
            p.numel() * 4,
            lambda: least_confidence_topk(p, 1000),
            name.format(0, 0, 0),
        )
    )
    z = torch.randn(10_000_000, 100, device="cuda") * 2
    jobs.append(
        (
            "logits -> entropy + top-1000, same shape",
            z.numel() * 4,
            lambda: logits_entropy_topk(z, 1000),
            name.format(3, 1, 0),
        )
    )
    c = torch.softmax(torch.randn(5, 2_000_000, 100, device="cuda") * 2, dim=2)
    cname = "BM_CudaCommittee/M:5/rows:2000000/C:100/measure:{}"
    jobs.append(
        (
            "BALD + top-1000, 5 x 2M x 100 f32",
            c.numel() * 4,
            lambda: bald_topk(c, 1000),
            cname.format(7),
        )
    )
    jobs.append(
        (
            "vote entropy + top-1000, same committee",
            c.numel() * 4,
            lambda: vote_entropy_topk(c, 1000),
            cname.format(4),
        )
    )
    s = torch.rand(100_000_000, device="cuda")
    for k in (100, 1000, 100_000):
        jobs.append(
            (
                f"top-{k} of 100M f32",
                s.numel() * 4,
                lambda k=k: torch.topk(s, k),
                f"BM_CudaTopK/n:100000000/k:{k}",
            )
        )
    llm = torch.randn(4096, 131072, device="cuda", dtype=torch.bfloat16)
    jobs.append(
        (
            "LLM rows: 4096 x 131072 bf16 logits, entropy + top-100",
            llm.numel() * 2,
            lambda: logits_entropy_topk(llm, 100),
            "BM_CudaSelect/rows:4096/C:131072/measure:3/logits:1/dtype:2/k:100",
        )
    )

    print(f"{'job':58s} {'quarry ms':>10s} {'torch ms':>10s} {'speedup':>8s} {'floor ms':>9s}")
    for title, nbytes, fn, key in jobs:
        torch_ms = timed(fn)
        q = quarry[key]["ms"] if key in quarry else None
        floor_ms = nbytes / bw * 1e3  # reading the bytes once at the copy rate (read + write)
        qs = f"{q:10.3f}" if q is not None else f"{'n/a':>10s}"
        ratio = f"{torch_ms / q:7.1f}x" if q else f"{'':>8s}"
        print(f"{title:58s} {qs} {torch_ms:10.3f} {ratio} {floor_ms:9.3f}")


if __name__ == "__main__":
    main()
