#pragma once
// Single-model scoring: one pass over an [N, C] pool of probabilities or logits computes each
// row's score and validates it.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// Scores the pool's rows of `classes` probabilities (or logits, scaled by
/// params.inv_temperature) with a single-model measure; writes as ScoreSink says.
void launch_score_single_model(const PoolRows& pool, const ScoreParams& params,
                               const ScoreSink& sink, cudaStream_t stream);

}  // namespace quarry::kernels
