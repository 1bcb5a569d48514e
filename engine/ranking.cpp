#include "engine/ranking.hpp"

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace quarry::engine {

Ranked rank_top(const float* scores, int64_t n, int64_t k, const RankOrder& order,
                int64_t row_offset) {
  k = std::min(k, n);
  auto better = [scores, &order, row_offset](int64_t a, int64_t b) {
    return order.before(scores[a], row_offset + a, scores[b], row_offset + b);
  };
  // Each thread keeps the k best of its slice; the union of those holds the global k best.
  const int threads = static_cast<int>(std::clamp<int64_t>(n / 65536, 1, omp_get_max_threads()));
  // Allocated here: an exception (std::bad_alloc) cannot leave a parallel region.
  std::vector<std::vector<int64_t>> partial(threads);
  for (int t = 0; t < threads; ++t) partial[t].resize(n * (t + 1) / threads - n * t / threads);
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    std::vector<int64_t>& idx = partial[t];
    std::iota(idx.begin(), idx.end(), n * t / threads);
    if (static_cast<int64_t>(idx.size()) > k) {
      std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
      idx.resize(k);
    }
  }
  std::vector<int64_t> all;
  if (threads == 1) {
    all = std::move(partial[0]);
  } else {
    for (auto& p : partial) all.insert(all.end(), p.begin(), p.end());
  }
  if (static_cast<int64_t>(all.size()) > k) {
    std::nth_element(all.begin(), all.begin() + k, all.end(), better);
    all.resize(k);
  }
  std::sort(all.begin(), all.end(), better);
  Ranked ranked;
  ranked.scores.resize(all.size());
  for (size_t i = 0; i < all.size(); ++i) ranked.scores[i] = scores[all[i]];
  ranked.indices = std::move(all);
  return ranked;
}

}  // namespace quarry::engine
