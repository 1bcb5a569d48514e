// Closed forms of the single-model measures, on every backend.

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/measures.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

class Measures : public OnEveryBackend {
 protected:
  std::vector<float> run(const std::vector<float>& pool, int64_t rows, int64_t classes,
                         Measure measure, bool logits = false, float temperature = 1.0f) {
    ScoreOptions opt;
    opt.measure = measure;
    opt.logits = logits;
    opt.temperature = temperature;
    return score(*resources_, PoolView::matrix(pool.data(), DType::f32, rows, classes), opt);
  }
};

QUARRY_ON_EVERY_BACKEND(Measures);

TEST_P(Measures, UniformRowForEveryClassCount) {
  for (int64_t c : {1, 2, 31, 32, 33, 1000, 262144}) {
    SCOPED_TRACE("C = " + std::to_string(c));
    const std::vector<float> row(c, 1.0f / static_cast<float>(c));
    const double inv = 1.0 / static_cast<double>(c);
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::entropy)[0], std::log(double(c)), 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::least_confidence)[0], 1.0 - inv, 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::margin)[0], c == 1 ? 0.0f : 1.0f, 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::ratio)[0], c == 1 ? 0.0f : 1.0f, 1e-5f));
  }
}

TEST_P(Measures, UniformLogitsGiveTheSameClosedForms) {
  for (int64_t c : {2, 33, 262144}) {
    SCOPED_TRACE("C = " + std::to_string(c));
    const std::vector<float> row(c, 3.25f);  // any constant logit is a uniform row
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::entropy, true)[0], std::log(double(c)), 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::least_confidence, true)[0], 1.0 - 1.0 / c, 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::margin, true)[0], 1.0f, 1e-5f));
    EXPECT_TRUE(near_rel(run(row, 1, c, Measure::ratio, true)[0], 1.0f, 1e-5f));
  }
}

TEST_P(Measures, OneHotRowScoresZero) {
  for (int64_t c : {1, 2, 33, 1000}) {
    std::vector<float> row(c, 0.0f);
    row[c / 2] = 1.0f;
    for (Measure m :
         {Measure::entropy, Measure::least_confidence, Measure::margin, Measure::ratio}) {
      const float s = run(row, 1, c, m)[0];
      EXPECT_EQ(s, 0.0f) << to_string(m) << " C=" << c;
      EXPECT_FALSE(std::signbit(s)) << "scores are canonical: no -0";
    }
  }
}

TEST_P(Measures, HandComputedTwoAndThreeClassRows) {
  const std::vector<float> pool = {0.7f, 0.3f, 0.0f,  //
                                   0.5f, 0.3f, 0.2f,  //
                                   0.2f, 0.2f, 0.6f};
  const auto h = run(pool, 3, 3, Measure::entropy);
  EXPECT_TRUE(near_rel(h[0], -(0.7 * std::log(0.7) + 0.3 * std::log(0.3)), 1e-6f));
  EXPECT_TRUE(
      near_rel(h[1], -(0.5 * std::log(0.5) + 0.3 * std::log(0.3) + 0.2 * std::log(0.2)), 1e-6f));
  const auto lc = run(pool, 3, 3, Measure::least_confidence);
  EXPECT_TRUE(near_rel(lc[0], 0.3f, 1e-6f));
  EXPECT_TRUE(near_rel(lc[1], 0.5f, 1e-6f));
  EXPECT_TRUE(near_rel(lc[2], 0.4f, 1e-6f));
  const auto margin = run(pool, 3, 3, Measure::margin);
  EXPECT_TRUE(near_rel(margin[0], 0.6f, 1e-6f));
  EXPECT_TRUE(near_rel(margin[1], 0.8f, 1e-6f));
  EXPECT_TRUE(near_rel(margin[2], 0.6f, 1e-6f));
  const auto ratio = run(pool, 3, 3, Measure::ratio);
  EXPECT_TRUE(near_rel(ratio[0], 0.3f / 0.7f, 1e-6f));
  EXPECT_TRUE(near_rel(ratio[1], 0.6f, 1e-6f));
  EXPECT_TRUE(near_rel(ratio[2], 1.0f / 3.0f, 1e-6f));
}

TEST_P(Measures, TiedTopProbabilitiesCountTwice) {
  // p1 = p2 = 0.4: the margin is 1 and the ratio is 1.
  const std::vector<float> row = {0.4f, 0.2f, 0.4f};
  EXPECT_TRUE(near_rel(run(row, 1, 3, Measure::margin)[0], 1.0f, 1e-6f));
  EXPECT_TRUE(near_rel(run(row, 1, 3, Measure::ratio)[0], 1.0f, 1e-6f));
}

TEST_P(Measures, LogitsAgreeWithTheirSoftmax) {
  auto rng = seeded_rng(1001);
  for (int64_t c : {2, 31, 32, 33, 1000, 5000}) {
    SCOPED_TRACE("C = " + std::to_string(c));
    const int64_t n = 37;
    const auto logits = random_logits(n, c, rng);
    std::vector<float> probs(n * c);
    for (int64_t r = 0; r < n; ++r) {
      double m = -1e300, s = 0;
      for (int64_t j = 0; j < c; ++j) m = std::max<double>(m, logits[r * c + j]);
      for (int64_t j = 0; j < c; ++j) s += std::exp(logits[r * c + j] - m);
      for (int64_t j = 0; j < c; ++j)
        probs[r * c + j] = static_cast<float>(std::exp(logits[r * c + j] - m) / s);
    }
    for (Measure m :
         {Measure::entropy, Measure::least_confidence, Measure::margin, Measure::ratio}) {
      const auto from_logits = run(logits, n, c, m, true);
      const auto from_probs = run(probs, n, c, m);
      for (int64_t r = 0; r < n; ++r)
        EXPECT_TRUE(near_rel(from_logits[r], from_probs[r], 1e-4f, 2e-6f))
            << to_string(m) << " row " << r;
    }
  }
}

// A confident row's softmax puts 1 - 1e-11 on its top class: least confidence, margin and
// entropy are then tiny but still rank the confident rows among themselves, so they must keep
// their relative precision rather than round to 0 (as 1 - p1 would in float).
TEST_P(Measures, ConfidentLogitRowsKeepTheirSmallScores) {
  auto rng = seeded_rng(1004);
  std::uniform_real_distribution<float> below(-32.0f, -12.0f);
  for (int64_t c : {2, 33, 1000}) {
    for (bool tie_at_top : {false, true}) {
      SCOPED_TRACE("C = " + std::to_string(c) + (tie_at_top ? ", tied top" : ""));
      const int64_t n = 23;
      std::vector<float> logits(n * c);
      for (float& z : logits) z = below(rng);
      std::vector<double> lc(n), mg(n), h(n);
      for (int64_t r = 0; r < n; ++r) {
        float* row = logits.data() + r * c;
        const float top = 3.0f + static_cast<float>(r);
        row[(r * 7) % c] = top;  // the top class, anywhere in the row
        if (tie_at_top && c > 2) row[(r * 7 + 1) % c] = top;
        // Reference in float64 from the sum of the other classes' e^(z - top).
        double rest = 0, t = 0, second = -1e300;
        bool seen_top = false;
        for (int64_t j = 0; j < c; ++j) {
          const double d = double(row[j]) - top;
          if (d == 0 && !seen_top) {
            seen_top = true;
            continue;
          }
          rest += std::exp(d);
          t += d * std::exp(d);
          second = std::max(second, d);
        }
        lc[r] = rest / (1 + rest);
        mg[r] = (rest + std::exp(second)) / (1 + rest);
        h[r] = std::log1p(rest) - t / (1 + rest);
      }
      const auto got_lc = run(logits, n, c, Measure::least_confidence, true);
      const auto got_mg = run(logits, n, c, Measure::margin, true);
      const auto got_h = run(logits, n, c, Measure::entropy, true);
      for (int64_t r = 0; r < n; ++r) {
        EXPECT_TRUE(near_rel(got_lc[r], float(lc[r]), 1e-5f, 0.0f)) << "least_confidence " << r;
        EXPECT_TRUE(near_rel(got_mg[r], float(mg[r]), 1e-5f, 0.0f)) << "margin " << r;
        EXPECT_TRUE(near_rel(got_h[r], float(h[r]), 1e-5f, 0.0f)) << "entropy " << r;
      }
    }
  }
}

// Finite logits far apart (3e38 and -3e38 differ by more than the largest float) are valid
// input: the softmax splits the mass between the two tied maxima, and no score may come out NaN
// or lose the maxima's share.
TEST_P(Measures, LogitsFurtherApartThanTheFloatRangeStayFinite) {
  for (int64_t c : {3, 40}) {
    std::vector<float> row(c, -3e38f);
    row[1] = row[c - 1] = 3e38f;
    for (int order = 0; order < 2; ++order) {
      SCOPED_TRACE("C = " + std::to_string(c) + (order ? ", reversed" : ""));
      EXPECT_TRUE(near_rel(run(row, 1, c, Measure::entropy, true)[0], std::log(2.0f), 1e-6f));
      EXPECT_TRUE(near_rel(run(row, 1, c, Measure::least_confidence, true)[0], 0.5f, 1e-6f));
      EXPECT_TRUE(near_rel(run(row, 1, c, Measure::margin, true)[0], 1.0f, 1e-6f));
      std::reverse(row.begin(), row.end());
    }
  }
}

// Valid but extreme temperatures and logits: z / T overflows float (z = 10 at T = 1e-38, z = 3e38
// at T = 0.5) although the softmax is well defined. Every score must be finite and exact.
TEST_P(Measures, ExtremeTemperaturesGiveFiniteScores) {
  struct Case {
    std::vector<float> row;
    float temperature;
    float entropy, least_confidence, margin, ratio;
  };
  const float ln2 = std::log(2.0f);
  for (const Case& c : {Case{{10.0f, 9.0f, 0.0f}, 1e-38f, 0, 0, 0, 0},        // one-hot
                        Case{{0.0f, 10.0f, 10.0f}, 1e-38f, ln2, 0.5f, 1, 1},  // tied top two
                        Case{{3e38f, 3e38f, 0.0f}, 0.5f, ln2, 0.5f, 1, 1},    // tied, z / T = Inf
                        Case{{3e38f, -3e38f, 1.0f}, 0.25f, 0, 0, 0, 0},       // one-hot
                        Case{{1.0f, 1.0f, 1.0f}, 3e-39f, std::log(3.0f), 2.0f / 3, 1, 1}}) {
    SCOPED_TRACE("T = " + std::to_string(c.temperature) + ", row " + std::to_string(c.row[0]) +
                 " " + std::to_string(c.row[1]) + " " + std::to_string(c.row[2]));
    const auto h = run(c.row, 1, 3, Measure::entropy, true, c.temperature);
    const auto lc = run(c.row, 1, 3, Measure::least_confidence, true, c.temperature);
    const auto mg = run(c.row, 1, 3, Measure::margin, true, c.temperature);
    const auto ra = run(c.row, 1, 3, Measure::ratio, true, c.temperature);
    EXPECT_TRUE(near_rel(h[0], c.entropy, 1e-6f, 0.0f));
    EXPECT_TRUE(near_rel(lc[0], c.least_confidence, 1e-6f, 0.0f));
    EXPECT_TRUE(near_rel(mg[0], c.margin, 1e-6f, 0.0f));
    EXPECT_TRUE(near_rel(ra[0], c.ratio, 1e-6f, 0.0f));
  }
  // A temperature whose reciprocal overflows float is refused up front.
  std::vector<float> row = {1.0f, 2.0f};
  EXPECT_THROW(run(row, 1, 2, Measure::entropy, true, 1e-39f), InvalidArgument);
}

// The same through the streaming statistics the GPU kernels and the CPU's exact path use, added
// one by one and merged in both orders.
TEST(LogitStatistics, LogitsFurtherApartThanTheFloatRangeStayFinite) {
  using Stats = kernels::LogitStats<float>;
  // Two tied maxima and one value 6e38 below them: the softmax is (0, 1/2, 1/2).
  Stats low, high, all;
  low.add(-3e38f);
  high.add(3e38f);
  high.add(3e38f);
  for (float z : {-3e38f, 3e38f, 3e38f}) all.add(z);
  Stats merged = low, merged_other_way = high;
  merged.merge(high);
  merged_other_way.merge(low);
  for (const Stats& s : {all, merged, merged_other_way}) {
    EXPECT_NEAR(s.finish(kernels::MeasureId::entropy).score, std::log(2.0f), 1e-6f);
    EXPECT_NEAR(s.finish(kernels::MeasureId::least_confidence).score, 0.5f, 1e-7f);
    EXPECT_NEAR(s.finish(kernels::MeasureId::margin).score, 1.0f, 1e-7f);
    EXPECT_EQ(s.finish(kernels::MeasureId::entropy).flags, 0u);
  }
}

// Every measure against a float64 evaluation of its definition, over sharp and flat rows and
// class counts around the vector width: the CPU backend is the reference the GPU is held to.
TEST_P(Measures, EveryMeasureMatchesADoublePrecisionReference) {
  auto rng = seeded_rng(1003);
  for (int64_t c : {1, 2, 7, 8, 9, 31, 33, 100, 1000, 5000}) {
    for (float sharpness : {0.1f, 2.0f, 8.0f}) {
      SCOPED_TRACE("C = " + std::to_string(c) + ", sharpness " + std::to_string(sharpness));
      const int64_t n = 41;
      const auto probs = random_probabilities(n, c, rng, sharpness);
      std::vector<double> entropy(n), top1(n), top2(n);
      for (int64_t r = 0; r < n; ++r) {
        std::vector<double> row(probs.begin() + r * c, probs.begin() + (r + 1) * c);
        for (double p : row)
          if (p > 0) entropy[r] -= p * std::log(p);
        std::sort(row.rbegin(), row.rend());
        top1[r] = row[0];
        top2[r] = c > 1 ? row[1] : 0.0;
      }
      const auto h = run(probs, n, c, Measure::entropy);
      const auto lc = run(probs, n, c, Measure::least_confidence);
      const auto mg = run(probs, n, c, Measure::margin);
      const auto ra = run(probs, n, c, Measure::ratio);
      for (int64_t r = 0; r < n; ++r) {
        EXPECT_TRUE(near_rel(h[r], static_cast<float>(entropy[r]), 2e-6f, 1e-7f)) << "row " << r;
        EXPECT_TRUE(near_rel(lc[r], static_cast<float>(1 - top1[r]), 1e-6f, 1e-7f)) << r;
        EXPECT_TRUE(near_rel(mg[r], static_cast<float>(1 - (top1[r] - top2[r])), 1e-6f, 1e-7f));
        EXPECT_TRUE(near_rel(ra[r], static_cast<float>(top2[r] / top1[r]), 1e-6f, 1e-7f));
      }
    }
  }
}

// A row's score does not depend on the rows around it, to the bit: the CPU scores short rows
// eight at a time and the rest one by one, and chunks of a pool may start anywhere.
TEST_P(Measures, ScoresDoNotDependOnTheRowsAround) {
  auto rng = seeded_rng(1009);
  for (int64_t c : {1, 3, 8, 9, 100, 2048, 2049}) {
    const int64_t n = 29;
    for (bool logits : {false, true}) {
      auto values = logits ? random_logits(n, c, rng) : random_probabilities(n, c, rng, 2.0f);
      if (logits && c > 1) values[7 * c + 1] = values[7 * c] = 40.0f;  // a tied maximum
      for (Measure m :
           {Measure::entropy, Measure::least_confidence, Measure::margin, Measure::ratio}) {
        SCOPED_TRACE("C = " + std::to_string(c) + ", " + std::string(to_string(m)) +
                     (logits ? ", logits" : ""));
        const auto together = run(values, n, c, m, logits);
        const std::vector<float> shifted(values.begin() + 5 * c, values.end());
        const auto from_row_5 = run(shifted, n - 5, c, m, logits);
        for (int64_t r = 0; r < n; ++r) {
          const std::vector<float> row(values.begin() + r * c, values.begin() + (r + 1) * c);
          EXPECT_EQ(run(row, 1, c, m, logits)[0], together[r]) << "row " << r;
          if (r >= 5) EXPECT_EQ(from_row_5[r - 5], together[r]) << "row " << r;
        }
      }
    }
  }
}

// Confident rows of probabilities: margin = 1 - (p1 - p2) must keep the relative precision of a
// small p2 (rows [1, 1e-8, 0] and [1, 2e-8, 0] differ by 2x, not both 0), as must least
// confidence and ratio. The reference is the definition in float64 on the stored floats.
TEST_P(Measures, SmallScoresFromProbabilitiesKeepTheirRelativePrecision) {
  std::vector<float> pool;
  std::vector<double> p1s, p2s;
  for (float p1 : {1.0f, 1.0f - std::ldexp(1.0f, -24), 1.0f - 3 * std::ldexp(1.0f, -23),
                   1.0f - std::ldexp(1.0f, -12)})
    for (float p2 : {1e-8f, 2e-8f, 3.3e-7f, 1e-5f, 0.0f}) {
      pool.insert(pool.end(), {p1, p2, 0.0f});
      p1s.push_back(p1);
      p2s.push_back(p2);
    }
  const auto n = static_cast<int64_t>(p1s.size());
  const auto margin = run(pool, n, 3, Measure::margin);
  const auto lc = run(pool, n, 3, Measure::least_confidence);
  const auto ratio = run(pool, n, 3, Measure::ratio);
  for (int64_t r = 0; r < n; ++r) {
    SCOPED_TRACE("p1 = " + std::to_string(p1s[r]) + ", p2 = " + std::to_string(p2s[r]));
    EXPECT_TRUE(near_rel(margin[r], static_cast<float>(1.0 - (p1s[r] - p2s[r])), 1e-6f, 0.0f));
    EXPECT_TRUE(near_rel(lc[r], static_cast<float>(1.0 - p1s[r]), 1e-6f, 0.0f));
    EXPECT_TRUE(near_rel(ratio[r], static_cast<float>(p2s[r] / p1s[r]), 1e-6f, 0.0f));
  }
  EXPECT_EQ(margin[1], 2 * margin[0]) << "[1, 2e-8, 0] against [1, 1e-8, 0]";
}

TEST_P(Measures, TemperatureDividesTheLogits) {
  auto rng = seeded_rng(1002);
  const int64_t n = 50, c = 40;
  const auto logits = random_logits(n, c, rng);
  std::vector<float> scaled(logits);
  for (float& z : scaled) z /= 2.5f;
  const auto a = run(logits, n, c, Measure::entropy, true, 2.5f);
  const auto b = run(scaled, n, c, Measure::entropy, true, 1.0f);
  for (int64_t r = 0; r < n; ++r) EXPECT_TRUE(near_rel(a[r], b[r], 1e-5f)) << r;
  // A high temperature flattens every row towards ln C.
  const auto hot = run(logits, n, c, Measure::entropy, true, 1e4f);
  for (int64_t r = 0; r < n; ++r) EXPECT_TRUE(near_rel(hot[r], std::log(40.0f), 1e-4f));
}

TEST_P(Measures, HalfPrecisionInputsMatchTheirFloatValues) {
  auto rng = seeded_rng(1003);
  const int64_t n = 64, c = 100;
  for (DType dtype : {DType::f16, DType::bf16}) {
    for (bool logits : {false, true}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + (logits ? " logits" : " probabilities"));
      // Probabilities are multiples of 1/128, exact in both 16-bit formats, so rows sum to 1.
      std::vector<float> values;
      if (logits) {
        values = random_logits(n, c, rng);
      } else {
        values.assign(n * c, 0.0f);
        std::uniform_int_distribution<int64_t> pick(0, c - 1);
        for (int64_t r = 0; r < n; ++r)
          for (int i = 0; i < 128; ++i) values[r * c + pick(rng)] += 1.0f / 128.0f;
      }
      const auto bits = encode(values, dtype);
      // The reference is the float pool holding exactly the rounded 16-bit values.
      std::vector<float> rounded(values.size());
      for (size_t i = 0; i < bits.size(); ++i)
        rounded[i] = dtype == DType::f16 ? kernels::to_float(kernels::f16_bits{bits[i]})
                                         : kernels::to_float(kernels::bf16_bits{bits[i]});
      ScoreOptions opt;
      opt.measure = Measure::entropy;
      opt.logits = logits;
      const auto got = score(*resources_, PoolView::matrix(bits.data(), dtype, n, c), opt);
      const auto want = run(rounded, n, c, Measure::entropy, logits);
      for (int64_t r = 0; r < n; ++r) EXPECT_TRUE(near_rel(got[r], want[r], 1e-5f)) << r;
    }
  }
}

// q phi(p/q) = p ln(p/q) - p + q: the terms both backends sum BALD and KL from. Closed forms,
// and float precision against long double across the series' and the closed form's ranges.
TEST(DivergenceTerm, ClosedFormsAndFloatPrecision) {
  using kernels::divergence_term;
  EXPECT_EQ(divergence_term(0.3f, 0.3f), 0.0f);
  EXPECT_NEAR(divergence_term(0.0f, 0.25f), 0.25f, 1e-7f) << "0 ln 0 = 0 leaves q";
  EXPECT_NEAR(divergence_term(0.5f, 0.25f), 0.5 * std::log(2.0) - 0.25, 1e-7);
  // The reference: q ((1 + u) ln(1 + u) - u) in long double, for the inputs as rounded.
  auto reference = [](double p, double q) {
    if (p == 0) return q;  // 0 ln 0 = 0
    const long double u = (static_cast<long double>(p) - q) / q;
    return static_cast<double>(q * ((1 + u) * std::log1p(u) - u));
  };
  for (double q : {1e-6, 0.01, 0.3, 0.9}) {
    for (double u : {-1.0, -0.999, -0.5, -0.26, -0.25, -0.1, -1e-3, -1e-6, 1e-6, 1e-3, 0.1, 0.2499,
                     0.25, 0.3, 0.5, 3.0, 100.0}) {
      SCOPED_TRACE("q = " + std::to_string(q) + ", u = " + std::to_string(u));
      const float pf = static_cast<float>(q * (1 + u)), qf = static_cast<float>(q);
      const double want = reference(pf, qf);
      const double got = divergence_term(pf, qf);
      EXPECT_GE(got, 0.0);
      // A few float roundings of t ln t, against a result up to 10x smaller near |u| = 1/4.
      EXPECT_NEAR(got, want, 3e-6 * want + 1e-12 * q);
    }
  }
}

TEST(Conversions, HalfToFloatCoversSpecialValues) {
  using kernels::f16_bits;
  using kernels::to_float;
  EXPECT_EQ(to_float(f16_bits{0x3c00}), 1.0f);
  EXPECT_EQ(to_float(f16_bits{0xc000}), -2.0f);
  EXPECT_EQ(to_float(f16_bits{0x7bff}), 65504.0f);
  EXPECT_EQ(to_float(f16_bits{0x0001}), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(to_float(f16_bits{0x0400}), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_TRUE(std::isinf(to_float(f16_bits{0x7c00})));
  EXPECT_TRUE(std::isnan(to_float(f16_bits{0x7e00})));
  EXPECT_TRUE(std::signbit(to_float(f16_bits{0x8000})));
  EXPECT_EQ(kernels::to_float(kernels::bf16_bits{0x3f80}), 1.0f);
  for (float f : {0.1f, 0.333f, 1e-3f, 3.0f}) {
    EXPECT_NEAR(to_float(f16_bits{to_f16_bits(f)}), f, f * 1e-3f);
  }
}

}  // namespace
}  // namespace quarry::test
