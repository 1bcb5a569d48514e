#include "engine/ranking.hpp"

#include <algorithm>
#include <vector>

#include "engine/threads.hpp"

namespace quarry::engine {

namespace {

// The k best of rows [begin, end), in no order: a heap of the k best so far whose front is the
// worst of them. Most rows lose to that front on the score alone, one comparison each, so a
// pass costs little more than reading the scores (an nth_element over row indices costs
// several times that).
template <typename Better>
std::vector<int64_t> best_of(const float* scores, int64_t begin, int64_t end, int64_t k,
                             const Better& better) {
  std::vector<int64_t> heap;
  if (k <= 0) return heap;
  heap.reserve(static_cast<std::size_t>(std::min(k, end - begin)));
  int64_t r = begin;
  for (; r < end && static_cast<int64_t>(heap.size()) < k; ++r) heap.push_back(r);
  std::make_heap(heap.begin(), heap.end(), better);
  float worst = heap.empty() ? 0.0f : scores[heap.front()];
  // Rows in rising order of score would each enter the heap (n log k); past this many entries
  // the rest is finished with a linear-time selection instead.
  int64_t entries_left = std::max<int64_t>(4 * k, (end - begin) / 16);
  for (; r < end; ++r) {
    if (scores[r] < worst || !better(r, heap.front())) continue;
    std::pop_heap(heap.begin(), heap.end(), better);
    heap.back() = r;
    std::push_heap(heap.begin(), heap.end(), better);
    worst = scores[heap.front()];
    if (--entries_left == 0) {
      for (int64_t rest = r + 1; rest < end; ++rest) heap.push_back(rest);
      if (static_cast<int64_t>(heap.size()) > k) {
        std::nth_element(heap.begin(), heap.begin() + k, heap.end(), better);
        heap.resize(k);
      }
      return heap;
    }
  }
  return heap;
}

}  // namespace

Ranked rank_top(const float* scores, int64_t n, int64_t k, const RankOrder& order,
                int64_t row_offset) {
  k = std::min(k, n);
  auto better = [scores, &order, row_offset](int64_t a, int64_t b) {
    return order.before(scores[a], row_offset + a, scores[b], row_offset + b);
  };
  // Each thread's slice keeps its k best; the union of those holds the global k best (the order
  // is total, so the result does not depend on the slices).
  const int64_t slices = team_for(n);
  std::vector<std::vector<int64_t>> best(slices);
  parallel_for(slices, 1, n / slices, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t)
      best[t] = best_of(scores, n * t / slices, n * (t + 1) / slices, k, better);
  });
  std::vector<int64_t> all = std::move(best[0]);
  for (int64_t t = 1; t < slices; ++t) all.insert(all.end(), best[t].begin(), best[t].end());
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
