#pragma once
// The batch strategies that pick one row at a time from a center search: BADGE (badge.cpp) and
// core-set k-center greedy (coreset.cpp). Both return pool rows in the order they were taken.

#include <cstdint>
#include <vector>

#include "engine/backend.hpp"
#include "engine/budget.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// BADGE's k-means++ seeding over `candidates` (ascending pool rows) on the gradient embeddings
/// of the pool's probabilities and options.scoring.features: the first pick is the candidate of
/// largest gradient norm, each next one drawn with probability proportional to its squared
/// distance to the nearest pick so far, one uniform u = (mt19937_64(options.seed)() >> 11) * 2^-53
/// per draw. Picks are offered to `taker` until it is done or no candidate is left.
std::vector<int64_t> badge_picks(Backend& backend, const PoolView& pool,
                                 const SelectOptions& options,
                                 const std::vector<int64_t>& candidates, PickTaker& taker);

/// Core-set k-center greedy over `candidates` (ascending pool rows) of options.embeddings, from
/// the labeled rows and labeled embeddings as the first centers: each pick is the candidate
/// farthest from every center so far (lowest row on ties). Without labeled rows the first pick is
/// `best_candidate`, the best-ranked candidate. Picks are offered to `taker` as in badge_picks.
std::vector<int64_t> coreset_picks(Backend& backend, const SelectOptions& options,
                                   const std::vector<int64_t>& candidates, int64_t best_candidate,
                                   PickTaker& taker);

}  // namespace quarry::engine
