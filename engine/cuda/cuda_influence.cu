#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <algorithm>
#include <cstring>
#include <cub/device/device_reduce.cuh>
#include <cub/device/device_scan.cuh>

#include "engine/cuda/cuda_influence.cuh"
#include "engine/kmeans_host.hpp"
#include "engine/threads.hpp"
#include "kernels/centers.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/egl.cuh"
#include "kernels/kmeans.cuh"
#include "quarry/error.hpp"

namespace quarry::engine {

kernels::ElementType element_type(DType dtype) {
  using kernels::ElementType;
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
    case DType::f64:  // the pipeline hands backends f64 pools converted to f32
      break;
  }
  throw InvalidArgument("unknown dtype");
}

// ---- RowSource ---------------------------------------------------------------------------------

RowSource::RowSource(const CudaContext& context, const void* data, DType dtype, MemorySpace space,
                     int64_t row_stride, int64_t row_elems, const std::vector<int64_t>* rows,
                     const int64_t* d_rows, int64_t n, int64_t block_rows)
    : context_(context),
      data_(static_cast<const char*>(data)),
      type_(element_type(dtype)),
      space_(space),
      row_stride_(row_stride),
      row_elems_(row_elems),
      elem_(static_cast<int64_t>(dtype_size(dtype))),
      rows_(rows),
      d_rows_(d_rows),
      n_(n),
      block_rows_(space == MemorySpace::device
                      ? std::max<int64_t>(n, 1)
                      : std::clamp<int64_t>(block_rows, 1, std::max<int64_t>(n, 1))),
      device_(context.pool, context.stream),
      pinned_(context.pinned != nullptr ? context.pinned : own_pinned_),
      pager_(context.stream, context.stream, pinned_) {
  if (space_ == MemorySpace::device) return;
  resident_ = block_rows_ >= n_;
  if (resident_) {
    // Copied once, up to 64 MiB of rows at a time through the pager's two buffers.
    char* dense = device_data_ = device_.ensure<char>(std::max<int64_t>(n_, 1) * row_bytes());
    const int64_t piece =
        std::max<int64_t>(1, (int64_t{64} << 20) / std::max<int64_t>(row_bytes(), 1));
    pager_.reserve(std::min(piece, std::max<int64_t>(n_, 1)) * row_bytes());
    for (int64_t first = 0, i = 0; first < n_; first += piece, ++i) {
      const int64_t count = std::min(piece, n_ - first);
      char* pinned = pager_.begin(i);
      pack(pinned, first, count);
      pager_.copy(dense + first * row_bytes(), pinned, count * row_bytes());
      pager_.copied();
      pager_.consumed();  // nothing reads the pinned copy's device memory but kernels to come
    }
    return;
  }
  device_data_ = device_.ensure<char>(2 * block_rows_ * row_bytes());
  pager_.reserve(block_rows_ * row_bytes());
}

RowSource::~RowSource() = default;  // the pager waits for its copies to leave the pinned buffers

void RowSource::pack(char* out, int64_t first, int64_t count) const {
  const int64_t bytes = row_bytes();
  // Work counted in 4-byte values, as the CPU backend's loops count it.
  parallel_for(count, 256, bytes / 4, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = rows_ ? (*rows_)[first + i] : first + i;
      std::memcpy(out + i * bytes, data_ + row * row_stride_ * elem_, bytes);
    }
  });
}

kernels::DeviceRows RowSource::block(int64_t first, int64_t count) {
  if (space_ == MemorySpace::device) {
    if (d_rows_) return {data_, type_, row_stride_, d_rows_ + first};
    return {data_ + first * row_stride_ * elem_, type_, row_stride_, nullptr};
  }
  if (resident_) return {device_data_ + first * row_bytes(), type_, row_elems_, nullptr};
  const int64_t i = blocks_++;
  char* pinned = pager_.begin(i);
  pack(pinned, first, count);
  char* slot = device_data_ + (i % 2) * block_rows_ * row_bytes();
  pager_.copy(slot, pinned, count * row_bytes());
  pager_.copied();
  return {slot, type_, row_elems_, nullptr};
}

void RowSource::done() {
  if (space_ == MemorySpace::host && !resident_) pager_.consumed();
}

// ---- egl ---------------------------------------------------------------------------------------

void queue_feature_squares(const CudaContext& context, const EmbeddingView& features,
                           int64_t row_offset, int64_t block_rows, double* squares,
                           unsigned long long* first_bad) {
  RowSource source(context, features.data, features.dtype, features.space, features.row_stride,
                   features.dim, nullptr, nullptr, features.rows, block_rows);
  for (int64_t first = 0; first < features.rows; first += source.block_rows()) {
    const int64_t count = std::min(source.block_rows(), features.rows - first);
    const kernels::DeviceRows rows = source.block(first, count);
    kernels::launch_feature_squares(rows.data, rows.type, count, features.dim, rows.row_stride,
                                    row_offset + first, squares + first, first_bad, context.stream);
    source.done();
  }
}

// ---- center searches ---------------------------------------------------------------------------

namespace {

// A candidate as the farthest-candidate reduction sees it.
struct Candidate {
  double distance;
  int64_t position;
};

struct CandidateAt {
  const double* nearest;
  __host__ __device__ Candidate operator()(int64_t i) const { return {nearest[i], i}; }
};

// Larger distance first, lower position on ties: associative and exact, so the reduction's
// result does not depend on its order.
struct Farther {
  __host__ __device__ Candidate operator()(const Candidate& a, const Candidate& b) const {
    return (b.distance > a.distance || (b.distance == a.distance && b.position < a.position)) ? b
                                                                                              : a;
  }
};

struct ClampedAt {
  const double* nearest;
  __host__ __device__ double operator()(int64_t i) const {
    return nearest[i] > 0 ? nearest[i] : 0.0;
  }
};

// Space kept for CUB's scratch and small buffers, beyond the per-candidate state.
constexpr int64_t kFixedBytes = int64_t{16} << 20;

// What both searches share: the candidates, their distances on the device (-1 once a candidate is
// a center), the farthest candidate and the draw.
class CudaCenterSearch : public CenterSearch {
 public:
  CudaCenterSearch(const CudaContext& context, std::vector<int64_t> rows)
      : context_(context),
        rows_(std::move(rows)),
        n_(static_cast<int64_t>(rows_.size())),
        d_rows_(context.pool, context.stream),
        nearest_(context.pool, context.stream),
        cumulative_(context.pool, context.stream),
        temp_(context.pool, context.stream),
        scalars_(context.pool, context.stream),
        positions_(context.pool, context.stream) {
    int64_t* d_rows = d_rows_.ensure<int64_t>(n_ * sizeof(int64_t));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(d_rows, rows_.data(), n_ * sizeof(int64_t),
                                      cudaMemcpyHostToDevice, context_.stream));
    nearest_.ensure<double>(n_ * sizeof(double));
    cumulative_.ensure<double>(n_ * sizeof(double));
    std::size_t reduce_bytes = 0, scan_bytes = 0;
    QUARRY_CUDA_CHECK(cub::DeviceReduce::Reduce(nullptr, reduce_bytes, candidates(),
                                                scalars<Candidate>(), n_, Farther{},
                                                Candidate{-2.0, 0}, context_.stream));
    QUARRY_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, clamped(),
                                                    cumulative_.ensure<double>(n_ * sizeof(double)),
                                                    n_, context_.stream));
    temp_bytes_ = std::max(reduce_bytes, scan_bytes);
    temp_.ensure(temp_bytes_);
    scalars_.ensure(64);
  }

  int64_t farthest() override {
    const DeviceGuard guard(context_.device);
    std::size_t bytes = temp_bytes_;
    QUARRY_CUDA_CHECK(cub::DeviceReduce::Reduce(temp_.ensure(temp_bytes_), bytes, candidates(),
                                                scalars<Candidate>(), n_, Farther{},
                                                Candidate{-2.0, 0}, context_.stream));
    Candidate best{};
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(&best, scalars<Candidate>(), sizeof best,
                                      cudaMemcpyDeviceToHost, context_.stream));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));
    return best.distance >= 0 ? best.position : -1;
  }

  int64_t draw(double u) override {
    const DeviceGuard guard(context_.device);
    double* cumulative = cumulative_.ensure<double>(n_ * sizeof(double));
    std::size_t bytes = temp_bytes_;
    QUARRY_CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp_.ensure(temp_bytes_), bytes, clamped(),
                                                    cumulative, n_, context_.stream));
    auto* chosen = reinterpret_cast<int64_t*>(scalars<char>() + 32);
    kernels::launch_draw(nearest(), cumulative, n_, u, chosen, context_.stream);
    int64_t at = -1;
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(&at, chosen, sizeof at, cudaMemcpyDeviceToHost, context_.stream));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));
    // Every distance left is 0: farthest() then gives the lowest candidate not yet a center.
    return at >= 0 ? at : farthest();
  }

 protected:
  // Bytes the search may spend on copies of candidate rows, beyond its own state.
  int64_t staging_bytes() const {
    const int64_t state = n_ * kCenterSearchBytesPerRow;
    return std::max<int64_t>(static_cast<int64_t>(context_.budget) - state - kFixedBytes, 0);
  }
  // Rows per block when each candidate takes `row_bytes`: all of them when they fit, else what
  // two staging slots hold.
  int64_t block_rows_for(int64_t row_bytes) const {
    const int64_t room = staging_bytes();
    if (n_ * row_bytes <= room) return n_;
    return std::max<int64_t>(1, room / 2 / std::max<int64_t>(row_bytes, 1));
  }

  // Candidates among these pool rows can no longer be picked.
  void retire(const std::vector<int64_t>& pool_rows) {
    std::vector<int64_t> positions;
    for (int64_t row : pool_rows) {
      const auto at = std::lower_bound(rows_.begin(), rows_.end(), row);
      if (at != rows_.end() && *at == row) positions.push_back(at - rows_.begin());
    }
    if (positions.empty()) return;
    auto* d_positions = positions_.ensure<int64_t>(positions.size() * sizeof(int64_t));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(d_positions, positions.data(),
                                      positions.size() * sizeof(int64_t), cudaMemcpyHostToDevice,
                                      context_.stream));
    kernels::launch_retire(nearest_.ensure<double>(n_ * sizeof(double)), d_positions,
                           static_cast<int64_t>(positions.size()), context_.stream);
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));  // `positions` goes away
  }

  double* nearest() { return nearest_.ensure<double>(n_ * sizeof(double)); }
  const int64_t* d_rows() { return d_rows_.ensure<int64_t>(n_ * sizeof(int64_t)); }
  unsigned long long* first_bad() {
    auto* flag = reinterpret_cast<unsigned long long*>(scalars<char>() + 48);
    QUARRY_CUDA_CHECK(cudaMemsetAsync(flag, 0xff, sizeof *flag, context_.stream));
    return flag;
  }
  BadRow wait_for_first_bad(const unsigned long long* flag) {
    unsigned long long code = 0;
    QUARRY_CUDA_CHECK(
        cudaMemcpyAsync(&code, flag, sizeof code, cudaMemcpyDeviceToHost, context_.stream));
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));
    return BadRow::from_code(code);
  }

  CudaContext context_;
  std::vector<int64_t> rows_;
  int64_t n_;
  bool replace_ = true;

 private:
  template <typename T>
  T* scalars() {
    return scalars_.ensure<T>(64);
  }
  using CandidateIterator =
      thrust::transform_iterator<CandidateAt, thrust::counting_iterator<int64_t>>;
  using ClampedIterator = thrust::transform_iterator<ClampedAt, thrust::counting_iterator<int64_t>>;
  CandidateIterator candidates() {
    return thrust::make_transform_iterator(
        thrust::counting_iterator<int64_t>(0),
        CandidateAt{nearest_.ensure<double>(n_ * sizeof(double))});
  }
  ClampedIterator clamped() {
    return thrust::make_transform_iterator(thrust::counting_iterator<int64_t>(0),
                                           ClampedAt{nearest_.ensure<double>(n_ * sizeof(double))});
  }

  DeviceBuffer d_rows_, nearest_, cumulative_, temp_, scalars_, positions_;
  std::size_t temp_bytes_ = 0;
};

class CudaCoresetSearch final : public CudaCenterSearch {
 public:
  CudaCoresetSearch(const CudaContext& context, const EmbeddingView& points,
                    std::vector<int64_t> rows)
      : CudaCenterSearch(context, std::move(rows)),
        points_(points),
        source_(context, points.data, points.dtype, points.space, points.row_stride, points.dim,
                &rows_, d_rows(), n_,
                block_rows_for(points.dim * static_cast<int64_t>(dtype_size(points.dtype)))),
        centers_(context.pool, context.stream),
        gathered_(context.pool, context.stream) {
    unsigned long long* flag = first_bad();
    for_each_block([&](const kernels::DeviceRows& x, int64_t first, int64_t count) {
      kernels::launch_coreset_norms(x, count, points_.dim, d_rows() + first, nearest() + first,
                                    flag, context_.stream);
    });
    const BadRow bad = wait_for_first_bad(flag);
    if (bad.row >= 0) throw_bad_embedding(bad.row);
  }

  void add_rows(const std::vector<int64_t>& pool_rows) override {
    const DeviceGuard guard(context_.device);
    const auto count = static_cast<int64_t>(pool_rows.size());
    if (count == 0) return;
    const int64_t dim = points_.dim;
    float* centers = centers_.ensure<float>(count * dim * sizeof(float));
    if (points_.space == MemorySpace::host) {
      const std::vector<float> host = gather_embeddings(points_, &pool_rows);
      QUARRY_CUDA_CHECK(cudaMemcpyAsync(centers, host.data(), host.size() * sizeof(float),
                                        cudaMemcpyHostToDevice, context_.stream));
      QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));  // `host` goes away
    } else {
      auto* d_list = gathered_.ensure<int64_t>(count * sizeof(int64_t));
      QUARRY_CUDA_CHECK(cudaMemcpyAsync(d_list, pool_rows.data(), count * sizeof(int64_t),
                                        cudaMemcpyHostToDevice, context_.stream));
      unsigned long long* flag = first_bad();
      kernels::launch_gather_rows(points_.data, element_type(points_.dtype), points_.row_stride,
                                  dim, d_list, count, centers, flag, context_.stream);
      const BadRow bad = wait_for_first_bad(flag);
      if (bad.row >= 0) throw_bad_embedding(bad.row);
    }
    update(centers, count);
    retire(pool_rows);
  }

  void add_points(const float* points, int64_t count) override {
    const DeviceGuard guard(context_.device);
    if (count == 0) return;
    float* centers = centers_.ensure<float>(count * points_.dim * sizeof(float));
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(centers, points, count * points_.dim * sizeof(float),
                                      cudaMemcpyHostToDevice, context_.stream));
    update(centers, count);
    QUARRY_CUDA_CHECK(cudaStreamSynchronize(context_.stream));  // `points` belongs to the caller
  }

 private:
  template <typename Fn>
  void for_each_block(Fn&& fn) {
    for (int64_t first = 0; first < n_; first += source_.block_rows()) {
      const int64_t count = std::min(source_.block_rows(), n_ - first);
      fn(source_.block(first, count), first, count);
      source_.done();
    }
  }

  void update(const float* centers, int64_t count) {
    for_each_block([&](const kernels::DeviceRows& x, int64_t first, int64_t rows) {
      kernels::launch_coreset_update(x, rows, points_.dim, centers, count, replace_,
                                     nearest() + first, context_.stream);
    });
    replace_ = false;
  }

  EmbeddingView points_;
  RowSource source_;
  DeviceBuffer centers_, gathered_;
};

class CudaBadgeSearch final : public CudaCenterSearch {
 public:
  CudaBadgeSearch(const CudaContext& context, const PoolView& pool, const EmbeddingView& features,
                  std::vector<int64_t> rows)
      : CudaCenterSearch(context, std::move(rows)),
        pool_(pool),
        features_(features),
        block_rows_(
            block_rows_for(pool.classes * static_cast<int64_t>(dtype_size(pool.dtype)) +
                           features.dim * static_cast<int64_t>(dtype_size(features.dtype)))),
        probs_(context, pool.data, pool.dtype, pool.space, pool.row_stride, pool.classes, &rows_,
               d_rows(), n_, block_rows_),
        feats_(context, features.data, features.dtype, features.space, features.row_stride,
               features.dim, &rows_, d_rows(), n_, block_rows_),
        argmax_(context.pool, context.stream),
        norms_(context.pool, context.stream),
        center_q_(context.pool, context.stream),
        center_h_(context.pool, context.stream),
        center_norm_(context.pool, context.stream),
        center_p_raw_(context.pool, context.stream),
        center_h_raw_(context.pool, context.stream) {
    unsigned long long* flag = first_bad();
    for_each_block([&](const kernels::DeviceRows& p, const kernels::DeviceRows& h, int64_t first,
                       int64_t count) {
      kernels::launch_badge_prepare(p, h, count, pool_.classes, features_.dim, d_rows() + first,
                                    argmax() + first, norms() + first, nearest() + first, flag,
                                    context_.stream);
    });
    const BadRow bad = wait_for_first_bad(flag);
    if (bad.row >= 0) throw_bad_row({bad.row, kernels::kBadFeature});
  }

  void add_rows(const std::vector<int64_t>& pool_rows) override {
    const DeviceGuard guard(context_.device);
    const int64_t classes = pool_.classes, dim = features_.dim;
    const auto p_elem = static_cast<int64_t>(dtype_size(pool_.dtype));
    const auto h_elem = static_cast<int64_t>(dtype_size(features_.dtype));
    float* q = center_q_.ensure<float>(classes * sizeof(float));
    float* h = center_h_.ensure<float>(dim * sizeof(float));
    auto* norm = center_norm_.ensure<double>(sizeof(double));
    for (int64_t row : pool_rows) {
      // The center's own row, copied to the device when it is in host memory.
      const char* p_row = static_cast<const char*>(pool_.data) + row * pool_.row_stride * p_elem;
      const char* h_row =
          static_cast<const char*>(features_.data) + row * features_.row_stride * h_elem;
      if (pool_.space == MemorySpace::host) {
        char* copy = center_p_raw_.ensure<char>(classes * p_elem);
        QUARRY_CUDA_CHECK(cudaMemcpyAsync(copy, p_row, classes * p_elem, cudaMemcpyHostToDevice,
                                          context_.stream));
        p_row = copy;
      }
      if (features_.space == MemorySpace::host) {
        char* copy = center_h_raw_.ensure<char>(dim * h_elem);
        QUARRY_CUDA_CHECK(
            cudaMemcpyAsync(copy, h_row, dim * h_elem, cudaMemcpyHostToDevice, context_.stream));
        h_row = copy;
      }
      kernels::launch_badge_center(
          {p_row, element_type(pool_.dtype), pool_.row_stride, nullptr},
          {h_row, element_type(features_.dtype), features_.row_stride, nullptr}, classes, dim, q, h,
          norm, context_.stream);
      for_each_block([&](const kernels::DeviceRows& p, const kernels::DeviceRows& f, int64_t first,
                         int64_t count) {
        kernels::launch_badge_update(p, f, count, classes, dim, argmax() + first, norms() + first,
                                     q, h, norm, replace_, nearest() + first, context_.stream);
      });
      replace_ = false;
    }
    retire(pool_rows);
  }

  void add_points(const float*, int64_t) override {
    throw InvalidArgument("BADGE centers are pool rows, not points");
  }

 private:
  int32_t* argmax() { return argmax_.ensure<int32_t>(n_ * sizeof(int32_t)); }
  double* norms() { return norms_.ensure<double>(n_ * sizeof(double)); }

  template <typename Fn>
  void for_each_block(Fn&& fn) {
    for (int64_t first = 0; first < n_; first += block_rows_) {
      const int64_t count = std::min(block_rows_, n_ - first);
      fn(probs_.block(first, count), feats_.block(first, count), first, count);
      probs_.done();
      feats_.done();
    }
  }

  PoolView pool_;
  EmbeddingView features_;
  int64_t block_rows_;
  RowSource probs_, feats_;
  DeviceBuffer argmax_, norms_, center_q_, center_h_, center_norm_, center_p_raw_, center_h_raw_;
};

}  // namespace

std::unique_ptr<CenterSearch> make_cuda_coreset_search(const CudaContext& context,
                                                       const EmbeddingView& points,
                                                       std::vector<int64_t> rows) {
  return std::make_unique<CudaCoresetSearch>(context, points, std::move(rows));
}

std::unique_ptr<CenterSearch> make_cuda_badge_search(const CudaContext& context,
                                                     const PoolView& pool,
                                                     const EmbeddingView& features,
                                                     std::vector<int64_t> rows) {
  return std::make_unique<CudaBadgeSearch>(context, pool, features, std::move(rows));
}

}  // namespace quarry::engine
