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

#include "kernels/row_flags.hpp"

namespace quarry::kernels {

/// The measures, numbered as quarry::Measure (each checked in engine/measure_ids.cpp).
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
  egl = 9,
  sequence_nll = 10,
  perplexity = 11,
  min_token_prob = 12,
  mean_token_entropy = 13,
  max_token_entropy = 14,
  mean_token_margin = 15,
  sample_dispersion = 16,
  eigenscore = 17,
  semantic_sets = 18,
  semantic_entropy = 19,
};
/// How many there are: quarry::kMeasureCount (engine/measure_ids.cpp checks every value).
constexpr int kMeasureIdCount = 20;

/// Element types of kernel inputs.
enum class ElementType : int { f32 = 0, f16 = 1, bf16 = 2, i32 = 3, i64 = 4 };

inline constexpr float kInf = std::numeric_limits<float>::infinity();

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
/// For a float or (in the CPU backend) a vector of floats.
template <typename Float>
QUARRY_HD Float canonical_score(Float s) {
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
QUARRY_HD float sqrt_of(float x) {
  return sqrtf(x);
}
QUARRY_HD double sqrt_of(double x) {
  return ::sqrt(x);
}
QUARRY_HD float expm1_of(float x) {
  return expm1f(x);
}
QUARRY_HD double expm1_of(double x) {
  return ::expm1(x);
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
/// The mantissa's offset: x's bits minus these put its mantissa in [sqrt(1/2), sqrt(2)).
inline constexpr uint32_t kSqrtHalfBits = 0x3f3504f3u;
/// ln(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1), for a float or (in the CPU backend) a vector
/// of floats: arithmetic only. P by Estrin's scheme and the sums as a tree: short dependency
/// chains, so that several vectors are in flight at once.
template <typename Float>
QUARRY_HD Float log1p_of_reduced(Float f) {
  const Float z = f * f;
  const Float f4 = z * z;
  const Float p01 = 3.3334267139e-01f + f * -2.5001293421e-01f;
  const Float p23 = 1.9951410592e-01f + f * -1.6574572027e-01f;
  const Float p45 = 1.5020804107e-01f + f * -1.4316771924e-01f;
  const Float p03 = p01 + z * p23;
  const Float p46 = p45 + z * 8.4791533649e-02f;
  const Float poly = p03 + f4 * p46;
  return (f - 0.5f * z) + (f * z) * poly;
}
QUARRY_HD LogParts polynomial_log_parts(float x) {
  // Offsetting the bits by those of sqrt(1/2) puts the mantissa in [sqrt(1/2), sqrt(2)) and the
  // exponent in the high bits with integer operations alone (no compare and select).
  const uint32_t shifted = float_to_bits(x) - kSqrtHalfBits;
  const float e = static_cast<float>(static_cast<int32_t>(shifted) >> 23);
  const float f = bits_to_float((shifted & 0x007fffffu) + kSqrtHalfBits) - 1.0f;
  return {e, log1p_of_reduced(f)};
}
QUARRY_HD float polynomial_log(float x) {
  const LogParts parts = polynomial_log_parts(x);
  // ln 2 split in two for precision.
  return parts.log_mantissa + parts.exponent * -2.12194440e-4f + parts.exponent * 0.693359375f;
}

/// e^x for finite x <= 0 (a softmax's z - max), branch-free as polynomial_log (Cephes' expf);
/// e^x below the smallest normal float is 0.
/// e^x's range reduction x = n ln 2 + r, |r| <= ln 2 / 2, and the polynomial for e^r, for a float
/// or (in the CPU backend) a vector of floats: arithmetic only. x must be at least -87.
template <typename Float>
struct ExpReduced {
  Float n;         // an integer
  Float exp_of_r;  // e^r
};
template <typename Float>
QUARRY_HD ExpReduced<Float> exp_reduced(Float x) {
  // Round x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick (exact for |n| < 2^22).
  const Float n = (x * 1.44269504089f + 12582912.0f) - 12582912.0f;
  Float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const Float z = r * r;
  Float y = r * 1.9875691500e-4f + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  return {n, y};
}
QUARRY_HD float polynomial_exp(float x) {
  const bool underflow = x < -87.0f;
  const ExpReduced<float> reduced = exp_reduced(underflow ? -87.0f : x);
  const float scale =
      bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(reduced.n) + 127) << 23);
  return underflow ? 0.0f : reduced.exp_of_r * scale;
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
/// relative precision where p1 - p2 would round it away. For floats or (in the CPU backend)
/// vectors of floats.
template <typename Float>
QUARRY_HD Float single_model_score(MeasureId measure, Float p1, Float p2, Float entropy) {
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

/// The range flags of one finite probability.
QUARRY_HD uint32_t probability_flags(float p) {
  return (p < 0.0f ? kNegative : 0u) | (p > 1.0f + kSumTolerance ? kAboveOne : 0u);
}
/// kBadSum unless a row's probabilities sum to 1 within the tolerance; `below_bf16_bits` is the
/// OR of the row's values' bits below bfloat16 precision (0: the row fits bf16).
QUARRY_HD uint32_t sum_flags(double sum, uint32_t below_bf16_bits) {
  const double tolerance = below_bf16_bits == 0 ? kBf16SumTolerance : kSumTolerance;
  return fabs(sum - 1.0) <= tolerance ? 0u : kBadSum;
}

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
  uint32_t below_bf16 = 0;  // sum_flags' below_bf16_bits

  QUARRY_HD void add(float p) {
    if (!is_finite(p)) {
      flags |= kNonFinite;
      return;
    }
    flags |= probability_flags(p);
    below_bf16 |= float_to_bits(p) & kBelowBf16Bits;
    push_top2(p, top1, top2);
    sum += p;
    entropy += entropy_term<Acc>(p);
  }
  QUARRY_HD void merge(const ProbStats& o) {
    merge_top2(o.top1, o.top2, top1, top2);
    sum += o.sum;
    entropy += o.entropy;
    flags |= o.flags;
    below_bf16 |= o.below_bf16;
  }
  /// The validation flags of the row, the sum check included.
  QUARRY_HD uint32_t row_flags() const {
    return flags | sum_flags(static_cast<double>(sum), below_bf16);
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

/// The entropy and the margin 1 - (p1 - p2) of a softmax from its statistics, as LogitStats keeps
/// them: with m the maximum, `rest` = sum of e^(z-m) over every element but one that holds the
/// maximum, t = sum (z-m) e^(z-m) and r = e^(z2-m) for the second largest z2 (0 for one element),
/// s = 1 + rest, H = ln(1 + rest) - t/s and 1 - (p1 - p2) = (rest + r)/s. `log1p_rest` is
/// ln(1 + rest), computed as the caller's loop allows.
template <typename Acc>
QUARRY_HD Acc softmax_entropy(Acc rest, Acc t, Acc log1p_rest) {
  const Acc h = log1p_rest - t / (Acc(1) + rest);
  return h > Acc(0) ? h : Acc(0);
}
template <typename Acc>
QUARRY_HD Acc softmax_margin(Acc rest, Acc r) {
  return (rest + r) / (Acc(1) + rest);
}

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
  QUARRY_HD Acc entropy_value() const { return softmax_entropy(rest, t, log1p_of(rest)); }
  /// e^((z2 - m) scale) for the second largest z2; 0 with one element.
  QUARRY_HD Acc second_ratio() const { return top2 > -kInf ? exp_of(scaled(top2, top1)) : Acc(0); }
  /// ln of the softmax denominator over e^((z - m) scale): see log_softmax.
  QUARRY_HD Acc log_sum() const { return log1p_of(rest); }
  QUARRY_HD RowResult finish(MeasureId measure) const {
    if (empty()) return {0.0f, flags | kNonFinite};  // no finite value in the row
    const float r = static_cast<float>(second_ratio());
    const Acc s = Acc(1) + rest;
    float score;
    switch (measure) {
      case MeasureId::least_confidence:  // 1 - 1/s
        score = static_cast<float>(rest / s);
        break;
      case MeasureId::margin:
        score = static_cast<float>(softmax_margin(rest, Acc(r)));
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

// ---- expected gradient length ------------------------------------------------------------------

/// What the EGL terms of a row need, each with its own relative precision: the largest
/// probability p1 (at class `argmax`, the lowest class on ties), 1 - p1, and the sum of the
/// squares of every other probability. From logits, also the softmax: p_c = e^((z_c - top) scale)
/// * inv_sum, the scale (1 / temperature) applied to differences only, as in LogitStats.
template <typename Acc>
struct EglRow {
  Acc p1 = 0;
  Acc one_minus_p1 = 0;
  Acc rest_squares = 0;
  int64_t argmax = -1;
  float top = 0;
  float scale = 1.0f;
  Acc inv_sum = 1;

  /// p_y ||p - e_y|| for a class y other than the argmax, with
  /// ||p - e_y||^2 = (1 - p_y)^2 + p1^2 + (the other squares but p_y's): every part is a sum of
  /// squares or dominated by p1^2, so nothing cancels (unlike 1 - 2 p_y + ||p||^2).
  QUARRY_HD Acc term(Acc p) const {
    const Acc q = Acc(1) - p;
    const Acc others = rest_squares - p * p;
    return p * sqrt_of(q * q + p1 * p1 + (others > Acc(0) ? others : Acc(0)));
  }
  /// The probability of a class in the second pass: from its raw logit, or the value itself.
  QUARRY_HD Acc probability(float value, bool logits) const {
    return logits ? exp_of(bounded_exponent((Acc(value) - Acc(top)) * Acc(scale))) * inv_sum
                  : Acc(value);
  }
  /// sum_y p_y ||p - e_y|| from the sum of term() over every class but the argmax, whose own
  /// term p1 sqrt((1 - p1)^2 + rest_squares) is added here.
  QUARRY_HD Acc terms(Acc other_terms) const {
    return p1 * sqrt_of(one_minus_p1 * one_minus_p1 + rest_squares) + other_terms;
  }
};

/// EGL = sqrt(|h|^2 + 1) * terms, in double on both devices (|h|^2 of float features can exceed
/// the float range). A product beyond the float range (features near the float maximum) would
/// score +Inf for finite input: the row is flagged kScoreRange instead.
QUARRY_HD float egl_score(double terms, double feature_squares, uint32_t& flags) {
  const float score = static_cast<float>(sqrt_of(feature_squares + 1.0) * terms);
  if (!is_finite(score) && is_finite(static_cast<float>(terms))) flags |= kScoreRange;
  return canonical_score(score);
}

/// The first of the two passes over a row of probabilities: validation (as ProbStats), the
/// largest probability and its class, and the sum of squares of the others. The largest value so
/// far is kept out of the sum; when a larger one arrives, its square joins it.
template <typename Acc>
struct EglProbStats {
  float top = -kInf;
  int64_t argmax = -1;
  Acc rest_squares = 0;
  Acc sum = 0;
  uint32_t flags = 0;
  uint32_t below_bf16 = 0;  // sum_flags' below_bf16_bits

  EglProbStats() = default;
  QUARRY_HD explicit EglProbStats(float /*scale*/) {}  // probabilities are not scaled

  QUARRY_HD void add(float p, int64_t c) {
    if (!is_finite(p)) {
      flags |= kNonFinite;
      return;
    }
    flags |= probability_flags(p);
    below_bf16 |= float_to_bits(p) & kBelowBf16Bits;
    sum += p;
    if (argmax < 0) {
      top = p;
      argmax = c;
    } else if (p > top || (p == top && c < argmax)) {
      rest_squares += Acc(top) * Acc(top);
      top = p;
      argmax = c;
    } else {
      rest_squares += Acc(p) * Acc(p);
    }
  }
  QUARRY_HD void merge(const EglProbStats& o) {
    flags |= o.flags;
    below_bf16 |= o.below_bf16;
    sum += o.sum;
    if (o.argmax < 0) return;
    if (argmax < 0) {
      top = o.top;
      argmax = o.argmax;
      rest_squares += o.rest_squares;
    } else if (o.top > top || (o.top == top && o.argmax < argmax)) {
      rest_squares += Acc(top) * Acc(top) + o.rest_squares;
      top = o.top;
      argmax = o.argmax;
    } else {
      rest_squares += o.rest_squares + Acc(o.top) * Acc(o.top);
    }
  }
  QUARRY_HD uint32_t row_flags() const {
    return (argmax < 0 ? flags | kNonFinite : flags) |
           sum_flags(static_cast<double>(sum), below_bf16);
  }
  QUARRY_HD EglRow<Acc> row() const {
    EglRow<Acc> r;
    r.p1 = Acc(top);
    r.one_minus_p1 = Acc(1) - Acc(top);  // exact for p1 >= 1/2
    r.rest_squares = rest_squares;
    r.argmax = argmax;
    return r;
  }
};

/// The first pass over a row of logits, as LogitStats: with m the running maximum (at `argmax`)
/// and the scale (1 / temperature) applied to differences only, rest = sum of e^((z - m) scale)
/// and rest_squares = sum of e^(2 (z - m) scale) over every other class. Then s = 1 + rest,
/// p1 = 1/s, 1 - p1 = rest/s and the other squares are rest_squares / s^2, all without
/// cancellation, and nothing overflows for any finite logits and finite scale.
template <typename Acc>
struct EglLogitStats {
  float top = -kInf;
  int64_t argmax = -1;
  Acc rest = 0;
  Acc rest_squares = 0;
  float scale = 1.0f;
  uint32_t flags = 0;

  EglLogitStats() = default;
  QUARRY_HD explicit EglLogitStats(float scale_) : scale(scale_) {}

  /// e^((a - b) scale) for a <= b, bounded below (see bounded_exponent).
  QUARRY_HD Acc ratio(float a, float b) const {
    return exp_of(bounded_exponent((Acc(a) - Acc(b)) * Acc(scale)));
  }
  QUARRY_HD void add(float z, int64_t c) {
    if (!is_finite(z)) {
      flags |= kNonFinite;
      return;
    }
    if (argmax < 0) {
      top = z;
      argmax = c;
    } else if (z > top || (z == top && c < argmax)) {  // the old maximum joins the rest
      const Acc e = ratio(top, z);
      rest = (Acc(1) + rest) * e;
      rest_squares = (Acc(1) + rest_squares) * (e * e);
      top = z;
      argmax = c;
    } else {
      const Acc e = ratio(z, top);
      rest += e;
      rest_squares += e * e;
    }
  }
  QUARRY_HD void merge(const EglLogitStats& o) {
    flags |= o.flags;
    if (o.argmax < 0) return;
    if (argmax < 0) {
      const uint32_t f = flags;
      *this = o;
      flags = f;
    } else if (o.top > top || (o.top == top && o.argmax < argmax)) {
      const Acc e = ratio(top, o.top);
      rest = o.rest + (Acc(1) + rest) * e;
      rest_squares = o.rest_squares + (Acc(1) + rest_squares) * (e * e);
      top = o.top;
      argmax = o.argmax;
    } else {
      const Acc e = ratio(o.top, top);
      rest += (Acc(1) + o.rest) * e;
      rest_squares += (Acc(1) + o.rest_squares) * (e * e);
    }
  }
  QUARRY_HD uint32_t row_flags() const { return argmax < 0 ? flags | kNonFinite : flags; }
  QUARRY_HD EglRow<Acc> row() const {
    EglRow<Acc> r;
    const Acc inv_sum = Acc(1) / (Acc(1) + rest);
    r.p1 = inv_sum;
    r.one_minus_p1 = rest * inv_sum;
    r.rest_squares = rest_squares * inv_sum * inv_sum;
    r.argmax = argmax;
    r.top = top;
    r.scale = scale;
    r.inv_sum = inv_sum;
    return r;
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

// ---- LLM outputs: token log-probabilities ------------------------------------------------------

/// Row r's length (valid steps) from `lengths` (i32 or i64), or `steps` when there are none.
QUARRY_HD int64_t row_length(const void* lengths, ElementType type, int64_t r, int64_t steps) {
  if (lengths == nullptr) return steps;
  return type == ElementType::i32 ? static_cast<int64_t>(static_cast<const int32_t*>(lengths)[r])
                                  : static_cast<const int64_t*>(lengths)[r];
}
QUARRY_HD bool length_is_valid(int64_t length, int64_t steps) {
  return length >= 1 && length <= steps;
}

/// Statistics of a row of token log-probabilities l_t over its length: the negative sum and the
/// smallest value. A valid l is finite and <= 0.
template <typename Acc>
struct TokenStats {
  Acc nll = 0;  // -sum l
  float min_logprob = kInf;
  uint32_t flags = 0;

  QUARRY_HD void add(float l) {
    if (!is_finite(l)) {
      flags |= kNonFinite;
      return;
    }
    if (l > 0.0f) flags |= kPositive;
    nll -= Acc(l);
    min_logprob = smaller(min_logprob, l);
  }
  QUARRY_HD void merge(const TokenStats& o) {
    nll += o.nll;
    min_logprob = smaller(min_logprob, o.min_logprob);
    flags |= o.flags;
  }
  /// sequence_nll = -sum l; perplexity = -(1/L) sum l (log scale); min_token_prob = -min l, the
  /// largest token surprisal: the order of 1 - e^(min l), which float rounds to 1 for every
  /// p < 6e-8, kept for the least likely tokens too.
  QUARRY_HD RowResult finish(MeasureId measure, int64_t length) const {
    Acc score;
    switch (measure) {
      case MeasureId::perplexity:
        score = nll / Acc(length);
        break;
      case MeasureId::min_token_prob:
        score = -Acc(min_logprob);
        break;
      default:
        score = nll;
    }
    return {canonical_score(score > Acc(0) ? static_cast<float>(score) : 0.0f), flags};
  }
};

// ---- LLM outputs: top-K log-probabilities per step ---------------------------------------------

/// One step's top-K log-probabilities, renormalised: the returned probabilities e^l divided by
/// their sum, which is the softmax of the returned l (LogitStats). Entries of -inf were not
/// returned and are left out; NaN, +inf and l > 0 are invalid.
template <typename Acc>
struct TopKStep {
  LogitStats<Acc> softmax;
  uint32_t flags = 0;

  QUARRY_HD void add(float l) {
    if (l == -kInf) return;
    if (l > 0.0f) flags |= kPositive;  // +inf too; LogitStats flags it as non-finite
    softmax.add(l);
  }
  /// Invalid values, and a step with no returned entry at all.
  QUARRY_HD uint32_t step_flags() const {
    const uint32_t f = flags | softmax.flags;
    return softmax.empty() && f == 0 ? kEmptyStep : f;
  }
  QUARRY_HD Acc entropy() const { return softmax.entropy_value(); }
  QUARRY_HD Acc margin() const { return softmax_margin(softmax.rest, softmax.second_ratio()); }
};

/// A row of top-K steps: the sum and maximum of the step entropies and the sum of the margins.
template <typename Acc>
struct TopKRowStats {
  Acc entropy_sum = 0;
  Acc entropy_max = 0;
  Acc margin_sum = 0;
  uint32_t flags = 0;

  QUARRY_HD void add_step(Acc entropy, Acc margin, uint32_t step_flags) {
    entropy_sum += entropy;
    entropy_max = entropy > entropy_max ? entropy : entropy_max;
    margin_sum += margin;
    flags |= step_flags;
  }
  QUARRY_HD void merge(const TopKRowStats& o) {
    entropy_sum += o.entropy_sum;
    entropy_max = o.entropy_max > entropy_max ? o.entropy_max : entropy_max;
    margin_sum += o.margin_sum;
    flags |= o.flags;
  }
  QUARRY_HD RowResult finish(MeasureId measure, int64_t length) const {
    Acc score;
    switch (measure) {
      case MeasureId::max_token_entropy:
        score = entropy_max;
        break;
      case MeasureId::mean_token_margin:
        score = margin_sum / Acc(length);
        break;
      default:
        score = entropy_sum / Acc(length);
    }
    return {canonical_score(score > Acc(0) ? static_cast<float>(score) : 0.0f), flags};
  }
};

// ---- LLM outputs: sampled answers --------------------------------------------------------------

/// Samples per row at most: the S x S matrices of a row stay in a thread block's shared memory.
inline constexpr int kMaxSamples = 64;
/// eigenvalues below this (zero up to rounding) count as this in eigenscore's logarithms.
inline constexpr double kEigenvalueFloor = 1e-10;

/// Cosine similarity from dot products and squared norms; 0 when either answer is the zero
/// vector.
QUARRY_HD double cosine_similarity(double dot, double norm2_i, double norm2_j) {
  return norm2_i > 0.0 && norm2_j > 0.0 ? dot / (sqrt(norm2_i) * sqrt(norm2_j)) : 0.0;
}

/// For a single thread: sync() between the steps of a cooperative routine does nothing.
struct NoSync {
  QUARRY_HD void operator()() const {}
};

/// Eigenvalues of the symmetric n x n matrix `a` (row-major, both triangles filled), left on its
/// diagonal: cyclic Jacobi rotations until the off-diagonal part is below 1e-15 of the matrix.
/// `lanes` threads (lane = 0..lanes-1) share each rotation's row and column updates and call
/// sync() between dependent steps; every lane reads the same values, so all take the same
/// rotations and the result does not depend on `lanes`. For the tiny matrices here (n <= 64) this
/// runs inside the scoring pass; eigenvalues come out to an absolute error near 1e-16 of the
/// matrix's norm, far below eigenscore's alpha.
template <typename Sync>
QUARRY_HD void jacobi_eigenvalues(double* a, int n, int lane, int lanes, Sync sync) {
  constexpr int kMaxSweeps = 64;
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    double off = 0.0, total = 0.0;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const double v = a[i * n + j] * a[i * n + j];
        total += v;
        if (i != j) off += v;
      }
    if (off <= 1e-30 * total) return;
    for (int p = 0; p < n - 1; ++p)
      for (int q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        const double app = a[p * n + p], aqq = a[q * n + q];
        // Already negligible next to its diagonal: rotating would change nothing in double.
        if (fabs(apq) <= 1e-18 * sqrt(fabs(app * aqq)) || apq == 0.0) continue;
        // The rotation that zeroes a_pq, by the smaller angle (t = tan, |t| <= 1).
        const double theta = (aqq - app) / (2.0 * apq);
        const double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
        const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
        sync();                                  // every lane has read a_pp, a_qq, a_pq
        for (int k = lane; k < n; k += lanes) {  // columns p and q: A P
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        sync();
        for (int k = lane; k < n; k += lanes) {  // rows p and q: P^T (A P)
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        sync();
        if (lane == 0) {  // the rotated pair exactly, without the rounding of the updates
          a[p * n + q] = a[q * n + p] = 0.0;
          a[p * n + p] = app - t * apq;
          a[q * n + q] = aqq + t * apq;
        }
        sync();
      }
  }
}

/// ln det of the symmetric n x n matrix `a` (row-major, both triangles) by Cholesky, which for a
/// positive definite matrix is the sum of the logarithms of its eigenvalues, at a sixth of n^3
/// operations instead of Jacobi's sweeps. L goes to the lower triangle and the diagonal; the
/// upper triangle and `diagonal` (n doubles) keep the matrix. Returns false when a pivot is not
/// positive (the matrix is not numerically positive definite), after restoring `a`.
QUARRY_HD bool cholesky_log_det(double* a, int n, double* diagonal, double& log_det) {
  for (int i = 0; i < n; ++i) diagonal[i] = a[i * n + i];
  log_det = 0.0;
  for (int j = 0; j < n; ++j) {
    double pivot = diagonal[j];
    for (int k = 0; k < j; ++k) pivot -= a[j * n + k] * a[j * n + k];
    if (!(pivot > 0.0)) {
      for (int i = 0; i < n; ++i) {
        a[i * n + i] = diagonal[i];
        for (int k = 0; k < i; ++k) a[i * n + k] = a[k * n + i];
      }
      return false;
    }
    log_det += log(pivot);  // ln det = sum ln L_jj^2
    const double l_jj = sqrt(pivot);
    a[j * n + j] = l_jj;
    for (int i = j + 1; i < n; ++i) {
      double v = a[j * n + i];  // a_ij, from the upper triangle
      for (int k = 0; k < j; ++k) v -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = v / l_jj;
    }
  }
  return true;
}

/// The connected components of the graph on S answers with an edge where cosine >= threshold
/// (union-find); `sizes` receives the components' sizes, the number of components is returned.
QUARRY_HD int semantic_components(const double* gram, int s, double threshold, int* sizes) {
  int parent[kMaxSamples];
  for (int i = 0; i < s; ++i) parent[i] = i;
  auto root = [&](int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  for (int i = 0; i < s; ++i)
    for (int j = i + 1; j < s; ++j)
      if (cosine_similarity(gram[i * s + j], gram[i * s + i], gram[j * s + j]) >= threshold) {
        const int a = root(i), b = root(j);
        if (a != b) parent[a < b ? b : a] = a < b ? a : b;
      }
  int count = 0;
  for (int i = 0; i < s; ++i) sizes[i] = 0;
  for (int i = 0; i < s; ++i) ++sizes[root(i)];
  for (int i = 0; i < s; ++i)
    if (sizes[i] > 0) sizes[count++] = sizes[i];
  return count;
}

/// Scores a row of S sampled answers (S <= kMaxSamples) of D dimensions from its Gram matrix:
/// gram[i*S + j] = e_i . e_j (S x S, both triangles) and sums[i] = e_i . 1, in double on both
/// backends (in float, rounding of order 1e-7 |e|^2 would be the size of alpha). With G_ij the
/// cosine similarity (0 when either answer is the zero vector):
///   sample_dispersion = 1 - mean_{i<j} G_ij (0 for S = 1);
///   semantic_sets = components of the graph G_ij >= threshold, semantic_entropy = the entropy
///   of their sizes over S;
///   eigenscore = (1/S) sum_i ln lambda_i(E J E^T + alpha I), J = I - 11^T/D, from the S x S
///   matrix C = G - sums sums^T / D + alpha I (never a D x D one); eigenvalues below 1e-10 (those
///   <= 0, and for alpha < 1e-10 the zero ones that rounding leaves slightly positive) count as
///   1e-10. For alpha >= 1e-10 every eigenvalue of C is >= alpha: then sum ln lambda = ln det C,
///   by Cholesky; otherwise (or should rounding make C indefinite) the eigenvalues themselves, by
///   Jacobi rotations.
/// eigenscore overwrites `gram` and `sums` and is shared by `lanes` threads as
/// jacobi_eigenvalues(); the other measures run on one thread. The result is lane 0's.
template <typename Sync>
QUARRY_HD float score_samples(MeasureId measure, double* gram, double* sums, int s, int64_t dim,
                              double alpha, double threshold, int lane, int lanes, Sync sync) {
  double score = 0.0;
  if (measure == MeasureId::eigenscore) {
    const double inv_dim = 1.0 / static_cast<double>(dim);
    for (int e = lane; e < s * s; e += lanes) {
      const int i = e / s, j = e % s;
      gram[e] -= sums[i] * sums[j] * inv_dim;
      if (i == j) gram[e] += alpha;
    }
    sync();
    // Lane 0 tries Cholesky and tells the others, through sums[0], whether it worked.
    double log_det = 0.0;
    if (lane == 0) {
      double diagonal[kMaxSamples];
      sums[0] =
          alpha >= kEigenvalueFloor && cholesky_log_det(gram, s, diagonal, log_det) ? 1.0 : 0.0;
    }
    sync();
    const bool positive_definite = sums[0] == 1.0;
    sync();  // every lane has read the verdict before sums is touched again
    if (positive_definite)
      return lane == 0 ? canonical_score(static_cast<float>(log_det / s)) : 0.0f;
    jacobi_eigenvalues(gram, s, lane, lanes, sync);
    if (lane != 0) return 0.0f;
    for (int i = 0; i < s; ++i) {
      const double lambda = gram[i * s + i];
      score += log(lambda > kEigenvalueFloor ? lambda : kEigenvalueFloor);
    }
    return canonical_score(static_cast<float>(score / s));
  }
  if (lane != 0) return 0.0f;
  if (measure == MeasureId::sample_dispersion) {
    if (s < 2) return 0.0f;
    double sum = 0.0;
    for (int i = 0; i < s; ++i)
      for (int j = i + 1; j < s; ++j)
        sum += cosine_similarity(gram[i * s + j], gram[i * s + i], gram[j * s + j]);
    score = 1.0 - sum / (0.5 * s * (s - 1));
    return canonical_score(score > 0.0 ? static_cast<float>(score) : 0.0f);
  }
  int sizes[kMaxSamples];
  const int components = semantic_components(gram, s, threshold, sizes);
  if (measure == MeasureId::semantic_sets) return static_cast<float>(components);
  double n_log_n = 0.0;  // entropy = ln S - (1/S) sum n ln n
  for (int c = 0; c < components; ++c) n_log_n += sizes[c] * log(static_cast<double>(sizes[c]));
  score = log(static_cast<double>(s)) - n_log_n / s;
  return canonical_score(score > 0.0 ? static_cast<float>(score) : 0.0f);
}

QUARRY_HD bool is_sample_measure(MeasureId m) {
  return m >= MeasureId::sample_dispersion && m <= MeasureId::semantic_entropy;
}
QUARRY_HD bool is_top_k_measure(MeasureId m) {
  return m >= MeasureId::mean_token_entropy && m <= MeasureId::mean_token_margin;
}
QUARRY_HD bool is_token_measure(MeasureId m) {
  return m >= MeasureId::sequence_nll && m <= MeasureId::min_token_prob;
}

}  // namespace quarry::kernels
