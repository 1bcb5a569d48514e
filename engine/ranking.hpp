#pragma once
// Exact top-k on the host with quarry's rank rule: descending score, then the tie-break (ascending
// row by default; ascending seeded hash of the global row with TieBreak::random).

#include <cstdint>

#include "engine/backend.hpp"

namespace quarry::engine {

/// The `k` best of `n` scores in rank order; row i of `scores` is global row row_offset + i
/// (what the seeded tie-break hashes), the indices returned are local (0..n-1). Multithreaded;
/// the result does not depend on the number of threads because the order is strict.
Ranked rank_top(const float* scores, int64_t n, int64_t k, const RankOrder& order = {},
                int64_t row_offset = 0);

}  // namespace quarry::engine
