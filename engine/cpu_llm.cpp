// The CPU backend's rows of LLM outputs: OpenMP over ranges of rows, vector loops over each row's
// values, and the per-row math of kernels/measures.hpp. Rows a vector pass finds invalid values in
// are scored again by an exact scalar pass, for their flags.

#include "engine/cpu_llm.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "engine/cpu_vector.hpp"
#include "kernels/measures.hpp"

namespace quarry::engine {

namespace {

using kernels::MeasureId;
using kernels::RowResult;
using kernels::to_float;

kernels::ElementType length_type(DType dtype) {
  return dtype == DType::i32 ? kernels::ElementType::i32 : kernels::ElementType::i64;
}

// Scratch floats of the top-K vector pass: kLanes steps of K values, transposed.
int64_t top_k_scratch_floats(const PoolView& pool) {
  return pool.classes * kLanes;
}
// Scratch doubles of a sampled-answers row: the answers, their Gram matrix and their sums.
int64_t samples_scratch_doubles(const PoolView& pool) {
  return pool.members * pool.classes + pool.members * pool.members + pool.members;
}

// ---- token log-probabilities -------------------------------------------------------------------

template <typename T>
QUARRY_NOINLINE RowResult score_token_row_exactly(const T* row, int64_t length, MeasureId measure) {
  kernels::TokenStats<double> stats;
  for (int64_t t = 0; t < length; ++t) stats.add(to_float(row[t]));
  return stats.finish(measure, length);
}

// The sum and the minimum in vector lanes, and whether every value is finite and <= 0 (NaN fails
// both compares). Tails are padded with 0: it adds nothing, and every valid value is <= 0, so it
// moves no minimum. Only the row's first `length` values are read.
template <typename T>
QUARRY_ALWAYS_INLINE RowResult score_token_row(const T* row, int64_t length, MeasureId measure) {
  kernels::TokenStats<double> total;
  bool valid = true;
  for (int64_t begin = 0; begin < length; begin += kBlock) {
    const int64_t end = std::min(length, begin + kBlock);
    float sum[kLanes], low[kLanes];
    uint32_t bad[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      sum[l] = low[l] = 0.0f;
      bad[l] = 0;
    }
    auto add = [&](int l, float x) {
      bad[l] |= x <= 0.0f && x > -kernels::kInf ? 0u : 1u;
      sum[l] += x;
      low[l] = kernels::smaller(low[l], x);
    };
    int64_t t = begin;
    for (; t + kLanes <= end; t += kLanes)
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) add(l, to_float(row[t + l]));
    if (t < end) {
      float tail[kLanes];
      load_tail(row, t, end, 0.0f, tail);
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) add(l, tail[l]);
    }
    valid = valid && fold_lanes(bad, [](uint32_t a, uint32_t b) { return a | b; }) == 0;
    kernels::TokenStats<double> block;
    block.nll = -static_cast<double>(sum_lanes(sum));
    block.min_logprob = fold_lanes(low, [](float a, float b) { return kernels::smaller(a, b); });
    total.merge(block);
  }
  return valid ? total.finish(measure, length) : score_token_row_exactly(row, length, measure);
}

template <typename T>
QUARRY_CPU_CLONES uint64_t score_token_range(const PoolView& pool, int64_t begin, int64_t end,
                                             MeasureId measure, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  const kernels::ElementType lengths = length_type(pool.lengths_dtype);
  uint64_t first_bad = kernels::kNoBadRow;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t length = kernels::row_length(pool.lengths, lengths, r, pool.classes);
    const RowResult result = kernels::length_is_valid(length, pool.classes)
                                 ? score_token_row(data + r * pool.row_stride, length, measure)
                                 : RowResult{0.0f, kernels::kBadLength};
    out[r] = result.score;
    if (result.flags) first_bad = std::min(first_bad, kernels::encode_bad_row(r, result.flags));
  }
  return first_bad;
}

// ---- top-K log-probabilities -------------------------------------------------------------------

template <typename T>
QUARRY_NOINLINE RowResult score_top_k_row_exactly(const T* row, int64_t length, int64_t k,
                                                  int64_t step_stride, MeasureId measure) {
  kernels::TopKRowStats<double> total;
  for (int64_t t = 0; t < length; ++t) {
    kernels::TopKStep<double> step;
    for (int64_t j = 0; j < k; ++j) step.add(to_float(row[t * step_stride + j]));
    total.add_step(step.entropy(), step.margin(), step.step_flags());
  }
  return total.finish(measure, length);
}

// kLanes steps at a time, one per lane: the steps' K values are transposed into `transposed`
// ([K][kLanes]) so that each pass over them is a vector loop. Two passes, as for a row of logits:
// the maximum (and the second largest, for the margin), then e^(l - max) for the renormalised
// step's statistics (see softmax_entropy). -inf entries give e = 0 and add nothing; lanes past
// the row's length hold 0 (a valid step) and are left out.
template <bool kMargin, typename T>
QUARRY_ALWAYS_INLINE RowResult score_top_k_row(const T* row, int64_t length, int64_t k,
                                               int64_t step_stride, MeasureId measure,
                                               float* transposed) {
  kernels::TopKRowStats<double> total;
  for (int64_t t0 = 0; t0 < length; t0 += kLanes) {
    const int active = static_cast<int>(std::min<int64_t>(kLanes, length - t0));
    for (int l = 0; l < kLanes; ++l) {
      if (l < active) {
        const T* step = row + (t0 + l) * step_stride;
        for (int64_t j = 0; j < k; ++j) transposed[j * kLanes + l] = to_float(step[j]);
      } else {
        for (int64_t j = 0; j < k; ++j) transposed[j * kLanes + l] = 0.0f;
      }
    }
    float top1[kLanes], top2[kLanes];
    uint32_t bad[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      top1[l] = top2[l] = -kernels::kInf;
      bad[l] = 0;
    }
    for (int64_t j = 0; j < k; ++j) {
      const float* v = transposed + j * kLanes;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        bad[l] |= v[l] <= 0.0f ? 0u : 1u;  // NaN, +inf, > 0; -inf passes
        if constexpr (kMargin)
          kernels::push_top2(v[l], top1[l], top2[l]);
        else
          top1[l] = kernels::larger(top1[l], v[l]);
      }
    }
    bool valid = true;
    for (int l = 0; l < kLanes; ++l) valid = valid && bad[l] == 0 && top1[l] > -kernels::kInf;
    if (!valid) return score_top_k_row_exactly(row, length, k, step_stride, measure);
    float rest[kLanes] = {}, ties[kLanes] = {}, t[kLanes] = {};
    for (int64_t j = 0; j < k; ++j) {
      const float* v = transposed + j * kLanes;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float below = v[l] - top1[l];
        // e^d is 0 below -87; the clamp keeps d * e finite for d = -inf.
        const float d = kernels::larger(below, -104.0f);
        const float e = kernels::polynomial_exp(d);
        rest[l] += below < 0.0f ? e : 0.0f;
        ties[l] += below == 0.0f ? 1.0f : 0.0f;
        t[l] += d * e;
      }
    }
    float entropy[kLanes], margin[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      // Every maximum but one belongs to `rest`.
      const float others = rest[l] + (ties[l] - 1.0f);
      // ln(1 + x) = ln u + (x - (u - 1)) / u with u = fl(1 + x): the rounding of u costs nothing.
      const float u = 1.0f + others;
      const float log1p_others = kernels::polynomial_log(u) + (others - (u - 1.0f)) / u;
      entropy[l] = kernels::softmax_entropy(others, t[l], log1p_others);
      if constexpr (kMargin) {
        const float r = kernels::polynomial_exp(kernels::larger(top2[l] - top1[l], -104.0f));
        margin[l] = kernels::softmax_margin(others, r);
      } else {
        margin[l] = 0.0f;
      }
    }
    for (int l = 0; l < active; ++l) total.add_step(entropy[l], margin[l], 0);
  }
  return total.finish(measure, length);
}

template <typename T>
QUARRY_CPU_CLONES uint64_t score_top_k_range(const PoolView& pool, int64_t begin, int64_t end,
                                             MeasureId measure, float* scratch, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  const kernels::ElementType lengths = length_type(pool.lengths_dtype);
  const bool margin = measure == MeasureId::mean_token_margin;
  uint64_t first_bad = kernels::kNoBadRow;
  for (int64_t r = begin; r < end; ++r) {
    const T* row = data + r * pool.row_stride;
    const int64_t length = kernels::row_length(pool.lengths, lengths, r, pool.members);
    RowResult result{0.0f, kernels::kBadLength};
    if (kernels::length_is_valid(length, pool.members))
      result = margin ? score_top_k_row<true>(row, length, pool.classes, pool.member_stride,
                                              measure, scratch)
                      : score_top_k_row<false>(row, length, pool.classes, pool.member_stride,
                                               measure, scratch);
    out[r] = result.score;
    if (result.flags) first_bad = std::min(first_bad, kernels::encode_bad_row(r, result.flags));
  }
  return first_bad;
}

// ---- sampled answers ---------------------------------------------------------------------------

// The row's S answers are widened to double once (exact), checked for non-finite values, and
// their sums and Gram matrix taken in double by vector loops, four dot products per pass over an
// answer; then kernels::score_samples scores it.
template <typename T>
QUARRY_ALWAYS_INLINE RowResult score_samples_row(const T* row, int64_t samples, int64_t dim,
                                                 int64_t sample_stride, MeasureId measure,
                                                 const ScoreOptions& options, double* scratch) {
  double* const values = scratch;
  double* const gram = values + samples * dim;
  double* const sums = gram + samples * samples;
  float probe[kLanes] = {};
  for (int64_t i = 0; i < samples; ++i) {
    const T* answer = row + i * sample_stride;
    double* v = values + i * dim;
    int64_t j = 0;
    for (; j + kLanes <= dim; j += kLanes)
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float x = to_float(answer[j + l]);
        v[j + l] = x;
        probe[l] += x - x;  // NaN for a non-finite x
      }
    for (; j < dim; ++j) {
      const float x = to_float(answer[j]);
      v[j] = x;
      probe[0] += x - x;
    }
  }
  if (!(sum_lanes(probe) == 0.0f)) return {0.0f, kernels::kNonFinite};
  for (int64_t i = 0; i < samples; ++i) {
    const double* a = values + i * dim;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t x = 0; x < dim; ++x) sum += a[x];
    sums[i] = sum;
    int64_t j = i;
    for (; j + 4 <= samples; j += 4) {
      const double *b0 = values + j * dim, *b1 = b0 + dim, *b2 = b1 + dim, *b3 = b2 + dim;
      double d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
      for (int64_t x = 0; x < dim; ++x) {
        d0 += a[x] * b0[x];
        d1 += a[x] * b1[x];
        d2 += a[x] * b2[x];
        d3 += a[x] * b3[x];
      }
      gram[i * samples + j] = d0;
      gram[i * samples + j + 1] = d1;
      gram[i * samples + j + 2] = d2;
      gram[i * samples + j + 3] = d3;
    }
    for (; j < samples; ++j) {
      const double* b = values + j * dim;
      double dot = 0.0;
#pragma omp simd reduction(+ : dot)
      for (int64_t x = 0; x < dim; ++x) dot += a[x] * b[x];
      gram[i * samples + j] = dot;
    }
    for (j = i + 1; j < samples; ++j) gram[j * samples + i] = gram[i * samples + j];
  }
  return {kernels::score_samples(measure, gram, sums, static_cast<int>(samples), dim,
                                 options.eigenscore_alpha, options.semantic_threshold, 0, 1,
                                 kernels::NoSync{}),
          0};
}

template <typename T>
QUARRY_CPU_CLONES uint64_t score_samples_range(const PoolView& pool, int64_t begin, int64_t end,
                                               MeasureId measure, const ScoreOptions& options,
                                               double* scratch, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  uint64_t first_bad = kernels::kNoBadRow;
  for (int64_t r = begin; r < end; ++r) {
    const RowResult result =
        score_samples_row(data + r * pool.row_stride, pool.members, pool.classes,
                          pool.member_stride, measure, options, scratch);
    out[r] = result.score;
    if (result.flags) first_bad = std::min(first_bad, kernels::encode_bad_row(r, result.flags));
  }
  return first_bad;
}

// Runs score_range(begin, end, scratch) over ranges of about `range_elements` values each, in
// parallel, with `scratch_elements` of per-thread scratch, and returns the lowest bad row.
template <typename Scratch, typename ScoreRange>
BadRow score_ranges(int64_t rows, int64_t elements_per_row, int64_t scratch_elements,
                    ScoreRange score_range) {
  // Ranges large enough that the call costs nothing, small enough to balance the threads.
  constexpr int64_t kRangeElements = int64_t{1} << 18;
  const int64_t rows_per_range =
      std::clamp<int64_t>(kRangeElements / std::max<int64_t>(elements_per_row, 1), 1, 1024);
  const int64_t ranges = (rows + rows_per_range - 1) / rows_per_range;
  uint64_t first_bad = kernels::kNoBadRow;
#pragma omp parallel reduction(min : first_bad)
  {
    std::vector<Scratch> scratch(static_cast<size_t>(scratch_elements));
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < ranges; ++i) {
      const int64_t begin = i * rows_per_range;
      first_bad = std::min(
          first_bad, score_range(begin, std::min(rows, begin + rows_per_range), scratch.data()));
    }
  }
  return BadRow::from_code(first_bad);
}

template <typename T>
BadRow score_typed(const PoolView& pool, const ScoreOptions& options, float* out) {
  const auto measure = static_cast<MeasureId>(options.measure);
  const int64_t elements_per_row = pool.members * pool.classes;
  switch (pool_kind(options.measure)) {
    case PoolKind::token_logprobs:
      return score_ranges<char>(pool.rows, elements_per_row, 0,
                                [&](int64_t begin, int64_t end, char*) {
                                  return score_token_range<T>(pool, begin, end, measure, out);
                                });
    case PoolKind::top_logprobs:
      return score_ranges<float>(pool.rows, elements_per_row, top_k_scratch_floats(pool),
                                 [&](int64_t begin, int64_t end, float* scratch) {
                                   return score_top_k_range<T>(pool, begin, end, measure, scratch,
                                                               out);
                                 });
    default:
      return score_ranges<double>(pool.rows, elements_per_row, samples_scratch_doubles(pool),
                                  [&](int64_t begin, int64_t end, double* scratch) {
                                    return score_samples_range<T>(pool, begin, end, measure,
                                                                  options, scratch, out);
                                  });
  }
}

}  // namespace

BadRow score_llm_rows(const PoolView& pool, const ScoreOptions& options, float* out) {
  switch (pool.dtype) {
    case DType::f16:
      return score_typed<kernels::f16_bits>(pool, options, out);
    case DType::bf16:
      return score_typed<kernels::bf16_bits>(pool, options, out);
    default:
      return score_typed<float>(pool, options, out);
  }
}

int64_t llm_scratch_bytes_per_thread(const PoolView& pool, const ScoreOptions& options) {
  switch (pool_kind(options.measure)) {
    case PoolKind::top_logprobs:
      return top_k_scratch_floats(pool) * static_cast<int64_t>(sizeof(float));
    case PoolKind::samples:
      return samples_scratch_doubles(pool) * static_cast<int64_t>(sizeof(double));
    default:
      return 0;
  }
}

}  // namespace quarry::engine
