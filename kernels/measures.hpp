#pragma once
// The per-row math of every measure, written once and compiled into both backends: the CUDA
// kernels call it from device code, the CPU backend from host code. A row's statistics are kept in
// small accumulators that can absorb one element (`add`) or another partial accumulator (`merge`),
// so the CPU can run them sequentially and the GPU can run them per thread and then reduce them
// across a warp or block. `finish` turns the statistics into the score and the validation flags.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

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

/// The measures, numbered as quarry::Measure (checked in the engine).
enum class MeasureId : int {
  least_confidence = 0,
  margin = 1,
  ratio = 2,
  entropy = 3,
  vote_entropy = 4,
  consensus_entropy = 5,
  kl_max = 6,
  bald = 7,
  variation_ratio = 8,
};

/// Element types of kernel inputs.
enum class ElementType : int { f32 = 0, f16 = 1, bf16 = 2, i32 = 3, i64 = 4 };

/// Validation flags a row can raise. Several may be set at once.
enum RowFlags : uint32_t {
  kNonFinite = 1u << 0,  // NaN or +-Inf
  kNegative = 1u << 1,   // probability < 0
  kAboveOne = 1u << 2,   // probability > 1 + kSumTolerance
  kBadSum = 1u << 3,     // |sum - 1| > kSumTolerance
  kBadVote = 1u << 4,    // vote < -1 or >= the number of classes
};
inline constexpr float kSumTolerance = 1e-3f;
inline constexpr float kInf = std::numeric_limits<float>::infinity();

/// First bad row and its flags packed so that the numerically smallest value is the lowest row:
/// backends keep the minimum over all rows (atomicMin on the GPU).
QUARRY_HD uint64_t encode_bad_row(int64_t row, uint32_t flags) {
  return (static_cast<uint64_t>(row) << 8) | (flags & 0xffu);
}
inline constexpr uint64_t kNoBadRow = ~uint64_t{0};
QUARRY_HD int64_t bad_row_of(uint64_t code) {
  return static_cast<int64_t>(code >> 8);
}
QUARRY_HD uint32_t bad_flags_of(uint64_t code) {
  return static_cast<uint32_t>(code & 0xffu);
}

// ---- element conversion --------------------------------------------------------------------

/// Storage types for 16-bit floats: the bits as stored in memory.
struct f16_bits {
  uint16_t bits;
};
struct bf16_bits {
  uint16_t bits;
};

QUARRY_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
QUARRY_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

QUARRY_HD float to_float(float x) {
  return x;
}
QUARRY_HD float to_float(bf16_bits x) {
  return bits_to_float(uint32_t{x.bits} << 16);
}
/// IEEE binary16 -> float without branches on the value, so the CPU loop vectorizes: shift the
/// exponent and mantissa into place, rescale by 2^112 (which also normalises subnormals), then
/// restore Inf/NaN and the sign.
QUARRY_HD float to_float(f16_bits x) {
  const uint32_t magnitude = uint32_t{x.bits & 0x7fffu} << 13;
  float f = bits_to_float(magnitude) * 5.192296858534828e+33f;  // 2^112
  uint32_t u = float_to_bits(f);
  if (f >= 65536.0f) u |= 0x7f800000u;  // was Inf or NaN
  u |= uint32_t{x.bits & 0x8000u} << 16;
  return bits_to_float(u);
}

QUARRY_HD bool is_finite(float x) {
  return (float_to_bits(x) & 0x7f800000u) != 0x7f800000u;
}

/// Scores equal as numbers must also be equal as bits (the GPU ranks by bits): -0 becomes +0.
QUARRY_HD float canonical_score(float s) {
  return s == 0.0f ? 0.0f : s;
}

// ---- scalar terms ------------------------------------------------------------------------------

// exp and ln overloaded for the accumulator type (float on the GPU, double on the CPU).
QUARRY_HD float exp_of(float x) {
  return expf(x);
}
QUARRY_HD double exp_of(double x) {
  return ::exp(x);
}
QUARRY_HD float log_of(float x) {
  return logf(x);
}
QUARRY_HD double log_of(double x) {
  return ::log(x);
}
QUARRY_HD float log1p_of(float x) {
  return log1pf(x);
}
QUARRY_HD double log1p_of(double x) {
  return ::log1p(x);
}

/// ln x for finite x > 0 in two parts, ln x = exponent * ln 2 + log_mantissa, without branches
/// on the value so that the CPU backend's loops vectorize (Cephes' logf: mantissa in
/// [sqrt(1/2), sqrt(2)) and ln(1 + f) = f - f^2/2 + f^3 P(f) with P of degree 6, fitted to an
/// absolute error below 1e-8, less than float rounding; within a few ulp of logf). Sums of p ln p
/// keep the parts apart and multiply by ln 2 once. Subnormal x and 0 give a finite, wrong value,
/// harmless in p ln p.
struct LogParts {
  float exponent;
  float log_mantissa;
};
QUARRY_HD LogParts polynomial_log_parts(float x) {
  // Offsetting the bits by those of sqrt(1/2) puts the mantissa in [sqrt(1/2), sqrt(2)) and the
  // exponent in the high bits with integer operations alone (no compare and select).
  const uint32_t shifted = float_to_bits(x) - 0x3f3504f3u;
  const float e = static_cast<float>(static_cast<int32_t>(shifted) >> 23);
  const float f = bits_to_float((shifted & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
  const float z = f * f;
  // P by Estrin's scheme and the sums as a tree: short
  // dependency chains, so that several vectors are in flight at once.
  const float f4 = z * z;
  const float p01 = 3.3334267139e-01f + f * -2.5001293421e-01f;
  const float p23 = 1.9951410592e-01f + f * -1.6574572027e-01f;
  const float p45 = 1.5020804107e-01f + f * -1.4316771924e-01f;
  const float p03 = p01 + z * p23;
  const float p46 = p45 + z * 8.4791533649e-02f;
  const float poly = p03 + f4 * p46;
  return {e, (f - 0.5f * z) + (f * z) * poly};
}
QUARRY_HD float polynomial_log(float x) {
  const LogParts parts = polynomial_log_parts(x);
  // ln 2 split in two for precision.
  return parts.log_mantissa + parts.exponent * -2.12194440e-4f + parts.exponent * 0.693359375f;
}

/// e^x for finite x <= 0 (a softmax's z - max), branch-free as polynomial_log (Cephes' expf);
/// e^x below the smallest normal float is 0.
QUARRY_HD float polynomial_exp(float x) {
  const bool underflow = x < -87.0f;
  x = underflow ? -87.0f : x;
  // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick (exact for |n| < 2^22).
  const float n = (x * 1.44269504089f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const float scale = bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : y * scale;
}

/// -p ln p with 0 ln 0 = 0, in the accumulator's precision.
template <typename Acc = float>
QUARRY_HD Acc entropy_term(float p) {
  return p > 0.0f ? -Acc(p) * log_of(Acc(p)) : Acc(0);
}

/// max and min of values that are never NaN here (non-finite inputs are flagged and skipped): one
/// instruction on the GPU; a compare and select on the CPU, where fmaxf's NaN rules would cost a
/// library call.
QUARRY_HD float larger(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fmaxf(a, b);
#else
  return a > b ? a : b;
#endif
}
QUARRY_HD float smaller(float a, float b) {
#if defined(__CUDA_ARCH__)
  return fminf(a, b);
#else
  return a < b ? a : b;
#endif
}

/// p1 >= p2 kept as the running two largest values.
QUARRY_HD void push_top2(float x, float& top1, float& top2) {
  top2 = larger(top2, smaller(top1, x));
  top1 = larger(top1, x);
}
QUARRY_HD void merge_top2(float o1, float o2, float& top1, float& top2) {
  top2 = larger(larger(top2, o2), smaller(top1, o1));
  top1 = larger(top1, o1);
}

/// The single-model measures from the two largest probabilities and the entropy. The margin is
/// (1 - p1) + p2, not 1 - (p1 - p2): 1 - p1 is exact for p1 >= 1/2, so a small margin keeps its
/// relative precision where p1 - p2 would round it away.
QUARRY_HD float single_model_score(MeasureId measure, float p1, float p2, float entropy) {
  switch (measure) {
    case MeasureId::least_confidence:
      return 1.0f - p1;
    case MeasureId::margin:
      return (1.0f - p1) + p2;
    case MeasureId::ratio:
      return p2 / p1;
    default:
      return entropy;
  }
}

struct RowResult {
  float score;
  uint32_t flags;
};

// ---- probabilities -----------------------------------------------------------------------------

/// Statistics of one row of probabilities. `Acc` is the type sums are kept in: float on the GPU
/// (tree reductions keep the error small), double on the CPU (long sequential sums).
template <typename Acc>
struct ProbStats {
  float top1 = -kInf;
  float top2 = -kInf;
  Acc sum = 0;
  Acc entropy = 0;
  uint32_t flags = 0;

  QUARRY_HD void add(float p) {
    if (!is_finite(p)) {
      flags |= kNonFinite;
      return;
    }
    if (p < 0.0f) flags |= kNegative;
    if (p > 1.0f + kSumTolerance) flags |= kAboveOne;
    push_top2(p, top1, top2);
    sum += p;
    entropy += entropy_term<Acc>(p);
  }
  QUARRY_HD void merge(const ProbStats& o) {
    merge_top2(o.top1, o.top2, top1, top2);
    sum += o.sum;
    entropy += o.entropy;
    flags |= o.flags;
  }
  /// The validation flags of the row, the sum check included.
  QUARRY_HD uint32_t row_flags() const {
    return flags | (fabs(static_cast<double>(sum) - 1.0) <= kSumTolerance ? 0u : kBadSum);
  }
  /// In the accumulator's precision: committee measures subtract entropies.
  QUARRY_HD Acc entropy_value() const { return entropy > Acc(0) ? entropy : Acc(0); }
  QUARRY_HD RowResult finish(MeasureId measure) const {
    const float p2 = top2 > -kInf ? top2 : 0.0f;  // one class: p2 = 0
    return {
        canonical_score(single_model_score(measure, top1, p2, static_cast<float>(entropy_value()))),
        row_flags()};
  }
};

// ---- logits ------------------------------------------------------------------------------------

/// z - max for e^(z - max), bounded below: finite logits 1e38 apart would make it -Inf, and
/// -Inf * e^-Inf = NaN in the sums. e^-1e4 is 0 in float and double alike.
template <typename Acc>
QUARRY_HD Acc bounded_exponent(Acc d) {
  return d > Acc(-1e4) ? d : Acc(-1e4);
}

/// Statistics of one row of logits z for a stable, single-pass softmax of z * scale (scale =
/// 1 / temperature). The logits are kept unscaled and the scale is applied to differences z - m
/// only: z * scale alone can overflow (z = 10 at T = 1e-38), (z - m) * scale is at most 0.
/// With m the running maximum, `rest` = sum of e^((z-m) scale) over every element but one that
/// holds the maximum, and t = sum (z-m) scale e^((z-m) scale), the softmax denominator is
/// s = 1 + rest, p1 = 1/s, p2 = e^((z2-m) scale)/s and the entropy is ln(1 + rest) - t/s. Keeping
/// `rest` apart from the 1 keeps the relative precision of 1 - p1 = rest/s for confident rows,
/// where s itself rounds to 1.
template <typename Acc>
struct LogitStats {
  float top1 = -kInf;  // the running maximum m; -Inf until a finite value is added
  float top2 = -kInf;
  Acc rest = 0;
  Acc t = 0;
  float scale = 1.0f;
  uint32_t flags = 0;

  LogitStats() = default;
  QUARRY_HD explicit LogitStats(float scale_) : scale(scale_) {}

  /// (a - b) * scale, bounded below (see bounded_exponent).
  QUARRY_HD Acc scaled(float a, float b) const {
    return bounded_exponent((Acc(a) - Acc(b)) * Acc(scale));
  }
  QUARRY_HD bool empty() const { return top1 == -kInf; }
  QUARRY_HD void add(float z) {
    if (!is_finite(z)) {
      flags |= kNonFinite;
      return;
    }
    if (empty()) {
      top1 = z;
      return;
    }
    if (z > top1) {  // new maximum: rescale what was summed so far, the old maximum included
      const Acc d = scaled(top1, z);
      const Acc e = exp_of(d);
      const Acc s = Acc(1) + rest;
      t = (t + d * s) * e;
      rest = s * e;
      top2 = top1;
      top1 = z;
    } else {
      const Acc d = scaled(z, top1);
      const Acc e = exp_of(d);
      rest += e;
      t += d * e;
      top2 = larger(top2, z);
    }
  }
  QUARRY_HD void merge(const LogitStats& o) {
    flags |= o.flags;
    if (o.empty()) return;
    if (empty()) {
      const uint32_t f = flags;
      *this = o;
      flags = f;
      return;
    }
    const float t2 = larger(smaller(top1, o.top1), larger(top2, o.top2));
    if (o.top1 > top1) {
      const Acc d = scaled(top1, o.top1);
      const Acc e = exp_of(d);
      const Acc s = Acc(1) + rest;
      t = o.t + (t + d * s) * e;
      rest = o.rest + s * e;
      top1 = o.top1;
    } else {  // equal maxima: the other's maximum joins `rest` with e^0 = 1
      const Acc d = scaled(o.top1, top1);
      const Acc e = exp_of(d);
      const Acc s = Acc(1) + o.rest;
      t += (o.t + d * s) * e;
      rest += s * e;
    }
    top2 = t2;
  }
  QUARRY_HD uint32_t row_flags() const { return empty() ? flags | kNonFinite : flags; }
  QUARRY_HD Acc entropy_value() const {
    const Acc h = log1p_of(rest) - t / (Acc(1) + rest);
    return h > Acc(0) ? h : Acc(0);
  }
  /// ln of the softmax denominator over e^((z - m) scale): see log_softmax.
  QUARRY_HD Acc log_sum() const { return log1p_of(rest); }
  QUARRY_HD RowResult finish(MeasureId measure) const {
    if (empty()) return {0.0f, flags | kNonFinite};  // no finite value in the row
    const float r = top2 > -kInf ? static_cast<float>(exp_of(scaled(top2, top1))) : 0.0f;
    const Acc s = Acc(1) + rest;
    float score;
    switch (measure) {
      case MeasureId::least_confidence:  // 1 - 1/s
        score = static_cast<float>(rest / s);
        break;
      case MeasureId::margin:  // 1 - (1 - r)/s
        score = static_cast<float>((rest + Acc(r)) / s);
        break;
      case MeasureId::ratio:
        score = r;
        break;
      default:
        score = static_cast<float>(entropy_value());
    }
    return {canonical_score(score), flags};
  }
};

/// ln p of the logit z in a row whose maximum is `max` and whose LogitStats::log_sum() is
/// `log_sum`: (z - max) scale - log_sum, never z * scale, which could overflow.
template <typename Acc>
QUARRY_HD Acc log_softmax(float z, float max, float scale, Acc log_sum) {
  return (Acc(z) - Acc(max)) * Acc(scale) - log_sum;
}

// ---- committees ----------------------------------------------------------------------------

/// The largest value and its index; equal values keep the lower index (a member's vote).
struct ArgMax {
  float value = -kInf;
  int32_t index = -1;

  QUARRY_HD void add(float v, int32_t i) {
    if (index < 0 || v > value || (v == value && i < index)) {
      value = v;
      index = i;
    }
  }
  QUARRY_HD void merge(const ArgMax& o) {
    if (o.index >= 0) add(o.value, o.index);
  }
};

/// Tallies of a row's votes: members that voted, sum over classes of n_c ln n_c, and the count of
/// the modal class.
struct VoteTally {
  int64_t voters = 0;
  double n_log_n = 0;
  int64_t modal = 0;
};

/// Tallies the votes vote(0..members-1) sorted ascending (abstentions, -1, first): each class is
/// one run, so one pass, O(M). Backends sort a row's votes first (std::sort on the CPU,
/// heap_sort in a GPU thread), which keeps a row of many distinct votes at O(M log M).
template <typename SortedVote>
QUARRY_HD VoteTally tally_sorted_votes(int64_t members, SortedVote vote) {
  VoteTally tally;
  int64_t run = 0;
  for (int64_t m = 0; m < members; ++m) {
    const int64_t v = vote(m);
    if (v < 0) continue;
    ++tally.voters;
    ++run;
    if (m + 1 < members && vote(m + 1) == v) continue;
    tally.n_log_n += static_cast<double>(run) * log_of(static_cast<double>(run));
    tally.modal = run > tally.modal ? run : tally.modal;
    run = 0;
  }
  return tally;
}

/// Sorts a[0..n) ascending in place: a heap sort, O(n log n) without temporary memory, for a GPU
/// thread's votes (library sorts need temporary storage or a size fixed at compile time). `Array`
/// is anything indexable by int64_t that yields a reference.
template <typename Array>
QUARRY_HD void heap_sort(Array a, int64_t n) {
  auto sift_down = [&](int64_t root, int64_t end) {
    for (int64_t child = 2 * root + 1; child < end; child = 2 * root + 1) {
      if (child + 1 < end && a[child] < a[child + 1]) ++child;
      if (!(a[root] < a[child])) return;
      const auto held = a[root];
      a[root] = a[child];
      a[child] = held;
      root = child;
    }
  };
  for (int64_t start = n / 2 - 1; start >= 0; --start) sift_down(start, n);
  for (int64_t end = n - 1; end > 0; --end) {
    const auto held = a[0];
    a[0] = a[end];
    a[end] = held;
    sift_down(0, end);
  }
}

/// vote_entropy = -sum v ln v with v = n_c / M' = ln M' - (sum n ln n) / M';
/// variation_ratio = 1 - n_modal / M'. A row nobody voted on scores -Inf: it ranks last.
QUARRY_HD float vote_score(MeasureId measure, const VoteTally& t) {
  if (t.voters == 0) return -kInf;
  const double voters = static_cast<double>(t.voters);
  double score;
  if (measure == MeasureId::variation_ratio)
    score = 1.0 - static_cast<double>(t.modal) / voters;
  else
    score = log_of(voters) - t.n_log_n / voters;
  return canonical_score(score > 0.0 ? static_cast<float>(score) : 0.0f);
}

/// The committee measure chosen from consensus_entropy = H(mean), bald = H(mean) - mean_m H(p_m)
/// (each backend computes it its own way; see divergence_term) and kl_max = max_m KL(p_m || mean).
/// Mutual information and KL are never negative; rounding is clamped away.
template <typename Acc>
QUARRY_HD float committee_score(MeasureId measure, Acc consensus_entropy, Acc bald, Acc kl_max) {
  Acc score;
  switch (measure) {
    case MeasureId::consensus_entropy:
      score = consensus_entropy;
      break;
    case MeasureId::bald:
      score = bald;
      break;
    default:
      score = kl_max;
  }
  return canonical_score(score > Acc(0) ? static_cast<float>(score) : 0.0f);
}

/// phi(1 + u) = (1 + u) ln(1 + u) - u >= 0 for u >= -1, in float and without branches on the
/// value, so that CPU vector loops and GPU threads compute it alike. Near u = 0 the closed form
/// cancels (phi ~ u^2/2), so there it is the series sum_{n>=2} (-u)^n / (n (n-1)) (|u| < 1/4,
/// 12 terms, relative error below 1e-7). Elsewhere ln(1 + u) is taken as ln t + r/t with
/// t = fl(1 + u) and r = u - (t - 1) its rounding error, so (1 + u) ln(1 + u) =
/// t ln t + r (1 + ln t) to first order in r: the rounding of 1 + u costs no precision.
QUARRY_HD float relative_divergence(float u) {
  u = larger(u, -1.0f);  // p = 0 can round to u just below -1
  // sum_{n=2}^{13} (-u)^(n-2) / (n (n-1)) by Horner's rule, written out so that it is constant
  // coefficients and fused multiply-adds in any loop that vectorizes it.
  float series = 1.0f / 156;
  series = 1.0f / 132 - u * series;
  series = 1.0f / 110 - u * series;
  series = 1.0f / 90 - u * series;
  series = 1.0f / 72 - u * series;
  series = 1.0f / 56 - u * series;
  series = 1.0f / 42 - u * series;
  series = 1.0f / 30 - u * series;
  series = 1.0f / 20 - u * series;
  series = 1.0f / 12 - u * series;
  series = 1.0f / 6 - u * series;
  series = 1.0f / 2 - u * series;
  const float near_zero = (u * u) * series;
  const float t = 1.0f + u;
  const float r = u - (t - 1.0f);
  const float log_t = polynomial_log(t);  // finite for t = 0, where t ln t must be 0
  const float far = t * log_t + r * (1.0f + log_t) - u;
  return fabsf(u) < 0.25f ? near_zero : far;
}

/// q phi(p / q) = p ln(p / q) - p + q for p >= 0, q > 0, with phi(t) = t ln t - t + 1 >= 0.
/// Summed over the members and classes of a committee whose mean is q, the (p - q) parts cancel
/// exactly, so BALD = H(mean) - mean H(p_m) = (1/M) sum_m sum_c q_c phi(p_mc / q_c): a sum of
/// terms that are never negative, free of the cancellation between two entropies near ln C that
/// costs float its relative precision when the members nearly agree. With q the float-rounded
/// mean the error is second order in the rounding.
QUARRY_HD float divergence_term(float p, float q) {
  return q * relative_divergence((p - q) / q);
}

/// The linear part of a member's KL to the committee mean, class by class: with q the mean
/// rounded to float, u = (p - q) / q and `rounding` = mean - q,
///   KL(p || mean) = sum_c q phi(u) + linear_kl_term(p - q, u, rounding)
/// where p - q is exact (p and q within a factor 2) and the last term corrects, to first order,
/// for the rounding of the mean. Summed in double: the parts cancel to the size of KL.
QUARRY_HD double linear_kl_term(float difference, float u, double rounding) {
  return static_cast<double>(difference) - (1.0 + static_cast<double>(u)) * rounding;
}

QUARRY_HD bool is_vote_measure(MeasureId m) {
  return m == MeasureId::vote_entropy || m == MeasureId::variation_ratio;
}

}  // namespace quarry::kernels
