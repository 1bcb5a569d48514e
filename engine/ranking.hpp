#pragma once
// Exact top-k on the host with quarry's rank rule: descending score, ascending row on ties.

#include <cstdint>

#include "engine/backend.hpp"

namespace quarry::engine {

/// The `k` best of `n` scores in rank order. Multithreaded; the result does not depend on the
/// number of threads because (score, row) is a strict total order.
Ranked rank_top(const float* scores, int64_t n, int64_t k);

}  // namespace quarry::engine
