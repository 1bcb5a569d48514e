#pragma once
// The CPU backend's influence and coverage work: expected gradient length scoring, and the BADGE
// and core-set center searches.

#include <memory>
#include <vector>

#include "engine/backend.hpp"

namespace quarry::engine {

/// Scores every row of a single model's pool with egl (options.features set and row-aligned).
/// Returns the first bad row: the pool's flags, or kBadFeature for non-finite features.
BadRow score_egl_on_cpu(const PoolView& pool, const ScoreOptions& options, float* out);

std::unique_ptr<CenterSearch> make_cpu_coreset_search(const EmbeddingView& points,
                                                      std::vector<int64_t> rows);
std::unique_ptr<CenterSearch> make_cpu_badge_search(const PoolView& pool,
                                                    const EmbeddingView& features,
                                                    std::vector<int64_t> rows);

}  // namespace quarry::engine
