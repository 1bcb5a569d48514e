#pragma once
// Sampled answers: embeddings [N, S, D] of S sampled answers per row (sample_dispersion,
// eigenscore, semantic_sets, semantic_entropy). One pass reads each row once, validates it and
// scores it from its S x S Gram matrix.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// Scores the pool's rows of `members` (<= kMaxSamples) sampled answers of `classes` values each
/// (value x of answer i of row n at data[n*row_stride + i*member_stride + x]) with params.alpha
/// (eigenscore) and params.threshold (semantic sets); writes as ScoreSink says.
void launch_score_samples(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                          cudaStream_t stream);

}  // namespace quarry::kernels
