#pragma once
// Committee scoring: vote_entropy, consensus_entropy, kl_max, bald and variation_ratio over the
// members' probabilities or logits, and vote_entropy / variation_ratio over integer votes.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/launch.cuh"

namespace quarry::kernels {

/// Bytes of device scratch memory launch_score_committee() needs (0 for most shapes).
std::size_t committee_workspace_bytes(MeasureId measure, bool logits, int64_t members,
                                      int64_t classes);

/// Scores committee rows (value c of member m of row n at data[m*member_stride + n*row_stride +
/// c]), probabilities or logits scaled by params.inv_temperature; `sink.workspace` holds at least
/// committee_workspace_bytes(). Writes as ScoreSink says.
void launch_score_committee(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                            cudaStream_t stream);

/// Bytes of device scratch memory launch_score_votes() needs: room to sort the votes of the rows
/// in flight.
std::size_t votes_workspace_bytes(int64_t members);

/// Scores integer votes (i32 or i64): vote (m, n) at data[m*member_stride + n*row_stride], -1 =
/// abstained; `classes` > 0 bounds the votes, 0 checks only vote >= -1. `sink.workspace` holds at
/// least votes_workspace_bytes().
void launch_score_votes(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                        cudaStream_t stream);

}  // namespace quarry::kernels
