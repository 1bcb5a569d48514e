#pragma once
// The validation flags a scoring pass raises for a row, and the packed "first bad row" code the
// backends reduce them to: all that the engine's Backend interface needs of the per-row math
// (kernels/measures.hpp), so that it does not include the whole of it.

#include <cstdint>

// Inlined on both sides: the CPU backend's vector loops call these per element, and a call left
// out of line would keep a loop from vectorizing.
#if defined(__CUDACC__)
#define QUARRY_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define QUARRY_HD inline __attribute__((always_inline))
#else
#define QUARRY_HD inline
#endif

namespace quarry::kernels {

/// Validation flags a row can raise. Several may be set at once.
enum RowFlags : uint32_t {
  kNonFinite = 1u << 0,   // NaN or +-Inf
  kNegative = 1u << 1,    // probability < 0
  kAboveOne = 1u << 2,    // probability > 1 + kSumTolerance
  kBadSum = 1u << 3,      // |sum - 1| > kSumTolerance (kBf16SumTolerance)
  kBadVote = 1u << 4,     // vote < -1 or >= the number of classes
  kBadFeature = 1u << 5,  // a non-finite value in the row's features (egl)
  kBadLength = 1u << 6,   // a row's length < 1 or > the steps of the array
  kPositive = 1u << 7,    // a log-probability > 0
  kEmptyStep = 1u << 8,   // a top-K step whose K log-probabilities are all -inf
  kScoreRange = 1u << 9,  // finite input whose score exceeds the float range (egl, huge features)
};
inline constexpr float kSumTolerance = 1e-3f;
/// The sum tolerance of a row whose values all fit bfloat16 (8 significant bits: the low 16 bits
/// of each float are zero), as every row of a bf16 pool does: bf16's epsilon, 2^-7. Rounding
/// each probability of a row that sums to 1 moves the sum by at most the unit roundoff 2^-8,
/// over kSumTolerance; the factor 2 leaves room for the producer's own float rounding. Derived
/// from the values rather than passed with the dtype so that both backends' kernels apply it.
inline constexpr float kBf16SumTolerance = 0x1p-7f;
/// The bits of a float below bfloat16's precision.
inline constexpr uint32_t kBelowBf16Bits = 0xffffu;

// The flags take the low bits of a bad-row code, the row the rest (rows below 2^52).
inline constexpr int kRowFlagBits = 12;
inline constexpr uint32_t kRowFlagMask = (1u << kRowFlagBits) - 1;
/// First bad row and its flags packed so that the numerically smallest value is the lowest row:
/// backends keep the minimum over all rows (atomicMin on the GPU).
QUARRY_HD uint64_t encode_bad_row(int64_t row, uint32_t flags) {
  return (static_cast<uint64_t>(row) << kRowFlagBits) | (flags & kRowFlagMask);
}
inline constexpr uint64_t kNoBadRow = ~uint64_t{0};
QUARRY_HD int64_t bad_row_of(uint64_t code) {
  return static_cast<int64_t>(code >> kRowFlagBits);
}
QUARRY_HD uint32_t bad_flags_of(uint64_t code) {
  return static_cast<uint32_t>(code & kRowFlagMask);
}

}  // namespace quarry::kernels
