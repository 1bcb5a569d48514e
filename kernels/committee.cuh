#pragma once
// Committee scoring: vote_entropy, consensus_entropy, kl_max, bald and variation_ratio over the
// members' probabilities or logits, and vote_entropy / variation_ratio over integer votes.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Bytes of device scratch memory launch_score_committee() needs (0 for most shapes).
std::size_t committee_workspace_bytes(MeasureId measure, bool logits, int64_t members,
                                      int64_t classes);

/// Scores committee rows: element (m, n, c) at data[m*member_stride + n*row_stride + c].
/// Validation and `first_bad` as launch_score_single_model().
void launch_score_committee(const void* data, ElementType type, bool logits, float inv_temperature,
                            MeasureId measure, int64_t members, int64_t rows, int64_t classes,
                            int64_t member_stride, int64_t row_stride, int64_t row_offset,
                            float* scores, unsigned long long* first_bad, void* workspace,
                            std::size_t workspace_bytes, cudaStream_t stream);

/// Bytes of device scratch memory launch_score_votes() needs: room to sort the votes of the rows
/// in flight.
std::size_t votes_workspace_bytes(int64_t members);

/// Scores integer votes: vote (m, n) at data[m*member_stride + n*row_stride], -1 = abstained.
/// `classes` > 0 bounds the votes; 0 checks only vote >= -1.
void launch_score_votes(const void* data, ElementType type, MeasureId measure, int64_t members,
                        int64_t rows, int64_t classes, int64_t member_stride, int64_t row_stride,
                        int64_t row_offset, float* scores, unsigned long long* first_bad,
                        void* workspace, std::size_t workspace_bytes, cudaStream_t stream);

}  // namespace quarry::kernels
