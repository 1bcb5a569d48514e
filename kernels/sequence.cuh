#pragma once
// LLM output sequences with lengths: token log-probabilities [N, T] (sequence_nll, perplexity,
// min_token_prob) and top-K log-probabilities per step [N, T, K] (mean_token_entropy,
// max_token_entropy, mean_token_margin). One pass validates and scores each row's first `length`
// steps; steps past a row's length are never read.

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// Scores the pool's rows: token log-probabilities (`classes` steps of one value) or top-K
/// log-probabilities (`members` steps of `classes` values, member_stride apart), as the measure
/// says. `pool.lengths` holds each row's number of valid steps, or is null for full rows; steps
/// past a row's length are never read. Writes as ScoreSink says.
void launch_score_sequences(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                            cudaStream_t stream);

}  // namespace quarry::kernels
