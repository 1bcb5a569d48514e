// Single-model scoring kernels. A group of threads owns a row: 4 to 32 lanes of a warp for rows of
// up to a few thousand classes, a whole block for larger rows (LLM vocabularies). Each thread
// accumulates its share of the row in registers, the group merges the accumulators with CUB, and
// one thread writes the score and reports validation failures.

#include <cub/block/block_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>

#include "kernels/cuda_check.cuh"
#include "kernels/row_reduce.cuh"
#include "kernels/score_rows.cuh"

namespace quarry::kernels {

namespace {

constexpr int kWarpKernelThreads = 256;

template <typename Stats>
__device__ __forceinline__ void write_row_result(const Stats& stats, MeasureId measure, int64_t row,
                                                 int64_t row_offset, float* scores,
                                                 unsigned long long* first_bad) {
  const RowResult result = stats.finish(measure);
  scores[row] = result.score;
  if (result.flags != 0)
    atomicMin(first_bad,
              static_cast<unsigned long long>(encode_bad_row(row_offset + row, result.flags)));
}

template <typename T, typename Stats, int kGroup, bool kVector>
__global__ void __launch_bounds__(kWarpKernelThreads)
    score_rows_warp_kernel(const T* __restrict__ data, int64_t rows, int64_t classes,
                           int64_t row_stride, int64_t row_offset, float scale, MeasureId measure,
                           float* __restrict__ scores, unsigned long long* first_bad) {
  constexpr int kGroupsPerBlock = kWarpKernelThreads / kGroup;
  using Reduce = cub::WarpReduce<Stats, kGroup>;
  __shared__ typename Reduce::TempStorage temp[kGroupsPerBlock];
  const int group = threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock + group;
  if (row >= rows) return;  // the whole group leaves together
  Stats stats = fresh_stats<Stats>(scale);
  accumulate_row<kVector>(data + row * row_stride, classes, lane, kGroup, stats);
  stats = Reduce(temp[group]).Reduce(stats, MergeStats{});
  if (lane == 0) write_row_result(stats, measure, row, row_offset, scores, first_bad);
}

template <typename T, typename Stats, int kThreads, bool kVector>
__global__ void __launch_bounds__(kThreads)
    score_rows_block_kernel(const T* __restrict__ data, int64_t rows, int64_t classes,
                            int64_t row_stride, int64_t row_offset, float scale, MeasureId measure,
                            float* __restrict__ scores, unsigned long long* first_bad) {
  using Reduce = cub::BlockReduce<Stats, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    Stats stats = fresh_stats<Stats>(scale);
    accumulate_row<kVector>(data + row * row_stride, classes, threadIdx.x, kThreads, stats);
    stats = Reduce(temp).Reduce(stats, MergeStats{});
    if (threadIdx.x == 0) write_row_result(stats, measure, row, row_offset, scores, first_bad);
    __syncthreads();  // temp is reused by the next row
  }
}

template <typename T, typename Stats, bool kVector>
void launch_for_layout(const T* data, int64_t rows, int64_t classes, int64_t row_stride,
                       int64_t row_offset, float scale, MeasureId measure, float* scores,
                       unsigned long long* first_bad, cudaStream_t stream) {
  // The group size follows from the row length alone, never from alignment (see accumulate_row).
  constexpr int kVec = kVecElems<T>;
  const int64_t loads = (classes + kVec - 1) / kVec;  // 16-byte pieces per row
  // About four loads per lane keeps several requests in flight per thread.
  auto warp_launch = [&](auto group_constant) {
    constexpr int kGroup = decltype(group_constant)::value;
    constexpr int kGroupsPerBlock = kWarpKernelThreads / kGroup;
    const int64_t blocks = (rows + kGroupsPerBlock - 1) / kGroupsPerBlock;
    score_rows_warp_kernel<T, Stats, kGroup, kVector>
        <<<static_cast<unsigned>(blocks), kWarpKernelThreads, 0, stream>>>(
            data, rows, classes, row_stride, row_offset, scale, measure, scores, first_bad);
  };
  auto block_launch = [&](auto threads_constant) {
    constexpr int kThreads = decltype(threads_constant)::value;
    const int64_t blocks = rows < (1 << 20) ? rows : (1 << 20);
    score_rows_block_kernel<T, Stats, kThreads, kVector>
        <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            data, rows, classes, row_stride, row_offset, scale, measure, scores, first_bad);
  };
  if (loads <= 16)
    warp_launch(std::integral_constant<int, 4>{});
  else if (loads <= 32)
    warp_launch(std::integral_constant<int, 8>{});
  else if (loads <= 64)
    warp_launch(std::integral_constant<int, 16>{});
  else if (loads <= 512)
    warp_launch(std::integral_constant<int, 32>{});
  else if (loads <= 4096)
    block_launch(std::integral_constant<int, 256>{});
  else
    block_launch(std::integral_constant<int, 512>{});
  QUARRY_CHECK_LAUNCH(stream);
}

template <typename T>
void launch_typed(const void* data, bool logits, float inv_temperature, MeasureId measure,
                  int64_t rows, int64_t classes, int64_t row_stride, int64_t row_offset,
                  float* scores, unsigned long long* first_bad, cudaStream_t stream) {
  const T* typed = static_cast<const T*>(data);
  const bool vector = rows_are_16b_aligned<T>(data, row_stride);
  if (logits) {
    using Stats = LogitStats<float>;
    if (vector)
      launch_for_layout<T, Stats, true>(typed, rows, classes, row_stride, row_offset,
                                        inv_temperature, measure, scores, first_bad, stream);
    else
      launch_for_layout<T, Stats, false>(typed, rows, classes, row_stride, row_offset,
                                         inv_temperature, measure, scores, first_bad, stream);
  } else {
    using Stats = ProbStats<float>;
    if (vector)
      launch_for_layout<T, Stats, true>(typed, rows, classes, row_stride, row_offset, 1.0f, measure,
                                        scores, first_bad, stream);
    else
      launch_for_layout<T, Stats, false>(typed, rows, classes, row_stride, row_offset, 1.0f,
                                         measure, scores, first_bad, stream);
  }
}

}  // namespace

void launch_score_single_model(const PoolRows& pool, const ScoreParams& params,
                               const ScoreSink& sink, cudaStream_t stream) {
  if (pool.rows <= 0) return;
  with_float_type(pool.type, "single-model scoring", [&](auto tag) {
    launch_typed<decltype(tag)>(pool.data, params.logits, params.inv_temperature, params.measure,
                                pool.rows, pool.classes, pool.row_stride, sink.row_offset,
                                sink.scores, sink.first_bad, stream);
  });
}

}  // namespace quarry::kernels
