#pragma once
// Expected gradient length: the squares of each row's features, then one pass over the pool that
// scores each row from its probabilities (or logits) and those squares.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// squares[i] = sum_d h_id^2 (in double) for the `rows` rows of a [rows, dim] matrix with
/// `row_stride`; lowers `first_bad` to encode_bad_row(row_offset + i, kBadFeature) for a row with
/// a non-finite value.
void launch_feature_squares(const void* data, ElementType type, int64_t rows, int64_t dim,
                            int64_t row_stride, int64_t row_offset, double* squares,
                            unsigned long long* first_bad, cudaStream_t stream);

/// Scores the pool's rows of `classes` probabilities (or logits scaled by params.inv_temperature)
/// with egl, from the rows' feature squares (params.feature_squares); writes as ScoreSink says.
void launch_score_egl(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                      cudaStream_t stream);

}  // namespace quarry::kernels
