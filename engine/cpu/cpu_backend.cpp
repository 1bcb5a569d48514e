// The CPU backend: ranges of rows on engine/threads' pool, and the per-row math of
// kernels/measures.hpp in vector loops (cpu_vector.hpp).

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/backend.hpp"
#include "engine/cpu/cpu_influence.hpp"
#include "engine/cpu/cpu_llm.hpp"
#include "engine/cpu/cpu_vector.hpp"
#include "engine/cpu/faiss_plugin.hpp"
#include "engine/kmeans_host.hpp"
#include "engine/pipeline.hpp"
#include "engine/ranking.hpp"
#include "engine/threads.hpp"
#include "kernels/measures.hpp"
#include "quarry/error.hpp"
#include "quarry/measures.hpp"

namespace quarry::engine {

namespace {

using kernels::LogitStats;
using kernels::MeasureId;
using kernels::ProbStats;
using kernels::RowResult;
using kernels::to_float;

// The exact, scalar statistics of a row: used for rows the vector pass found out of range, so
// that their flags name every problem precisely.
template <typename T>
QUARRY_NOINLINE RowResult score_probability_row_exactly(const T* row, int64_t classes,
                                                        MeasureId measure) {
  ProbStats<double> stats;
  for (int64_t c = 0; c < classes; ++c) stats.add(to_float(row[c]));
  return stats.finish(measure);
}

// The vector pass does only the work a valid row needs: the two largest values, the sum, the
// entropy, and the largest value's bits read as an unsigned integer. Every probability in
// [0, 1 + tolerance] has bits at most those of 1 + tolerance; a negative value (sign bit), NaN or
// Inf has larger ones, so one integer maximum checks the whole range. Such rows (rare: they end
// the call with an error; -0 is among them and turns out valid) are scored again exactly for
// their flags. Padding with 0 is exact: 0 adds nothing to the sum or the entropy, and cannot
// displace p1 or p2 of a valid row (with one class, p2 = 0 by definition).
//
// A block of a row's values [begin, end) in lanes: `checks` holds kOutOfRange if a value is out
// of range and the bits below bf16 precision that choose the sum's tolerance (sum_flags).
constexpr uint32_t kOutOfRange = kernels::kBelowBf16Bits + 1;
struct ProbabilityLanes {
  f32x8 top1, top2, sum;
  f32x8 entropy;  // -sum p ln p
  u32x8 checks;
};
template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE ProbabilityLanes score_probability_lanes(const T* row, int64_t begin,
                                                              int64_t end) {
  constexpr float kLargestValid = 1.0f + kernels::kSumTolerance;
  // The entropy is -(sum p ln m + ln 2 sum p e), kept as its two parts (see LogParts).
  f32x8 top1 = f32x8{} - kernels::kInf, top2 = top1, sum{}, p_log_mantissa{}, p_exponent{};
  u32x8 largest_bits{}, all_bits{};
  auto add = [&](f32x8 p) {
    // The entropy needs neither p1 nor p2.
    if constexpr (!kEntropy) {
      const f32x8 smaller = top1 < p ? top1 : p;
      top2 = top2 > smaller ? top2 : smaller;
      top1 = top1 > p ? top1 : p;
    }
    const u32x8 bits = reinterpret_cast<u32x8>(p);
    largest_bits = largest_bits > bits ? largest_bits : bits;
    all_bits |= bits;
    sum += p;
    // The parts of ln 0 are finite, so 0 ln 0 adds 0 without a select.
    if constexpr (kEntropy) {
      const LogPartsX8 log_p = polynomial_log_parts_x8(p);
      p_log_mantissa += p * log_p.log_mantissa;
      p_exponent += p * log_p.exponent;
    }
  };
  int64_t c = begin;
  for (; c + kLanes <= end; c += kLanes) add(load_x8(row + c));
  if (c < end) add(load_tail_x8(row, c, end, 0.0f));
  const u32x8 over = largest_bits > kernels::float_to_bits(kLargestValid);
  return {top1, top2, sum, -(p_log_mantissa + static_cast<float>(kLn2) * p_exponent),
          (over & kOutOfRange) | (all_bits & kernels::kBelowBf16Bits)};
}

template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE RowResult score_probability_row(const T* row, int64_t classes,
                                                     MeasureId measure) {
  ProbStats<double> total;
  uint32_t checks = 0;
  for (int64_t begin = 0; begin < classes; begin += kBlock) {
    const ProbabilityLanes lanes =
        score_probability_lanes<kEntropy>(row, begin, std::min(classes, begin + kBlock));
    ProbStats<double> block;
    if constexpr (!kEntropy)
      for (int l = 0; l < kLanes; ++l)
        kernels::merge_top2(lanes.top1[l], lanes.top2[l], block.top1, block.top2);
    checks |= or_x8(lanes.checks);
    block.sum = sum_x8(lanes.sum);
    block.below_bf16 = checks & kernels::kBelowBf16Bits;
    if constexpr (kEntropy) block.entropy = sum_x8(lanes.entropy);
    total.merge(block);
  }
  return checks & kOutOfRange ? score_probability_row_exactly(row, classes, measure)
                              : total.finish(measure);
}

// Rows of at most kBlock values, eight at a time: each row's lanes are kept and the eight rows'
// sums taken together (sum_rows_x8, the same additions as sum_x8), and their scores and checks
// computed as vectors: the per-row work around the vector loop, which is most of a short row's
// time beyond the loop, shrinks to a few instructions. Scores and flags are those of
// score_probability_row (ProbStats::finish) to the bit. Returns the lowest bad row's code.
template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE uint64_t score_short_probability_rows(const T* data, int64_t row_stride,
                                                           int64_t classes, int64_t begin,
                                                           int64_t end, MeasureId measure,
                                                           float* out) {
  uint64_t first_bad = kernels::kNoBadRow;
  int64_t r = begin;
  for (; r + kLanes <= end; r += kLanes) {
    f32x8 sums[kLanes], entropies[kLanes];
    u32x8 checks[kLanes];
    float p1[kLanes], p2[kLanes];
    for (int i = 0; i < kLanes; ++i) {
      const ProbabilityLanes lanes =
          score_probability_lanes<kEntropy>(data + (r + i) * row_stride, 0, classes);
      sums[i] = lanes.sum;
      checks[i] = lanes.checks;
      if constexpr (kEntropy) {
        entropies[i] = lanes.entropy;
      } else {
        float top1 = -kernels::kInf, top2 = -kernels::kInf;
        for (int l = 0; l < kLanes; ++l)
          kernels::merge_top2(lanes.top1[l], lanes.top2[l], top1, top2);
        p1[i] = top1;
        p2[i] = top2 > -kernels::kInf ? top2 : 0.0f;  // one class: p2 = 0
      }
    }
    const f32x8 sum = sum_rows_x8(sums);
    const u32x8 check = or_rows_x8(checks);
    f32x8 top1{}, top2{}, entropy{};
    if constexpr (kEntropy) {
      entropy = sum_rows_x8(entropies);
      entropy = entropy > 0.0f ? entropy : 0.0f;  // ProbStats::entropy_value
    } else {
      std::memcpy(&top1, p1, sizeof top1);
      std::memcpy(&top2, p2, sizeof top2);
    }
    // As ProbStats::finish.
    const f32x8 score =
        kernels::canonical_score(kernels::single_model_score(measure, top1, top2, entropy));
    // kernels::sum_flags in float: sum - 1 is exact for sums in [1/2, 2], and the others are far
    // outside either tolerance.
    const f32x8 tolerance = (check & kernels::kBelowBf16Bits) == 0
                                ? f32x8{} + kernels::kBf16SumTolerance
                                : f32x8{} + kernels::kSumTolerance;
    const f32x8 distance =
        reinterpret_cast<f32x8>(reinterpret_cast<u32x8>(sum - 1.0f) & 0x7fffffffu);
    const u32x8 problems = reinterpret_cast<u32x8>(distance > tolerance) | (check & kOutOfRange);
    std::memcpy(out + r, &score, sizeof score);
    if (or_x8(problems) == 0) continue;
    for (int i = 0; i < kLanes; ++i) {
      if (problems[i] == 0) continue;
      const T* row = data + (r + i) * row_stride;
      record_row(r + i,
                 check[i] & kOutOfRange ? score_probability_row_exactly(row, classes, measure)
                                        : RowResult{score[i], kernels::kBadSum},
                 out, first_bad);
    }
  }
  for (; r < end; ++r)
    record_row(r, score_probability_row<kEntropy>(data + r * row_stride, classes, measure), out,
               first_bad);
  return first_bad;
}

// The exact, scalar statistics of a row of logits, for rows the vector pass found non-finite
// values in.
template <typename T>
QUARRY_NOINLINE RowResult score_logit_row_exactly(const T* row, int64_t classes,
                                                  float inv_temperature, MeasureId measure) {
  LogitStats<double> stats(inv_temperature);
  for (int64_t c = 0; c < classes; ++c) stats.add(to_float(row[c]));
  return stats.finish(measure);
}

// Two passes over the row (the second from cache): the maximum first, so each element needs one
// exp and no rescaling. z - z is 0 for finite z and NaN otherwise: summed, it tells whether the
// row has a non-finite value; such rows are scored again exactly for their flags. Both passes work
// on the unscaled logits and apply the temperature to differences, d = (z - max) / T, so that the
// maxima give d = 0 exactly (z / T - max / T could round, or be fused, to a tiny nonzero d).
// Tails are padded with -Inf, which adds e^-Inf = 0.
struct LogitMaxima {
  float max = -kernels::kInf;
  float second = -kernels::kInf;
  bool finite = false;
};
template <typename T>
QUARRY_ALWAYS_INLINE LogitMaxima logit_maxima(const T* row, int64_t classes) {
  f32x8 top1 = f32x8{} - kernels::kInf, top2 = top1, probe{};
  auto add = [&](f32x8 z) {
    const f32x8 smaller = top1 < z ? top1 : z;
    top2 = top2 > smaller ? top2 : smaller;
    top1 = top1 > z ? top1 : z;
  };
  int64_t c = 0;
  for (; c + kLanes <= classes; c += kLanes) {
    const f32x8 z = load_x8(row + c);
    add(z);
    probe += z - z;
  }
  if (c < classes) {
    add(load_tail_x8(row, c, classes, -kernels::kInf));
    const f32x8 z = load_tail_x8(row, c, classes, 0.0f);
    probe += z - z;
  }
  LogitMaxima maxima;
  for (int l = 0; l < kLanes; ++l) kernels::merge_top2(top1[l], top2[l], maxima.max, maxima.second);
  maxima.finite = classes > 0 && or_x8(reinterpret_cast<u32x8>(probe)) == 0;
  return maxima;
}

// The second pass over [begin, end): `rest` = the sum of e^d over the values below the maximum
// (the maxima are counted apart, so that the small sum of a confident row is not rounded into 1)
// and t = the sum of d e^d, in lanes.
struct LogitSums {
  f32x8 rest, t;
};
template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE LogitSums logit_sums(const T* row, int64_t begin, int64_t end, float max,
                                          float inv_temperature) {
  f32x8 rest{}, t{};
  auto add = [&](f32x8 z) {
    const f32x8 below_max = z - max;
    // e^d is 0 below -87; the clamp keeps d * e finite for d = -Inf.
    const f32x8 scaled = below_max * inv_temperature;
    const f32x8 d = scaled > -104.0f ? scaled : -104.0f;
    const f32x8 e = polynomial_exp_x8(d);
    rest += below_max < 0.0f ? e : 0.0f;
    if constexpr (kEntropy) t += d * e;
  };
  int64_t c = begin;
  for (; c + kLanes <= end; c += kLanes) add(load_x8(row + c));
  if (c < end) add(load_tail_x8(row, c, end, -kernels::kInf));
  return {rest, t};
}

// Every copy of a tied maximum but one belongs to `rest`.
template <typename T>
QUARRY_NOINLINE float tied_maxima_in_rest(const T* row, int64_t classes, float max) {
  int64_t copies = 0;
  for (int64_t c = 0; c < classes; ++c) copies += to_float(row[c]) == max;
  return static_cast<float>(copies - 1);
}

// kernels::LogitStats::finish in float for a row in each lane, from its `rest`, t, maximum and
// second largest logit: s = 1 + rest, p1 = 1/s, p2 = e^((second - max) / T) / s, entropy =
// ln(1 + rest) - t/s. Float keeps the relative precision of confident rows' small scores: every
// quantity is a sum or quotient of positive terms.
QUARRY_ALWAYS_INLINE f32x8 finish_logit_rows(f32x8 rest, f32x8 t, f32x8 max, f32x8 second,
                                             float inv_temperature, MeasureId measure) {
  const f32x8 s = 1.0f + rest;
  f32x8 score;
  switch (measure) {
    case MeasureId::least_confidence:  // 1 - 1/s
      score = rest / s;
      break;
    case MeasureId::margin:
    case MeasureId::ratio: {
      // e^x down to the subnormal floats, as (e^(x/2))^2; 0 with one class (second = -Inf).
      const f32x8 half = polynomial_exp_x8((second - max) * (0.5f * inv_temperature));
      const f32x8 r = half * half;
      score = measure == MeasureId::margin ? (rest + r) / s : r;
      break;
    }
    default: {
      // ln(1 + rest) = ln s + the part of rest that 1 + rest rounded away.
      const f32x8 log1p_rest = polynomial_log_x8(s) + (rest - (s - 1.0f)) / s;
      const f32x8 entropy = log1p_rest - t / s;
      score = entropy > 0.0f ? entropy : 0.0f;
    }
  }
  return kernels::canonical_score(score);
}

template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE RowResult score_logit_row(const T* row, int64_t classes, float inv_temperature,
                                               MeasureId measure) {
  const LogitMaxima maxima = logit_maxima(row, classes);
  if (!maxima.finite) return score_logit_row_exactly(row, classes, inv_temperature, measure);
  double rest = 0, t = 0;
  for (int64_t begin = 0; begin < classes; begin += kBlock) {
    const LogitSums sums = logit_sums<kEntropy>(row, begin, std::min(classes, begin + kBlock),
                                                maxima.max, inv_temperature);
    rest += sum_x8(sums.rest);
    if constexpr (kEntropy) t += sum_x8(sums.t);
  }
  // As score_short_logit_rows adds them: in float.
  float rest_f = static_cast<float>(rest);
  if (maxima.second == maxima.max) rest_f += tied_maxima_in_rest(row, classes, maxima.max);
  const f32x8 score =
      finish_logit_rows(f32x8{} + rest_f, f32x8{} + static_cast<float>(t), f32x8{} + maxima.max,
                        f32x8{} + maxima.second, inv_temperature, measure);
  return {score[0], 0u};
}

// Rows of at most kBlock logits, eight at a time, as score_short_probability_rows: scores equal
// to score_logit_row's to the bit. Returns the lowest bad row's code.
template <bool kEntropy, typename T>
QUARRY_ALWAYS_INLINE uint64_t score_short_logit_rows(const T* data, int64_t row_stride,
                                                     int64_t classes, int64_t begin, int64_t end,
                                                     float inv_temperature, MeasureId measure,
                                                     float* out) {
  uint64_t first_bad = kernels::kNoBadRow;
  int64_t r = begin;
  for (; r + kLanes <= end; r += kLanes) {
    f32x8 rests[kLanes], ts[kLanes];
    float max[kLanes], second[kLanes], ties[kLanes];
    uint32_t non_finite = 0;  // bit i: row r + i
    for (int i = 0; i < kLanes; ++i) {
      const T* row = data + (r + i) * row_stride;
      const LogitMaxima maxima = logit_maxima(row, classes);
      max[i] = maxima.max;
      second[i] = maxima.second;
      ties[i] = maxima.finite && maxima.second == maxima.max
                    ? tied_maxima_in_rest(row, classes, maxima.max)
                    : 0.0f;
      if (!maxima.finite) {
        non_finite |= 1u << i;
        rests[i] = ts[i] = f32x8{};
        max[i] = second[i] = 0.0f;
        continue;
      }
      const LogitSums sums = logit_sums<kEntropy>(row, 0, classes, maxima.max, inv_temperature);
      rests[i] = sums.rest;
      ts[i] = sums.t;
    }
    f32x8 max_x8, second_x8, ties_x8;
    std::memcpy(&max_x8, max, sizeof max_x8);
    std::memcpy(&second_x8, second, sizeof second_x8);
    std::memcpy(&ties_x8, ties, sizeof ties_x8);
    const f32x8 t = kEntropy ? sum_rows_x8(ts) : f32x8{};
    const f32x8 score = finish_logit_rows(sum_rows_x8(rests) + ties_x8, t, max_x8, second_x8,
                                          inv_temperature, measure);
    std::memcpy(out + r, &score, sizeof score);
    for (int i = 0; non_finite != 0; ++i, non_finite >>= 1) {
      if ((non_finite & 1u) == 0) continue;
      record_row(
          r + i,
          score_logit_row_exactly(data + (r + i) * row_stride, classes, inv_temperature, measure),
          out, first_bad);
    }
  }
  for (; r < end; ++r)
    record_row(r,
               score_logit_row<kEntropy>(data + r * row_stride, classes, inv_temperature, measure),
               out, first_bad);
  return first_bad;
}

// One committee member's row: its validation flags, entropy, largest logit and softmax log-sum
// (logits: see kernels::log_softmax) and vote (argmax, lowest class on ties).
struct MemberSummary {
  uint32_t flags;
  double entropy;
  float max_logit;
  double log_sum;
  int32_t vote;
};

template <typename T>
MemberSummary summarize_member(const T* row, int64_t classes, bool logits, float scale) {
  kernels::ArgMax vote;
  if (logits) {
    LogitStats<double> stats(scale);
    for (int64_t c = 0; c < classes; ++c) {
      const float z = to_float(row[c]);
      stats.add(z);
      vote.add(z, static_cast<int32_t>(c));  // the argmax of z / T is that of z
    }
    return {stats.row_flags(), stats.entropy_value(), stats.top1, stats.log_sum(), vote.index};
  }
  ProbStats<double> stats;
  for (int64_t c = 0; c < classes; ++c) {
    const float p = to_float(row[c]);
    stats.add(p);
    vote.add(p, static_cast<int32_t>(c));
  }
  return {stats.row_flags(), stats.entropy_value(), 0.0f, 0.0, vote.index};
}

// The tally of a row's votes, sorted in place first (see kernels::tally_sorted_votes).
template <typename V>
kernels::VoteTally tally_votes(V* votes, int64_t members) {
  std::sort(votes, votes + members);
  return kernels::tally_sorted_votes(members,
                                     [votes](int64_t m) { return static_cast<int64_t>(votes[m]); });
}

// Per-thread scratch of the vector committee path: the member mean of each class in double and
// rounded to float, the rounding, and 1 / the float mean.
struct CommitteeScratch {
  static constexpr int64_t kBytesPerClass = 2 * sizeof(double) + 2 * sizeof(float);
  std::vector<double> mean, rounding;
  std::vector<float> mean_f, inv_mean;
  std::vector<int32_t> vote;         // each member's vote (vote measures)
  std::vector<float> probabilities;  // logits: the row's softmax, members x classes
  CommitteeScratch(int64_t classes, int64_t members, bool logits)
      : mean(classes),
        rounding(classes),
        mean_f(classes),
        inv_mean(classes),
        vote(members),
        probabilities(logits ? members * classes : 0) {}
};

// Runs body(lane, c) for c = 0..count-1: whole vectors of kLanes classes in a loop the compiler
// vectorizes (each lane its own accumulators), the rest in lane 0.
template <typename Body>
QUARRY_ALWAYS_INLINE void for_each_class(int64_t count, Body&& body) {
  int64_t c = 0;
  for (; c + kLanes <= count; c += kLanes)
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) body(l, c + l);
  // The rest one class at a time, never vectorized (the barrier): the compiler would vectorize
  // this sum into lane 0 only when a run-time check on where the arrays lie allows it, and then
  // without the scalar loop's contracted multiply-adds, so a row's score depended on the heap's
  // layout (in its last bit).
  for (; c < count; ++c) {
    body(0, c);
    __asm__ volatile("" ::: "memory");
  }
}

// The softmax of each member's logits (scaled by `scale`, 1 / temperature) into `out`
// [members, classes], in vector loops as score_logit_row: the maximum first, then e^((z - max)
// scale) and one multiplication by 1 / sum. Returns false when a value is not finite (the row is
// then scored exactly, for its flags).
template <typename T>
QUARRY_CPU_CLONES bool softmax_members(const T* row, int64_t members, int64_t classes,
                                       int64_t member_stride, float scale, float* out) {
  for (int64_t m = 0; m < members; ++m) {
    const T* member = row + m * member_stride;
    float* p = out + m * classes;
    float top[kLanes], probe[kLanes] = {};
    for (int l = 0; l < kLanes; ++l) top[l] = -kernels::kInf;
    for_each_class(classes, [&](int l, int64_t c) {
      const float z = to_float(member[c]);
      top[l] = kernels::larger(top[l], z);
      probe[l] += z - z;  // NaN for a non-finite z
    });
    const float max = fold_lanes(top, [](float a, float b) { return kernels::larger(a, b); });
    if (!(sum_lanes(probe) == 0.0f)) return false;
    float sum[kLanes] = {};
    for_each_class(classes, [&](int l, int64_t c) {
      const float e =
          kernels::polynomial_exp(kernels::larger((to_float(member[c]) - max) * scale, -104.0f));
      p[c] = e;
      sum[l] += e;
    });
    const float inv_sum = static_cast<float>(1.0 / static_cast<double>(sum_lanes(sum)));
#pragma omp simd
    for (int64_t c = 0; c < classes; ++c) p[c] *= inv_sum;
  }
  return true;
}

// A committee row of probabilities in vector loops: consensus_entropy, bald and kl_max, or with
// kVotes the vote measures from each member's argmax. With q the member mean rounded to float
// (q = mean_f) and u = (p - q) / q, the measures are sums of terms that are never negative or
// that the exact differences p - q carry (see divergence_term):
//   bald = (1/M) sum_m sum_c q phi(u)
//   KL(p_m || mean) = sum_c q phi(u) + (p - q) - (1 + u) (mean - q)
// the last term correcting, to first order, for the rounding of the mean. The float phi terms
// keep a relative error near 1e-6; the linear ones are summed in double. Returns false, leaving
// the row to the exact path, when a member's values are out of range or do not sum to 1.
template <bool kVotes, typename T>
QUARRY_CPU_CLONES bool score_probability_committee_row(const T* row, int64_t members,
                                                       int64_t classes, int64_t member_stride,
                                                       MeasureId measure, CommitteeScratch& s,
                                                       float& score) {
  const uint32_t largest_valid_bits = kernels::float_to_bits(1.0f + kernels::kSumTolerance);
  // Raw pointers: loads through the vectors' own pointers would keep the loops from vectorizing.
  double* const mean = s.mean.data();
  double* const rounding = s.rounding.data();
  float* const mean_f = s.mean_f.data();
  float* const inv_mean = s.inv_mean.data();
  if constexpr (!kVotes) std::fill_n(mean, classes, 0.0);
  for (int64_t m = 0; m < members; ++m) {
    const T* member = row + m * member_stride;
    double sum = 0.0;
    uint32_t largest_bits[kLanes] = {}, below_bf16[kLanes] = {};
    // Votes: each lane's largest value and its first class, so ties keep the lowest class.
    float best[kLanes];
    int32_t best_class[kLanes];  // class counts fit: ArgMax indices are int32
    for (int l = 0; l < kLanes; ++l) {
      best[l] = -kernels::kInf;
      best_class[l] = -1;
    }
    for (int64_t begin = 0; begin < classes; begin += kBlock) {
      const int64_t end = std::min(classes, begin + kBlock);
      float block_sum[kLanes] = {};
      for_each_class(end - begin, [&](int l, int64_t i) {
        const int64_t c = begin + i;
        const float p = to_float(member[c]);
        const uint32_t bits = kernels::float_to_bits(p);
        largest_bits[l] = largest_bits[l] > bits ? largest_bits[l] : bits;
        below_bf16[l] |= bits & kernels::kBelowBf16Bits;
        block_sum[l] += p;
        if constexpr (kVotes) {
          const bool better = p > best[l];
          best_class[l] = better ? static_cast<int32_t>(c) : best_class[l];
          best[l] = better ? p : best[l];
        } else {
          mean[c] += p;
        }
      });
      sum += sum_lanes(block_sum);
    }
    const uint32_t largest =
        fold_lanes(largest_bits, [](uint32_t a, uint32_t b) { return a > b ? a : b; });
    const uint32_t below = fold_lanes(below_bf16, [](uint32_t a, uint32_t b) { return a | b; });
    if (largest > largest_valid_bits || kernels::sum_flags(sum, below) != 0) return false;
    if constexpr (kVotes) {
      kernels::ArgMax vote;
      for (int l = 0; l < kLanes; ++l)
        if (best_class[l] >= 0) vote.add(best[l], best_class[l]);
      s.vote[m] = vote.index;
    }
  }
  if constexpr (kVotes) {
    score = kernels::vote_score(measure, tally_votes(s.vote.data(), members));
    return true;
  }
  const double inv_members = 1.0 / static_cast<double>(members);
  float log_mantissa_sum[kLanes] = {}, exponent_sum[kLanes] = {};
  for_each_class(classes, [&](int l, int64_t c) {
    const double q = mean[c] * inv_members;
    const float q_f = static_cast<float>(q);
    mean_f[c] = q_f;
    rounding[c] = q - static_cast<double>(q_f);
    inv_mean[c] = q_f > 0.0f ? 1.0f / q_f : 0.0f;
    const kernels::LogParts log_q = kernels::polynomial_log_parts(q_f);  // finite parts at 0
    log_mantissa_sum[l] += q_f * log_q.log_mantissa;
    exponent_sum[l] += q_f * log_q.exponent;
  });
  const double consensus = -(static_cast<double>(sum_lanes(log_mantissa_sum)) +
                             kLn2 * static_cast<double>(sum_lanes(exponent_sum)));
  double bald = 0.0, kl_max = 0.0;
  if (measure != MeasureId::consensus_entropy) {
    const bool kl = measure == MeasureId::kl_max;
    double divergence_total = 0.0;
    for (int64_t m = 0; m < members; ++m) {
      const T* member = row + m * member_stride;
      float divergence[kLanes] = {};
      double linear[kLanes] = {};
      if (kl) {
        for_each_class(classes, [&](int l, int64_t c) {
          const float difference = to_float(member[c]) - mean_f[c];  // exact within 2x
          const float u = difference * inv_mean[c];
          divergence[l] += mean_f[c] * kernels::relative_divergence(u);
          linear[l] += kernels::linear_kl_term(difference, u, rounding[c]);
        });
        double linear_sum = 0.0;
        for (double x : linear) linear_sum += x;
        kl_max = std::max(kl_max, static_cast<double>(sum_lanes(divergence)) + linear_sum);
      } else {
        for_each_class(classes, [&](int l, int64_t c) {
          const float u = (to_float(member[c]) - mean_f[c]) * inv_mean[c];
          divergence[l] += mean_f[c] * kernels::relative_divergence(u);
        });
      }
      divergence_total += sum_lanes(divergence);
    }
    bald = divergence_total * inv_members;
  }
  score = kernels::committee_score(measure, consensus, bald, kl_max);
  return true;
}

template <typename T>
BadRow score_committee(const PoolView& pool, const ScoreOptions& options, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  const auto measure = static_cast<MeasureId>(options.measure);
  const bool logits = options.logits;
  const float scale = logits ? 1.0f / options.temperature : 1.0f;
  const int64_t members = pool.members, classes = pool.classes;
  const bool votes = kernels::is_vote_measure(measure);
  struct ThreadScratch {
    std::vector<MemberSummary> summary;
    std::vector<double> mean, log_mean;
    CommitteeScratch committee;
  };
  const int64_t work_per_row = members * std::max<int64_t>(classes, 1);
  const int team = team_of(pool.rows, work_per_row);
  std::vector<ThreadScratch> scratch_of_slot;
  scratch_of_slot.reserve(team);
  for (int t = 0; t < team; ++t)
    scratch_of_slot.push_back({std::vector<MemberSummary>(members), std::vector<double>(classes),
                               std::vector<double>(classes),
                               CommitteeScratch(votes ? 0 : classes, members, logits && !votes)});
  constexpr int64_t kRowsPerRange = 64;
  const uint64_t first_bad = parallel_min(
      pool.rows, kRowsPerRange, work_per_row, kernels::kNoBadRow,
      [&](int64_t begin, int64_t end, int slot) {
        ThreadScratch& mine = scratch_of_slot[slot];
        auto& summary = mine.summary;
        auto& mean = mine.mean;
        auto& log_mean = mine.log_mean;
        auto& scratch = mine.committee;
        uint64_t range_bad = kernels::kNoBadRow;
        for (int64_t r = begin; r < end; ++r) {
          const T* row = data + r * pool.row_stride;
          // The vector path: probabilities, and logits turned into probabilities first (votes from
          // logits take the argmax of the logits themselves, below). Rows it finds invalid are
          // scored again by the exact scalar path below, for their flags.
          if (!logits && votes &&
              score_probability_committee_row<true>(row, members, classes, pool.member_stride,
                                                    measure, scratch, out[r]))
            continue;
          if (!logits && !votes &&
              score_probability_committee_row<false>(row, members, classes, pool.member_stride,
                                                     measure, scratch, out[r]))
            continue;
          if (logits && !votes &&
              softmax_members(row, members, classes, pool.member_stride, scale,
                              scratch.probabilities.data()) &&
              score_probability_committee_row<false>(scratch.probabilities.data(), members, classes,
                                                     classes, measure, scratch, out[r]))
            continue;
          auto member_row = [&](int64_t m) { return row + m * pool.member_stride; };
          uint32_t flags = 0;
          for (int64_t m = 0; m < members; ++m) {
            summary[m] = summarize_member(member_row(m), classes, logits, scale);
            flags |= summary[m].flags;
          }
          float score;
          if (kernels::is_vote_measure(measure)) {
            for (int64_t m = 0; m < members; ++m) scratch.vote[m] = summary[m].vote;
            score = kernels::vote_score(measure, tally_votes(scratch.vote.data(), members));
          } else {
            // ln p of member m's class c: exact for logits.
            auto log_probability = [&](int64_t m, int64_t c) {
              const float x = to_float(member_row(m)[c]);
              return logits
                         ? kernels::log_softmax(x, summary[m].max_logit, scale, summary[m].log_sum)
                         : std::log(static_cast<double>(x));
            };
            std::fill(mean.begin(), mean.end(), 0.0);
            for (int64_t m = 0; m < members; ++m)
              for (int64_t c = 0; c < classes; ++c)
                mean[c] += logits ? std::exp(log_probability(m, c)) : to_float(member_row(m)[c]);
            double consensus = 0.0, mean_entropy = 0.0, kl_max = 0.0;
            for (int64_t c = 0; c < classes; ++c) {
              mean[c] /= static_cast<double>(members);
              if (mean[c] > 0.0) consensus -= mean[c] * std::log(mean[c]);
              log_mean[c] = mean[c] > 0.0 ? std::log(mean[c]) : 0.0;
            }
            for (int64_t m = 0; m < members; ++m) mean_entropy += summary[m].entropy;
            mean_entropy /= static_cast<double>(members);
            if (measure == MeasureId::kl_max) {
              for (int64_t m = 0; m < members; ++m) {
                double kl = 0.0;
                for (int64_t c = 0; c < classes; ++c) {
                  const double log_p = log_probability(m, c);
                  const double p = logits ? std::exp(log_p) : to_float(member_row(m)[c]);
                  if (p > 0.0) kl += p * (log_p - log_mean[c]);
                }
                kl_max = std::max(kl_max, kl);
              }
            }
            score = kernels::committee_score(measure, consensus, consensus - mean_entropy, kl_max);
          }
          out[r] = score;
          if (flags) range_bad = std::min(range_bad, kernels::encode_bad_row(r, flags));
        }
        return range_bad;
      });
  return BadRow::from_code(first_bad);
}

template <typename V>
BadRow score_votes(const PoolView& pool, const ScoreOptions& options, float* out) {
  const V* data = static_cast<const V*>(pool.data);
  const auto measure = static_cast<MeasureId>(options.measure);
  // Each thread's copy of a row's votes, to sort.
  const int team = team_of(pool.rows, pool.members);
  std::vector<int64_t> scratch(static_cast<std::size_t>(team) * pool.members);
  const uint64_t first_bad = parallel_min(
      pool.rows, 1024, pool.members, kernels::kNoBadRow, [&](int64_t begin, int64_t end, int slot) {
        int64_t* votes = scratch.data() + slot * pool.members;
        uint64_t range_bad = kernels::kNoBadRow;
        for (int64_t r = begin; r < end; ++r) {
          uint32_t flags = 0;
          for (int64_t m = 0; m < pool.members; ++m) {
            const int64_t v =
                static_cast<int64_t>(data[m * pool.member_stride + r * pool.row_stride]);
            if (v < -1 || (pool.classes > 0 && v >= pool.classes)) flags |= kernels::kBadVote;
            votes[m] = v;
          }
          out[r] = kernels::vote_score(measure, tally_votes(votes, pool.members));
          if (flags) range_bad = std::min(range_bad, kernels::encode_bad_row(r, flags));
        }
        return range_bad;
      });
  return BadRow::from_code(first_bad);
}

// Scores rows [begin, end) and returns the encoded first bad row among them.
template <bool kLogits, bool kEntropy, typename T>
QUARRY_CPU_CLONES uint64_t score_row_range(const PoolView& pool, int64_t begin, int64_t end,
                                           float inv_temperature, MeasureId measure, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  if (pool.classes <= kBlock) {
    if constexpr (kLogits)
      return score_short_logit_rows<kEntropy>(data, pool.row_stride, pool.classes, begin, end,
                                              inv_temperature, measure, out);
    else
      return score_short_probability_rows<kEntropy>(data, pool.row_stride, pool.classes, begin, end,
                                                    measure, out);
  }
  uint64_t first_bad = kernels::kNoBadRow;
  for (int64_t r = begin; r < end; ++r) {
    const T* row = data + r * pool.row_stride;
    record_row(r,
               kLogits ? score_logit_row<kEntropy>(row, pool.classes, inv_temperature, measure)
                       : score_probability_row<kEntropy>(row, pool.classes, measure),
               out, first_bad);
  }
  return first_bad;
}

template <typename T>
BadRow score_single_model(const PoolView& pool, const ScoreOptions& options, float* out) {
  const auto measure = static_cast<MeasureId>(options.measure);
  const float inv_temperature = 1.0f / options.temperature;
  const bool entropy = measure == MeasureId::entropy;
  auto* score_range =
      options.logits
          ? (entropy ? score_row_range<true, true, T> : score_row_range<true, false, T>)
          : (entropy ? score_row_range<false, true, T> : score_row_range<false, false, T>);
  // Ranges of rows large enough that the call costs nothing, small enough that a helper which
  // stops running holds up little work.
  constexpr int64_t kRowsPerRange = 1024;
  return BadRow::from_code(
      parallel_min(pool.rows, kRowsPerRange, std::max<int64_t>(pool.classes, 1), kernels::kNoBadRow,
                   [&](int64_t begin, int64_t end, int) {
                     return score_range(pool, begin, end, inv_temperature, measure, out);
                   }));
}

// Scores with the float element type T: a single model or a committee.
template <typename T>
BadRow score_floats(const PoolView& pool, const ScoreOptions& options, float* out) {
  return is_committee_measure(options.measure) ? score_committee<T>(pool, options, out)
                                               : score_single_model<T>(pool, options, out);
}

// OpenBLAS's thread count, a process-wide setting, found at run time in the FAISS plugin's BLAS
// (which may not be OpenBLAS).
struct OpenBlasThreads {
  void (*set)(int);
  int (*get)();
};
const OpenBlasThreads& openblas_threads() {
  static const OpenBlasThreads functions{
      reinterpret_cast<void (*)(int)>(faiss_plugin_symbol("openblas_set_num_threads")),
      reinterpret_cast<int (*)()>(faiss_plugin_symbol("openblas_get_num_threads"))};
  return functions;
}

// FAISS runs its own OpenMP threads and calls BLAS inside them; a multithreaded OpenBLAS spinning
// beside them slows small k-means calls down by 10x and more, so BLAS runs on one thread while
// k-means does. Overlapping k-means calls share the setting: the first saves it and sets 1, the
// last restores it, under a lock. (Saving and restoring per call raced: a call starting while
// another had set 1 saved that 1 and could restore it last, losing the application's setting.)
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    if (!blas_.set || !blas_.get) return;
    std::lock_guard lock(mutex_);
    if (calls_++ == 0) {
      saved_ = blas_.get();
      blas_.set(1);
    }
    active_ = true;
  }
  ~SingleThreadedBlas() {
    if (!active_) return;
    std::lock_guard lock(mutex_);
    if (--calls_ == 0 && saved_ > 0) blas_.set(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  inline static std::mutex mutex_;
  inline static int calls_ = 0;  // k-means calls running
  inline static int saved_ = 0;  // the setting before the first of them
  const OpenBlasThreads& blas_ = openblas_threads();
  bool active_ = false;
};

class CpuBackend final : public Backend {
 public:
  BackendFacts facts() const override {
    return {Device::cpu, std::numeric_limits<std::size_t>::max(), 0, nullptr};
  }
  std::string describe() const override {
    return "cpu (" + threads_text(automatic_threads()) + ")";
  }

  void score(const ScoreProblem& problem, float* scores_out, const CallContext&) override {
    if (problem.pool.space != MemorySpace::host)
      throw InvalidArgument("the CPU backend needs the pool in host memory");
    // In blocks of rows when the caller may interrupt, polled between them; per-row scores do
    // not depend on the blocks, and the first block with a bad row holds the lowest one.
    const PoolView& pool = problem.pool;
    const int64_t block = interruptible_block_rows(
        pool.rows, pool.members * std::max<int64_t>(pool.classes, 1) +
                       (problem.options.features ? problem.options.features->dim : 0));
    for (int64_t r0 = 0; r0 < pool.rows; r0 += block) {
      poll_interrupt();
      const int64_t rows = std::min(block, pool.rows - r0);
      ScoreOptions opt = problem.options;
      if (EmbeddingView* f = opt.features ? &*opt.features : nullptr) {
        f->data = static_cast<const char*>(f->data) +
                  r0 * f->row_stride * static_cast<int64_t>(dtype_size(f->dtype));
        f->rows = rows;
      }
      BadRow bad =
          score_rows(rows == pool.rows ? pool : rows_of(pool, r0, rows), opt, scores_out + r0);
      if (bad.row >= 0) {
        bad.row += r0;
        throw_bad_row(bad, problem.row_offset);
      }
    }
  }

 private:
  static BadRow score_rows(const PoolView& pool, const ScoreOptions& opt, float* scores_out) {
    BadRow bad;
    if (opt.measure == Measure::egl) {
      if (opt.features->space != MemorySpace::host)
        throw InvalidArgument("the CPU backend needs the features in host memory");
      bad = score_egl_on_cpu(pool, opt, scores_out);
    } else if (is_llm_measure(opt.measure)) {
      bad = score_llm_rows(pool, opt, scores_out);
    } else {
      switch (pool.dtype) {
        case DType::f32:
          bad = score_floats<float>(pool, opt, scores_out);
          break;
        case DType::f16:
          bad = score_floats<kernels::f16_bits>(pool, opt, scores_out);
          break;
        case DType::bf16:
          bad = score_floats<kernels::bf16_bits>(pool, opt, scores_out);
          break;
        case DType::i32:
          bad = score_votes<int32_t>(pool, opt, scores_out);
          break;
        case DType::i64:
          bad = score_votes<int64_t>(pool, opt, scores_out);
          break;
        case DType::f64:  // the pipeline hands backends f64 pools converted to f32
          throw InvalidArgument("the CPU backend reads f64 pools only through the pipeline");
      }
    }
    return bad;
  }

 public:
  Ranked top(const ScoreProblem& problem, int64_t count, const CallContext& call) override {
    // Kept between calls, but never larger than this call's rows: the budget holds.
    if (scores_.capacity() > static_cast<size_t>(problem.pool.rows))
      std::vector<float>().swap(scores_);
    scores_.resize(problem.pool.rows);
    score(problem, scores_.data(), call);
    return rank_top(scores_.data(), problem.pool.rows, count, problem.order, problem.row_offset);
  }

  // A score and a row index per row (rank_top's candidate lists); the results and, for
  // committees, each thread's mean and summary scratch.
  WorkingBytes working_bytes(const ScoreProblem& problem, int64_t count) const override {
    return {working_bytes_fixed_of(problem, count), sizeof(float) + sizeof(int64_t)};
  }
  static int64_t working_bytes_fixed_of(const ScoreProblem& problem, int64_t count) {
    const PoolView& pool = problem.pool;
    if (is_llm_measure(problem.options.measure))
      return count * 2 * (sizeof(int64_t) + sizeof(float)) +
             call_threads() * llm_scratch_bytes_per_thread(pool, problem.options);
    const int64_t committee_scratch =
        pool.members > 1
            ? call_threads() *
                  (pool.classes * (2 * sizeof(double) + CommitteeScratch::kBytesPerClass) +
                   pool.members * (sizeof(MemberSummary) + sizeof(int32_t)) +
                   (problem.options.logits ? pool.members * pool.classes * sizeof(float) : 0))
            : 0;
    return count * 2 * (sizeof(int64_t) + sizeof(float)) + committee_scratch;
  }

  // FAISS's Lloyd iterations from quarry's k-means++ start (or the caller's centroids), then one
  // exact assignment pass for the final clusters and inertia.
  KMeansResult kmeans(const EmbeddingView& points, const std::vector<int64_t>* rows, int64_t k,
                      const KMeansOptions& options, const CallContext&) override {
    if (points.space != MemorySpace::host)
      throw InvalidArgument("the CPU backend needs the embeddings in host memory");
    std::vector<float> x = engine::gather_embeddings(points, rows);
    const int64_t n = rows ? static_cast<int64_t>(rows->size()) : points.rows;
    const int d = static_cast<int>(points.dim);
    // Coordinates whose squared distances would overflow float (FAISS then aborts) or vanish are
    // scaled by a power of two, which leaves the clustering as it is; the results are scaled back.
    std::vector<float> initial = options.initial_centroids;
    const int exponent =
        scale_kmeans_inputs(largest_magnitude(x.data(), static_cast<int64_t>(x.size())), initial, d,
                            options.iterations > 0 && n > k);
    scale_by_power_of_two(x.data(), static_cast<int64_t>(x.size()), exponent);
    const FaissKMeansFn faiss_kmeans_call = faiss_kmeans();  // loads FAISS and its BLAS
    const SingleThreadedBlas single_threaded_blas;
    const OpenMpThreads faiss_threads;
    KMeansResult result;
    result.centroids =
        initial.empty() ? kmeans_plus_plus(x.data(), n, d, k, options.seed) : std::move(initial);
    FaissKMeansJob job;
    job.points = x.data();
    job.n = n;
    job.d = d;
    job.k = k;
    if (options.iterations > 0 && n > k) {
      job.iterations = options.iterations;
      job.seed = static_cast<int>(options.seed & 0x7fffffff);
      result.iterations = options.iterations;
    }
    std::vector<float> distances;
    job.centroids = &result.centroids;
    job.labels = &result.assignments;
    job.distances = &distances;
    faiss_kmeans_call(job);
    for (float dist : distances) result.inertia += dist;
    scale_by_power_of_two(result.centroids.data(), static_cast<int64_t>(result.centroids.size()),
                          -exponent);
    result.inertia = std::ldexp(result.inertia, -2 * exponent);
    return result;
  }

  std::unique_ptr<CenterSearch> center_search(CenterSearchSpec spec, const CallContext&) override {
    if (spec.space == CenterSearchSpec::Space::embeddings) {
      if (spec.points.space != MemorySpace::host)
        throw InvalidArgument("the CPU backend needs the embeddings in host memory");
      return make_cpu_coreset_search(spec.points, std::move(spec.rows));
    }
    if (spec.pool.space != MemorySpace::host || spec.points.space != MemorySpace::host)
      throw InvalidArgument("the CPU backend needs the pool and features in host memory");
    return make_cpu_badge_search(spec.pool, spec.points, std::move(spec.rows));
  }

 private:
  std::vector<float> scores_;  // a chunk's scores, reused across calls
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

// The vector instructions the row loops run with (the clone the loader picked), and the BLAS
// FAISS calls. OpenBLAS picks its kernels from the CPU model at load time; on virtual machines
// that hide the model it can fall back to SSE3 ("Prescott") kernels, 3-4x slower at k-means'
// matrix products (measured: 30 against 133 GFLOP/s on one AVX-512 core). The environment
// variable OPENBLAS_CORETYPE, read when the library loads, overrides the choice.
std::string cpu_description() {
  const std::string threads = threads_text(automatic_threads()) + "; ";
  std::string isa = "baseline x86-64";
#if defined(__GNUC__) && defined(__x86_64__)
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  isa = avx512 ? "AVX-512" : (avx2 ? "AVX2" : isa);
#else
  const bool avx512 = false, avx2 = false;
#endif
  std::string text = threads + "row loops " + isa;
  if (const std::string why = faiss_plugin_error(); !why.empty())
    return text + "; k-means unavailable: " + why;
  auto corename = reinterpret_cast<char* (*)()>(faiss_plugin_symbol("openblas_get_corename"));
  if (!corename) return text;
  const std::string core = corename();
  text += "; BLAS OpenBLAS (" + core + " kernels)";
  static const char* const kPreAvx[] = {"Prescott",  "Core2",  "Penryn",  "Dunnington",
                                        "Nehalem",   "Atom",   "Katmai",  "Coppermine",
                                        "Northwood", "Banias", "Opteron", "Barcelona"};
  const bool dated = std::find(std::begin(kPreAvx), std::end(kPreAvx), core) != std::end(kPreAvx);
  if (dated && (avx512 || avx2))
    text += std::string("; this CPU has ") + (avx512 ? "AVX-512" : "AVX2") +
            ": set OPENBLAS_CORETYPE=" + (avx512 ? "SkylakeX" : "Haswell") +
            " for faster CPU k-means";
  return text;
}

}  // namespace quarry::engine
