// CUDA backend benchmarks: scoring + top-k end to end on device-resident pools, top-k alone, and a
// device-to-device copy measured in the same program as the bandwidth reference. Times come from
// CUDA events (manual time); pools are far larger than L2 except in the small-pool case, which
// flushes L2 between iterations.

#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/topk.cuh"
#include "quarry/quarry.hpp"

namespace {

using namespace quarry;

#define BENCH_CUDA(call)                                                   \
  do {                                                                     \
    cudaError_t e = (call);                                                \
    if (e != cudaSuccess) throw std::runtime_error(cudaGetErrorString(e)); \
  } while (0)

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Two independent uniforms in (0, 1) and [0, 1) from a counter-based hash (splitmix64) of i: large
// random arrays made on the device in milliseconds instead of on the host in seconds, with no
// repeated rows (whose scores would tie).
__device__ __forceinline__ float2 hashed_uniforms(uint64_t i, uint64_t seed) {
  uint64_t z = seed + i * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  // 23 bits for the first, so that k + 0.5 is exact and the value stays below 1.
  return {(static_cast<float>(z >> 41) + 0.5f) * (1.0f / 8388608.0f),
          static_cast<float>((z >> 16) & 0xffffffu) * (1.0f / 16777216.0f)};
}
__device__ __forceinline__ float hashed_normal(uint64_t i, uint64_t seed) {
  const float2 u = hashed_uniforms(i, seed);
  return sqrtf(-2.0f * logf(u.x)) * cospif(2.0f * u.y);  // Box-Muller
}

// Standard normal values.
__global__ void fill_normal(float* out, int64_t n, uint64_t seed) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = hashed_normal(static_cast<uint64_t>(i), seed);
}

__device__ __forceinline__ void store(float* p, float v) {
  *p = v;
}
__device__ __forceinline__ void store(__half* p, float v) {
  *p = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

// Rows of a pool, a warp per row: logits N(0, 2^2), or probabilities from exponential values
// normalised by their sum (a flat Dirichlet row). Values are regenerated for the second pass
// rather than kept.
template <typename T>
__global__ void fill_pool_rows(T* out, int64_t rows, int64_t classes, bool logits, uint64_t seed) {
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    auto value = [&](int64_t c) {
      const uint64_t i = static_cast<uint64_t>(r * classes + c);
      return logits ? 2.0f * hashed_normal(i, seed) : -logf(hashed_uniforms(i, seed).x);
    };
    float sum = 0.0f;
    if (!logits) {
      for (int64_t c = lane; c < classes; c += 32) sum += value(c);
      for (int offset = 16; offset > 0; offset /= 2)
        sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    }
    const float scale = logits ? 1.0f : 1.0f / sum;
    for (int64_t c = lane; c < classes; c += 32) store(out + r * classes + c, value(c) * scale);
  }
}

// A random device-resident pool of [members * rows, classes] values.
struct DevicePool {
  void* data = nullptr;
  size_t bytes = 0;
  DevicePool(int64_t rows, int64_t classes, DType dtype, bool logits, int64_t members = 1) {
    const int64_t total_rows = rows * members;
    bytes = static_cast<size_t>(total_rows * classes) * dtype_size(dtype);
    BENCH_CUDA(cudaMalloc(&data, bytes));
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total_rows + 7) / 8, 65536));
    if (dtype == DType::f32)
      fill_pool_rows<<<blocks, 256>>>(static_cast<float*>(data), total_rows, classes, logits, 11);
    else if (dtype == DType::f16)
      fill_pool_rows<<<blocks, 256>>>(static_cast<__half*>(data), total_rows, classes, logits, 11);
    else
      fill_pool_rows<<<blocks, 256>>>(static_cast<__nv_bfloat16*>(data), total_rows, classes,
                                      logits, 11);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaDeviceSynchronize());  // quarry's own stream does not wait for stream 0
  }
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool() { cudaFree(data); }
};

// The fastest of several copies of `bytes` from `src` to `dst`, in seconds (CUDA events).
double fastest_copy_seconds(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  BENCH_CUDA(cudaMemcpy(dst, src, bytes, kind));  // warm-up
  float best = 1e30f;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(start);
    cudaMemcpyAsync(dst, src, bytes, kind);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms;
    cudaEventElapsedTime(&ms, start, stop);
    best = std::min(best, ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best * 1e-3;
}

// Device-to-device copy bandwidth (bytes read + written per second), measured once.
double copy_bandwidth() {
  static const double bw = [] {
    const size_t bytes = size_t{2} << 30;
    void *a, *b;
    BENCH_CUDA(cudaMalloc(&a, bytes));
    BENCH_CUDA(cudaMalloc(&b, bytes));
    BENCH_CUDA(cudaMemset(a, 1, bytes));
    const double seconds = fastest_copy_seconds(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * bytes / seconds;
  }();
  return bw;
}

// Times `body` with CUDA events on the default stream around each call (select() returns only
// once its results are on the host, so the events bracket the whole job).
template <typename Body>
void run_timed(benchmark::State& state, size_t bytes, Body&& body, void* flush = nullptr,
               size_t flush_bytes = 0) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  body();  // warm-up: allocations, module loading
  for (auto _ : state) {
    if (flush) {
      BENCH_CUDA(cudaMemsetAsync(flush, static_cast<int>(state.iterations() & 0xff), flush_bytes));
      BENCH_CUDA(cudaDeviceSynchronize());  // quarry's stream is non-blocking: flush first
    }
    cudaEventRecord(start);
    body();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms * 1e-3);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  // Fraction of the device copy bandwidth (read + write) that reading the pool once reached.
  state.counters["of_copy_bw"] = benchmark::Counter(static_cast<double>(bytes) / copy_bandwidth(),
                                                    benchmark::Counter::kIsIterationInvariantRate);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void BM_DeviceCopy(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  state.counters["copy_bytes_per_second"] = copy_bandwidth();
  for (auto _ : state) state.SetIterationTime(1.0);
}

// Single-model measure + top-1000 over a device-resident [rows, classes] pool.
void BM_CudaSelect(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t rows = state.range(0), classes = state.range(1);
  const auto measure = static_cast<Measure>(state.range(2));
  const bool logits = state.range(3) != 0;
  const auto dtype = static_cast<DType>(state.range(4));
  const int64_t k = state.range(5);
  try {
    DevicePool pool(rows, classes, dtype, logits);
    Resources gpu(Device::cuda);
    SelectOptions opt;
    opt.k = k;
    opt.scoring.measure = measure;
    opt.scoring.logits = logits;
    const PoolView view = PoolView::matrix(pool.data, dtype, rows, classes, MemorySpace::device);
    void* flush = nullptr;
    const size_t flush_bytes = pool.bytes < (size_t{256} << 20) ? size_t{256} << 20 : 0;
    if (flush_bytes) BENCH_CUDA(cudaMalloc(&flush, flush_bytes));
    run_timed(
        state, pool.bytes, [&] { benchmark::DoNotOptimize(select(gpu, view, opt)); }, flush,
        flush_bytes);
    if (flush) cudaFree(flush);
    state.SetLabel(std::string(to_string(measure)) + (logits ? " logits " : " probs ") +
                   std::string(to_string(dtype)));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Committee measure + top-1000 over a device-resident [members, rows, classes] pool.
void BM_CudaCommittee(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t members = state.range(0), rows = state.range(1), classes = state.range(2);
  const auto measure = static_cast<Measure>(state.range(3));
  try {
    DevicePool pool(rows, classes, DType::f32, false, members);
    Resources gpu(Device::cuda);
    SelectOptions opt;
    opt.k = 1000;
    opt.scoring.measure = measure;
    const PoolView view = PoolView::committee(pool.data, DType::f32, members, rows, classes,
                                              Layout::members_first, MemorySpace::device);
    run_timed(state, pool.bytes, [&] { benchmark::DoNotOptimize(select(gpu, view, opt)); });
    state.SetLabel(std::string(to_string(measure)));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Top-k alone over n device scores.
void BM_CudaTopK(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t n = state.range(0), k = state.range(1);
  try {
    float *scores, *out_scores;
    int64_t* out_rows;
    void* ws;
    const size_t ws_bytes = kernels::topk_workspace_bytes(n, k);
    BENCH_CUDA(cudaMalloc(&scores, n * sizeof(float)));
    BENCH_CUDA(cudaMalloc(&out_scores, k * sizeof(float)));
    BENCH_CUDA(cudaMalloc(&out_rows, k * sizeof(int64_t)));
    BENCH_CUDA(cudaMalloc(&ws, ws_bytes));
    fill_normal<<<static_cast<unsigned>((n + 255) / 256), 256>>>(scores, n, 5);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaDeviceSynchronize());
    run_timed(state, n * sizeof(float),
              [&] { kernels::topk(scores, n, k, out_rows, out_scores, ws, ws_bytes, nullptr); });
    cudaFree(scores);
    cudaFree(out_scores);
    cudaFree(out_rows);
    cudaFree(ws);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Pinned host-to-device bandwidth, measured once.
double h2d_bandwidth() {
  static const double bw = [] {
    const size_t bytes = size_t{1} << 30;
    void *host, *device;
    BENCH_CUDA(cudaMallocHost(&host, bytes));
    BENCH_CUDA(cudaMalloc(&device, bytes));
    std::memset(host, 1, bytes);
    const double seconds = fastest_copy_seconds(device, host, bytes, cudaMemcpyHostToDevice);
    cudaFreeHost(host);
    cudaFree(device);
    return bytes / seconds;
  }();
  return bw;
}

// Streaming a host pool 1.5x the memory budget: entropy + top-1000 over rows x 100 f32 in pinned
// (range(1) = 1) or pageable host memory, reported against the pinned host-to-device bandwidth.
void BM_CudaStreamHost(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t rows = state.range(0), classes = 100;
  const bool pinned = state.range(1) != 0;
  const size_t bytes = static_cast<size_t>(rows * classes) * sizeof(float);
  try {
    float* host = nullptr;
    std::vector<float> pageable;
    if (pinned) {
      BENCH_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host), bytes));
    } else {
      pageable.resize(rows * classes);
      host = pageable.data();
    }
    // Fill by repeating a block of random rows.
    std::mt19937 rng(3);
    std::exponential_distribution<float> expo(1.0f);
    const int64_t block_rows = 4096;
    for (int64_t r = 0; r < block_rows; ++r) {
      float sum = 0;
      for (int64_t c = 0; c < classes; ++c) sum += host[r * classes + c] = expo(rng);
      for (int64_t c = 0; c < classes; ++c) host[r * classes + c] /= sum;
    }
    for (int64_t r = block_rows; r < rows; r += block_rows)
      std::memcpy(host + r * classes, host,
                  std::min(block_rows, rows - r) * classes * sizeof(float));
    Resources gpu(Device::cuda);
    gpu.set_memory_budget(bytes / 3 * 2);
    SelectOptions opt;
    opt.k = 1000;
    const PoolView view = PoolView::matrix(host, DType::f32, rows, classes);
    run_timed(state, bytes, [&] { benchmark::DoNotOptimize(select(gpu, view, opt)); });
    state.counters["of_pinned_h2d_bw"] =
        benchmark::Counter(static_cast<double>(bytes) / h2d_bandwidth(),
                           benchmark::Counter::kIsIterationInvariantRate);
    state.counters["peak_device_bytes"] = static_cast<double>(gpu.peak_device_memory());
    state.counters["budget_bytes"] = static_cast<double>(gpu.memory_budget());
    if (pinned) cudaFreeHost(host);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// k-means over n device-resident random normal points of `dim` dimensions into k clusters, for a
// fixed number of Lloyd iterations, end to end through kmeans(): the gather of the points, the
// iterations, the final assignment and the copies of centroids and assignments to the host.
// Started from the first k points (what compare_torch.py's PyTorch k-means does), or with
// k-means++ (kpp = 1) to show what seeding costs. Reports the iterations run and the inertia per
// point, to compare quality with the PyTorch version.
void BM_CudaKMeans(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t n = state.range(0), dim = state.range(1), k = state.range(2);
  const int iterations = static_cast<int>(state.range(3));
  const bool plus_plus = state.range(4) != 0;
  try {
    float* points = nullptr;
    BENCH_CUDA(cudaMalloc(&points, n * dim * sizeof(float)));
    const int64_t count = n * dim;
    fill_normal<<<static_cast<unsigned>((count + 255) / 256), 256>>>(points, count, 7);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaDeviceSynchronize());
    Resources gpu(Device::cuda);
    KMeansOptions opt;
    opt.iterations = iterations;
    if (!plus_plus) {
      opt.initial_centroids.resize(k * dim);
      BENCH_CUDA(cudaMemcpy(opt.initial_centroids.data(), points, k * dim * sizeof(float),
                            cudaMemcpyDeviceToHost));
    }
    const EmbeddingView view =
        EmbeddingView::matrix(points, DType::f32, n, dim, MemorySpace::device);
    KMeansResult result;
    run_timed(state, n * dim * sizeof(float), [&] { result = kmeans(gpu, view, k, opt); });
    state.counters["lloyd_iterations"] = result.iterations;
    state.counters["inertia_per_point"] = result.inertia / static_cast<double>(n);
    cudaFree(points);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Influence and coverage over a device-resident [rows, classes] pool with [rows, D] features:
// egl + top-1000 (job 0), BADGE (1) and core-set from no labeled rows (2), k picks.
void BM_CudaInfluence(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t rows = state.range(0), classes = state.range(1), dim = state.range(2);
  const int64_t job = state.range(3), k = state.range(4);
  try {
    DevicePool pool(rows, classes, DType::f32, false);
    float* features = nullptr;
    BENCH_CUDA(cudaMalloc(&features, rows * dim * sizeof(float)));
    fill_normal<<<static_cast<unsigned>((rows * dim + 255) / 256), 256>>>(features, rows * dim, 5);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaDeviceSynchronize());
    Resources gpu(Device::cuda);
    SelectOptions opt;
    opt.k = k;
    const EmbeddingView h =
        EmbeddingView::matrix(features, DType::f32, rows, dim, MemorySpace::device);
    if (job == 0) {
      opt.scoring.measure = Measure::egl;
      opt.scoring.features = h;
    } else if (job == 1) {
      opt.strategy = Strategy::badge;
      opt.scoring.features = h;
    } else {
      opt.strategy = Strategy::coreset;
      opt.embeddings = h;
    }
    const PoolView view =
        PoolView::matrix(pool.data, DType::f32, rows, classes, MemorySpace::device);
    run_timed(state, pool.bytes + rows * dim * sizeof(float),
              [&] { benchmark::DoNotOptimize(select(gpu, view, opt)); });
    state.SetLabel(job == 0 ? "egl" : job == 1 ? "badge" : "coreset");
    cudaFree(features);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---- LLM outputs ------------------------------------------------------------------------------

// n f16 values uniform in [lo, hi).
__global__ void fill_uniform_f16(__half* out, int64_t n, float lo, float hi, uint64_t seed) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2half_rn(lo + (hi - lo) * hashed_uniforms(i, seed).y);
}

// An f16 LLM-output pool of `count` values, on the device or in pinned host memory.
struct HalfPool {
  __half* data = nullptr;
  size_t bytes = 0;
  bool host = false;
  HalfPool(int64_t count, float lo, float hi, bool on_host) : bytes(count * 2), host(on_host) {
    __half* device = nullptr;
    BENCH_CUDA(cudaMalloc(&device, bytes));
    fill_uniform_f16<<<static_cast<unsigned>((count + 255) / 256), 256>>>(device, count, lo, hi,
                                                                          13);
    BENCH_CUDA(cudaGetLastError());
    BENCH_CUDA(cudaDeviceSynchronize());
    if (!host) {
      data = device;
      return;
    }
    BENCH_CUDA(cudaMallocHost(reinterpret_cast<void**>(&data), bytes));
    BENCH_CUDA(cudaMemcpy(data, device, bytes, cudaMemcpyDeviceToHost));
    cudaFree(device);
  }
  HalfPool(const HalfPool&) = delete;
  HalfPool& operator=(const HalfPool&) = delete;
  ~HalfPool() { host ? cudaFreeHost(data) : cudaFree(data); }
};

// An LLM measure + top-1000 over an f16 pool [rows, a, b] (top-K: a = steps, b = K; samples: a =
// S, b = D; token log-probabilities: a = steps, b = 1), every row full length; in device memory,
// or streamed from pinned host memory (range(4) = 1) against the pinned host-to-device bandwidth.
void BM_CudaLlm(benchmark::State& state) {
  if (!have_gpu()) return state.SkipWithError("no CUDA device");
  const int64_t rows = state.range(0), a = state.range(1), b = state.range(2);
  const auto measure = static_cast<Measure>(state.range(3));
  const bool host = state.range(4) != 0;
  try {
    const PoolKind kind = pool_kind(measure);
    const bool samples = kind == PoolKind::samples;
    HalfPool pool(rows * a * b, samples ? -1.0f : -15.0f, samples ? 1.0f : 0.0f, host);
    const MemorySpace space = host ? MemorySpace::host : MemorySpace::device;
    const PoolView view =
        kind == PoolKind::token_logprobs
            ? PoolView::token_logprobs(pool.data, DType::f16, rows, a, nullptr, DType::i64, space)
        : kind == PoolKind::top_logprobs
            ? PoolView::top_logprobs(pool.data, DType::f16, rows, a, b, nullptr, DType::i64, space)
            : PoolView::samples(pool.data, DType::f16, rows, a, b, space);
    Resources gpu(Device::cuda);
    SelectOptions opt;
    opt.k = 1000;
    opt.scoring.measure = measure;
    run_timed(state, pool.bytes, [&] { benchmark::DoNotOptimize(select(gpu, view, opt)); });
    state.counters["rows_per_second"] = benchmark::Counter(
        static_cast<double>(rows), benchmark::Counter::kIsIterationInvariantRate);
    if (host)
      state.counters["of_pinned_h2d_bw"] =
          benchmark::Counter(static_cast<double>(pool.bytes) / h2d_bandwidth(),
                             benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel(std::string(to_string(measure)) + " f16" + (host ? " pinned host" : ""));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

constexpr int kF32 = static_cast<int>(DType::f32), kF16 = static_cast<int>(DType::f16),
              kBF16 = static_cast<int>(DType::bf16);
constexpr int kEntropy = static_cast<int>(Measure::entropy),
              kMargin = static_cast<int>(Measure::margin),
              kLeastConfidence = static_cast<int>(Measure::least_confidence);

BENCHMARK(BM_DeviceCopy)->UseManualTime()->Iterations(1);
BENCHMARK(BM_CudaSelect)
    ->ArgNames({"rows", "C", "measure", "logits", "dtype", "k"})
    ->Args({10'000'000, 100, kEntropy, 0, kF32, 1000})
    ->Args({10'000'000, 100, kMargin, 0, kF32, 1000})
    ->Args({10'000'000, 100, kLeastConfidence, 0, kF32, 1000})
    ->Args({10'000'000, 100, kEntropy, 1, kF32, 1000})
    ->Args({10'000'000, 100, kEntropy, 0, kF16, 1000})
    ->Args({10'000'000, 100, kEntropy, 1, kBF16, 1000})
    ->Args({4096, 131072, kEntropy, 1, kBF16, 100})
    ->Args({100'000, 10, kEntropy, 0, kF32, 100})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaCommittee)
    ->ArgNames({"M", "rows", "C", "measure"})
    ->Args({5, 2'000'000, 100, static_cast<int>(Measure::bald)})
    ->Args({5, 2'000'000, 100, static_cast<int>(Measure::vote_entropy)})
    ->Args({5, 2'000'000, 100, static_cast<int>(Measure::kl_max)})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaStreamHost)
    ->ArgNames({"rows", "pinned"})
    ->Args({30'000'000, 1})  // 12 GB
    ->Args({30'000'000, 0})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaKMeans)
    ->ArgNames({"n", "D", "k", "iters", "kpp"})
    ->Args({100'000, 256, 1000, 20, 0})
    ->Args({1'000'000, 128, 1000, 20, 0})
    ->Args({1'000'000, 256, 10'000, 5, 0})
    ->Args({100'000, 256, 1000, 20, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaInfluence)
    ->ArgNames({"rows", "C", "D", "job", "k"})
    ->Args({1'000'000, 100, 768, 0, 1000})
    ->Args({1'000'000, 100, 768, 1, 100})
    ->Args({1'000'000, 100, 768, 2, 100})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
// The issue's sizes: 1M rows x 128 steps x K = 20 (5 GB of f16) and 1M rows x 10 samples x 768
// (15 GB), resident and streamed from pinned host memory.
BENCHMARK(BM_CudaLlm)
    ->ArgNames({"rows", "a", "b", "measure", "host"})
    ->Args({1'000'000, 128, 20, static_cast<int>(Measure::mean_token_entropy), 0})
    ->Args({1'000'000, 128, 20, static_cast<int>(Measure::mean_token_margin), 0})
    ->Args({1'000'000, 128, 20, static_cast<int>(Measure::mean_token_entropy), 1})
    ->Args({1'000'000, 10, 768, static_cast<int>(Measure::eigenscore), 0})
    ->Args({1'000'000, 10, 768, static_cast<int>(Measure::semantic_entropy), 0})
    ->Args({1'000'000, 10, 768, static_cast<int>(Measure::eigenscore), 1})
    ->Args({10'000'000, 128, 1, static_cast<int>(Measure::perplexity), 0})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CudaTopK)
    ->ArgNames({"n", "k"})
    ->Args({100'000'000, 100})
    ->Args({100'000'000, 1000})
    ->Args({100'000'000, 100'000})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
