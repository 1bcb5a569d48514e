#pragma once
// The weighted draw of BADGE and k-means++: a binary search over inclusive prefix sums of the
// weights, then a step past zero-weight entries.

#include <cstdint>

namespace quarry::kernels {

/// The entry i with cumulative[i-1] <= target < cumulative[i] for the inclusive prefix sums of
/// `weight(i)` (all >= 0, total > target). A parallel scan rounds each prefix sum its own way, so
/// the sums need not be strictly monotone and the search can land on an entry of weight 0 (a row
/// already a center, a point on a centroid): the draw then moves to the next entry with a positive
/// weight (the previous one at the end), which is where exact sums would have put it.
template <typename Weight>
__device__ int64_t draw_from_prefix_sums(const double* cumulative, int64_t n, double target,
                                         Weight weight) {
  int64_t lo = 0, hi = n - 1;  // the first i with cumulative[i] > target
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cumulative[mid] > target)
      hi = mid;
    else
      lo = mid + 1;
  }
  if (weight(lo) > 0) return lo;
  for (int64_t i = lo + 1; i < n; ++i)
    if (weight(i) > 0) return i;
  for (int64_t i = lo - 1; i >= 0; --i)
    if (weight(i) > 0) return i;
  return lo;
}

}  // namespace quarry::kernels
