// Expected gradient length kernels. A warp owns a row: it merges the lanes' EglRow statistics with
// CUB, hands them to every lane, sums the other classes' terms in a second pass over the row (from
// cache), and lane 0 writes the score.

#include <algorithm>
#include <cub/warp/warp_reduce.cuh>

#include "kernels/cuda_check.cuh"
#include "kernels/egl.cuh"
#include "kernels/row_reduce.cuh"
#include "kernels/warp_rows.cuh"

namespace quarry::kernels {

namespace {

constexpr int kThreads = kWarpRowThreads;
constexpr int kWarps = kThreads / 32;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    feature_squares_kernel(const T* __restrict__ data, int64_t rows, int64_t dim,
                           int64_t row_stride, int64_t row_offset, double* __restrict__ squares,
                           unsigned long long* first_bad) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kWarps) {
    const T* row = data + r * row_stride;
    double sum = 0;
    for (int64_t d = lane; d < dim; d += 32) {
      const double v = to_float(row[d]);
      sum += v * v;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      squares[r] = sum;
      if (!isfinite(sum))
        atomicMin(first_bad,
                  static_cast<unsigned long long>(encode_bad_row(row_offset + r, kBadFeature)));
    }
  }
}

template <typename T, typename Stats>
__global__ void __launch_bounds__(kThreads)
    egl_kernel(const T* __restrict__ data, int64_t rows, int64_t classes, int64_t row_stride,
               float scale, bool logits, const double* __restrict__ feature_squares,
               int64_t row_offset, float* __restrict__ scores, unsigned long long* first_bad) {
  using Reduce = cub::WarpReduce<Stats>;
  __shared__ typename Reduce::TempStorage temp[kWarps];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kWarps) {
    const T* row = data + r * row_stride;
    Stats stats(scale);
    for (int64_t c = lane; c < classes; c += 32) stats.add(to_float(row[c]), c);
    stats = Reduce(temp[warp]).Reduce(stats, MergeStats{});
    EglRow<float> egl = stats.row();  // valid in lane 0; handed to every lane
    egl.p1 = __shfl_sync(0xffffffffu, egl.p1, 0);
    egl.one_minus_p1 = __shfl_sync(0xffffffffu, egl.one_minus_p1, 0);
    egl.rest_squares = __shfl_sync(0xffffffffu, egl.rest_squares, 0);
    egl.argmax = __shfl_sync(0xffffffffu, static_cast<long long>(egl.argmax), 0);
    egl.top = __shfl_sync(0xffffffffu, egl.top, 0);
    egl.inv_sum = __shfl_sync(0xffffffffu, egl.inv_sum, 0);
    egl.scale = scale;
    float others = 0;
    for (int64_t c = lane; c < classes; c += 32)
      if (c != egl.argmax) others += egl.term(egl.probability(to_float(row[c]), logits));
    for (int offset = 16; offset > 0; offset /= 2)
      others += __shfl_xor_sync(0xffffffffu, others, offset);
    if (lane == 0) {
      uint32_t flags = stats.row_flags();
      // The norm stays in double: |h|^2 of float features can exceed the float range.
      scores[r] = egl_score(egl.terms(others), feature_squares[r], flags);
      if (flags != 0)
        atomicMin(first_bad,
                  static_cast<unsigned long long>(encode_bad_row(row_offset + r, flags)));
    }
    __syncwarp();  // temp[warp] is reused by the warp's next row
  }
}

}  // namespace

void launch_feature_squares(const void* data, ElementType type, int64_t rows, int64_t dim,
                            int64_t row_stride, int64_t row_offset, double* squares,
                            unsigned long long* first_bad, cudaStream_t stream) {
  if (rows <= 0) return;
  with_float_type(type, "egl", [&](auto tag) {
    using T = decltype(tag);
    feature_squares_kernel<<<warp_row_blocks(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(data), rows, dim, row_stride, row_offset, squares, first_bad);
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_score_egl(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                      cudaStream_t stream) {
  if (pool.rows <= 0) return;
  with_float_type(pool.type, "egl", [&](auto tag) {
    using T = decltype(tag);
    const auto* data = static_cast<const T*>(pool.data);
    if (params.logits)
      egl_kernel<T, EglLogitStats<float>><<<warp_row_blocks(pool.rows), kThreads, 0, stream>>>(
          data, pool.rows, pool.classes, pool.row_stride, params.inv_temperature, true,
          params.feature_squares, sink.row_offset, sink.scores, sink.first_bad);
    else
      egl_kernel<T, EglProbStats<float>><<<warp_row_blocks(pool.rows), kThreads, 0, stream>>>(
          data, pool.rows, pool.classes, pool.row_stride, 1.0f, false, params.feature_squares,
          sink.row_offset, sink.scores, sink.first_bad);
  });
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace quarry::kernels
