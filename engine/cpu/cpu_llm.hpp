#pragma once
// The CPU backend's scoring of LLM outputs: token log-probabilities, top-K log-probabilities per
// step, and embeddings of sampled answers (the measures whose pool_kind() is token_logprobs,
// top_logprobs or samples).

#include <cstdint>

#include "engine/backend.hpp"

namespace quarry::engine {

/// Scores every row of `pool` (host memory) into `out` and returns the lowest bad row, if any.
BadRow score_llm_rows(const PoolView& pool, const ScoreOptions& options, float* out);

/// Bytes of scratch memory one scoring thread holds for this pool.
int64_t llm_scratch_bytes_per_thread(const PoolView& pool, const ScoreOptions& options);

}  // namespace quarry::engine
