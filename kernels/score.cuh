#pragma once
// Scoring a batch of pool rows on the device: the one place that picks the kernel family (single
// model, committee, votes, egl, token or top-K sequences, sampled answers) from the measure and
// the element type.

#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// Bytes of device scratch launch_score() needs in `sink.workspace` for pools shaped as `pool`
/// (its rows do not matter; an integer element type means votes).
std::size_t score_workspace_bytes(const PoolRows& pool, const ScoreParams& params);

/// Scores every row of the batch with params.measure, validating it: integer pools are votes.
void launch_score(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                  cudaStream_t stream);

}  // namespace quarry::kernels
