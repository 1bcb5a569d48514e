// The CUDA backend: pools in host memory are copied to the device in chunks of rows, pools in
// device memory are read in place; scores stay on the device for the top-k, and only the k results
// (or the scores, for score()) come back. All memory comes from a stream-ordered pool owned here
// and is kept between calls.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cub/device/device_for.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>

#include "engine/backend.hpp"
#include "engine/cuda/cuda_influence.cuh"
#include "engine/cuda/cuda_memory.cuh"
#include "engine/kmeans_host.hpp"
#include "engine/threads.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/kmeans.cuh"
#include "kernels/measures.hpp"
#include "kernels/score.cuh"
#include "kernels/topk.cuh"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

using kernels::ElementType;
using kernels::MeasureId;

struct ToDouble {
  __host__ __device__ double operator()(float v) const { return v; }
};
struct Magnitude {
  __host__ __device__ float operator()(float v) const { return fabsf(v); }
};
struct Larger {
  __host__ __device__ float operator()(float a, float b) const { return a > b ? a : b; }
};
// Element-wise work through CUB (not thrust's algorithms, which synchronise and allocate outside
// the backend's pool): failures come back as CUDA errors on quarry's stream.
struct ScaleByPowerOfTwo {
  float* x;
  int exponent;
  __device__ void operator()(int64_t i) const { x[i] = ldexpf(x[i], exponent); }
};
struct Iota {
  int32_t* out;
  __device__ void operator()(int32_t i) const { out[i] = i; }
};
template <typename T>
struct Fill {
  T* out;
  T value;
  __device__ void operator()(int64_t i) const { out[i] = value; }
};

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_ALLOC_FAILED)
    throw OutOfMemory(std::string("cuBLAS ran out of memory in ") + what);
  if (status != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string("cuBLAS error ") + std::to_string(static_cast<int>(status)) +
                    " in " + what);
}

// A pool as the kernels read it; `type` given apart, as f64 pools reach the kernels as f32.
kernels::PoolRows pool_rows(const PoolView& view, ElementType type) {
  kernels::PoolRows rows;
  rows.data = view.data;
  rows.type = type;
  rows.rows = view.rows;
  rows.members = view.members;
  rows.classes = view.classes;
  rows.row_stride = view.row_stride;
  rows.member_stride = view.member_stride;
  rows.lengths = view.lengths;
  if (view.lengths != nullptr) rows.length_type = element_type(view.lengths_dtype);
  return rows;
}

kernels::ScoreParams score_params(const ScoreOptions& opt) {
  kernels::ScoreParams params;
  params.measure = static_cast<MeasureId>(opt.measure);
  params.logits = opt.logits;
  params.inv_temperature = opt.logits ? 1.0f / opt.temperature : 1.0f;
  params.alpha = opt.eigenscore_alpha;
  params.threshold = opt.semantic_threshold;
  return params;
}

// The distance tile of k-means holds at most this many bytes of point-centroid products.
constexpr std::size_t kDistanceTileBytes = std::size_t{256} << 20;

// Host pools are staged through device memory this many bytes at a time.
constexpr std::size_t kStagingBytes = std::size_t{256} << 20;
// Staged slabs start on boundaries of this many bytes.
constexpr int64_t kSlabAlignBytes = 256;

// The device top-k's results hold the k best by (score, tie key) in descending score; rows of
// equal score come in row order and are put in key order here (k is host-sized).
void sort_ties(Ranked& ranked, const RankOrder& order, int64_t row_offset) {
  std::vector<std::pair<float, int64_t>> rows(ranked.indices.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = {ranked.scores[i], ranked.indices[i]};
  std::sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
    return order.before(a.first, row_offset + a.second, b.first, row_offset + b.second);
  });
  for (size_t i = 0; i < rows.size(); ++i) std::tie(ranked.scores[i], ranked.indices[i]) = rows[i];
}

class CudaBackend final : public Backend {
 public:
  // The loader (cuda_loader.cpp) has checked that `device` exists.
  CudaBackend(int device, void* stream) : device_(device) {
    const DeviceGuard guard(device_);
    try {
      create(stream);
    } catch (...) {
      destroy();  // what was created before the failure
      throw;
    }
  }

  ~CudaBackend() override {
    int saved = 0;
    cudaGetDevice(&saved);
    cudaSetDevice(device_);
    destroy();
    cudaSetDevice(saved);
  }

  std::string describe() const override { return description_; }
  BackendFacts facts() const override {
    unsigned long long high = 0;  // the attribute is a 64-bit count
    cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemHigh, &high);
    return {Device::cuda, default_budget_, static_cast<std::size_t>(high), stream_};
  }

  void score(const ScoreProblem& problem, float* scores_out, const CallContext& call) override {
    const DeviceGuard guard(device_);
    begin_call(call);
    workspace_->release();
    results_->release();
    const float* scores = queue_scoring(problem);
    // Checked before anything reaches the caller's buffer.
    const BadRow bad = wait_for_first_bad();
    if (bad.row >= 0) throw_bad_row(bad);
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(scores_out, scores, problem.pool.rows * sizeof(float),
                                      cudaMemcpyDefault, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  Ranked top(const ScoreProblem& problem, int64_t count, const CallContext& call) override {
    const DeviceGuard guard(device_);
    begin_call(call);
    const int64_t n = problem.pool.rows;
    count = std::min(count, n);
    const float* scores = queue_scoring(problem);
    const RankOrder& order = problem.order;
    const std::size_t ws_bytes = kernels::topk_workspace_bytes(n, count, order.seeded());
    void* ws = workspace_->ensure(ws_bytes);
    auto* out_rows = results_->ensure<char>(count * (sizeof(int64_t) + sizeof(float)));
    auto* out_indices = reinterpret_cast<int64_t*>(out_rows);
    auto* out_scores = reinterpret_cast<float*>(out_rows + count * sizeof(int64_t));
    kernels::topk(scores, n, count, out_indices, out_scores, ws, ws_bytes, stream_,
                  {order.seeded(), order.seed, problem.row_offset});
    Ranked ranked;
    ranked.indices.resize(count);
    ranked.scores.resize(count);
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(ranked.indices.data(), out_indices, count * sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(ranked.scores.data(), out_scores, count * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    // One wait for the whole job: the validation verdict comes back with the results, and
    // results from invalid data are thrown away.
    const BadRow bad = wait_for_first_bad();
    if (bad.row >= 0) throw_bad_row(bad);
    if (order.seeded()) sort_ties(ranked, order, problem.row_offset);
    return ranked;
  }

  // Per row: its score, the top-k's candidate index, scratch for CUB, and for host pools the
  // row's bytes in both staging slots (an upper bound: a slot is at most kStagingBytes).
  WorkingBytes working_bytes(const ScoreProblem& problem, int64_t count) const override {
    return {working_bytes_fixed_of(problem, count),
            working_bytes_per_row_of(problem.pool) + working_bytes_per_feature_row_of(problem)};
  }
  int64_t working_bytes_per_row_of(const PoolView& pool) const {
    const int64_t staged =
        pool.space == MemorySpace::host
            ? (pool.row_stride * static_cast<int64_t>(dtype_size(pool.dtype)) *
                   (pool.member_stride >= pool.rows * pool.row_stride ? pool.members : 1) +
               (pool.lengths ? static_cast<int64_t>(dtype_size(pool.lengths_dtype)) : 0)) *
                  2
            : 0;
    return sizeof(float) + sizeof(int64_t) + 4 + staged;
  }
  int64_t working_bytes_fixed_of(const ScoreProblem& problem, int64_t count) const {
    // Only the kind of element matters for the workspace: votes are integers.
    const int64_t committee = static_cast<int64_t>(kernels::score_workspace_bytes(
        pool_rows(problem.pool, problem.pool.is_votes() ? ElementType::i64 : ElementType::f32),
        score_params(problem.options)));
    // top-k: candidates, sort keys and values twice over, results; plus CUB's fixed scratch.
    // Host pools: the padding of each staged slab to kSlabAlignBytes, in both slots.
    const int64_t padding =
        problem.pool.space == MemorySpace::host
            ? 2 * (problem.pool.members + (problem.pool.lengths ? 1 : 0)) * kSlabAlignBytes
            : 0;
    return count * 64 + committee + padding + (int64_t{16} << 20);
  }
  // egl: each row's feature squares, and for host features the row in both staging slots.
  int64_t working_bytes_per_feature_row_of(const ScoreProblem& problem) const {
    // The seeded tie-break's keys (twice), rows by key and CUB's sort scratch for them.
    const int64_t ties = problem.order.seeded() ? 48 : 0;
    if (problem.options.measure != Measure::egl) return ties;
    const EmbeddingView& f = *problem.options.features;
    const int64_t staged = f.space == MemorySpace::host
                               ? 2 * f.row_stride * static_cast<int64_t>(dtype_size(f.dtype))
                               : 0;
    return ties + sizeof(double) + staged;
  }
  void wait_for_stream(void* stream) override {
    const DeviceGuard guard(device_);
    cudaEvent_t ready = nullptr;
    QUARRY_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    const cudaError_t recorded = cudaEventRecord(ready, static_cast<cudaStream_t>(stream));
    const cudaError_t waited =
        recorded == cudaSuccess ? cudaStreamWaitEvent(stream_, ready, 0) : recorded;
    cudaEventDestroy(ready);  // released once the wait is satisfied
    QUARRY_CUDA_CHECK(waited);
  }

  std::vector<float> gather(const EmbeddingView& points, const std::vector<int64_t>& rows,
                            const CallContext& call) override {
    if (points.space == MemorySpace::host) return Backend::gather(points, rows, call);
    if (rows.empty()) return {};
    const DeviceGuard guard(device_);
    begin_call(call);
    const auto n = static_cast<int64_t>(rows.size());
    DeviceBuffer x_buf(pool_, stream_), rows_buf(pool_, stream_);
    float* x = x_buf.ensure<float>(n * points.dim * sizeof(float));
    gather_on_device(points, &rows, x, rows_buf);
    std::vector<float> out(n * points.dim);
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(out.data(), x, out.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return out;
  }

  // Lloyd's k-means on the device. Points are gathered once into a dense float32 matrix; each
  // iteration is a cuBLAS product in row tiles, an argmin, and a centroid update that sums every
  // cluster's points in row order (sorted by a stable radix sort) so results repeat exactly.
  // Iterations are queued without waiting: once one changes no assignment the device sets
  // `converged` and the remaining queued kernels return at once; the host stops queueing when it
  // sees the flag, which it polls without blocking.
  KMeansResult kmeans(const EmbeddingView& points, const std::vector<int64_t>* rows, int64_t k,
                      const KMeansOptions& options, const CallContext& call) override {
    const DeviceGuard guard(device_);
    begin_call(call);
    release_scoring_buffers();
    const int64_t n = rows ? static_cast<int64_t>(rows->size()) : points.rows;
    const int64_t dim = points.dim;
    if (n > INT32_MAX || k > INT32_MAX) throw InvalidArgument("k-means supports < 2^31 points");
    DeviceBuffer x_buf(pool_, stream_), norms_buf(pool_, stream_), cnorm_buf(pool_, stream_),
        centroids_buf(pool_, stream_), tile_buf(pool_, stream_), assign_buf(pool_, stream_),
        dist_buf(pool_, stream_), state_buf(pool_, stream_), counts_buf(pool_, stream_),
        offsets_buf(pool_, stream_), keys_buf(pool_, stream_), iota_buf(pool_, stream_),
        sorted_buf(pool_, stream_), temp_buf(pool_, stream_), rows_buf(pool_, stream_),
        partial_buf(pool_, stream_);
    float* x = x_buf.ensure<float>(n * dim * sizeof(float));

    // Gather the points as float32. Coordinates whose squared distances would overflow float or
    // vanish are scaled by a power of two, which leaves the clustering as it is (see
    // kmeans_scale_exponent); the results are scaled back.
    std::vector<float> initial = options.initial_centroids;
    const bool lloyd_runs = options.iterations > 0;
    int exponent = 0;
    if (points.space == MemorySpace::device) {
      gather_on_device(points, rows, x, rows_buf);
      const float largest = largest_magnitude_on_device(x, n * dim, temp_buf);
      exponent = scale_kmeans_inputs(largest, initial, dim, lloyd_runs);
      if (exponent != 0)
        QUARRY_CUDA_CHECK(cub::DeviceFor::Bulk(n * dim, ScaleByPowerOfTwo{x, exponent}, stream_));
    } else {
      std::vector<float> host = engine::gather_embeddings(points, rows);
      const auto count = static_cast<int64_t>(host.size());
      exponent =
          scale_kmeans_inputs(largest_magnitude(host.data(), count), initial, dim, lloyd_runs);
      scale_by_power_of_two(host.data(), count, exponent);
      QUARRY_CUDA_CHECK(cudaMemcpyAsync(x, host.data(), host.size() * sizeof(float),
                                        cudaMemcpyHostToDevice, stream_));
      QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `host` is about to go away
    }

    float* point_norms = norms_buf.ensure<float>(n * sizeof(float));
    kernels::launch_row_norms(x, n, dim, point_norms, stream_);
    float* centroids = centroids_buf.ensure<float>(k * dim * sizeof(float));
    if (!initial.empty()) {
      QUARRY_CUDA_CHECK(cudaMemcpyAsync(centroids, initial.data(), k * dim * sizeof(float),
                                        cudaMemcpyHostToDevice, stream_));
    } else {
      seed_kmeans_plus_plus(x, n, dim, k, options.seed, centroids, temp_buf);
    }

    // Device state: [0] changed flag, [1] converged flag, [2] iterations run, [3] always 0.
    auto* state = state_buf.ensure<int>(4 * sizeof(int));
    QUARRY_CUDA_CHECK(cudaMemsetAsync(state, 0, 4 * sizeof(int), stream_));
    auto* changed = reinterpret_cast<unsigned int*>(state);
    int* converged = state + 1;
    int* iterations = state + 2;
    const int* never = state + 3;
    auto* assignment = assign_buf.ensure<int32_t>(n * sizeof(int32_t));
    QUARRY_CUDA_CHECK(cudaMemsetAsync(assignment, 0xff, n * sizeof(int32_t), stream_));
    float* distance = dist_buf.ensure<float>(n * sizeof(float));
    float* centroid_norms = cnorm_buf.ensure<float>(k * sizeof(float));
    const int64_t tile_rows =
        std::clamp<int64_t>(static_cast<int64_t>(kDistanceTileBytes / sizeof(float)) / k, 1, n);
    float* tile = tile_buf.ensure<float>(tile_rows * k * sizeof(float));
    auto* counts = counts_buf.ensure<int32_t>(k * sizeof(int32_t));
    auto* offsets = offsets_buf.ensure<int32_t>(k * sizeof(int32_t));
    auto* sorted_keys = keys_buf.ensure<int32_t>(n * sizeof(int32_t));
    auto* point_ids = iota_buf.ensure<int32_t>(n * sizeof(int32_t));
    auto* sorted_points = sorted_buf.ensure<int32_t>(n * sizeof(int32_t));
    QUARRY_CUDA_CHECK(cub::DeviceFor::Bulk(static_cast<int32_t>(n), Iota{point_ids}, stream_));
    const int key_bits =
        std::max(1, static_cast<int>(std::ceil(std::log2(static_cast<double>(k) + 1))));
    std::size_t sort_bytes = 0, scan_bytes = 0;
    QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, assignment, sorted_keys,
                                                      point_ids, sorted_points, n, 0, key_bits,
                                                      stream_));
    QUARRY_CUDA_CHECK(
        cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, counts, offsets, k, stream_));
    void* temp = temp_buf.ensure(std::max(sort_bytes, scan_bytes));
    void* partials = partial_buf.ensure(kernels::centroid_update_bytes(n, dim));

    auto assign_all = [&](const int* skip) {
      kernels::launch_row_norms(centroids, k, dim, centroid_norms, stream_);
      for (int64_t r0 = 0; r0 < n; r0 += tile_rows) {
        const int64_t rows_here = std::min(tile_rows, n - r0);
        const float one = 1.0f, zero = 0.0f;
        // Row-major tile[i][j] = x_i . c_j is column-major (C . X^T): k x rows.
        check_cublas(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(k),
                                 static_cast<int>(rows_here), static_cast<int>(dim), &one,
                                 centroids, static_cast<int>(dim), x + r0 * dim,
                                 static_cast<int>(dim), &zero, tile, static_cast<int>(k)),
                     "cublasSgemm");
        kernels::launch_assign(tile, rows_here, k, centroid_norms, point_norms + r0,
                               assignment + r0, distance + r0, changed, skip, stream_);
      }
    };

    auto* host_converged = reinterpret_cast<int*>(host_flag_);
    *host_converged = 0;
    const Event polled_event;  // destroyed on every way out, a throw included
    const cudaEvent_t polled = polled_event.get();
    for (int it = 0; it < options.iterations; ++it) {
      if (it >= 2 && cudaEventQuery(polled) == cudaSuccess && *host_converged) break;
      assign_all(converged);
      kernels::launch_check_converged(changed, converged, iterations, stream_);
      QUARRY_CUDA_CHECK(cudaMemsetAsync(counts, 0, k * sizeof(int32_t), stream_));
      kernels::launch_cluster_counts(assignment, n, counts, converged, stream_);
      QUARRY_CUDA_CHECK(
          cub::DeviceScan::ExclusiveSum(temp, scan_bytes, counts, offsets, k, stream_));
      std::size_t bytes = sort_bytes;
      QUARRY_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
          temp, bytes, assignment, sorted_keys, point_ids, sorted_points, n, 0, key_bits, stream_));
      kernels::launch_centroid_update(x, n, dim, sorted_keys, sorted_points, offsets, counts, k,
                                      centroids, partials, converged, stream_);
      kernels::launch_repair_empty(centroids, counts, k, dim, converged, stream_);
      if (cudaEventQuery(polled) != cudaErrorNotReady) {
        QUARRY_CUDA_CHECK(cudaMemcpyAsync(host_converged, converged, sizeof(int),
                                          cudaMemcpyDeviceToHost, stream_));
        QUARRY_CUDA_CHECK(cudaEventRecord(polled, stream_));
      }
    }
    // Final assignment to the final centroids, and the inertia from float32 distances.
    assign_all(never);
    kernels::launch_assigned_distances(x, n, dim, centroids, assignment, distance, stream_);
    KMeansResult result;
    result.centroids.resize(k * dim);
    result.assignments.resize(n);
    std::vector<float> distances(n);
    int iterations_run = 0;
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(result.centroids.data(), centroids, k * dim * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(result.assignments.data(), assignment, n * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(distances.data(), distance, n * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(&iterations_run, iterations, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    result.iterations = iterations_run;
    for (float d : distances) result.inertia += d;
    scale_by_power_of_two(result.centroids.data(), static_cast<int64_t>(result.centroids.size()),
                          -exponent);
    result.inertia = std::ldexp(result.inertia, -2 * exponent);
    return result;
  }

  std::unique_ptr<CenterSearch> center_search(CenterSearchSpec spec,
                                              const CallContext& call) override {
    const DeviceGuard guard(device_);
    begin_call(call);
    release_scoring_buffers();
    if (spec.points.space == MemorySpace::device)
      check_device_pointer(spec.points.data, spec.space == CenterSearchSpec::Space::embeddings
                                                 ? "embeddings"
                                                 : "features");
    if (spec.space == CenterSearchSpec::Space::embeddings)
      return make_cuda_coreset_search(context(), spec.points, std::move(spec.rows));
    if (spec.pool.space == MemorySpace::device) check_device_pointer(spec.pool.data);
    return make_cuda_badge_search(context(), spec.pool, spec.points, std::move(spec.rows));
  }

 private:
  void create(void* stream) {
    if (stream != nullptr) {
      stream_ = static_cast<cudaStream_t>(stream);
    } else {
      QUARRY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      own_stream_ = true;
    }
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device_;
    QUARRY_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
    QUARRY_CUDA_CHECK(cudaMallocHost(&host_flag_, sizeof *host_flag_));
    QUARRY_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    scores_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    staging_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    workspace_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    results_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    flag_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    feature_squares_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    description_ = "cuda:" + describe_cuda_device(device_);
    // Default budget: most of what is free now, leaving room for the context and other users.
    std::size_t free_bytes = 0, total_bytes = 0;
    QUARRY_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    default_budget_ = free_bytes / 10 * 8;
    begin_call();
    check_cublas(cublasCreate(&cublas_), "cublasCreate");
    check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
    // k-means distances on TF32 tensor cores (PyTorch's matmul precision "high"); the distances
    // reported in the inertia are recomputed in float32.
    check_cublas(cublasSetMathMode(cublas_, CUBLAS_TF32_TENSOR_OP_MATH), "cublasSetMathMode");
  }

  // Frees whatever create() made; safe on a partly created backend.
  void destroy() noexcept {
    scores_.reset();
    staging_.reset();
    workspace_.reset();
    results_.reset();
    flag_.reset();
    feature_squares_.reset();
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
    if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (host_flag_ != nullptr) cudaFreeHost(host_flag_);
    if (pool_ != nullptr) cudaMemPoolDestroy(pool_);
    if (own_stream_) cudaStreamDestroy(stream_);
    cudaGetLastError();  // nothing here may leave an error for the caller's next launch
  }

  // The pool keeps freed memory for the next call, but no more than the budget: memory it holds
  // beyond that would be device memory this backend occupies over the budget.
  void begin_call(const CallContext& call = {}) {
    budget_ = call.memory_budget != 0 ? call.memory_budget : default_budget_;
    uint64_t keep = budget_;
    QUARRY_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
  }

  // The listed rows (all when `rows` is null) of device-resident points as float32 into `x` on
  // the device; throws InvalidInput for the first row with a non-finite coordinate.
  void gather_on_device(const EmbeddingView& points, const std::vector<int64_t>* rows, float* x,
                        DeviceBuffer& rows_buf) {
    check_device_pointer(points.data, "embeddings");
    const int64_t n = rows ? static_cast<int64_t>(rows->size()) : points.rows;
    auto* first_bad = flag_->ensure<unsigned long long>(sizeof(unsigned long long));
    QUARRY_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof *first_bad, stream_));
    int64_t* d_rows = nullptr;
    if (rows) {
      d_rows = rows_buf.ensure<int64_t>(n * sizeof(int64_t));
      QUARRY_CUDA_CHECK(cudaMemcpyAsync(d_rows, rows->data(), n * sizeof(int64_t),
                                        cudaMemcpyHostToDevice, stream_));
    }
    kernels::launch_gather_rows(points.data, element_type(points.dtype), points.row_stride,
                                points.dim, d_rows, n, x, first_bad, stream_);
    const BadRow bad = wait_for_first_bad();
    if (bad.row >= 0) throw_bad_embedding(bad.row);
  }

  // max |x_i| over `count` floats on the device.
  float largest_magnitude_on_device(const float* x, int64_t count, DeviceBuffer& temp_buf) {
    DeviceBuffer out_buf(pool_, stream_);
    auto* out = out_buf.ensure<float>(sizeof(float));
    std::size_t bytes = 0;
    QUARRY_CUDA_CHECK(cub::DeviceReduce::TransformReduce(nullptr, bytes, x, out, count, Larger{},
                                                         Magnitude{}, 0.0f, stream_));
    QUARRY_CUDA_CHECK(cub::DeviceReduce::TransformReduce(
        temp_buf.ensure(bytes), bytes, x, out, count, Larger{}, Magnitude{}, 0.0f, stream_));
    float largest = 0;
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(&largest, out, sizeof largest, cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return largest;
  }

  // Seeded k-means++ on the device: the uniform draws come from the host's seeded generator,
  // everything else (distances, prefix sums, the sampled point) stays on the device.
  void seed_kmeans_plus_plus(const float* x, int64_t n, int64_t dim, int64_t k, uint64_t seed,
                             float* centroids, DeviceBuffer& temp_buf) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<double> draws(k);
    for (double& u : draws) u = uniform(rng);
    DeviceBuffer uniforms_buf(pool_, stream_), nearest_buf(pool_, stream_),
        widened_buf(pool_, stream_), cumulative_buf(pool_, stream_);
    auto* uniforms = uniforms_buf.ensure<double>(k * sizeof(double));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(uniforms, draws.data(), k * sizeof(double),
                                      cudaMemcpyHostToDevice, stream_));
    auto* nearest = nearest_buf.ensure<float>(n * sizeof(float));
    auto* cumulative = cumulative_buf.ensure<double>(n * sizeof(double));
    QUARRY_CUDA_CHECK(cub::DeviceFor::Bulk(n, Fill<float>{nearest, kernels::kInf}, stream_));
    // Sum in double: with many points, float prefix sums lose the small distances.
    auto widened = thrust::make_transform_iterator(nearest, ToDouble{});
    std::size_t scan_bytes = 0;
    QUARRY_CUDA_CHECK(
        cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, widened, cumulative, n, stream_));
    void* temp = temp_buf.ensure(scan_bytes);
    // The first centroid: uniform over the points (all "distances" equal).
    QUARRY_CUDA_CHECK(cudaMemsetAsync(cumulative, 0, n * sizeof(double), stream_));
    kernels::launch_kpp_pick(x, n, dim, nearest, cumulative, uniforms, 0, centroids, stream_);
    for (int64_t c = 1; c < k; ++c) {
      kernels::launch_kpp_update(x, n, dim, centroids + (c - 1) * dim, nearest, stream_);
      std::size_t bytes = scan_bytes;
      QUARRY_CUDA_CHECK(
          cub::DeviceScan::InclusiveSum(temp, bytes, widened, cumulative, n, stream_));
      kernels::launch_kpp_pick(x, n, dim, nearest, cumulative, uniforms, c, centroids, stream_);
    }
  }

  // The scoring pass's buffers, handed back before work that needs the budget for itself.
  void release_scoring_buffers() {
    for (DeviceBuffer* buffer :
         {scores_.get(), staging_.get(), workspace_.get(), results_.get(), feature_squares_.get()})
      buffer->release();
  }

  // Waits for the stream and decodes the first bad row the kernels recorded in flag_.
  BadRow wait_for_first_bad() {
    const auto* first_bad = flag_->ensure<unsigned long long>(sizeof(unsigned long long));
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(host_flag_, first_bad, sizeof *first_bad, cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return BadRow::from_code(*host_flag_);
  }

  // `what`: the array, as the error names it.
  void check_device_pointer(const void* p, const char* what = "pool") const {
    cudaPointerAttributes attr{};
    QUARRY_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw InvalidArgument(std::string("the ") + what +
                            " is marked as device memory but its pointer is not");
    if (attr.type == cudaMemoryTypeDevice && attr.device != device_)
      throw InvalidArgument(std::string("the ") + what + " is on CUDA device " +
                            std::to_string(attr.device) + " but these Resources use device " +
                            std::to_string(device_));
  }

  // Scores `rows` rows of `view` (device memory), numbering them from `row_offset` in error
  // reports.
  void launch_scoring(const PoolView& view, const ScoreOptions& opt, int64_t rows,
                      int64_t row_offset, float* scores, unsigned long long* first_bad,
                      const double* feature_squares) {
    kernels::PoolRows batch = pool_rows(view, element_type(view.dtype));
    batch.rows = rows;
    kernels::ScoreParams params = score_params(opt);
    params.feature_squares = feature_squares;
    kernels::ScoreSink sink{scores, first_bad, row_offset};
    sink.workspace_bytes = kernels::score_workspace_bytes(batch, params);
    if (sink.workspace_bytes > 0) sink.workspace = workspace_->ensure(sink.workspace_bytes);
    kernels::launch_score(batch, params, sink, stream_);
  }

  // Queues the scoring of every row into scores_ on the device, validation included; the verdict
  // is read by wait_for_first_bad().
  const float* queue_scoring(const ScoreProblem& problem) {
    const PoolView& pool = problem.pool;
    float* scores = scores_->ensure<float>(pool.rows * sizeof(float));
    auto* first_bad = flag_->ensure<unsigned long long>(sizeof(unsigned long long));
    QUARRY_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof *first_bad, stream_));
    // egl: the features' squares first, each row's in double.
    double* squares = nullptr;
    if (problem.options.measure == Measure::egl) {
      const EmbeddingView& features = *problem.options.features;
      if (features.space == MemorySpace::device) check_device_pointer(features.data, "features");
      squares = feature_squares_->ensure<double>(pool.rows * sizeof(double));
      const int64_t block_rows = std::max<int64_t>(
          1, static_cast<int64_t>(kStagingBytes) /
                 std::max<int64_t>(features.row_stride * dtype_size(features.dtype), 1));
      // Host features are staged through the backend's pinned buffers (kept between calls; the
      // pool's chunks use them only once the squares' copies are done).
      CudaContext staging = context();
      staging.pinned = pinned_;
      queue_feature_squares(staging, features, problem.row_offset, block_rows, squares, first_bad);
    } else {
      feature_squares_->release();
    }
    if (pool.space == MemorySpace::device) {
      check_device_pointer(pool.data);
      if (pool.lengths != nullptr) check_device_pointer(pool.lengths, "lengths array");
      staging_->release();
      launch_scoring(pool, problem.options, pool.rows, problem.row_offset, scores, first_bad,
                     squares);
    } else {
      stream_host_pool(problem, scores, first_bad, squares);
    }
    return scores;
  }

  CudaContext context() const { return {stream_, pool_, budget_, device_}; }

  // Scores a host pool a chunk of rows at a time through two staging slots (HostPager), each a
  // pinned host buffer and a device buffer. While the device scores chunk i from one slot, the host
  // fills the other slot's pinned buffer with chunk i+1 (reading the pageable or memory-mapped
  // pool) and the copy engine moves it to the device on its own stream. A pool already in pinned
  // memory is copied to the device directly. A chunk's copy ends at its last element, never past
  // the caller's buffer; members-first committees ([M, N, ...]) travel as M slabs.
  void stream_host_pool(const ScoreProblem& problem, float* scores, unsigned long long* first_bad,
                        const double* feature_squares) {
    const PoolView& pool = problem.pool;
    const auto elem = static_cast<int64_t>(dtype_size(pool.dtype));
    const int64_t row_tail =
        pool.is_votes() ? 1 : pool.classes;  // elements of a row's last class run
    const bool slabs = pool.members > 1 && pool.member_stride >= pool.rows * pool.row_stride;
    const int64_t slab_count = slabs ? pool.members : 1;
    const int64_t bytes_per_row = slab_count * pool.row_stride * elem;
    const int64_t chunk_rows = std::clamp<int64_t>(
        static_cast<int64_t>(kStagingBytes) / std::max<int64_t>(bytes_per_row, 1), 1, pool.rows);
    // Elements of one slab (or of the whole chunk) for `rows` rows.
    auto extent = [&](int64_t rows) {
      return (rows - 1) * pool.row_stride + row_tail +
             (slabs ? 0 : (pool.members - 1) * pool.member_stride);
    };
    // Every slab starts on a 256-byte boundary, so each chunk is read with the same (vector) loads
    // as an in-memory pool: the same lanes see the same values, and the scores are bitwise equal.
    const int64_t align = kSlabAlignBytes / elem;
    const int64_t slab_elems = (extent(chunk_rows) + align - 1) / align * align;
    const int64_t data_bytes = slab_count * slab_elems * elem;
    // A chunk's lengths travel with it, after its slabs (always through the pinned buffers: they
    // are small, and their memory may be pageable when the pool's is not).
    const int64_t length_size =
        pool.lengths ? static_cast<int64_t>(dtype_size(pool.lengths_dtype)) : 0;
    const int64_t lengths_bytes =
        (chunk_rows * length_size + kSlabAlignBytes - 1) / kSlabAlignBytes * kSlabAlignBytes;
    const int64_t slot_bytes = data_bytes + lengths_bytes;
    char* device_slots = staging_->ensure<char>(2 * slot_bytes);
    cudaPointerAttributes attributes{};
    QUARRY_CUDA_CHECK(cudaPointerGetAttributes(&attributes, pool.data));
    if (attributes.type == cudaMemoryTypeDevice)
      throw InvalidArgument("the pool is marked as host memory but its pointer is device memory");
    if (pool.lengths) {
      QUARRY_CUDA_CHECK(cudaPointerGetAttributes(&attributes, pool.lengths));
      if (attributes.type == cudaMemoryTypeDevice)
        throw InvalidArgument(
            "the lengths array is in device memory but the pool is marked as host memory");
      QUARRY_CUDA_CHECK(cudaPointerGetAttributes(&attributes, pool.data));
    }
    const bool pinned_source = attributes.type == cudaMemoryTypeHost;
    // Pinned staging: the chunk's data unless the pool is pinned itself, and its lengths.
    const int64_t pinned_data_bytes = pinned_source ? 0 : data_bytes;
    HostPager pager(stream_, copy_stream_, pinned_);
    if (pinned_data_bytes + lengths_bytes > 0)
      pager.reserve(static_cast<std::size_t>(pinned_data_bytes + lengths_bytes));
    const char* base = static_cast<const char*>(pool.data);
    for (int64_t r0 = 0, i = 0; r0 < pool.rows; r0 += chunk_rows, ++i) {
      const int64_t rows = std::min(chunk_rows, pool.rows - r0);
      const int64_t width = extent(rows) * elem;
      const char* src = base + r0 * pool.row_stride * elem;
      char* device = device_slots + (i % 2) * slot_bytes;
      char* pinned = pager.begin(i);
      const char* host = src;
      int64_t host_pitch = slabs ? pool.member_stride * elem : width;
      if (!pinned_source) {
        for (int64_t m = 0; m < slab_count; ++m)
          parallel_copy(pinned + m * slab_elems * elem, src + m * pool.member_stride * elem, width);
        host = pinned;
        host_pitch = slab_elems * elem;
      }
      char* pinned_lengths = pinned + pinned_data_bytes;
      if (pool.lengths)
        std::memcpy(pinned_lengths, static_cast<const char*>(pool.lengths) + r0 * length_size,
                    rows * length_size);
      // One copy per slab: a 2-D copy would limit the host pitch (a member's whole slab) to 2 GiB.
      for (int64_t m = 0; m < slab_count; ++m)
        pager.copy(device + m * slab_elems * elem, host + m * host_pitch, width);
      if (pool.lengths) pager.copy(device + data_bytes, pinned_lengths, rows * length_size);
      pager.copied();
      PoolView chunk = pool;
      chunk.data = device;
      chunk.rows = rows;
      if (slabs) chunk.member_stride = slab_elems;
      if (pool.lengths) chunk.lengths = device + data_bytes;
      launch_scoring(chunk, problem.options, rows, problem.row_offset + r0, scores + r0, first_bad,
                     feature_squares ? feature_squares + r0 : nullptr);
      pager.consumed();
    }
  }

  // memcpy by several threads: reading a memory-mapped pool is page faults as much as copying.
  static void parallel_copy(char* dst, const char* src, int64_t bytes) {
    constexpr int64_t kPiece = int64_t{4} << 20;
    const int64_t pieces = (bytes + kPiece - 1) / kPiece;
    parallel_for(pieces, 1, kPiece / 4, [&](int64_t begin, int64_t end, int) {
      for (int64_t p = begin; p < end; ++p)
        std::memcpy(dst + p * kPiece, src + p * kPiece, std::min(kPiece, bytes - p * kPiece));
    });
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;  // host-to-device copies of staged chunks
  PinnedBuffer pinned_[2];              // the HostPager's staging, kept between calls
  bool own_stream_ = false;
  cudaMemPool_t pool_ = nullptr;
  unsigned long long* host_flag_ = nullptr;
  std::unique_ptr<DeviceBuffer> scores_, staging_, workspace_, results_, flag_, feature_squares_;
  cublasHandle_t cublas_ = nullptr;
  std::size_t default_budget_ = 0;
  std::size_t budget_ = 0;  // the budget of the call running now (begin_call)
  std::string description_;
};

}  // namespace

}  // namespace quarry::engine

// The plugin's entry points (engine/backend.hpp), found by the loader with dlsym.
extern "C" {

const char* quarry_cuda_plugin_version() {
  return QUARRY_VERSION;
}

quarry::engine::Backend* quarry_cuda_create_backend(int device, void* stream) {
  return new quarry::engine::CudaBackend(device, stream);
}
}

static_assert(
    std::is_same_v<decltype(&quarry_cuda_plugin_version), quarry::engine::CudaPluginVersionFn>);
static_assert(
    std::is_same_v<decltype(&quarry_cuda_create_backend), quarry::engine::CudaPluginCreateFn>);
