#pragma once
// LLM output sequences with lengths: token log-probabilities [N, T] (sequence_nll, perplexity,
// min_token_prob) and top-K log-probabilities per step [N, T, K] (mean_token_entropy,
// max_token_entropy, mean_token_margin). One pass validates and scores each row's first `length`
// steps; steps past a row's length are never read.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Scores `rows` rows of `steps` steps of `k` values (k = 1 for token log-probabilities): value j
/// of step t of row n at data[n*row_stride + t*step_stride + j]. `lengths` (device memory, i32 or
/// i64 as `length_type` says) holds each row's number of valid steps, or is null for full rows.
/// `first_bad` as launch_score_single_model().
void launch_score_sequences(const void* data, ElementType type, MeasureId measure, int64_t rows,
                            int64_t steps, int64_t k, int64_t row_stride, int64_t step_stride,
                            const void* lengths, ElementType length_type, int64_t row_offset,
                            float* scores, unsigned long long* first_bad, cudaStream_t stream);

}  // namespace quarry::kernels
