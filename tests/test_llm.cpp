// LLM outputs on every backend: token log-probabilities and top-K log-probabilities per step with
// ragged lengths, and embeddings of sampled answers. Closed forms, an independent float64
// reference on random inputs, bad input, chunked = in-memory, selection; CPU-vs-GPU parity.

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/measures.hpp"  // to_float: the values a 16-bit pool holds
#include "test_util.hpp"

namespace quarry::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

constexpr Measure kTokenMeasures[] = {Measure::sequence_nll, Measure::perplexity,
                                      Measure::min_token_prob};
constexpr Measure kTopKMeasures[] = {Measure::mean_token_entropy, Measure::max_token_entropy,
                                     Measure::mean_token_margin};
constexpr Measure kSampleMeasures[] = {Measure::sample_dispersion, Measure::eigenscore,
                                       Measure::semantic_sets, Measure::semantic_entropy};

ScoreOptions options_for(Measure measure) {
  ScoreOptions options;
  options.measure = measure;
  return options;
}

// ---- float64 references: plain double loops, independent of kernels/measures.hpp -------------

double reference_token(Measure measure, const float* row, int64_t length) {
  double sum = 0.0, low = std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < length; ++t) {
    sum += row[t];
    low = std::min(low, static_cast<double>(row[t]));
  }
  if (measure == Measure::sequence_nll) return -sum;
  if (measure == Measure::perplexity) return -sum / static_cast<double>(length);
  return -low;  // min_token_prob: the largest surprisal
}

// Each step's returned probabilities e^l renormalised to sum to 1.
double reference_top_k(Measure measure, const float* row, int64_t length, int64_t k) {
  double entropy_sum = 0.0, entropy_max = 0.0, margin_sum = 0.0;
  for (int64_t t = 0; t < length; ++t) {
    std::vector<double> p;
    for (int64_t j = 0; j < k; ++j)
      if (row[t * k + j] != -kInf) p.push_back(std::exp(static_cast<double>(row[t * k + j])));
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    double entropy = 0.0;
    for (double& q : p) {
      q /= total;
      if (q > 0.0) entropy -= q * std::log(q);
    }
    std::sort(p.rbegin(), p.rend());
    entropy_sum += entropy;
    entropy_max = std::max(entropy_max, entropy);
    margin_sum += 1.0 - (p[0] - (p.size() > 1 ? p[1] : 0.0));
  }
  if (measure == Measure::max_token_entropy) return entropy_max;
  if (measure == Measure::mean_token_margin) return margin_sum / static_cast<double>(length);
  return entropy_sum / static_cast<double>(length);
}

// One row of S answers of D dimensions. eigenscore = ln det(C) / S by Cholesky, with C = E_c E_c^T
// + alpha I and E_c each answer minus the mean of its coordinates (needs alpha > 0); semantic sets
// by depth-first search.
double reference_samples(Measure measure, const float* row, int64_t s, int64_t d, double alpha,
                         double threshold) {
  auto dot = [&](int64_t i, int64_t j) {
    double sum = 0.0;
    for (int64_t x = 0; x < d; ++x)
      sum += static_cast<double>(row[i * d + x]) * static_cast<double>(row[j * d + x]);
    return sum;
  };
  std::vector<double> cosines(s * s);
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < s; ++j) {
      const double ni = std::sqrt(dot(i, i)), nj = std::sqrt(dot(j, j));
      cosines[i * s + j] = ni > 0.0 && nj > 0.0 ? dot(i, j) / (ni * nj) : 0.0;
    }
  auto cosine = [&](int64_t i, int64_t j) { return cosines[i * s + j]; };
  if (measure == Measure::sample_dispersion) {
    if (s == 1) return 0.0;
    double sum = 0.0;
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = i + 1; j < s; ++j) sum += cosine(i, j);
    return 1.0 - sum / (static_cast<double>(s * (s - 1)) / 2.0);
  }
  if (measure == Measure::eigenscore) {
    std::vector<double> centred(s * d), c(s * s);
    for (int64_t i = 0; i < s; ++i) {
      double mean = 0.0;
      for (int64_t x = 0; x < d; ++x) mean += row[i * d + x];
      mean /= static_cast<double>(d);
      for (int64_t x = 0; x < d; ++x) centred[i * d + x] = row[i * d + x] - mean;
    }
    for (int64_t i = 0; i < s; ++i)
      for (int64_t j = 0; j < s; ++j) {
        double sum = i == j ? alpha : 0.0;
        for (int64_t x = 0; x < d; ++x) sum += centred[i * d + x] * centred[j * d + x];
        c[i * s + j] = sum;
      }
    double log_det = 0.0;  // Cholesky in place: C = L L^T
    for (int64_t j = 0; j < s; ++j) {
      for (int64_t k = 0; k < j; ++k) c[j * s + j] -= c[j * s + k] * c[j * s + k];
      const double pivot = std::sqrt(c[j * s + j]);
      log_det += 2.0 * std::log(pivot);
      for (int64_t i = j + 1; i < s; ++i) {
        for (int64_t k = 0; k < j; ++k) c[i * s + j] -= c[i * s + k] * c[j * s + k];
        c[i * s + j] /= pivot;
      }
    }
    return log_det / static_cast<double>(s);
  }
  std::vector<int> component(s, -1);
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < s; ++start) {
    if (component[start] >= 0) continue;
    const int id = static_cast<int>(sizes.size());
    sizes.push_back(0);
    std::vector<int64_t> stack = {start};
    component[start] = id;
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      ++sizes[id];
      for (int64_t j = 0; j < s; ++j)
        if (component[j] < 0 && j != i && cosine(i, j) >= threshold) {
          component[j] = id;
          stack.push_back(j);
        }
    }
  }
  if (measure == Measure::semantic_sets) return static_cast<double>(sizes.size());
  double entropy = 0.0;
  for (int64_t n : sizes) {
    const double share = static_cast<double>(n) / static_cast<double>(s);
    entropy -= share * std::log(share);
  }
  return entropy;
}

// ---- random inputs -----------------------------------------------------------------------------

// Values as a pool of `dtype` holds them: `data` for the backends, `values` decoded for the
// references.
struct Encoded {
  std::vector<float> values;
  std::vector<uint16_t> half;
  DType dtype;
  const void* data() const {
    return dtype == DType::f32 ? static_cast<const void*>(values.data()) : half.data();
  }
};

Encoded encode_as(const std::vector<float>& values, DType dtype) {
  Encoded e{values, {}, dtype};
  if (dtype == DType::f32) return e;
  e.half = encode(values, dtype);
  for (size_t i = 0; i < values.size(); ++i)
    e.values[i] = dtype == DType::f16 ? kernels::to_float(kernels::f16_bits{e.half[i]})
                                      : kernels::to_float(kernels::bf16_bits{e.half[i]});
  return e;
}

std::vector<int64_t> random_lengths(int64_t n, int64_t steps, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> length(1, steps);
  std::vector<int64_t> lengths(n);
  for (int64_t& l : lengths) l = length(rng);
  lengths[0] = steps;  // one full row
  if (n > 1) lengths[1] = 1;
  return lengths;
}

// Padding past a row's length: values that would be invalid if they were read.
float padding(int64_t i) {
  const float values[] = {kNaN, kInf, 1.5f, -kInf};
  return values[i % 4];
}

// [n, steps] token log-probabilities: ln of uniform values and some exact zeros.
std::vector<float> random_token_logprobs(int64_t n, int64_t steps,
                                         const std::vector<int64_t>& lengths,
                                         std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(1e-6, 1.0);
  std::vector<float> v(n * steps);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t t = 0; t < steps; ++t)
      v[r * steps + t] = t >= lengths[r]       ? padding(r + t)
                         : uniform(rng) < 0.05 ? 0.0f
                                               : static_cast<float>(std::log(uniform(rng)));
  return v;
}

// [n, steps, k] top-K log-probabilities: each step returns 1..K of a distribution's
// probabilities (summing to less than 1, as a truncated top-K does), the others -inf, shuffled.
std::vector<float> random_top_logprobs(int64_t n, int64_t steps, int64_t k,
                                       const std::vector<int64_t>& lengths, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::uniform_int_distribution<int64_t> returned(1, k);
  std::vector<float> v(n * steps * k);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t t = 0; t < steps; ++t) {
      float* step = &v[(r * steps + t) * k];
      if (t >= lengths[r]) {
        std::fill_n(step, k, padding(r + t));
        continue;
      }
      const int64_t count = returned(rng);
      std::vector<double> p(count);
      double sum = uniform(rng);  // the probability of the tokens not returned
      for (double& x : p) sum += (x = std::pow(uniform(rng), 4.0) + 1e-9);
      for (int64_t j = 0; j < k; ++j)
        step[j] = j < count ? static_cast<float>(std::log(p[j] / sum)) : -kInf;
      std::shuffle(step, step + k, rng);
    }
  return v;
}

// [n, s, d] answers around 1..s centres (cosine near 1 within a cluster, near 0 between
// clusters for large d), with a zero answer in some rows.
std::vector<float> random_samples(int64_t n, int64_t s, int64_t d, std::mt19937_64& rng,
                                  bool zero_answers = true) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> clusters(1, s);
  std::vector<float> v(n * s * d);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t c = clusters(rng);
    std::vector<float> centres(c * d);
    for (float& x : centres) x = normal(rng) + 0.3f;  // a nonzero mean over D
    for (int64_t i = 0; i < s; ++i) {
      const int64_t centre = i % c;
      for (int64_t x = 0; x < d; ++x)
        v[(r * s + i) * d + x] = centres[centre * d + x] + 0.05f * normal(rng);
    }
    if (zero_answers && r % 7 == 3)
      std::fill_n(&v[(r * s + s - 1) * d], d, 0.0f);  // the zero vector: similarity 0
  }
  return v;
}

class Llm : public OnEveryBackend {
 protected:
  std::vector<float> run(const PoolView& view, Measure measure, double alpha = 1e-3,
                         double threshold = 0.9) {
    ScoreOptions options = options_for(measure);
    options.eigenscore_alpha = alpha;
    options.semantic_threshold = threshold;
    return score(*resources_, view, options);
  }
  // The InvalidInput's row, or -2 when scoring succeeded.
  int64_t bad_row(const PoolView& view, Measure measure, std::string* message = nullptr) {
    try {
      run(view, measure);
    } catch (const InvalidInput& e) {
      if (message) *message = e.what();
      return e.row();
    }
    return -2;
  }
};

QUARRY_ON_EVERY_BACKEND(Llm);

// ---- closed forms ------------------------------------------------------------------------------

TEST_P(Llm, TokenMeasuresOfHandComputedRows) {
  const int64_t steps = 4;
  // Rows of lengths 1..4; padding past each length is invalid and never read.
  const std::vector<float> v = {-1.0f,  kNaN,   kInf,   2.0f,  //
                                -0.5f,  -1.5f,  -kInf,  kNaN,  //
                                0.0f,   -2.0f,  -1.0f,  3.0f,  //
                                -0.25f, -0.25f, -0.25f, -0.25f};
  const std::vector<int64_t> lengths = {1, 2, 3, 4};
  const PoolView view = PoolView::token_logprobs(v.data(), DType::f32, 4, steps, lengths.data());
  const double want_nll[] = {1.0, 2.0, 3.0, 1.0};
  const double want_perplexity[] = {1.0, 1.0, 1.0, 0.25};
  // min_token_prob: the largest surprisal, -min l.
  const double want_min_prob[] = {1.0, 1.5, 2.0, 0.25};
  const auto nll = run(view, Measure::sequence_nll);
  const auto perplexity = run(view, Measure::perplexity);
  const auto min_prob = run(view, Measure::min_token_prob);
  for (int r = 0; r < 4; ++r) {
    SCOPED_TRACE("row " + std::to_string(r));
    EXPECT_TRUE(near_rel(nll[r], want_nll[r], 1e-6f));
    EXPECT_TRUE(near_rel(perplexity[r], want_perplexity[r], 1e-6f));
    EXPECT_TRUE(near_rel(min_prob[r], want_min_prob[r], 1e-6f));
  }
  // A certain token (l = 0) alone: every measure 0, and no -0.
  const std::vector<float> certain = {0.0f, -0.0f};
  for (Measure m : kTokenMeasures) {
    const float s = run(PoolView::token_logprobs(certain.data(), DType::f32, 1, 2), m)[0];
    EXPECT_EQ(s, 0.0f) << to_string(m);
    EXPECT_FALSE(std::signbit(s)) << to_string(m);
  }
  // Confident rows keep their relative precision: 1 - e^-1e-7 = 1e-7, not 0.
  const std::vector<float> confident = {-1e-7f, -2e-7f, -3e-7f};
  const PoolView view3 = PoolView::token_logprobs(confident.data(), DType::f32, 1, 3);
  EXPECT_TRUE(near_rel(run(view3, Measure::min_token_prob)[0], 3e-7, 1e-5f, 0.0f));
  EXPECT_TRUE(near_rel(run(view3, Measure::perplexity)[0], 2e-7, 1e-5f, 0.0f));
}

// 1 - p in float is 1 for every p < 6e-8: min_token_prob keeps such rows apart, in order.
TEST_P(Llm, MinTokenProbKeepsTheOrderOfVeryUnlikelyTokens) {
  // Least likely tokens p = e^-20 (2e-9), e^-40, e^-17 (4e-8), e^-60; all 1 - p round to 1.
  const std::vector<float> v = {-0.1f, -20.0f, -40.0f, -0.2f, -17.0f, -0.3f, -0.5f, -60.0f};
  const PoolView view = PoolView::token_logprobs(v.data(), DType::f32, 4, 2);
  const auto s = run(view, Measure::min_token_prob);
  const double want[] = {20.0, 40.0, 17.0, 60.0};
  for (int r = 0; r < 4; ++r) EXPECT_TRUE(near_rel(s[r], want[r], 1e-6f)) << "row " << r;
  EXPECT_GT(s[3], s[1]);
  EXPECT_GT(s[1], s[0]);
  EXPECT_GT(s[0], s[2]);
}

TEST_P(Llm, WithoutLengthsEveryStepCounts) {
  const std::vector<float> v = {-1.0f, -2.0f, -3.0f, -0.5f, -0.5f, -0.5f};
  const auto nll = run(PoolView::token_logprobs(v.data(), DType::f32, 2, 3), Measure::sequence_nll);
  EXPECT_TRUE(near_rel(nll[0], 6.0, 1e-6f));
  EXPECT_TRUE(near_rel(nll[1], 1.5, 1e-6f));
  const std::vector<int32_t> lengths32 = {2, 3};  // i32 lengths
  const auto short_nll =
      run(PoolView::token_logprobs(v.data(), DType::f32, 2, 3, lengths32.data(), DType::i32),
          Measure::sequence_nll);
  EXPECT_TRUE(near_rel(short_nll[0], 3.0, 1e-6f));
  EXPECT_TRUE(near_rel(short_nll[1], 1.5, 1e-6f));
}

TEST_P(Llm, TopKStepsRenormaliseTheReturnedProbabilities) {
  for (int64_t k : {1, 2, 5, 20, 33}) {
    SCOPED_TRACE("K = " + std::to_string(k));
    // Row 0: uniform K-way steps, given as unnormalised log-probabilities (-7 each): after
    // renormalising, entropy ln K and margin 1 (p1 = p2; K = 1: margin 0).
    // Row 1: one-hot steps (one returned entry, the others -inf): entropy and margin 0.
    // Row 2: a uniform step, then a one-hot step: mean ln K / 2, max ln K.
    const int64_t steps = 3, rows = 3;
    std::vector<float> v(rows * steps * k, -kInf);
    for (int64_t t = 0; t < steps; ++t) {
      std::fill_n(&v[(0 * steps + t) * k], k, -7.0f);
      v[(1 * steps + t) * k + (t * 7) % k] = -0.3f;
    }
    std::fill_n(&v[(2 * steps + 0) * k], k, std::log(1.0f / static_cast<float>(k)));
    v[(2 * steps + 1) * k + k - 1] = 0.0f;
    const std::vector<int64_t> lengths = {3, 3, 2};  // row 2's third step is padding
    const PoolView view =
        PoolView::top_logprobs(v.data(), DType::f32, rows, steps, k, lengths.data());
    const double ln_k = std::log(static_cast<double>(k));
    const auto mean = run(view, Measure::mean_token_entropy);
    const auto max = run(view, Measure::max_token_entropy);
    const auto margin = run(view, Measure::mean_token_margin);
    EXPECT_TRUE(near_rel(mean[0], ln_k, 1e-6f));
    EXPECT_TRUE(near_rel(max[0], ln_k, 1e-6f));
    EXPECT_TRUE(near_rel(margin[0], k == 1 ? 0.0 : 1.0, 1e-6f));
    EXPECT_EQ(mean[1], 0.0f);
    EXPECT_EQ(max[1], 0.0f);
    EXPECT_EQ(margin[1], 0.0f);
    EXPECT_TRUE(near_rel(mean[2], ln_k / 2, 1e-6f));
    EXPECT_TRUE(near_rel(max[2], ln_k, 1e-6f));
    EXPECT_TRUE(near_rel(margin[2], k == 1 ? 0.0 : 0.5, 1e-6f));
  }
  // Two of three returned: (0.5, 0.3) renormalise to (0.625, 0.375), in either order.
  const std::vector<float> v = {std::log(0.5f), -kInf,          std::log(0.3f),
                                std::log(0.3f), std::log(0.5f), -kInf};
  const PoolView view = PoolView::top_logprobs(v.data(), DType::f32, 2, 1, 3);
  const double h = -(0.625 * std::log(0.625) + 0.375 * std::log(0.375));
  for (float s : run(view, Measure::mean_token_entropy)) EXPECT_TRUE(near_rel(s, h, 1e-6f));
  for (float s : run(view, Measure::mean_token_margin)) EXPECT_TRUE(near_rel(s, 0.75, 1e-6f));
}

// Answers of D = 2S dimensions where answer i is a at coordinate 2i and -a at 2i + 1: mutually
// orthogonal, each with mean 0 over its coordinates.
std::vector<float> orthogonal_answers(int64_t s, const std::vector<float>& a) {
  std::vector<float> v(s * 2 * s, 0.0f);
  for (int64_t i = 0; i < s; ++i) {
    v[i * 2 * s + 2 * i] = a[i];
    v[i * 2 * s + 2 * i + 1] = -a[i];
  }
  return v;
}

TEST_P(Llm, SampleMeasuresOfIdenticalAndOrthogonalAnswers) {
  const double alpha = 1e-3;
  for (int64_t s : {1, 2, 3, 10, 64}) {
    SCOPED_TRACE("S = " + std::to_string(s));
    // Identical answers e: one set, dispersion 0; the centred Gram is |e_c|^2 11^T, so C has
    // eigenvalues S |e_c|^2 + alpha and alpha (S - 1 times).
    const std::vector<float> e = {1.0f, 2.0f, -0.5f, 0.25f, 3.0f};
    const int64_t d = static_cast<int64_t>(e.size());
    std::vector<float> same(s * d);
    for (int64_t i = 0; i < s; ++i) std::copy(e.begin(), e.end(), same.begin() + i * d);
    const PoolView identical = PoolView::samples(same.data(), DType::f32, 1, s, d);
    const double mean = 5.75 / 5, centred_norm2 = [&] {
      double n2 = 0.0;
      for (float x : e) n2 += (x - mean) * (x - mean);
      return n2;
    }();
    const double sd = static_cast<double>(s);
    EXPECT_TRUE(near_rel(run(identical, Measure::sample_dispersion)[0], 0.0, 0.0f, 1e-6f));
    EXPECT_EQ(run(identical, Measure::semantic_sets)[0], 1.0f);
    EXPECT_EQ(run(identical, Measure::semantic_entropy)[0], 0.0f);
    EXPECT_TRUE(near_rel(run(identical, Measure::eigenscore)[0],
                         (std::log(sd * centred_norm2 + alpha) + (sd - 1) * std::log(alpha)) / sd,
                         1e-6f));
    // Orthogonal answers with mean 0 over D: S sets, dispersion 1 (S = 1: 0), entropy ln S, and
    // C = diag(|e_i|^2) + alpha I.
    std::vector<float> a(s);
    for (int64_t i = 0; i < s; ++i) a[i] = 0.5f + 0.25f * static_cast<float>(i);
    const auto ortho = orthogonal_answers(s, a);
    const PoolView orthogonal = PoolView::samples(ortho.data(), DType::f32, 1, s, 2 * s);
    double want = 0.0;
    for (float x : a) want += std::log(2.0 * x * x + alpha);
    EXPECT_TRUE(
        near_rel(run(orthogonal, Measure::sample_dispersion)[0], s == 1 ? 0.0 : 1.0, 1e-6f));
    EXPECT_EQ(run(orthogonal, Measure::semantic_sets)[0], static_cast<float>(s));
    EXPECT_TRUE(near_rel(run(orthogonal, Measure::semantic_entropy)[0], std::log(sd), 1e-6f));
    EXPECT_TRUE(near_rel(run(orthogonal, Measure::eigenscore)[0], want / sd, 1e-6f));
  }
}

TEST_P(Llm, SampleEdgeCases) {
  // D = 1: J = 0, so every eigenvalue is alpha and eigenscore = ln alpha.
  const std::vector<float> one_dim = {3.0f, -1.0f, 0.5f};
  const PoolView d1 = PoolView::samples(one_dim.data(), DType::f32, 1, 3, 1);
  EXPECT_TRUE(near_rel(run(d1, Measure::eigenscore, 1e-3)[0], std::log(1e-3), 1e-6f));
  EXPECT_TRUE(near_rel(run(d1, Measure::eigenscore, 0.5)[0], std::log(0.5), 1e-6f));
  // alpha = 0: the zero eigenvalues count as 1e-10 (Jacobi's eigenvalues, not ln det).
  EXPECT_TRUE(near_rel(run(d1, Measure::eigenscore, 0.0)[0], std::log(1e-10), 1e-6f));
  const std::vector<float> same = {1.0f, 2.0f, 4.0f, 1.0f, 2.0f, 4.0f, 1.0f, 2.0f, 4.0f};
  {
    // Three identical answers (1, 2, 4): mean 7/3, |e_c|^2 = 14/3; eigenvalues 3 |e_c|^2 = 14
    // and 0 twice.
    const PoolView identical = PoolView::samples(same.data(), DType::f32, 1, 3, 3);
    EXPECT_TRUE(near_rel(run(identical, Measure::eigenscore, 0.0)[0],
                         (std::log(14.0) + 2 * std::log(1e-10)) / 3, 1e-6f));
    // A Gram matrix with eigenvalues 14 + 1e-12 and 1e-12: below 1e-10 they count as 1e-10.
    EXPECT_TRUE(near_rel(run(identical, Measure::eigenscore, 1e-12)[0],
                         (std::log(14.0) + 2 * std::log(1e-10)) / 3, 1e-6f));
  }
  // S = 2: cosine 0.96 joins the two at threshold 0.9, not at 0.97; dispersion 1 - cos.
  const std::vector<float> pair = {1.0f, 0.0f, 0.96f, 0.28f};  // |second| = 1
  const PoolView two = PoolView::samples(pair.data(), DType::f32, 1, 2, 2);
  EXPECT_TRUE(near_rel(run(two, Measure::sample_dispersion)[0], 0.04, 1e-5f));
  EXPECT_EQ(run(two, Measure::semantic_sets, 1e-3, 0.9)[0], 1.0f);
  EXPECT_EQ(run(two, Measure::semantic_sets, 1e-3, 0.97)[0], 2.0f);
  EXPECT_TRUE(near_rel(run(two, Measure::semantic_entropy, 1e-3, 0.97)[0], std::log(2.0), 1e-6f));
  // A zero answer has similarity 0 to every answer: [v, v, 0] has dispersion 1 - 1/3, two sets
  // at threshold 0.9, one at threshold <= 0.
  const std::vector<float> with_zero = {1.0f, 2.0f, 1.0f, 2.0f, 0.0f, 0.0f};
  const PoolView zero = PoolView::samples(with_zero.data(), DType::f32, 1, 3, 2);
  EXPECT_TRUE(near_rel(run(zero, Measure::sample_dispersion)[0], 2.0 / 3.0, 1e-6f));
  EXPECT_EQ(run(zero, Measure::semantic_sets)[0], 2.0f);
  EXPECT_TRUE(near_rel(run(zero, Measure::semantic_entropy)[0],
                       -(2.0 / 3 * std::log(2.0 / 3) + 1.0 / 3 * std::log(1.0 / 3)), 1e-6f));
  EXPECT_EQ(run(zero, Measure::semantic_sets, 1e-3, 0.0)[0], 1.0f);
  // All answers zero: dispersion 1, S sets, eigenscore ln alpha.
  const std::vector<float> zeros(4 * 3, 0.0f);
  const PoolView all_zero = PoolView::samples(zeros.data(), DType::f32, 1, 4, 3);
  EXPECT_TRUE(near_rel(run(all_zero, Measure::sample_dispersion)[0], 1.0, 1e-6f));
  EXPECT_EQ(run(all_zero, Measure::semantic_sets)[0], 4.0f);
  EXPECT_TRUE(near_rel(run(all_zero, Measure::eigenscore)[0], std::log(1e-3), 1e-6f));
}

// ---- random inputs against the float64 reference -----------------------------------------------

TEST_P(Llm, TokenMeasuresMatchTheFloat64Reference) {
  auto rng = seeded_rng(16001);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (int64_t steps : {1, 7, 8, 37, 300, 2100}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " T = " + std::to_string(steps));
      const int64_t n = steps > 1000 ? 40 : 300;
      const auto lengths = random_lengths(n, steps, rng);
      std::vector<int32_t> lengths32(lengths.begin(), lengths.end());
      const Encoded e = encode_as(random_token_logprobs(n, steps, lengths, rng), dtype);
      for (Measure m : kTokenMeasures) {
        SCOPED_TRACE(std::string(to_string(m)));
        std::vector<float> want(n);
        for (int64_t r = 0; r < n; ++r)
          want[r] = static_cast<float>(reference_token(m, &e.values[r * steps], lengths[r]));
        expect_scores_match(
            run(PoolView::token_logprobs(e.data(), dtype, n, steps, lengths.data()), m), want,
            1e-5f, 1e-6f);
        expect_scores_match(
            run(PoolView::token_logprobs(e.data(), dtype, n, steps, lengths32.data(), DType::i32),
                m),
            want, 1e-5f, 1e-6f);
      }
    }
}

TEST_P(Llm, TopKMeasuresMatchTheFloat64Reference) {
  auto rng = seeded_rng(16002);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (auto [steps, k] :
         {std::pair<int64_t, int64_t>{1, 1}, {9, 1}, {17, 5}, {64, 20}, {7, 33}, {3, 300}}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " T = " + std::to_string(steps) +
                   " K = " + std::to_string(k));
      const int64_t n = 200;
      const auto lengths = random_lengths(n, steps, rng);
      const Encoded e = encode_as(random_top_logprobs(n, steps, k, lengths, rng), dtype);
      const PoolView view = PoolView::top_logprobs(e.data(), dtype, n, steps, k, lengths.data());
      for (Measure m : kTopKMeasures) {
        SCOPED_TRACE(std::string(to_string(m)));
        std::vector<float> want(n);
        for (int64_t r = 0; r < n; ++r)
          want[r] = static_cast<float>(reference_top_k(m, &e.values[r * steps * k], lengths[r], k));
        expect_scores_match(run(view, m), want, 1e-5f, 1e-6f);
      }
    }
}

TEST_P(Llm, SampleMeasuresMatchTheFloat64Reference) {
  auto rng = seeded_rng(16003);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (auto [s, d] :
         {std::pair<int64_t, int64_t>{1, 8}, {2, 3}, {5, 64}, {10, 100}, {17, 33}, {64, 16}}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " S = " + std::to_string(s) +
                   " D = " + std::to_string(d));
      const int64_t n = s > 32 ? 12 : 60;
      const Encoded e = encode_as(random_samples(n, s, d, rng), dtype);
      const PoolView view = PoolView::samples(e.data(), dtype, n, s, d);
      for (Measure m : kSampleMeasures)
        for (double alpha : {1e-3, 0.25}) {
          SCOPED_TRACE(std::string(to_string(m)) + " alpha " + std::to_string(alpha));
          std::vector<float> want(n);
          for (int64_t r = 0; r < n; ++r)
            want[r] =
                static_cast<float>(reference_samples(m, &e.values[r * s * d], s, d, alpha, 0.9));
          expect_scores_match(run(view, m, alpha, 0.9), want, 1e-5f, 1e-5f);
        }
    }
}

// With alpha = 0 the matrix is only positive semidefinite in general, so eigenscore takes its
// eigenvalues (Jacobi) rather than ln det; for answers in general position (S < D, no zero
// answer) they are all positive and their logarithms sum to the reference's ln det.
TEST_P(Llm, EigenscoreWithoutAlphaMatchesTheFloat64Reference) {
  auto rng = seeded_rng(16007);
  for (auto [s, d] : {std::pair<int64_t, int64_t>{2, 3}, {5, 64}, {10, 100}, {33, 40}}) {
    SCOPED_TRACE("S = " + std::to_string(s) + " D = " + std::to_string(d));
    const int64_t n = 20;
    const auto answers = random_samples(n, s, d, rng, false);
    std::vector<float> want(n);
    for (int64_t r = 0; r < n; ++r)
      want[r] = static_cast<float>(
          reference_samples(Measure::eigenscore, &answers[r * s * d], s, d, 0.0, 0.9));
    expect_scores_match(
        run(PoolView::samples(answers.data(), DType::f32, n, s, d), Measure::eigenscore, 0.0), want,
        1e-5f, 1e-5f);
  }
}

// ---- bad input
// -----------------------------------------------------------------------------------

TEST_P(Llm, BadLengthsNameTheLowestBadRow) {
  const int64_t n = 50, steps = 6, k = 3;
  const std::vector<float> tokens(n * steps, -0.5f);
  const std::vector<float> top(n * steps * k, -1.0f);
  for (int64_t bad : {int64_t{0}, int64_t{-1}, steps + 1, int64_t{1} << 40}) {
    SCOPED_TRACE("length " + std::to_string(bad));
    std::vector<int64_t> lengths(n, steps);
    lengths[40] = bad;
    lengths[17] = bad;
    std::string message;
    EXPECT_EQ(bad_row(PoolView::token_logprobs(tokens.data(), DType::f32, n, steps, lengths.data()),
                      Measure::perplexity, &message),
              17);
    EXPECT_NE(message.find("row 17: length"), std::string::npos) << message;
    EXPECT_EQ(bad_row(PoolView::top_logprobs(top.data(), DType::f32, n, steps, k, lengths.data()),
                      Measure::mean_token_entropy, &message),
              17);
    EXPECT_NE(message.find("length"), std::string::npos) << message;
  }
  std::vector<int32_t> lengths32(n, steps);
  lengths32[33] = 0;
  EXPECT_EQ(bad_row(PoolView::token_logprobs(tokens.data(), DType::f32, n, steps, lengths32.data(),
                                             DType::i32),
                    Measure::sequence_nll),
            33);
}

TEST_P(Llm, InvalidLogProbabilitiesWithinALengthAreBadInput) {
  const int64_t n = 40, steps = 20;
  std::vector<int64_t> lengths(n, 10);
  for (auto [value, what] : {std::pair<float, const char*>{kNaN, "non-finite"},
                             {kInf, "non-finite"},
                             {-kInf, "non-finite"},
                             {0.01f, "positive log-probability"}}) {
    for (int64_t position : {0, 7, 9}) {
      SCOPED_TRACE(std::string(what) + " at step " + std::to_string(position));
      std::vector<float> v(n * steps, -0.5f);
      v[30 * steps + position] = value;
      v[12 * steps + position] = value;
      v[5 * steps + 10 + position] = value;  // past row 5's length: never read
      std::string message;
      for (Measure m : kTokenMeasures) {
        EXPECT_EQ(bad_row(PoolView::token_logprobs(v.data(), DType::f32, n, steps, lengths.data()),
                          m, &message),
                  12);
        EXPECT_NE(message.find(what), std::string::npos) << message;
      }
    }
  }
}

TEST_P(Llm, InvalidTopKStepsAreBadInput) {
  const int64_t n = 30, steps = 9, k = 4;
  const std::vector<int64_t> lengths(n, 5);
  for (auto [value, what] : {std::pair<float, const char*>{kNaN, "non-finite"},
                             {kInf, "non-finite"},
                             {0.5f, "positive log-probability"}}) {
    SCOPED_TRACE(what);
    std::vector<float> v(n * steps * k, -1.0f);
    v[(21 * steps + 4) * k + 3] = value;
    v[(8 * steps + 2) * k + 0] = value;
    v[(2 * steps + 5) * k + 1] = value;  // row 2's step 5 is past its length
    std::string message;
    for (Measure m : kTopKMeasures) {
      EXPECT_EQ(bad_row(PoolView::top_logprobs(v.data(), DType::f32, n, steps, k, lengths.data()),
                        m, &message),
                8);
      EXPECT_NE(message.find(what), std::string::npos) << message;
    }
  }
  // A step whose K entries are all -inf; the same step past the length is fine.
  std::vector<float> v(n * steps * k, -1.0f);
  std::fill_n(&v[(4 * steps + 6) * k], k, -kInf);
  EXPECT_EQ(bad_row(PoolView::top_logprobs(v.data(), DType::f32, n, steps, k, lengths.data()),
                    Measure::max_token_entropy),
            -2);
  std::fill_n(&v[(19 * steps + 3) * k], k, -kInf);
  std::fill_n(&v[(25 * steps + 0) * k], k, -kInf);
  std::string message;
  EXPECT_EQ(bad_row(PoolView::top_logprobs(v.data(), DType::f32, n, steps, k, lengths.data()),
                    Measure::mean_token_margin, &message),
            19);
  EXPECT_NE(message.find("all -inf"), std::string::npos) << message;
}

TEST_P(Llm, NonFiniteEmbeddingsAreBadInput) {
  const int64_t n = 20, s = 4, d = 9;
  for (float value : {kNaN, kInf, -kInf}) {
    std::vector<float> v(n * s * d, 0.5f);
    v[(13 * s + 3) * d + 8] = value;
    v[(6 * s + 0) * d + 0] = value;
    for (Measure m : kSampleMeasures) {
      std::string message;
      EXPECT_EQ(bad_row(PoolView::samples(v.data(), DType::f32, n, s, d), m, &message), 6);
      EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
    }
  }
}

TEST_P(Llm, ShapesAndOptionsAreChecked) {
  const std::vector<float> v(4 * 3 * 2, -1.0f);
  const std::vector<int64_t> lengths = {1, 2, 3, 3};
  auto refused = [&](const PoolView& view, const ScoreOptions& options) {
    EXPECT_THROW(score(*resources_, view, options), InvalidArgument);
  };
  PoolView tokens = PoolView::token_logprobs(v.data(), DType::f32, 4, 3, lengths.data());
  tokens.lengths_dtype = DType::f32;
  refused(tokens, options_for(Measure::sequence_nll));
  ScoreOptions logits = options_for(Measure::perplexity);
  logits.logits = true;
  refused(PoolView::token_logprobs(v.data(), DType::f32, 4, 3), logits);
  // Lengths belong to log-probabilities only.
  refused(PoolView::token_logprobs(v.data(), DType::f32, 4, 3, lengths.data()),
          options_for(Measure::entropy));
  PoolView samples = PoolView::samples(v.data(), DType::f32, 4, 3, 2);
  samples.lengths = lengths.data();
  refused(samples, options_for(Measure::eigenscore));
  // A 3-D array is not token log-probabilities; votes are not log-probabilities.
  refused(PoolView::top_logprobs(v.data(), DType::f32, 4, 3, 2), options_for(Measure::perplexity));
  const std::vector<int32_t> votes(8, 0);
  refused(PoolView::votes(votes.data(), DType::i32, 2, 4), options_for(Measure::sequence_nll));
  // At most 64 samples; alpha finite and >= 0; a finite threshold.
  const std::vector<float> many(65 * 2, 1.0f);
  refused(PoolView::samples(many.data(), DType::f32, 1, 65, 2), options_for(Measure::eigenscore));
  for (double alpha : {-1e-3, static_cast<double>(kNaN), static_cast<double>(kInf)}) {
    ScoreOptions o = options_for(Measure::eigenscore);
    o.eigenscore_alpha = alpha;
    refused(PoolView::samples(v.data(), DType::f32, 4, 3, 2), o);
  }
  ScoreOptions o = options_for(Measure::semantic_sets);
  o.semantic_threshold = kNaN;
  refused(PoolView::samples(v.data(), DType::f32, 4, 3, 2), o);
  // K = 0 and D = 0.
  refused(PoolView::top_logprobs(v.data(), DType::f32, 4, 3, 0),
          options_for(Measure::mean_token_entropy));
  refused(PoolView::samples(v.data(), DType::f32, 4, 3, 0), options_for(Measure::eigenscore));
}

// ---- chunking and selection ------------------------------------------------------------------

// The three kinds of pool, with ragged lengths and invalid padding, for the tests below.
struct LlmPools {
  std::vector<int64_t> lengths;
  std::vector<float> tokens, top, answers;
  static constexpr int64_t kRows = 700, kSteps = 13, kK = 6, kS = 5, kD = 12;
  explicit LlmPools(std::mt19937_64& rng)
      : lengths(random_lengths(kRows, kSteps, rng)),
        tokens(random_token_logprobs(kRows, kSteps, lengths, rng)),
        top(random_top_logprobs(kRows, kSteps, kK, lengths, rng)),
        answers(random_samples(kRows, kS, kD, rng)) {}
  PoolView view(Measure m) const {
    switch (pool_kind(m)) {
      case PoolKind::token_logprobs:
        return PoolView::token_logprobs(tokens.data(), DType::f32, kRows, kSteps, lengths.data());
      case PoolKind::top_logprobs:
        return PoolView::top_logprobs(top.data(), DType::f32, kRows, kSteps, kK, lengths.data());
      default:
        return PoolView::samples(answers.data(), DType::f32, kRows, kS, kD);
    }
  }
};

constexpr Measure kAllLlmMeasures[] = {Measure::sequence_nll,      Measure::perplexity,
                                       Measure::min_token_prob,    Measure::mean_token_entropy,
                                       Measure::max_token_entropy, Measure::mean_token_margin,
                                       Measure::sample_dispersion, Measure::eigenscore,
                                       Measure::semantic_sets,     Measure::semantic_entropy};

TEST_P(Llm, ChunkedEqualsInMemory) {
  auto rng = seeded_rng(16004);
  const LlmPools pools(rng);
  for (Measure m : kAllLlmMeasures) {
    SCOPED_TRACE(std::string(to_string(m)));
    const PoolView view = pools.view(m);
    SelectOptions opt;
    opt.k = 60;
    opt.scoring = options_for(m);
    resources_->set_memory_budget(0);
    const auto whole_scores = score(*resources_, view, opt.scoring);
    const Selection whole = select(*resources_, view, opt);
    for (int64_t rows : {3, 64, 333}) {
      SCOPED_TRACE("chunk rows " + std::to_string(rows));
      resources_->set_memory_budget(budget_for_rows(*resources_, view, opt.scoring, 0, rows));
      EXPECT_EQ(score(*resources_, view, opt.scoring), whole_scores);
      resources_->set_memory_budget(budget_for_rows(*resources_, view, opt.scoring, opt.k, rows));
      const Selection chunked = select(*resources_, view, opt);
      EXPECT_EQ(chunked.indices, whole.indices);
      EXPECT_EQ(chunked.scores, whole.scores);
    }
  }
}

TEST_P(Llm, BadRowsAreNamedInPoolNumberingAcrossChunks) {
  auto rng = seeded_rng(16005);
  LlmPools pools(rng);
  pools.lengths[611] = LlmPools::kSteps + 1;
  const PoolView view = pools.view(Measure::perplexity);
  resources_->set_memory_budget(
      budget_for_rows(*resources_, view, options_for(Measure::perplexity), 0, 100));
  std::string message;
  EXPECT_EQ(bad_row(view, Measure::perplexity, &message), 611);
  EXPECT_NE(message.find("row 611"), std::string::npos) << message;
}

TEST_P(Llm, SelectionRanksDiversifiesAndExplores) {
  auto rng = seeded_rng(16006);
  const LlmPools pools(rng);
  const std::vector<float> embeddings = random_normal(LlmPools::kRows * 4, rng);
  for (Measure m : kAllLlmMeasures) {
    SCOPED_TRACE(std::string(to_string(m)));
    const PoolView view = pools.view(m);
    const auto scores = score(*resources_, view, options_for(m));
    SelectOptions opt;
    opt.scoring = options_for(m);
    opt.k = 25;
    const Selection top = select(*resources_, view, opt);
    std::vector<int64_t> order(LlmPools::kRows);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    EXPECT_TRUE(std::equal(top.indices.begin(), top.indices.end(), order.begin()));
    if (m != Measure::perplexity && m != Measure::max_token_entropy && m != Measure::eigenscore)
      continue;  // diversity and exploration: one measure of each kind
    opt.embeddings = EmbeddingView::matrix(embeddings.data(), DType::f32, LlmPools::kRows, 4);
    opt.explore = 0.2;
    opt.seed = 5;
    const Selection picks = select(*resources_, view, opt);
    ASSERT_EQ(picks.indices.size(), 25u);
    EXPECT_EQ(std::count(picks.reasons.begin(), picks.reasons.end(), PickReason::exploration), 5);
    std::vector<int64_t> sorted = picks.indices;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a repeated pick";
    for (size_t i = 0; i < picks.indices.size(); ++i)
      EXPECT_EQ(picks.scores[i], scores[picks.indices[i]]);
  }
}

// ---- the CUDA backend against the CPU backend
// ----------------------------------------------------

TEST(LlmGpuParity, RandomPoolsScoreAsOnTheCpu) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(16100);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(to_string(dtype)));
    for (int64_t steps : {1, 31, 32, 33, 1000}) {
      const int64_t n = 3000;
      const auto lengths = random_lengths(n, steps, rng);
      const Encoded e = encode_as(random_token_logprobs(n, steps, lengths, rng), dtype);
      for (Measure m : kTokenMeasures)
        expect_backends_agree(cpu, gpu,
                              PoolView::token_logprobs(e.data(), dtype, n, steps, lengths.data()),
                              options_for(m), 1e-5f, 1e-6f);
    }
    for (auto [steps, k] : {std::pair<int64_t, int64_t>{1, 1}, {128, 20}, {40, 5}, {9, 100}}) {
      const int64_t n = 2000;
      const auto lengths = random_lengths(n, steps, rng);
      const Encoded e = encode_as(random_top_logprobs(n, steps, k, lengths, rng), dtype);
      for (Measure m : kTopKMeasures)
        expect_backends_agree(cpu, gpu,
                              PoolView::top_logprobs(e.data(), dtype, n, steps, k, lengths.data()),
                              options_for(m), 1e-5f, 1e-6f);
    }
    for (auto [s, d] :
         {std::pair<int64_t, int64_t>{1, 5}, {2, 768}, {10, 768}, {33, 17}, {64, 130}}) {
      const int64_t n = 500;
      const Encoded e = encode_as(random_samples(n, s, d, rng), dtype);
      for (Measure m : kSampleMeasures)
        expect_backends_agree(cpu, gpu, PoolView::samples(e.data(), dtype, n, s, d), options_for(m),
                              1e-5f, 1e-5f);
    }
  }
}

#if defined(QUARRY_WITH_CUDA)
// Device pools with their lengths in device memory score bitwise as the same host pools, which
// the CUDA backend streams through its staging buffers in chunks.
TEST(LlmGpuParity, DevicePoolsAndLengthsAreReadInPlace) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(16101);
  const LlmPools pools(rng);
  const DeviceCopy tokens(pools.tokens), top(pools.top), answers(pools.answers),
      lengths(pools.lengths);
  Resources gpu(Device::cuda);
  for (Measure m : kAllLlmMeasures) {
    SCOPED_TRACE(std::string(to_string(m)));
    const PoolView host = pools.view(m);
    PoolView device = host;
    device.space = MemorySpace::device;
    device.data = pool_kind(m) == PoolKind::token_logprobs ? tokens.get()
                  : pool_kind(m) == PoolKind::top_logprobs ? top.get()
                                                           : answers.get();
    if (host.lengths) device.lengths = lengths.get();
    const auto on_host = score(gpu, host, options_for(m));
    EXPECT_EQ(score(gpu, device, options_for(m)), on_host);
    gpu.set_memory_budget(budget_for_rows(gpu, host, options_for(m), 0, 97));
    EXPECT_EQ(score(gpu, host, options_for(m)), on_host) << "streamed in chunks";
    gpu.set_memory_budget(0);
  }
  // Lengths on the host with the pool on the device are refused, not dereferenced.
  PoolView mixed = pools.view(Measure::perplexity);
  mixed.data = tokens.get();
  mixed.space = MemorySpace::device;
  EXPECT_THROW(score(gpu, mixed, options_for(Measure::perplexity)), InvalidArgument);
}
#endif

}  // namespace
}  // namespace quarry::test
