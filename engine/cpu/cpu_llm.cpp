// The CPU backend's rows of LLM outputs: ranges of rows on engine/threads' pool, vector loops over
// each row's values, and the per-row math of kernels/measures.hpp. Rows a vector pass finds invalid
// values in are scored again by an exact scalar pass, for their flags.

#include "engine/cpu/cpu_llm.hpp"

#include <algorithm>
#include <vector>

#include "engine/cpu/cpu_vector.hpp"
#include "engine/threads.hpp"
#include "kernels/measures.hpp"

namespace quarry::engine {

namespace {

using kernels::MeasureId;
using kernels::RowResult;
using kernels::to_float;

kernels::ElementType length_type(DType dtype) {
  return dtype == DType::i32 ? kernels::ElementType::i32 : kernels::ElementType::i64;
}

// Steps scored at once by the top-K vector pass, one per lane.
constexpr int kStepLanes = 16;
// Scratch floats of the top-K vector pass: kStepLanes steps of K values, as read and transposed.
int64_t top_k_scratch_floats(const PoolView& pool) {
  return 2 * pool.classes * kStepLanes;
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

// The sum and the minimum in vector lanes, with the maximum and sum(x - x) (NaN for a non-finite
// x) to tell whether every value is finite and <= 0: selects and sums only, so the loop
// vectorizes. Tails are padded with 0: it adds nothing, and every valid value is <= 0, so it moves
// no minimum. Only the row's first `length` values are read.
template <typename T>
QUARRY_ALWAYS_INLINE RowResult score_token_row(const T* row, int64_t length, MeasureId measure) {
  kernels::TokenStats<double> total;
  bool valid = true;
  for (int64_t begin = 0; begin < length; begin += kBlock) {
    const int64_t end = std::min(length, begin + kBlock);
    float sum[kLanes], low[kLanes], high[kLanes], probe[kLanes];
    for (int l = 0; l < kLanes; ++l) sum[l] = low[l] = high[l] = probe[l] = 0.0f;
    auto add = [&](int l, float x) {
      probe[l] += x - x;
      high[l] = kernels::larger(high[l], x);
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
    valid = valid && sum_lanes(probe) == 0.0f &&
            fold_lanes(high, [](float a, float b) { return kernels::larger(a, b); }) <= 0.0f;
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
    record_row(r, result, out, first_bad);
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

// kStepLanes steps at a time, one per lane: the steps' K values are transposed into `transposed`
// ([K][kStepLanes]) so that each pass over them is a vector loop (16 lanes measured faster than 8
// here, 10-12x a one-thread read against 14x: the exp dominates). Two passes, as for logits:
// the maximum (and the second largest, for the margin), then e^(l - max) for the renormalised
// step's statistics (see softmax_entropy). -inf entries give e = 0 and add nothing; lanes past
// the row's length hold 0 (a valid step) and are left out.
template <bool kMargin, typename T>
QUARRY_ALWAYS_INLINE RowResult score_top_k_row(const T* row, int64_t length, int64_t k,
                                               int64_t step_stride, MeasureId measure,
                                               float* transposed) {
  // Each lane's steps: the sums of their entropies and margins and the largest entropy, in float
  // (a lane holds a sixteenth of the row's steps), added in double at the end.
  float entropy_sum[kStepLanes] = {}, entropy_max[kStepLanes] = {}, margin_sum[kStepLanes] = {};
  for (int64_t t0 = 0; t0 < length; t0 += kStepLanes) {
    const int active = static_cast<int>(std::min<int64_t>(kStepLanes, length - t0));
    // Steps are usually contiguous: their values are converted in one vector loop, then
    // transposed as floats.
    float* const flat = transposed + kStepLanes * k;
    if (step_stride == k) {
      const T* first = row + t0 * k;
      const int64_t count = active * k;
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) flat[i] = to_float(first[i]);
    } else {
      for (int l = 0; l < active; ++l)
        for (int64_t j = 0; j < k; ++j) flat[l * k + j] = to_float(row[(t0 + l) * step_stride + j]);
    }
    std::fill(flat + active * k, flat + kStepLanes * k, 0.0f);  // lanes past the length
    for (int64_t j = 0; j < k; ++j)
#pragma omp simd
      for (int l = 0; l < kStepLanes; ++l) transposed[j * kStepLanes + l] = flat[l * k + j];
    float top1[kStepLanes], top2[kStepLanes];
    uint32_t bad[kStepLanes];
    for (int l = 0; l < kStepLanes; ++l) {
      top1[l] = top2[l] = -kernels::kInf;
      bad[l] = 0;
    }
    for (int64_t j = 0; j < k; ++j) {
      const float* v = transposed + j * kStepLanes;
#pragma omp simd
      for (int l = 0; l < kStepLanes; ++l) {
        bad[l] |= v[l] <= 0.0f ? 0u : 1u;  // NaN, +inf, > 0; -inf passes
        if constexpr (kMargin)
          kernels::push_top2(v[l], top1[l], top2[l]);
        else
          top1[l] = kernels::larger(top1[l], v[l]);
      }
    }
    bool valid = true;
    for (int l = 0; l < kStepLanes; ++l) valid = valid && bad[l] == 0 && top1[l] > -kernels::kInf;
    if (!valid) return score_top_k_row_exactly(row, length, k, step_stride, measure);
    float rest[kStepLanes] = {}, ties[kStepLanes] = {}, t[kStepLanes] = {};
    for (int64_t j = 0; j < k; ++j) {
      const float* v = transposed + j * kStepLanes;
#pragma omp simd
      for (int l = 0; l < kStepLanes; ++l) {
        const float below = v[l] - top1[l];
        // e^d is 0 below -87; the clamp keeps d * e finite for d = -inf.
        const float d = kernels::larger(below, -104.0f);
        const float e = kernels::polynomial_exp(d);
        // e^0 = 1 exactly: e - e_rest counts the maxima (a second select on the same compare
        // would keep GCC from vectorizing the loop).
        const float e_rest = below < 0.0f ? e : 0.0f;
        rest[l] += e_rest;
        ties[l] += e - e_rest;
        t[l] += d * e;
      }
    }
#pragma omp simd
    for (int l = 0; l < kStepLanes; ++l) {
      // Every maximum but one belongs to `rest`.
      const float others = rest[l] + (ties[l] - 1.0f);
      // ln(1 + x) = ln u + (x - (u - 1)) / u with u = fl(1 + x): the rounding of u costs nothing.
      const float u = 1.0f + others;
      const float log1p_others = kernels::polynomial_log(u) + (others - (u - 1.0f)) / u;
      const float entropy =
          l < active ? kernels::softmax_entropy(others, t[l], log1p_others) : 0.0f;
      entropy_sum[l] += entropy;
      entropy_max[l] = kernels::larger(entropy_max[l], entropy);
      if constexpr (kMargin) {
        const float r = kernels::polynomial_exp(kernels::larger(top2[l] - top1[l], -104.0f));
        margin_sum[l] += l < active ? kernels::softmax_margin(others, r) : 0.0f;
      }
    }
  }
  kernels::TopKRowStats<double> total;
  for (int l = 0; l < kStepLanes; ++l) {
    total.entropy_sum += entropy_sum[l];
    total.entropy_max = std::max<double>(total.entropy_max, entropy_max[l]);
    total.margin_sum += margin_sum[l];
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
    record_row(r, result, out, first_bad);
  }
  return first_bad;
}

// ---- sampled answers ---------------------------------------------------------------------------

// The row's S answers are widened to double once (exact), checked for non-finite values, and
// their sums and Gram matrix taken in double by vector loops; then kernels::score_samples scores
// it.
template <typename T>
QUARRY_ALWAYS_INLINE RowResult score_samples_row(const T* row, int64_t samples, int64_t dim,
                                                 int64_t sample_stride, MeasureId measure,
                                                 const ScoreOptions& options, double* scratch) {
  double* const values = scratch;
  double* const gram = values + samples * dim;
  double* const sums = gram + samples * samples;
  float probe = 0.0f;  // sum of x - x: NaN for a non-finite x
  for (int64_t i = 0; i < samples; ++i) {
    const T* answer = row + i * sample_stride;
    double* v = values + i * dim;
    double sum = 0.0;
#pragma omp simd reduction(+ : probe, sum)
    for (int64_t x = 0; x < dim; ++x) {
      const float value = to_float(answer[x]);
      v[x] = value;
      probe += value - value;
      sum += value;
    }
    sums[i] = sum;
  }
  if (!(probe == 0.0f)) return {0.0f, kernels::kNonFinite};
  // The upper triangle in tiles of 2 x 4 answers (8 sums in registers, 6 loads per 8 products);
  // a tile reaching below the diagonal computes a lower entry too, which is just as correct.
  int64_t i = 0;
  for (; i + 2 <= samples; i += 2) {
    const double *a0 = values + i * dim, *a1 = a0 + dim;
    int64_t j = i;
    for (; j + 4 <= samples; j += 4) {
      const double *b0 = values + j * dim, *b1 = b0 + dim, *b2 = b1 + dim, *b3 = b2 + dim;
      double d00 = 0.0, d01 = 0.0, d02 = 0.0, d03 = 0.0, d10 = 0.0, d11 = 0.0, d12 = 0.0, d13 = 0.0;
#pragma omp simd reduction(+ : d00, d01, d02, d03, d10, d11, d12, d13)
      for (int64_t x = 0; x < dim; ++x) {
        d00 += a0[x] * b0[x];
        d01 += a0[x] * b1[x];
        d02 += a0[x] * b2[x];
        d03 += a0[x] * b3[x];
        d10 += a1[x] * b0[x];
        d11 += a1[x] * b1[x];
        d12 += a1[x] * b2[x];
        d13 += a1[x] * b3[x];
      }
      double* g0 = gram + i * samples + j;
      double* g1 = g0 + samples;
      g0[0] = d00, g0[1] = d01, g0[2] = d02, g0[3] = d03;
      g1[0] = d10, g1[1] = d11, g1[2] = d12, g1[3] = d13;
    }
    for (; j < samples; ++j) {
      const double* b = values + j * dim;
      double d0 = 0.0, d1 = 0.0;
#pragma omp simd reduction(+ : d0, d1)
      for (int64_t x = 0; x < dim; ++x) {
        d0 += a0[x] * b[x];
        d1 += a1[x] * b[x];
      }
      gram[i * samples + j] = d0;
      gram[(i + 1) * samples + j] = d1;
    }
  }
  if (i < samples) {  // the last answer of an odd S: its own norm
    const double* a = values + i * dim;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int64_t x = 0; x < dim; ++x) dot += a[x] * a[x];
    gram[i * samples + i] = dot;
  }
  for (i = 0; i < samples; ++i)
    for (int64_t j = i + 1; j < samples; ++j) gram[j * samples + i] = gram[i * samples + j];
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
    record_row(r, result, out, first_bad);
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
  const int64_t per_row = std::max<int64_t>(elements_per_row, 1);
  std::vector<std::vector<Scratch>> scratch(team_of(rows, per_row));
  for (auto& mine : scratch) mine.resize(static_cast<size_t>(scratch_elements));
  return BadRow::from_code(parallel_min(rows, rows_per_range, per_row, kernels::kNoBadRow,
                                        [&](int64_t begin, int64_t end, int slot) {
                                          return score_range(begin, end, scratch[slot].data());
                                        }));
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
