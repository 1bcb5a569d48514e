#pragma once
// Sampled answers: embeddings [N, S, D] of S sampled answers per row (sample_dispersion,
// eigenscore, semantic_sets, semantic_entropy). One pass reads each row once, validates it and
// scores it from its S x S Gram matrix.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Scores `rows` rows of `samples` (<= kMaxSamples) answers of `dim` values: value x of answer i
/// of row n at data[n*row_stride + i*sample_stride + x]. `first_bad` as
/// launch_score_single_model().
void launch_score_samples(const void* data, ElementType type, MeasureId measure, int64_t rows,
                          int64_t samples, int64_t dim, int64_t row_stride, int64_t sample_stride,
                          double alpha, double threshold, int64_t row_offset, float* scores,
                          unsigned long long* first_bad, cudaStream_t stream);

}  // namespace quarry::kernels
