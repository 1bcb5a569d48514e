// k-means kernels. Distances come from a matrix product (the engine calls cuBLAS); these kernels
// do the rest: gathering, norms, k-means++ seeding, argmin, and a deterministic centroid update.

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>

#include "kernels/cuda_check.cuh"
#include "kernels/kmeans.cuh"
#include "kernels/launch.cuh"
#include "kernels/prefix_draw.cuh"

namespace quarry::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

unsigned blocks_for(int64_t items, int per_block) {
  return static_cast<unsigned>(
      std::clamp<int64_t>((items + per_block - 1) / per_block, 1, int64_t{1} << 30));
}

template <typename T>
__global__ void gather_rows_kernel(const T* __restrict__ src, int64_t row_stride, int64_t dim,
                                   const int64_t* __restrict__ rows, int64_t n,
                                   float* __restrict__ out, unsigned long long* first_bad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= n) return;
  const int lane = threadIdx.x % 32;
  const int64_t row = rows ? rows[i] : i;
  bool finite = true;
  for (int64_t j = lane; j < dim; j += 32) {
    const float v = to_float(src[row * row_stride + j]);
    finite &= is_finite(v);
    out[i * dim + j] = v;
  }
  if (!__all_sync(0xffffffffu, finite) && lane == 0)
    atomicMin(first_bad, static_cast<unsigned long long>(encode_bad_row(row, kNonFinite)));
}

// One warp per row.
__global__ void row_norms_kernel(const float* __restrict__ x, int64_t n, int64_t dim,
                                 float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= n) return;
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
  for (int64_t j = lane; j < dim; j += 32) sum = fmaf(x[i * dim + j], x[i * dim + j], sum);
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) out[i] = sum;
}

__global__ void kpp_update_kernel(const float* __restrict__ x, int64_t n, int64_t dim,
                                  const float* __restrict__ centroid, float* __restrict__ nearest) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= n) return;
  const int lane = threadIdx.x % 32;
  float sum = 0.0f;
  for (int64_t j = lane; j < dim; j += 32) {
    const float d = x[i * dim + j] - centroid[j];
    sum = fmaf(d, d, sum);
  }
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) nearest[i] = fminf(nearest[i], sum);
}

// distance[i] = |x_i - c_assignment[i]|^2 from the coordinates, in float32: the inertia does not
// inherit the rounding of the TF32 products the assignment was chosen with.
__global__ void assigned_distance_kernel(const float* __restrict__ x, int64_t n, int64_t dim,
                                         const float* __restrict__ centroids,
                                         const int32_t* __restrict__ assignment,
                                         float* __restrict__ distance) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= n) return;
  const int lane = threadIdx.x % 32;
  const float* centroid = centroids + static_cast<int64_t>(assignment[i]) * dim;
  float sum = 0.0f;
  for (int64_t j = lane; j < dim; j += 32) {
    const float d = x[i * dim + j] - centroid[j];
    sum = fmaf(d, d, sum);
  }
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) distance[i] = sum;
}

// A single block: binary search for the sampled point, then copy it.
__global__ void kpp_pick_kernel(const float* __restrict__ x, int64_t n, int64_t dim,
                                const float* __restrict__ nearest,
                                const double* __restrict__ cumulative,
                                const double* __restrict__ uniforms, int64_t c,
                                float* __restrict__ centroids) {
  __shared__ int64_t chosen;
  if (threadIdx.x == 0) {
    const double total = cumulative[n - 1];
    int64_t pick;
    if (total > 0.0) {
      double target = uniforms[c] * total;
      if (target >= total) target = nextafter(total, 0.0);  // u * total rounded up to the total
      pick = draw_from_prefix_sums(cumulative, n, target,
                                   [=](int64_t i) { return static_cast<double>(nearest[i]); });
    } else {  // every point already coincides with a centroid
      pick = static_cast<int64_t>(uniforms[c] * static_cast<double>(n));
      pick = pick < n ? pick : n - 1;
    }
    chosen = pick;
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    centroids[c * dim + j] = x[chosen * dim + j];
}

struct MinDistance {
  float value;
  int32_t index;
};
struct MinDistanceOp {
  __device__ MinDistance operator()(const MinDistance& a, const MinDistance& b) const {
    return (b.value < a.value || (b.value == a.value && b.index < a.index)) ? b : a;
  }
};

// One warp per point of the tile.
__global__ void assign_kernel(const float* __restrict__ s, int64_t rows, int64_t k,
                              const float* __restrict__ centroid_norms,
                              const float* __restrict__ point_norms,
                              int32_t* __restrict__ assignment, float* __restrict__ distance,
                              unsigned int* changed, const int* converged) {
  if (*converged) return;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (i >= rows) return;
  const int lane = threadIdx.x % 32;
  // Index 0, not a sentinel: if a distance overflowed to NaN the point still gets a valid cluster.
  MinDistance best{kInf, 0};
  for (int64_t j = lane; j < k; j += 32) {
    const float v = centroid_norms[j] - 2.0f * s[i * k + j];
    if (v < best.value) best = {v, static_cast<int32_t>(j)};  // j ascends: ties keep the lower
  }
  __shared__ typename cub::WarpReduce<MinDistance>::TempStorage temp[kWarpsPerBlock];
  best = cub::WarpReduce<MinDistance>(temp[threadIdx.x / 32]).Reduce(best, MinDistanceOp{});
  if (lane == 0) {
    if (assignment[i] != best.index) *changed = 1u;  // any writer will do: no atomic
    assignment[i] = best.index;
    distance[i] = fmaxf(0.0f, point_norms[i] + best.value);
  }
}

__global__ void cluster_counts_kernel(const int32_t* __restrict__ assignment, int64_t n,
                                      int32_t* counts, const int* converged) {
  if (*converged) return;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(&counts[assignment[i]], 1);
}

// The centroid sums, in a parallelism that does not depend on k: the points sorted by cluster are
// cut into pieces of kPiecePoints, a block per piece (and per 128 dimensions) sums each run of one
// cluster's points in order, in double. A run that is a whole cluster gives its centroid at once;
// a cluster cut by piece boundaries leaves its piece's partial sum, first or last run of the
// piece, and centroid_join_kernel adds those in piece order. The pieces depend only on the
// counts, so the sums are the same run after run.
constexpr int64_t kPiecePoints = 256;
constexpr int kDimThreads = 128;

__global__ void __launch_bounds__(kDimThreads)
    centroid_pieces_kernel(const float* __restrict__ x, int64_t n, int64_t dim,
                           const int32_t* __restrict__ sorted_keys,
                           const int32_t* __restrict__ sorted_points,
                           const int32_t* __restrict__ offsets, const int32_t* __restrict__ counts,
                           float* __restrict__ centroids, double* __restrict__ first_partial,
                           double* __restrict__ last_partial, const int* converged) {
  if (*converged) return;
  const int64_t piece = blockIdx.x;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kDimThreads + threadIdx.x;
  if (j >= dim) return;
  const int64_t begin = piece * kPiecePoints, end = min(n, begin + kPiecePoints);
  auto finish = [&](int32_t c, int64_t run_begin, int64_t run_end, double sum) {
    const int64_t cluster_begin = offsets[c], count = counts[c];
    if (run_begin == cluster_begin && run_end == cluster_begin + count)
      centroids[c * dim + j] = static_cast<float>(sum / static_cast<double>(count));
    else if (run_begin == begin)  // the piece's first run, begun in an earlier piece
      first_partial[piece * dim + j] = sum;
    else  // the piece's last run, going on in the next piece
      last_partial[piece * dim + j] = sum;
  };
  int32_t c = sorted_keys[begin];
  int64_t run_begin = begin;
  double sum = 0.0;
  for (int64_t i = begin; i < end; ++i) {
    const int32_t key = sorted_keys[i];
    if (key != c) {
      finish(c, run_begin, i, sum);
      c = key;
      run_begin = i;
      sum = 0.0;
    }
    sum += x[static_cast<int64_t>(sorted_points[i]) * dim + j];
  }
  finish(c, run_begin, end, sum);
}

// One thread per (cluster, dimension) of the clusters that span pieces.
__global__ void centroid_join_kernel(int64_t dim, const int32_t* __restrict__ offsets,
                                     const int32_t* __restrict__ counts, int64_t k,
                                     const double* __restrict__ first_partial,
                                     const double* __restrict__ last_partial,
                                     float* __restrict__ centroids, const int* converged) {
  if (*converged) return;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= k * dim) return;
  const int64_t c = t / dim, j = t % dim;
  const int64_t count = counts[c];
  if (count == 0) return;
  const int64_t begin = offsets[c];
  const int64_t p0 = begin / kPiecePoints, p1 = (begin + count - 1) / kPiecePoints;
  if (p0 == p1) return;  // summed whole by centroid_pieces_kernel
  double sum =
      begin == p0 * kPiecePoints ? first_partial[p0 * dim + j] : last_partial[p0 * dim + j];
  for (int64_t p = p0 + 1; p <= p1; ++p) sum += first_partial[p * dim + j];
  centroids[c * dim + j] = static_cast<float>(sum / static_cast<double>(count));
}

struct LargestCluster {
  int32_t count;
  int32_t index;
};
struct LargestClusterOp {
  __device__ LargestCluster operator()(const LargestCluster& a, const LargestCluster& b) const {
    return (b.count > a.count || (b.count == a.count && b.index < a.index)) ? b : a;
  }
};

// Each empty cluster takes half of the largest cluster: the two centroids move apart by a step
// of kSplitStep times the larger of the coordinate and the centroid's RMS coordinate, with signs
// alternating over the dimensions (FAISS splits the same way, by 1/1024 of each coordinate). The
// step is large enough to survive the TF32 rounding of the distance products, and moves
// coordinates that are 0.
constexpr float kSplitStep = 1.0f / 128.0f;

__global__ void repair_empty_kernel(float* __restrict__ centroids, int32_t* __restrict__ counts,
                                    int64_t k, int64_t dim, const int* converged) {
  if (*converged) return;
  using Reduce = cub::BlockReduce<LargestCluster, kThreads>;
  using Sum = cub::BlockReduce<float, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage largest;
    typename Sum::TempStorage sum;
  } temp;
  __shared__ int32_t big;
  __shared__ float rms;
  for (int64_t j = 0; j < k; ++j) {
    if (counts[j] != 0) continue;  // uniform across the block
    LargestCluster best{-1, 0x7fffffff};
    for (int64_t c = threadIdx.x; c < k; c += blockDim.x)
      best = LargestClusterOp{}(best, LargestCluster{counts[c], static_cast<int32_t>(c)});
    best = Reduce(temp.largest).Reduce(best, LargestClusterOp{});
    if (threadIdx.x == 0) big = best.index;
    __syncthreads();
    const int64_t b = big;
    if (counts[b] < 2) return;  // nothing left to split
    float squares = 0.0f;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x)
      squares += centroids[b * dim + d] * centroids[b * dim + d];
    squares = Sum(temp.sum).Sum(squares);
    if (threadIdx.x == 0) rms = sqrtf(squares / static_cast<float>(dim));
    __syncthreads();
    const float floor = rms > 0.0f ? rms : 1.0f;  // a centroid at the origin: a unit step
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      const float v = centroids[b * dim + d];
      const float step = ((d % 2 == 0) ? kSplitStep : -kSplitStep) * fmaxf(fabsf(v), floor);
      centroids[j * dim + d] = v + step;
      centroids[b * dim + d] = v - step;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      counts[j] = counts[b] / 2;
      counts[b] -= counts[j];
    }
    __syncthreads();
  }
}

__global__ void check_converged_kernel(unsigned int* changed, int* converged, int* iterations) {
  if (*converged) return;
  ++*iterations;
  if (*changed == 0) *converged = 1;
  *changed = 0;
}

}  // namespace

void launch_gather_rows(const void* src, ElementType type, int64_t row_stride, int64_t dim,
                        const int64_t* rows, int64_t n, float* out, unsigned long long* first_bad,
                        cudaStream_t stream) {
  const unsigned blocks = blocks_for(n, kWarpsPerBlock);
  with_float_type(type, "embeddings", [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(src), row_stride, dim,
                                                        rows, n, out, first_bad);
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_row_norms(const float* x, int64_t n, int64_t dim, float* out, cudaStream_t stream) {
  row_norms_kernel<<<blocks_for(n, kWarpsPerBlock), kThreads, 0, stream>>>(x, n, dim, out);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_kpp_update(const float* x, int64_t n, int64_t dim, const float* centroid,
                       float* nearest, cudaStream_t stream) {
  kpp_update_kernel<<<blocks_for(n, kWarpsPerBlock), kThreads, 0, stream>>>(x, n, dim, centroid,
                                                                            nearest);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_assigned_distances(const float* x, int64_t n, int64_t dim, const float* centroids,
                               const int32_t* assignment, float* distance, cudaStream_t stream) {
  assigned_distance_kernel<<<blocks_for(n, kWarpsPerBlock), kThreads, 0, stream>>>(
      x, n, dim, centroids, assignment, distance);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_kpp_pick(const float* x, int64_t n, int64_t dim, const float* nearest,
                     const double* cumulative, const double* uniforms, int64_t c, float* centroids,
                     cudaStream_t stream) {
  kpp_pick_kernel<<<1, kThreads, 0, stream>>>(x, n, dim, nearest, cumulative, uniforms, c,
                                              centroids);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_assign(const float* s, int64_t rows, int64_t k, const float* centroid_norms,
                   const float* point_norms, int32_t* assignment, float* distance,
                   unsigned int* changed, const int* converged, cudaStream_t stream) {
  assign_kernel<<<blocks_for(rows, kWarpsPerBlock), kThreads, 0, stream>>>(
      s, rows, k, centroid_norms, point_norms, assignment, distance, changed, converged);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_cluster_counts(const int32_t* assignment, int64_t n, int32_t* counts,
                           const int* converged, cudaStream_t stream) {
  cluster_counts_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(assignment, n, counts,
                                                                          converged);
  QUARRY_CHECK_LAUNCH(stream);
}

std::size_t centroid_update_bytes(int64_t n, int64_t dim) {
  return 2 * static_cast<std::size_t>((n + kPiecePoints - 1) / kPiecePoints) *
         static_cast<std::size_t>(dim) * sizeof(double);
}

void launch_centroid_update(const float* x, int64_t n, int64_t dim, const int32_t* sorted_keys,
                            const int32_t* sorted_points, const int32_t* offsets,
                            const int32_t* counts, int64_t k, float* centroids, void* scratch,
                            const int* converged, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t pieces = (n + kPiecePoints - 1) / kPiecePoints;
  auto* first_partial = static_cast<double*>(scratch);
  double* last_partial = first_partial + pieces * dim;
  const dim3 grid(static_cast<unsigned>(pieces),
                  static_cast<unsigned>((dim + kDimThreads - 1) / kDimThreads));
  centroid_pieces_kernel<<<grid, kDimThreads, 0, stream>>>(x, n, dim, sorted_keys, sorted_points,
                                                           offsets, counts, centroids,
                                                           first_partial, last_partial, converged);
  QUARRY_CHECK_LAUNCH(stream);
  centroid_join_kernel<<<blocks_for(k * dim, kThreads), kThreads, 0, stream>>>(
      dim, offsets, counts, k, first_partial, last_partial, centroids, converged);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_repair_empty(float* centroids, int32_t* counts, int64_t k, int64_t dim,
                         const int* converged, cudaStream_t stream) {
  repair_empty_kernel<<<1, kThreads, 0, stream>>>(centroids, counts, k, dim, converged);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_check_converged(unsigned int* changed, int* converged, int* iterations,
                            cudaStream_t stream) {
  check_converged_kernel<<<1, 1, 0, stream>>>(changed, converged, iterations);
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace quarry::kernels
