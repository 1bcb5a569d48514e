#pragma once
// Device pieces of the greedy center searches (core-set k-center greedy, BADGE's k-means++
// seeding): each candidate's squared distance to its nearest center, kept in double and lowered
// center by center, the farthest candidate, and the D^2 draw. A warp owns a candidate row; a
// distance of -1 marks a candidate that is a center already.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Rows of a matrix in device memory: row i at data + (rows ? rows[i] : i) * row_stride elements.
struct DeviceRows {
  const void* data;
  ElementType type;
  int64_t row_stride;
  const int64_t* rows;
};

/// nearest[i] = |x_i|^2 for n rows of dimension dim; a row with a non-finite value lowers
/// `first_bad` to encode_bad_row(names[i], kNonFinite).
void launch_coreset_norms(DeviceRows x, int64_t n, int64_t dim, const int64_t* names,
                          double* nearest, unsigned long long* first_bad, cudaStream_t stream);

/// For each row with nearest[i] >= 0: d = min_j |x_i - c_j|^2 over `count` float32 centers
/// [count, dim] (summed in double); nearest[i] = replace ? d : min(nearest[i], d).
void launch_coreset_update(DeviceRows x, int64_t n, int64_t dim, const float* centers,
                           int64_t count, bool replace, double* nearest, cudaStream_t stream);

/// BADGE's per-candidate state from its probabilities and features: argmax[i] (the lowest class on
/// ties), norms[i] = nearest[i] = |q_i|^2 |h_i|^2 with q = p - e_argmax; non-finite features lower
/// `first_bad` to encode_bad_row(names[i], kBadFeature).
void launch_badge_prepare(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                          int64_t dim, const int64_t* names, int32_t* argmax, double* norms,
                          double* nearest, unsigned long long* first_bad, cudaStream_t stream);

/// A center from row 0 of the views: q (classes floats), h (dim floats) and *norm = |q|^2 |h|^2,
/// computed exactly as launch_badge_prepare computes a candidate's norm.
void launch_badge_center(DeviceRows probs, DeviceRows features, int64_t classes, int64_t dim,
                         float* q, float* h, double* norm, cudaStream_t stream);

/// For each candidate with nearest[i] >= 0: d = max(0, norms[i] + *center_norm - 2 <q_i, q> <h_i,
/// h>) (the squared distance between gradient embeddings); nearest[i] = replace ? d : min(nearest,
/// d).
void launch_badge_update(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                         int64_t dim, const int32_t* argmax, const double* norms, const float* q,
                         const float* h, const double* center_norm, bool replace, double* nearest,
                         cudaStream_t stream);

/// nearest[positions[j]] = -1: these candidates are centers now.
void launch_retire(double* nearest, const int64_t* positions, int64_t count, cudaStream_t stream);

/// *chosen = the first i with cumulative[i] > u * cumulative[n-1] (the inclusive prefix sums of
/// the candidates' distances `nearest`, negative ones counted as 0) and nearest[i] > 0, or -1 when
/// that total is 0.
void launch_draw(const double* nearest, const double* cumulative, int64_t n, double u,
                 int64_t* chosen, cudaStream_t stream);

}  // namespace quarry::kernels
