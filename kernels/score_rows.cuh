#pragma once
// Single-model scoring: one pass over an [N, C] pool of probabilities or logits computes each
// row's score and validates it.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Scores `rows` rows of `classes` elements, `row_stride` elements apart, into `scores`.
/// `first_bad` (device) is lowered with atomicMin to encode_bad_row() of the first invalid row,
/// numbering rows from `row_offset` (the chunk's first row in the whole pool); initialise it to
/// kNoBadRow.
void launch_score_single_model(const void* data, ElementType type, bool logits,
                               float inv_temperature, MeasureId measure, int64_t rows,
                               int64_t classes, int64_t row_stride, int64_t row_offset,
                               float* scores, unsigned long long* first_bad, cudaStream_t stream);

}  // namespace quarry::kernels
