#pragma once
// The selection pipeline: argument checks at the boundary, then score -> rank -> picks.

#include "engine/backend.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// Checks shapes, strides, dtype and options against the measure; throws InvalidArgument.
void validate(const PoolView& pool, const ScoreOptions& options);

void score(Backend& backend, const PoolView& pool, const ScoreOptions& options, float* scores_out);
Selection select(Backend& backend, const PoolView& pool, const SelectOptions& options);
KMeansResult kmeans(Backend& backend, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options);

}  // namespace quarry::engine
