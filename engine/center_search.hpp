#pragma once
// What Backend::center_search returns: the greedy center selection that BADGE and core-set
// (engine/strategies.cpp) pick their rows with.

#include <cstdint>
#include <vector>

namespace quarry::engine {

/// Greedy center selection over a list of candidate rows (ascending pool rows), keeping each
/// candidate's squared distance to its nearest center where the backend computes (device memory
/// on CUDA). Core-set measures Euclidean distance between embeddings; BADGE between gradient
/// embeddings g = (p - e_argmax) (x) h, through |g_i - g_j|^2 = a_i + a_j - 2 <q_i, q_j> <h_i, h_j>
/// with q = p - e_argmax and a = |q|^2 |h|^2, never forming g. Before the first center the
/// distances are to the origin (|x|^2, or a), so farthest() is then the candidate of largest norm.
/// Candidates are named by their position in the list.
class CenterSearch {
 public:
  virtual ~CenterSearch() = default;
  /// Makes these pool rows (any rows of the view, candidates or not) centers: each candidate's
  /// distance becomes the smaller of it and its distance to them (the first call replaces the
  /// distances to the origin), and candidates among them can no longer be picked.
  virtual void add_rows(const std::vector<int64_t>& pool_rows) = 0;
  /// Makes `count` points (host float32, [count, dim]) centers. Core-set only.
  virtual void add_points(const float* points, int64_t count) = 0;
  /// The candidate not yet made a center with the largest distance (the lowest position on ties),
  /// or -1 when none is left.
  virtual int64_t farthest() = 0;
  /// k-means++'s draw: the candidate not yet made a center whose cumulative distance, summed in
  /// double in candidate order, first exceeds u * (the total); when every distance is 0, the
  /// lowest such candidate; -1 when none is left. 0 <= u < 1.
  virtual int64_t draw(double u) = 0;
};

/// Working memory of a center search per candidate (its distance, row, BADGE's norm and argmax,
/// and on CUDA the running sum of the draw), for the memory budget.
inline constexpr int64_t kCenterSearchBytesPerRow = 40;

}  // namespace quarry::engine
