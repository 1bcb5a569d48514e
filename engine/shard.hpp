#pragma once
// Sharded pools: scoring several shards as one pool, the partial result of shards, and the merge
// of partials into the whole pool's selection (the public side is quarry/shard.hpp).

#include <span>

#include "engine/backend.hpp"
#include "quarry/shard.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// Scores the shards into `scores_out` (their rows in shard order).
void score(Backend& backend, const CallContext& call, std::span<const PoolView> shards,
           const ScoreOptions& options, float* scores_out);

/// The partial result of `shards`, the first of them starting at global row `row_offset` of a
/// pool of `pool_rows` rows (0: not stated).
Partial partial(Backend& backend, const CallContext& call, std::span<const PoolView> shards,
                const SelectOptions& options, std::span<const EmbeddingView> embeddings,
                int64_t row_offset, int64_t pool_rows);

/// Throws InvalidArgument when the strategy `options` ask for cannot be carried by partials
/// (SelectionStrategy::unshardable_reason).
void check_shardable(const SelectOptions& options);

/// One partial holding what all of `partials` hold.
Partial combine(std::span<const Partial> partials);

/// The k picks of the pool the partials cover.
Selection merge(Backend& backend, const CallContext& call, std::span<const Partial> partials,
                int64_t k);

}  // namespace quarry::engine
