#pragma once
// Device pieces of k-means. The engine strings them into Lloyd iterations around a cuBLAS matrix
// product; every kernel that runs inside an iteration first reads `converged` and does nothing
// once it is set, so iterations can be queued ahead without a host round trip.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Gathers rows `rows[i]` (all rows 0..n-1 when null) of a [*, dim] matrix with `row_stride`
/// into dense float32 `out` [n, dim]; lowers `first_bad` (encode_bad_row of the source row) for
/// non-finite values.
void launch_gather_rows(const void* src, ElementType type, int64_t row_stride, int64_t dim,
                        const int64_t* rows, int64_t n, float* out, unsigned long long* first_bad,
                        cudaStream_t stream);

/// out[i] = |x_i|^2 for the n rows of x [n, dim].
void launch_row_norms(const float* x, int64_t n, int64_t dim, float* out, cudaStream_t stream);

/// k-means++ step: nearest[i] = min(nearest[i], |x_i - centroid|^2).
void launch_kpp_update(const float* x, int64_t n, int64_t dim, const float* centroid,
                       float* nearest, cudaStream_t stream);

/// distance[i] = |x_i - centroids[assignment[i]]|^2, computed from the coordinates in float32.
void launch_assigned_distances(const float* x, int64_t n, int64_t dim, const float* centroids,
                               const int32_t* assignment, float* distance, cudaStream_t stream);

/// k-means++ step: picks the point i with cumulative[i-1] <= u * total < cumulative[i]
/// (u = uniforms[c]) and nearest[i] > 0, and copies it to centroids[c]. `cumulative` is the
/// inclusive prefix sum of the `nearest` distances.
void launch_kpp_pick(const float* x, int64_t n, int64_t dim, const float* nearest,
                     const double* cumulative, const double* uniforms, int64_t c, float* centroids,
                     cudaStream_t stream);

/// For a tile of `rows` points with products s[i*k + j] = x_i . c_j: assignment[i] = the j
/// minimising |c_j|^2 - 2 s_ij (ties: lower j), distance[i] = max(0, |x_i|^2 + that minimum).
/// Sets *changed to 1 when an assignment changed.
void launch_assign(const float* s, int64_t rows, int64_t k, const float* centroid_norms,
                   const float* point_norms, int32_t* assignment, float* distance,
                   unsigned int* changed, const int* converged, cudaStream_t stream);

/// counts[j] = number of points assigned to j (counts zeroed by the caller).
void launch_cluster_counts(const int32_t* assignment, int64_t n, int32_t* counts,
                           const int* converged, cudaStream_t stream);

/// Bytes of `scratch` launch_centroid_update() needs for n points of dim coordinates.
std::size_t centroid_update_bytes(int64_t n, int64_t dim);

/// centroid j = mean of its points, summed in a fixed order (points sorted by cluster, then row:
/// `sorted_keys` are their clusters) so the result is the same run after run, with as much
/// parallelism for one cluster as for many. Empty clusters keep their centroid.
void launch_centroid_update(const float* x, int64_t n, int64_t dim, const int32_t* sorted_keys,
                            const int32_t* sorted_points, const int32_t* offsets,
                            const int32_t* counts, int64_t k, float* centroids, void* scratch,
                            const int* converged, cudaStream_t stream);

/// Empty clusters take half of the largest cluster: its centroid, nudged apart by a relative 1e-4
/// in opposite directions (FAISS's rule, made deterministic).
void launch_repair_empty(float* centroids, int32_t* counts, int64_t k, int64_t dim,
                         const int* converged, cudaStream_t stream);

/// Sets *converged once an iteration changed no assignment (changed is then reset).
void launch_check_converged(unsigned int* changed, int* converged, int* iterations,
                            cudaStream_t stream);

}  // namespace quarry::kernels
