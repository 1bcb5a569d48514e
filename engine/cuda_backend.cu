// The CUDA backend: pools in host memory are copied to the device in chunks of rows, pools in
// device memory are read in place; scores stay on the device for the top-k, and only the k results
// (or the scores, for score()) come back. All memory comes from a stream-ordered pool owned here
// and is kept between calls.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "engine/backend.hpp"
#include "kernels/committee.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/measures.hpp"
#include "kernels/score_rows.cuh"
#include "kernels/topk.cuh"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

using kernels::ElementType;
using kernels::MeasureId;

ElementType element_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ElementType::f32;
    case DType::f16:
      return ElementType::f16;
    case DType::bf16:
      return ElementType::bf16;
    case DType::i32:
      return ElementType::i32;
    case DType::i64:
      return ElementType::i64;
  }
  throw InvalidArgument("unknown dtype");
}

/// Device memory that grows on demand and is returned to the pool only when destroyed.
class DeviceBuffer {
 public:
  DeviceBuffer(cudaMemPool_t pool, cudaStream_t stream) : pool_(pool), stream_(stream) {}
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T = void>
  T* ensure(std::size_t bytes) {
    if (bytes > bytes_) {
      if (ptr_ != nullptr) QUARRY_CUDA_CHECK(cudaFreeAsync(ptr_, stream_));
      ptr_ = nullptr;
      bytes_ = 0;
      QUARRY_CUDA_CHECK(cudaMallocFromPoolAsync(&ptr_, bytes, pool_, stream_));
      bytes_ = bytes;
    }
    return static_cast<T*>(ptr_);
  }

 private:
  cudaMemPool_t pool_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

std::string describe_device(int device) {
  cudaDeviceProp p{};
  QUARRY_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  char line[256];
  std::snprintf(line, sizeof line, "%d: %s (sm_%d%d, %.1f GiB, %d SMs)", device, p.name, p.major,
                p.minor, static_cast<double>(p.totalGlobalMem) / (1u << 30), p.multiProcessorCount);
  return line;
}

// Host pools are staged through device memory this many bytes at a time.
constexpr std::size_t kStagingBytes = std::size_t{256} << 20;

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, void* stream) : device_(device) {
    const int count = cuda_device_count();
    if (count == 0)
      throw BackendUnavailable(
          "no CUDA device is available (no GPU or no driver); use --device cpu");
    if (device < 0 || device >= count)
      throw BackendUnavailable("CUDA device " + std::to_string(device) + " does not exist (" +
                               std::to_string(count) + " found)");
    QUARRY_CUDA_CHECK(cudaSetDevice(device_));
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
    // Keep freed memory in the pool: the next call reuses it without going back to the driver.
    uint64_t keep = UINT64_MAX;
    QUARRY_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
    QUARRY_CUDA_CHECK(cudaMallocHost(&host_flag_, sizeof *host_flag_));
    scores_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    staging_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    workspace_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    results_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    flag_ = std::make_unique<DeviceBuffer>(pool_, stream_);
    description_ = "cuda:" + describe_device(device_);
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    scores_.reset();
    staging_.reset();
    workspace_.reset();
    results_.reset();
    flag_.reset();
    cudaStreamSynchronize(stream_);
    cudaFreeHost(host_flag_);
    cudaMemPoolDestroy(pool_);
    if (own_stream_) cudaStreamDestroy(stream_);
  }

  Device kind() const override { return Device::cuda; }
  std::string describe() const override { return description_; }

  void score(const ScoreProblem& problem, float* scores_out) override {
    QUARRY_CUDA_CHECK(cudaSetDevice(device_));
    const float* scores = score_on_device(problem);
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(scores_out, scores, problem.pool.rows * sizeof(float),
                                      cudaMemcpyDefault, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  Ranked top(const ScoreProblem& problem, int64_t count) override {
    QUARRY_CUDA_CHECK(cudaSetDevice(device_));
    const int64_t n = problem.pool.rows;
    count = std::min(count, n);
    const float* scores = score_on_device(problem);
    const std::size_t ws_bytes = kernels::topk_workspace_bytes(n, count);
    void* ws = workspace_->ensure(ws_bytes);
    auto* out_rows = results_->ensure<char>(count * (sizeof(int64_t) + sizeof(float)));
    auto* out_indices = reinterpret_cast<int64_t*>(out_rows);
    auto* out_scores = reinterpret_cast<float*>(out_rows + count * sizeof(int64_t));
    kernels::topk(scores, n, count, out_indices, out_scores, ws, ws_bytes, stream_);
    Ranked ranked;
    ranked.indices.resize(count);
    ranked.scores.resize(count);
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(ranked.indices.data(), out_indices, count * sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(ranked.scores.data(), out_scores, count * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return ranked;
  }

 private:
  void check_device_pointer(const void* p) const {
    cudaPointerAttributes attr{};
    QUARRY_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw InvalidArgument("the pool is marked as device memory but its pointer is not");
    if (attr.type == cudaMemoryTypeDevice && attr.device != device_)
      throw InvalidArgument("the pool is on CUDA device " + std::to_string(attr.device) +
                            " but these Resources use device " + std::to_string(device_));
  }

  // Launches the scoring kernel for `rows` rows of `view` (device memory), numbering them from
  // `row_offset` in error reports.
  void launch_scoring(const PoolView& view, const ScoreOptions& opt, int64_t rows,
                      int64_t row_offset, float* scores, unsigned long long* first_bad) {
    const ElementType type = element_type(view.dtype);
    const auto measure = static_cast<MeasureId>(opt.measure);
    const float inv_temperature = opt.logits ? 1.0f / opt.temperature : 1.0f;
    if (view.is_votes()) {
      kernels::launch_score_votes(view.data, type, measure, view.members, rows, view.classes,
                                  view.member_stride, view.row_stride, row_offset, scores,
                                  first_bad, stream_);
    } else if (is_committee_measure(opt.measure)) {
      const std::size_t bytes =
          kernels::committee_workspace_bytes(measure, view.members, view.classes);
      void* ws = bytes ? workspace_->ensure(bytes) : nullptr;
      kernels::launch_score_committee(
          view.data, type, opt.logits, inv_temperature, measure, view.members, rows, view.classes,
          view.member_stride, view.row_stride, row_offset, scores, first_bad, ws, bytes, stream_);
    } else {
      kernels::launch_score_single_model(view.data, type, opt.logits, inv_temperature, measure,
                                         rows, view.classes, view.row_stride, row_offset, scores,
                                         first_bad, stream_);
    }
  }

  // Scores every row into scores_ on the device; throws on invalid data.
  const float* score_on_device(const ScoreProblem& problem) {
    const PoolView& pool = problem.pool;
    float* scores = scores_->ensure<float>(pool.rows * sizeof(float));
    auto* first_bad = flag_->ensure<unsigned long long>(sizeof(unsigned long long));
    QUARRY_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof *first_bad, stream_));
    if (pool.space == MemorySpace::device) {
      check_device_pointer(pool.data);
      launch_scoring(pool, problem.options, pool.rows, 0, scores, first_bad);
    } else {
      stream_host_pool(problem, scores, first_bad);
    }
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(host_flag_, first_bad, sizeof *first_bad, cudaMemcpyDeviceToHost, stream_));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (*host_flag_ != kernels::kNoBadRow)
      throw_bad_row({kernels::bad_row_of(*host_flag_), kernels::bad_flags_of(*host_flag_)});
    return scores;
  }

  // Copies a host pool to the device a chunk of rows at a time and scores each chunk. A chunk's
  // copy ends at its last element, never past the caller's buffer. Members-first committees
  // ([M, N, ...]) are copied as M slabs with one 2-D copy.
  void stream_host_pool(const ScoreProblem& problem, float* scores, unsigned long long* first_bad) {
    const PoolView& pool = problem.pool;
    const auto elem = static_cast<int64_t>(dtype_size(pool.dtype));
    const int64_t row_tail =
        pool.is_votes() ? 1 : pool.classes;  // elements of a row's last class run
    const bool slabs = pool.members > 1 && pool.member_stride >= pool.rows * pool.row_stride;
    const int64_t bytes_per_row = (slabs ? pool.members : 1) * pool.row_stride * elem;
    const int64_t chunk_rows = std::clamp<int64_t>(
        static_cast<int64_t>(kStagingBytes) / std::max<int64_t>(bytes_per_row, 1), 1, pool.rows);
    // Elements of one slab (or of the whole chunk) for `rows` rows.
    auto extent = [&](int64_t rows) {
      return (rows - 1) * pool.row_stride + row_tail +
             (slabs ? 0 : (pool.members - 1) * pool.member_stride);
    };
    const int64_t slab_elems = extent(chunk_rows);
    char* staging = staging_->ensure<char>((slabs ? pool.members : 1) * slab_elems * elem);
    const char* base = static_cast<const char*>(pool.data);
    for (int64_t r0 = 0; r0 < pool.rows; r0 += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, pool.rows - r0);
      const char* src = base + r0 * pool.row_stride * elem;
      PoolView chunk = pool;
      chunk.data = staging;
      chunk.rows = rows;
      if (slabs) {
        QUARRY_CUDA_CHECK(cudaMemcpy2DAsync(staging, slab_elems * elem, src,
                                            pool.member_stride * elem, extent(rows) * elem,
                                            pool.members, cudaMemcpyDefault, stream_));
        chunk.member_stride = slab_elems;
      } else {
        QUARRY_CUDA_CHECK(
            cudaMemcpyAsync(staging, src, extent(rows) * elem, cudaMemcpyDefault, stream_));
      }
      launch_scoring(chunk, problem.options, rows, r0, scores + r0, first_bad);
    }
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  cudaMemPool_t pool_ = nullptr;
  unsigned long long* host_flag_ = nullptr;
  std::unique_ptr<DeviceBuffer> scores_, staging_, workspace_, results_, flag_;
  std::string description_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, void* stream) {
  return std::make_unique<CudaBackend>(device, stream);
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error: no driver or no device is not a failure here
    return 0;
  }
  return count;
}

std::vector<std::string> cuda_device_descriptions() {
  std::vector<std::string> lines;
  for (int d = 0; d < cuda_device_count(); ++d) lines.push_back(describe_device(d));
  return lines;
}

}  // namespace quarry::engine
