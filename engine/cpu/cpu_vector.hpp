#pragma once
// Helpers of the CPU backend's vector row loops, shared by its translation units (compiled with
// -fno-trapping-math -ffp-contract=fast, see engine/CMakeLists.txt).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// Writes row r's score and keeps the lowest bad row's code (kernels::encode_bad_row) in
// `first_bad`: what every row loop does with a row's result.
QUARRY_ALWAYS_INLINE void record_row(int64_t r, const kernels::RowResult& result, float* out,
                                     uint64_t& first_bad) {
  out[r] = result.score;
  if (result.flags) first_bad = std::min(first_bad, kernels::encode_bad_row(r, result.flags));
}

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

// ---- explicit vectors ---------------------------------------------------------------------------
// Loops whose per-row work around the vector body matters (short rows: the tail, the lane sums,
// the checks) hold their state in GCC vector types, which stay in registers where lane arrays
// went through the stack between the loop, the tail and the folds. Each clone compiles them to
// its own instructions (two SSE halves in the baseline).
using f32x8 = float __attribute__((vector_size(32)));
using u32x8 = uint32_t __attribute__((vector_size(32)));
using i32x8 = int32_t __attribute__((vector_size(32)));

template <typename T>
QUARRY_ALWAYS_INLINE f32x8 load_x8(const T* values) {
  f32x8 v;
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(&v, values, sizeof v);
  } else {
    float converted[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) converted[l] = kernels::to_float(values[l]);
    std::memcpy(&v, converted, sizeof v);
  }
  return v;
}

// Values [begin, end) of a row, end - begin < kLanes, in lanes [0, end - begin) or (rows of at
// least kLanes values) the last lanes of one unconditional load; other lanes `fill`.
template <typename T>
QUARRY_ALWAYS_INLINE f32x8 load_tail_x8(const T* row, int64_t begin, int64_t end, float fill) {
  if (end >= kLanes) {
    const i32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const int32_t first = static_cast<int32_t>(kLanes - (end - begin));
    const f32x8 v = load_x8(row + end - kLanes);
    return lane >= first ? v : fill;
  }
  float tail[kLanes];
  load_tail(row, begin, end, fill, tail);
  f32x8 v;
  std::memcpy(&v, tail, sizeof v);
  return v;
}

QUARRY_ALWAYS_INLINE float sum_x8(f32x8 v) {
  using f32x4 = float __attribute__((vector_size(16)));
  const f32x4 four =
      __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  const f32x4 two = four + __builtin_shufflevector(four, four, 2, 3, 2, 3);
  return two[0] + two[1];
}
QUARRY_ALWAYS_INLINE uint32_t or_x8(u32x8 v) {
  using u32x4 = uint32_t __attribute__((vector_size(16)));
  const u32x4 four =
      __builtin_shufflevector(v, v, 0, 1, 2, 3) | __builtin_shufflevector(v, v, 4, 5, 6, 7);
  const u32x4 two = four | __builtin_shufflevector(four, four, 2, 3, 2, 3);
  return two[0] | two[1];
}

// Eight rows' lanes folded by `combine`, rows[i] -> lane i, pairing lanes as sum_x8 does for one
// row (l with l + 4, then l with l + 2, then 0 with 1): a row's sum is the same to the bit whether
// it was summed alone or with seven others.
template <typename Vector, typename Combine>
QUARRY_ALWAYS_INLINE Vector fold_rows_x8(const Vector (&rows)[kLanes], Combine combine) {
  Vector halves[4], quarters[2];  // two rows per vector
  for (int i = 0; i < 4; ++i)
    halves[i] =
        combine(__builtin_shufflevector(rows[2 * i], rows[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11),
                __builtin_shufflevector(rows[2 * i], rows[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15));
  for (int i = 0; i < 2; ++i)
    quarters[i] = combine(
        __builtin_shufflevector(halves[2 * i], halves[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13),
        __builtin_shufflevector(halves[2 * i], halves[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15));
  return combine(__builtin_shufflevector(quarters[0], quarters[1], 0, 2, 4, 6, 8, 10, 12, 14),
                 __builtin_shufflevector(quarters[0], quarters[1], 1, 3, 5, 7, 9, 11, 13, 15));
}
QUARRY_ALWAYS_INLINE f32x8 sum_rows_x8(const f32x8 (&rows)[kLanes]) {
  return fold_rows_x8(rows, [](f32x8 a, f32x8 b) { return a + b; });
}
QUARRY_ALWAYS_INLINE u32x8 or_rows_x8(const u32x8 (&rows)[kLanes]) {
  return fold_rows_x8(rows, [](u32x8 a, u32x8 b) { return a | b; });
}

// ln x in two parts (kernels::polynomial_log_parts), a vector at a time.
struct LogPartsX8 {
  f32x8 exponent;
  f32x8 log_mantissa;
};
QUARRY_ALWAYS_INLINE LogPartsX8 polynomial_log_parts_x8(f32x8 x) {
  const u32x8 shifted = reinterpret_cast<u32x8>(x) - kernels::kSqrtHalfBits;
  const f32x8 e = __builtin_convertvector(reinterpret_cast<i32x8>(shifted) >> 23, f32x8);
  const f32x8 f = reinterpret_cast<f32x8>((shifted & 0x007fffffu) + kernels::kSqrtHalfBits) - 1.0f;
  return {e, kernels::log1p_of_reduced(f)};
}

// ln x (kernels::polynomial_log), a vector at a time.
QUARRY_ALWAYS_INLINE f32x8 polynomial_log_x8(f32x8 x) {
  const LogPartsX8 parts = polynomial_log_parts_x8(x);
  return parts.log_mantissa + parts.exponent * -2.12194440e-4f + parts.exponent * 0.693359375f;
}

// e^x (kernels::polynomial_exp), a vector at a time: 0 below e^-87.
QUARRY_ALWAYS_INLINE f32x8 polynomial_exp_x8(f32x8 x) {
  const i32x8 underflow = x < -87.0f;
  const kernels::ExpReduced<f32x8> reduced = kernels::exp_reduced(underflow ? -87.0f : x);
  const i32x8 exponent = (__builtin_convertvector(reduced.n, i32x8) + 127) << 23;
  return underflow ? 0.0f : reduced.exp_of_r * reinterpret_cast<f32x8>(exponent);
}

}  // namespace quarry::engine
