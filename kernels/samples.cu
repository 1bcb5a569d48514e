// Sampled-answer kernel: a block owns a row. The row's S answers are read once, kTile coordinates
// at a time, into shared memory as float; each thread owns fixed slots, a slot being one of the
// S(S+1)/2 dot products or S sums and a phase h of H (the tile's coordinates h, h + H, ...), and
// accumulates it in double (products of floats are exact in double), so every sum has a fixed
// order and the scores repeat bit for bit. The phases of a slot are then added in order into the
// Gram matrix, and the block's first warp scores the row with kernels::score_samples.
//
// eigenscore's eigenvalues come from the Jacobi routine in measures.hpp, run by that warp (the
// lanes share each rotation's row and column updates), rather than from cuSOLVER's
// syevjBatched: the S x S matrix never leaves shared memory (no N x S x S round trip through
// device memory, no second launch), S may be up to 64 (syevjBatched stops at 32), and it is the
// CPU backend's routine, so the backends agree to rounding.

#include <algorithm>

#include "kernels/cuda_check.cuh"
#include "kernels/samples.cuh"

namespace quarry::kernels {

namespace {

constexpr int kTile = 64;          // coordinates per tile
constexpr int kPitch = kTile + 1;  // odd: threads reading one coordinate of several answers
                                   // hit distinct banks

struct WarpSync {
  QUARRY_HD void operator()() const {
#if defined(__CUDA_ARCH__)
    __syncwarp();
#endif
  }
};

// Dynamic shared memory of a block: the tile of answers, which the row's Gram matrix replaces once
// the tiles are summed; the sums; the slots' partial sums; and each slot's answers (i, j), j = 0xff
// for a sum.
struct Layout {
  int dots;    // S(S+1)/2
  int pairs;   // dots + S
  int phases;  // H
  std::size_t gram, sums, partial, pair, bytes;
};

__host__ __device__ inline std::size_t align16(std::size_t bytes) {
  return (bytes + 15) / 16 * 16;
}

__host__ __device__ inline Layout layout_for(int s, int threads) {
  Layout l;
  l.dots = s * (s + 1) / 2;
  l.pairs = l.dots + s;
  l.phases = l.pairs < threads ? threads / l.pairs : 1;
  const std::size_t tile = static_cast<std::size_t>(s) * kPitch * sizeof(float);
  const std::size_t gram = static_cast<std::size_t>(s) * s * sizeof(double);
  l.gram = 0;
  l.sums = align16(tile > gram ? tile : gram);
  l.partial = l.sums + align16(s * sizeof(double));
  l.pair = l.partial + align16(static_cast<std::size_t>(l.pairs) * l.phases * sizeof(double));
  l.bytes = l.pair + align16(l.pairs * sizeof(uint16_t));
  return l;
}

template <int kThreads, typename T>
__global__ void __launch_bounds__(kThreads)
    samples_kernel(const T* __restrict__ data, int64_t rows, int s, int64_t dim, int64_t row_stride,
                   int64_t sample_stride, double alpha, double threshold, int64_t row_offset,
                   MeasureId measure, float* __restrict__ scores, unsigned long long* first_bad) {
  extern __shared__ __align__(16) unsigned char shared[];
  const Layout l = layout_for(s, kThreads);
  auto* tile = reinterpret_cast<float*>(shared + l.gram);
  auto* gram = reinterpret_cast<double*>(shared + l.gram);
  auto* sums = reinterpret_cast<double*>(shared + l.sums);
  auto* partial = reinterpret_cast<double*>(shared + l.partial);
  auto* pair = reinterpret_cast<uint16_t*>(shared + l.pair);
  const int tid = threadIdx.x;
  for (int p = tid; p < l.pairs; p += kThreads) {
    if (p < l.dots) {
      int i = 0, q = p;
      while (q >= s - i) q -= s - i++;
      pair[p] = static_cast<uint16_t>(i << 8 | (i + q));
    } else {
      pair[p] = static_cast<uint16_t>((p - l.dots) << 8 | 0xff);
    }
  }
  const int slots = l.pairs * l.phases;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* values = data + row * row_stride;
    for (int slot = tid; slot < slots; slot += kThreads) partial[slot] = 0.0;
    bool finite = true;
    for (int64_t x0 = 0; x0 < dim; x0 += kTile) {
      const int width = static_cast<int>(dim - x0 < kTile ? dim - x0 : kTile);
      __syncthreads();  // the previous tile (or row's Gram matrix) has been read
      for (int e = tid; e < s * kTile; e += kThreads) {
        const int i = e / kTile, c = e % kTile;
        if (c < width) {
          const float v = to_float(values[i * sample_stride + x0 + c]);
          finite = finite && is_finite(v);
          tile[i * kPitch + c] = v;
        }
      }
      __syncthreads();
      for (int slot = tid; slot < slots; slot += kThreads) {
        const int p = slot % l.pairs, h = slot / l.pairs;
        const float* a = tile + (pair[p] >> 8) * kPitch;
        const int j = pair[p] & 0xff;
        double sum = 0.0;
        if (j == 0xff) {
          for (int c = h; c < width; c += l.phases) sum += a[c];
        } else {
          const float* b = tile + j * kPitch;
          for (int c = h; c < width; c += l.phases)
            sum = fma(static_cast<double>(a[c]), static_cast<double>(b[c]), sum);
        }
        partial[slot] += sum;
      }
    }
    // Every partial is complete, and every thread agrees on the row's validity.
    if (!__syncthreads_and(finite)) {
      if (tid == 0) {
        scores[row] = 0.0f;
        atomicMin(first_bad,
                  static_cast<unsigned long long>(encode_bad_row(row_offset + row, kNonFinite)));
      }
      continue;
    }
    for (int p = tid; p < l.pairs; p += kThreads) {
      double v = 0.0;
      for (int h = 0; h < l.phases; ++h) v += partial[h * l.pairs + p];
      const int i = pair[p] >> 8, j = pair[p] & 0xff;
      if (j == 0xff)
        sums[i] = v;
      else
        gram[i * s + j] = gram[j * s + i] = v;
    }
    __syncthreads();
    if (tid < 32) {
      const float score =
          score_samples(measure, gram, sums, s, dim, alpha, threshold, tid, 32, WarpSync{});
      if (tid == 0) scores[row] = score;
    }
  }
}

template <int kThreads, typename T>
void launch_with_block(const T* data, MeasureId measure, int64_t rows, int s, int64_t dim,
                       int64_t row_stride, int64_t sample_stride, double alpha, double threshold,
                       int64_t row_offset, float* scores, unsigned long long* first_bad,
                       cudaStream_t stream) {
  const std::size_t bytes = layout_for(s, kThreads).bytes;
  if (bytes > 48 * 1024)  // beyond the default limit: opt in (S near 64)
    QUARRY_CUDA_CHECK(cudaFuncSetAttribute(samples_kernel<kThreads, T>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(bytes)));
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(rows, int64_t{1} << 20));
  samples_kernel<kThreads, T>
      <<<blocks, kThreads, bytes, stream>>>(data, rows, s, dim, row_stride, sample_stride, alpha,
                                            threshold, row_offset, measure, scores, first_bad);
  QUARRY_CHECK_LAUNCH(stream);
}

// Small rows get small blocks: more rows in flight per multiprocessor to hide the latency of
// the scoring warp's Jacobi rotations, which the block's other warps wait out.
template <typename T>
void launch_typed(const T* data, MeasureId measure, int64_t rows, int s, int64_t dim,
                  int64_t row_stride, int64_t sample_stride, double alpha, double threshold,
                  int64_t row_offset, float* scores, unsigned long long* first_bad,
                  cudaStream_t stream) {
  if (layout_for(s, 128).pairs <= 128)
    launch_with_block<128>(data, measure, rows, s, dim, row_stride, sample_stride, alpha, threshold,
                           row_offset, scores, first_bad, stream);
  else
    launch_with_block<256>(data, measure, rows, s, dim, row_stride, sample_stride, alpha, threshold,
                           row_offset, scores, first_bad, stream);
}

}  // namespace

void launch_score_samples(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                          cudaStream_t stream) {
  if (pool.rows <= 0) return;
  if (pool.members < 1 || pool.members > kMaxSamples)
    throw InvalidArgument("sampled answers: 1 to 64 samples per row");
  with_float_type(pool.type, "sampled answers", [&](auto tag) {
    using T = decltype(tag);
    launch_typed(static_cast<const T*>(pool.data), params.measure, pool.rows,
                 static_cast<int>(pool.members), pool.classes, pool.row_stride, pool.member_stride,
                 params.alpha, params.threshold, sink.row_offset, sink.scores, sink.first_bad,
                 stream);
  });
}

}  // namespace quarry::kernels
