// Sequence kernels for LLM outputs with lengths. Token rows: a group of 4 to 32 lanes owns a row
// (by the array's steps), each lane a share of the row's steps, merged with CUB. Top-K rows: a
// warp owns a row and a lane owns a step. With K <= kMaxStagedK the warp first stages 32 steps'
// K values in shared memory with coalesced loads (a lane reading its own step directly would
// touch 32 places K values apart per load); rows with more entries per step read them directly.

#include <cub/warp/warp_reduce.cuh>

#include "kernels/cuda_check.cuh"
#include "kernels/row_reduce.cuh"
#include "kernels/sequence.cuh"

namespace quarry::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxStagedK = 32;

__device__ __forceinline__ void write_result(RowResult result, int64_t row, int64_t row_offset,
                                             float* scores, unsigned long long* first_bad) {
  scores[row] = result.score;
  if (result.flags != 0)
    atomicMin(first_bad,
              static_cast<unsigned long long>(encode_bad_row(row_offset + row, result.flags)));
}

template <typename T, int kGroup>
__global__ void __launch_bounds__(kThreads)
    token_rows_kernel(const T* __restrict__ data, int64_t rows, int64_t steps, int64_t row_stride,
                      int64_t step_stride, const void* __restrict__ lengths,
                      ElementType length_type, int64_t row_offset, MeasureId measure,
                      float* __restrict__ scores, unsigned long long* first_bad) {
  constexpr int kGroups = kThreads / kGroup;
  // The sums in double, as on the CPU: a float sum of a few log-probabilities near -3e38 would
  // overflow where their mean does not.
  using Reduce = cub::WarpReduce<TokenStats<double>, kGroup>;
  __shared__ typename Reduce::TempStorage temp[kGroups];
  const int group = threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGroups + group;
  if (row >= rows) return;  // the whole group leaves together
  const int64_t length = row_length(lengths, length_type, row, steps);
  if (!length_is_valid(length, steps)) {
    if (lane == 0) write_result({0.0f, kBadLength}, row, row_offset, scores, first_bad);
    return;
  }
  const T* values = data + row * row_stride;
  TokenStats<double> stats;
  for (int64_t t = lane; t < length; t += kGroup) stats.add(to_float(values[t * step_stride]));
  stats = Reduce(temp[group]).Reduce(stats, MergeStats{});
  if (lane == 0) write_result(stats.finish(measure, length), row, row_offset, scores, first_bad);
}

template <typename T, bool kStaged>
__global__ void __launch_bounds__(kThreads)
    top_k_rows_kernel(const T* __restrict__ data, int64_t rows, int64_t steps, int64_t k,
                      int64_t row_stride, int64_t step_stride, const void* __restrict__ lengths,
                      ElementType length_type, int64_t row_offset, MeasureId measure,
                      float* __restrict__ scores, unsigned long long* first_bad) {
  using Reduce = cub::WarpReduce<TopKRowStats<float>>;
  __shared__ typename Reduce::TempStorage temp[kWarps];
  // 32 steps per warp, each `pitch` floats apart: an odd pitch puts the lanes reading their own
  // steps on distinct banks.
  constexpr int64_t kStageFloats = kStaged ? 32 * (kMaxStagedK + 1) : 1;
  __shared__ float stage[kWarps][kStageFloats];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t length = row_length(lengths, length_type, row, steps);
  if (!length_is_valid(length, steps)) {
    if (lane == 0) write_result({0.0f, kBadLength}, row, row_offset, scores, first_bad);
    return;
  }
  const T* values = data + row * row_stride;
  const int64_t pitch = k | 1;
  TopKRowStats<float> stats;
  for (int64_t t0 = 0; t0 < length; t0 += 32) {
    const int64_t count = length - t0 < 32 ? length - t0 : 32;
    TopKStep<float> step;
    if constexpr (kStaged) {
      float* mine = stage[warp];
      __syncwarp();  // the previous chunk's steps have been read
      // Value e = lane, lane + 32, ... of the chunk: step e / k, entry e % k, advanced without a
      // division per value.
      int64_t t = lane / k, j = lane % k;
      const int64_t dt = 32 / k, dj = 32 % k;
      for (int64_t e = lane; e < count * k; e += 32) {
        mine[t * pitch + j] = to_float(values[(t0 + t) * step_stride + j]);
        t += dt;
        j += dj;
        if (j >= k) {
          j -= k;
          ++t;
        }
      }
      __syncwarp();
      if (lane < count)
        for (int64_t j2 = 0; j2 < k; ++j2) step.add(mine[lane * pitch + j2]);
    } else if (lane < count) {
      const T* own = values + (t0 + lane) * step_stride;
      for (int64_t j = 0; j < k; ++j) step.add(to_float(own[j]));
    }
    if (lane < count) stats.add_step(step.entropy(), step.margin(), step.step_flags());
  }
  stats = Reduce(temp[warp]).Reduce(stats, MergeStats{});
  if (lane == 0) write_result(stats.finish(measure, length), row, row_offset, scores, first_bad);
}

template <typename T>
void launch_typed(const T* data, MeasureId measure, int64_t rows, int64_t steps, int64_t k,
                  int64_t row_stride, int64_t step_stride, const void* lengths,
                  ElementType length_type, int64_t row_offset, float* scores,
                  unsigned long long* first_bad, cudaStream_t stream) {
  if (is_token_measure(measure)) {
    // About four steps or more per lane.
    auto launch = [&](auto group_constant) {
      constexpr int kGroup = decltype(group_constant)::value;
      constexpr int kGroups = kThreads / kGroup;
      const int64_t blocks = (rows + kGroups - 1) / kGroups;
      token_rows_kernel<T, kGroup><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          data, rows, steps, row_stride, step_stride, lengths, length_type, row_offset, measure,
          scores, first_bad);
    };
    if (steps <= 16)
      launch(std::integral_constant<int, 4>{});
    else if (steps <= 64)
      launch(std::integral_constant<int, 8>{});
    else if (steps <= 128)
      launch(std::integral_constant<int, 16>{});
    else
      launch(std::integral_constant<int, 32>{});
  } else {
    const auto blocks = static_cast<unsigned>((rows + kWarps - 1) / kWarps);
    if (k <= kMaxStagedK)
      top_k_rows_kernel<T, true>
          <<<blocks, kThreads, 0, stream>>>(data, rows, steps, k, row_stride, step_stride, lengths,
                                            length_type, row_offset, measure, scores, first_bad);
    else
      top_k_rows_kernel<T, false>
          <<<blocks, kThreads, 0, stream>>>(data, rows, steps, k, row_stride, step_stride, lengths,
                                            length_type, row_offset, measure, scores, first_bad);
  }
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace

void launch_score_sequences(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                            cudaStream_t stream) {
  if (pool.rows <= 0) return;
  // Token log-probabilities are steps of one value; top-K steps are `members` apart.
  const bool tokens = is_token_measure(params.measure);
  const int64_t steps = tokens ? pool.classes : pool.members;
  const int64_t k = tokens ? 1 : pool.classes;
  const int64_t step_stride = tokens ? 1 : pool.member_stride;
  with_float_type(pool.type, "sequence scoring", [&](auto tag) {
    using T = decltype(tag);
    launch_typed(static_cast<const T*>(pool.data), params.measure, pool.rows, steps, k,
                 pool.row_stride, step_stride, pool.lengths, pool.length_type, sink.row_offset,
                 sink.scores, sink.first_bad, stream);
  });
}

}  // namespace quarry::kernels
