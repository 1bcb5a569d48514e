#pragma once
// Helpers of the CPU backend's vector row loops, shared by its translation units (compiled with
// -fno-trapping-math -ffp-contract=fast, see engine/CMakeLists.txt).

#include <cstdint>

#include "engine/cpu/cpu_clones.hpp"
#include "kernels/measures.hpp"

namespace quarry::engine {

// Rows are read in kLanes independent accumulators that the compiler keeps in vector registers:
// branch-free selects and polynomial log/exp instead of libm calls, so each lane's work is the
// same instruction stream. Lane sums are float over blocks of kBlock classes, then added in
// double, which bounds the rounding error on LLM-sized rows.
inline constexpr int kLanes = 8;
inline constexpr int64_t kBlock = 2048;
inline constexpr double kLn2 = 0.693147180559945309;

// The row loops are compiled three times, for AVX-512 (x86-64-v4: masked selects and
// conversions speed up the logits' exp), AVX2 and the baseline, and the loader picks one for the
// machine (GCC function multiversioning). Lanes stay 8 wide: 512-bit vectors measured slower. The
// row functions are inlined into them, so the constants of the polynomials are set up once per
// range of rows, not once per row. (QUARRY_CPU_CLONES: engine/cpu/cpu_clones.hpp.)

// A row's last (end - begin) < kLanes values as a full vector, other lanes `fill`. Rows of at
// least kLanes classes read the last kLanes values and mask the ones already counted: one
// unconditional vector load instead of a scalar loop.
template <typename T>
void load_tail(const T* row, int64_t begin, int64_t end, float fill, float (&out)[kLanes]) {
  if (end >= kLanes) {
    const int64_t first = kLanes - (end - begin);
    const T* last = row + end - kLanes;
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) out[l] = l >= first ? kernels::to_float(last[l]) : fill;
  } else {
    for (int l = 0; l < kLanes; ++l)
      out[l] = begin + l < end ? kernels::to_float(row[begin + l]) : fill;
  }
}

// Folds the lanes into lane 0 pairwise (a tree the compiler turns into a few shuffles, off the
// per-row critical path) and returns it. Sums stay in float: each lane holds at most
// kBlock / kLanes values.
template <typename Value, typename Combine>
inline Value fold_lanes(Value (&lanes)[kLanes], Combine combine) {
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] = combine(lanes[l], lanes[l + width]);
  return lanes[0];
}
inline float sum_lanes(float (&lanes)[kLanes]) {
  return fold_lanes(lanes, [](float a, float b) { return a + b; });
}

}  // namespace quarry::engine
