// Expected gradient length, BADGE and core-set on every backend, against independent float64
// references: explicitly formed last-layer gradients, an implementation of BADGE that materialises
// the gradient embeddings, and a brute-force k-center greedy.

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <span>

#include "engine/backend.hpp"
#include "engine/ranking.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

class Influence : public OnEveryBackend {};

QUARRY_ON_EVERY_BACKEND(Influence);

// ---- expected gradient length ------------------------------------------------------------------

// IEEE binary16 bits -> value (finite values only).
double f16_value(uint16_t bits) {
  const int exponent = (bits >> 10) & 31, mantissa = bits & 1023;
  const double v =
      exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return bits & 0x8000 ? -v : v;
}

// softmax(z / t) in double.
std::vector<double> softmax(const float* z, int64_t c, double t) {
  std::vector<double> p(c);
  double m = -1e300, s = 0;
  for (int64_t j = 0; j < c; ++j) m = std::max(m, z[j] / t);
  for (int64_t j = 0; j < c; ++j) s += p[j] = std::exp(z[j] / t - m);
  for (double& x : p) x /= s;
  return p;
}

// E_y~p |grad of the loss -ln p_y wrt (W, b)| for a softmax layer with input h: the gradients
// (p - e_y) h^T and p - e_y formed entry by entry, their Frobenius norm weighted by p_y.
double explicit_egl(const std::vector<double>& p, const float* h, int64_t dim) {
  const auto c = static_cast<int64_t>(p.size());
  double egl = 0;
  for (int64_t y = 0; y < c; ++y) {
    double squares = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double g = p[j] - (j == y ? 1.0 : 0.0);
      for (int64_t d = 0; d < dim; ++d) squares += (g * h[d]) * (g * h[d]);
      squares += g * g;  // the bias
    }
    egl += p[y] * std::sqrt(squares);
  }
  return egl;
}

TEST_P(Influence, EglEqualsTheNormOfExplicitGradients) {
  auto rng = seeded_rng(17001);
  for (int64_t c : {1, 2, 31, 33, 100}) {
    for (int64_t dim : {1, 7, 64}) {
      for (bool logits : {false, true}) {
        SCOPED_TRACE("C = " + std::to_string(c) + ", D = " + std::to_string(dim) +
                     (logits ? ", logits" : ", probabilities"));
        const int64_t n = 200;
        const std::vector<float> pool =
            logits ? random_logits(n, c, rng, 3.0f) : random_probabilities(n, c, rng, 3.0f);
        const std::vector<float> h = random_normal(n * dim, rng, 2.0f);
        ScoreOptions opt;
        opt.measure = Measure::egl;
        opt.logits = logits;
        opt.temperature = logits ? 1.5f : 1.0f;
        opt.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
        const auto got = score(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), opt);
        for (int64_t r = 0; r < n; ++r) {
          std::vector<double> p(c);
          if (logits)
            p = softmax(&pool[r * c], c, opt.temperature);
          else
            for (int64_t j = 0; j < c; ++j) p[j] = pool[r * c + j];
          ASSERT_TRUE(near_rel(got[r], explicit_egl(p, &h[r * dim], dim), 1e-5f, 0.0f))
              << "row " << r;
        }
      }
    }
  }
}

TEST_P(Influence, EglKeepsItsRelativePrecisionOnConfidentRows) {
  // p1 within 1e-7 .. 1e-3 of 1: the expanded form 1 - 2 p_y + |p|^2 would lose every digit in
  // float; the closed form keeps a relative 1e-5.
  const int64_t c = 10, dim = 3, n = 5;
  std::vector<float> probs, logits;
  for (int64_t r = 0; r < n; ++r) {
    const float rest = std::pow(10.0f, -3.0f - static_cast<float>(r));  // 1e-3 .. 1e-7
    for (int64_t j = 0; j < c; ++j) {
      probs.push_back(j == r ? 1.0f - rest : rest / (c - 1));
      logits.push_back(j == r ? 0.0f : std::log(rest / (c - 1)));
    }
  }
  const std::vector<float> h = {1, 2, 3, -1, 0, 0, 0.5f, 0.5f, 0.5f, 4, 0, 0, 0, 0, 0};
  ScoreOptions opt;
  opt.measure = Measure::egl;
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
  for (bool from_logits : {false, true}) {
    SCOPED_TRACE(from_logits ? "logits" : "probabilities");
    opt.logits = from_logits;
    const auto& values = from_logits ? logits : probs;
    const auto got = score(*resources_, PoolView::matrix(values.data(), DType::f32, n, c), opt);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<double> p(c);
      if (from_logits)
        p = softmax(&logits[r * c], c, 1.0);
      else
        for (int64_t j = 0; j < c; ++j) p[j] = probs[r * c + j];
      const double want = explicit_egl(p, &h[r * dim], dim);
      EXPECT_TRUE(near_rel(got[r], want, 1e-5f, 0.0f)) << "row " << r << " (EGL " << want << ")";
    }
  }
}

TEST_P(Influence, EglClosedFormsAndRanking) {
  // One-hot rows have no expected gradient; a uniform row over C classes with h = 0 has
  // EGL = sqrt((1 - 1/C)^2 + (C - 1)/C^2) = sqrt(1 - 1/C).
  const int64_t c = 4, dim = 2;
  const std::vector<float> probs = {1,     0,     0,     0,     0.25f, 0.25f,
                                    0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
  const std::vector<float> h = {5, 5, 0, 0, 3, 4};
  ScoreOptions opt;
  opt.measure = Measure::egl;
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, 3, dim);
  const auto got = score(*resources_, PoolView::matrix(probs.data(), DType::f32, 3, c), opt);
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_TRUE(near_rel(got[1], std::sqrt(0.75), 1e-6f));
  EXPECT_TRUE(near_rel(got[2], std::sqrt(26.0) * std::sqrt(0.75), 1e-6f)) << "|h|^2 = 25";
  SelectOptions sel;
  sel.scoring = opt;
  sel.k = 2;
  EXPECT_EQ(select(*resources_, PoolView::matrix(probs.data(), DType::f32, 3, c), sel).indices,
            (std::vector<int64_t>{2, 1}));
}

TEST_P(Influence, EglFeaturesTravelWithChunksAndHalfPrecision) {
  auto rng = seeded_rng(17002);
  const int64_t n = 1000, c = 12, dim = 40;
  const auto probs = random_probabilities(n, c, rng);
  const auto h = random_normal(n * dim, rng);
  const auto h16 = encode(h, DType::f16);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 25;
  opt.scoring.measure = Measure::egl;
  opt.scoring.features = EmbeddingView::matrix(h16.data(), DType::f16, n, dim);
  const auto whole_scores = score(*resources_, view, opt.scoring);
  const Selection whole = select(*resources_, view, opt);
  const engine::Backend& backend = resources_->backend();
  for (int64_t rows : {1, 7, 333}) {
    SCOPED_TRACE("chunk rows " + std::to_string(rows));
    const engine::ScoreProblem problem{view, opt.scoring};
    resources_->set_memory_budget(static_cast<std::size_t>(
        backend.working_bytes_fixed(problem, opt.k) +
        (backend.working_bytes_per_row(view) + backend.working_bytes_per_feature_row(problem)) *
            rows));
    EXPECT_EQ(select(*resources_, view, opt).indices, whole.indices);
    EXPECT_EQ(score(*resources_, view, opt.scoring), whole_scores);
  }
  // f16 features are read as the values they encode.
  for (int64_t r = 0; r < n; r += 97) {
    const std::vector<double> p(probs.begin() + r * c, probs.begin() + (r + 1) * c);
    std::vector<float> decoded(dim);
    for (int64_t d = 0; d < dim; ++d) decoded[d] = static_cast<float>(f16_value(h16[r * dim + d]));
    EXPECT_TRUE(near_rel(whole_scores[r], explicit_egl(p, decoded.data(), dim), 1e-5f, 0.0f));
  }
}

TEST_P(Influence, EglBadInput) {
  const std::vector<float> probs = {0.5f, 0.5f, 0.9f, 0.1f, 0.2f, 0.8f};
  std::vector<float> h = {1, 2, 3, 4, 5, 6};
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 3, 2);
  ScoreOptions opt;
  opt.measure = Measure::egl;
  EXPECT_THROW(score(*resources_, view, opt), InvalidArgument) << "no features";
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, 2, 3);
  EXPECT_THROW(score(*resources_, view, opt), InvalidArgument) << "row count";
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, 3, 2);
  h[5] = std::numeric_limits<float>::quiet_NaN();
  try {
    score(*resources_, view, opt);
    ADD_FAILURE() << "NaN feature accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 2);
    EXPECT_EQ(std::string(e.what()).rfind("features row 2", 0), 0u) << e.what();
  }
  h[5] = 6;
  const std::vector<float> committee(2 * 3 * 2, 0.5f);
  EXPECT_THROW(score(*resources_, PoolView::committee(committee.data(), DType::f32, 2, 3, 2), opt),
               InvalidArgument)
      << "egl scores a single model";
  std::vector<float> bad = probs;
  bad[2] = -0.1f;
  try {
    score(*resources_, PoolView::matrix(bad.data(), DType::f32, 3, 2), opt);
    ADD_FAILURE() << "negative probability accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 1) << e.what();
  }
}

// Logits whose z / T overflows float (z = 10 at T = 1e-38, z = 3e38 at T = 0.5) have a well
// defined softmax, so egl scores them like any row: the scale applies to differences z - max.
TEST_P(Influence, EglExtremeTemperaturesGiveFiniteScores) {
  struct Case {
    std::vector<float> row;
    float temperature;
    double terms;  // sum_y p_y ||p - e_y|| of the softmax
  };
  const std::vector<float> h = {3, 4};                                            // |h|^2 + 1 = 26
  for (const Case& c : {Case{{10.0f, 9.0f, 0.0f}, 1e-38f, 0.0},                   // one-hot
                        Case{{0.0f, 10.0f, 10.0f}, 1e-38f, std::sqrt(0.5)},       // tied top two
                        Case{{3e38f, 3e38f, 0.0f}, 0.5f, std::sqrt(0.5)},         // z / T = Inf
                        Case{{3e38f, -3e38f, 1.0f}, 0.25f, 0.0},                  // one-hot
                        Case{{1.0f, 1.0f, 1.0f}, 3e-39f, std::sqrt(2.0 / 3)}}) {  // uniform
    SCOPED_TRACE("T = " + std::to_string(c.temperature) + ", row " + std::to_string(c.row[0]) +
                 " " + std::to_string(c.row[1]) + " " + std::to_string(c.row[2]));
    ScoreOptions opt;
    opt.measure = Measure::egl;
    opt.logits = true;
    opt.temperature = c.temperature;
    opt.features = EmbeddingView::matrix(h.data(), DType::f32, 1, 2);
    const auto got = score(*resources_, PoolView::matrix(c.row.data(), DType::f32, 1, 3), opt);
    EXPECT_TRUE(near_rel(got[0], static_cast<float>(std::sqrt(26.0) * c.terms), 1e-6f, 0.0f));
  }
}

// Finite features near the float maximum: |h|^2 is kept in double, so a score that fits in float
// is exact, a one-hot row scores 0 (not 0 * Inf), and a score beyond the float range is refused
// naming the row instead of coming back as +Inf.
TEST_P(Influence, EglFeaturesNearTheFloatMaximum) {
  const float big = 3e38f;
  const std::vector<float> probs = {0.5f, 0.5f, 1.0f, 0.0f, 0.5f, 0.5f};
  std::vector<float> h = {big, 0,   0,   0,    // |h| = 3e38: score 3e38 sqrt(1/2) = 2.1e38
                          big, big, big, big,  // one-hot: 0
                          1,   2,   3,   4};
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 3, 2);
  ScoreOptions opt;
  opt.measure = Measure::egl;
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, 3, 4);
  const auto got = score(*resources_, view, opt);
  EXPECT_TRUE(near_rel(got[0], static_cast<float>(3e38 * std::sqrt(0.5)), 1e-6f, 0.0f));
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_TRUE(near_rel(got[2], static_cast<float>(std::sqrt(31.0 * 0.5)), 1e-6f, 0.0f));
  // Row 2's |h| = 6e38: its score, 4.2e38, is beyond the float range.
  for (float& v : std::span(h).subspan(8)) v = big;
  try {
    score(*resources_, view, opt);
    ADD_FAILURE() << "an egl score beyond the float range was returned";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 2) << e.what();
    EXPECT_NE(std::string(e.what()).find("features row 2: the egl score exceeds the float range"),
              std::string::npos)
        << e.what();
  }
}

// ---- BADGE -------------------------------------------------------------------------------------

// BADGE with the gradient embeddings g_i = (p_i - e_argmax) (x) h_i formed in double, drawing as
// documented: u = (mt19937_64(seed)() >> 11) * 2^-53, cumulative squared distances in row order.
std::vector<int64_t> materialised_badge(const std::vector<float>& probs,
                                        const std::vector<float>& h, int64_t c, int64_t dim,
                                        const std::vector<int64_t>& rows, int64_t k,
                                        uint64_t seed) {
  const auto n = static_cast<int64_t>(rows.size());
  std::vector<std::vector<double>> g(n, std::vector<double>(c * dim));
  for (int64_t i = 0; i < n; ++i) {
    const float* p = &probs[rows[i] * c];
    const int64_t y = std::max_element(p, p + c) - p;  // the first maximum
    for (int64_t j = 0; j < c; ++j)
      for (int64_t d = 0; d < dim; ++d)
        g[i][j * dim + d] = (p[j] - (j == y ? 1.0 : 0.0)) * h[rows[i] * dim + d];
  }
  auto dist = [&](int64_t a, const std::vector<double>& b) {
    double s = 0;
    for (size_t e = 0; e < b.size(); ++e) s += (g[a][e] - b[e]) * (g[a][e] - b[e]);
    return s;
  };
  std::vector<double> nearest(n);
  const std::vector<double> origin(c * dim, 0.0);
  for (int64_t i = 0; i < n; ++i) nearest[i] = dist(i, origin);
  std::vector<char> picked(n, 0);
  std::vector<int64_t> picks;
  std::mt19937_64 rng(seed);
  int64_t at = std::max_element(nearest.begin(), nearest.end()) - nearest.begin();
  while (true) {
    picks.push_back(rows[at]);
    picked[at] = 1;
    if (static_cast<int64_t>(picks.size()) == k) break;
    for (int64_t i = 0; i < n; ++i)
      nearest[i] = picks.size() == 1 ? dist(i, g[at]) : std::min(nearest[i], dist(i, g[at]));
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += picked[i] ? 0.0 : nearest[i];
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    at = -1;
    if (total > 0) {
      double cumulative = 0;
      for (int64_t i = 0; i < n && at < 0; ++i) {
        if (picked[i] || nearest[i] <= 0) continue;
        cumulative += nearest[i];
        if (cumulative > u * total) at = i;
      }
    } else {
      for (int64_t i = 0; i < n && at < 0; ++i)
        if (!picked[i]) at = i;
    }
  }
  return picks;
}

TEST_P(Influence, BadgeEqualsAnImplementationThatFormsTheGradients) {
  auto rng = seeded_rng(17101);
  for (auto [n, c, dim, k] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{60, 5, 4, 12},
                              {200, 3, 16, 40},
                              {150, 33, 2, 150}}) {
    SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(c) + " x " + std::to_string(dim));
    const auto probs = random_probabilities(n, c, rng, 2.0f);
    const auto h = random_normal(n * dim, rng);
    SelectOptions opt;
    opt.k = k;
    opt.strategy = Strategy::badge;
    opt.seed = 99 + n;
    opt.scoring.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
    const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
    const Selection sel = select(*resources_, view, opt);
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sel.indices, materialised_badge(probs, h, c, dim, all, k, opt.seed));
    for (PickReason r : sel.reasons) EXPECT_EQ(r, PickReason::badge);
    const auto scores = score(*resources_, view, opt.scoring);
    for (size_t i = 0; i < sel.indices.size(); ++i)
      EXPECT_EQ(sel.scores[i], scores[sel.indices[i]]) << "each pick carries its own score";
    // Restricted to the top candidates by entropy, in row order.
    opt.candidates = n / 2;
    opt.k = std::min<int64_t>(k, n / 2);
    const auto top = engine::rank_top(scores.data(), n, opt.candidates).indices;
    std::vector<int64_t> rows(top.begin(), top.end());
    std::sort(rows.begin(), rows.end());
    EXPECT_EQ(select(*resources_, view, opt).indices,
              materialised_badge(probs, h, c, dim, rows, opt.k, opt.seed));
  }
}

TEST_P(Influence, BadgeNeverPicksARowTwiceEvenWhenRowsAreIdentical) {
  const int64_t n = 30, c = 3, dim = 4;
  std::vector<float> probs, h;
  for (int64_t r = 0; r < n; ++r) {
    probs.insert(probs.end(), {0.2f, 0.5f, 0.3f});
    h.insert(h.end(), {0.1f, -2.0f, 3.0f, 0.7f});
  }
  SelectOptions opt;
  opt.k = n;
  opt.strategy = Strategy::badge;
  opt.scoring.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
  const Selection sel = select(*resources_, PoolView::matrix(probs.data(), DType::f32, n, c), opt);
  std::vector<int64_t> in_order(n);
  std::iota(in_order.begin(), in_order.end(), 0);
  EXPECT_EQ(sel.indices, in_order) << "every distance is 0: the lowest row not yet picked";
  // Three distinct rows among copies: the three are reached first, the copies after them.
  for (int64_t r = 0; r < n; ++r) probs[r * c] = 0.2f + 0.1f * static_cast<float>(r % 3) / 2;
  for (int64_t r = 0; r < n; ++r) probs[r * c + 2] = 1.0f - probs[r * c] - probs[r * c + 1];
  opt.k = 10;
  const Selection mixed =
      select(*resources_, PoolView::matrix(probs.data(), DType::f32, n, c), opt);
  std::set<int64_t> kinds;
  for (int i = 0; i < 3; ++i) kinds.insert(mixed.indices[i] % 3);
  EXPECT_EQ(kinds.size(), 3u);
  EXPECT_EQ(std::set<int64_t>(mixed.indices.begin(), mixed.indices.end()).size(), 10u);
}

TEST_P(Influence, BadgeFirstPickIsTheLargestGradient) {
  auto rng = seeded_rng(17102);
  const int64_t n = 500, c = 7, dim = 9;
  const auto probs = random_probabilities(n, c, rng);
  auto h = random_normal(n * dim, rng);
  for (int64_t d = 0; d < dim; ++d) h[321 * dim + d] *= 50;  // the largest |h| by far
  SelectOptions opt;
  opt.k = 1;
  opt.strategy = Strategy::badge;
  opt.scoring.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
  EXPECT_EQ(select(*resources_, PoolView::matrix(probs.data(), DType::f32, n, c), opt).indices,
            (std::vector<int64_t>{321}));
}

TEST_P(Influence, BadgeBadArguments) {
  const std::vector<float> probs = {0.5f, 0.5f, 0.9f, 0.1f};
  std::vector<float> h = {1, 2, 3, 4};
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 2, 2);
  SelectOptions opt;
  opt.k = 1;
  opt.strategy = Strategy::badge;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "no features";
  opt.scoring.features = EmbeddingView::matrix(h.data(), DType::f32, 2, 2);
  opt.scoring.logits = true;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "logits";
  opt.scoring.logits = false;
  opt.candidates = 1;
  opt.k = 2;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "fewer candidates than k";
  opt.candidates = 0;
  opt.labeled_rows = {0};
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "labeled rows are core-set's";
  opt.labeled_rows.clear();
  h[3] = std::numeric_limits<float>::infinity();
  try {
    select(*resources_, view, opt);
    ADD_FAILURE() << "Inf feature accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 1) << e.what();
  }
}

// ---- core-set ----------------------------------------------------------------------------------

// k-center greedy by brute force in double over `rows`, from the centers given; without centers
// the first pick is `first`.
std::vector<int64_t> brute_force_kcenter(const std::vector<float>& x, int64_t dim,
                                         const std::vector<int64_t>& rows,
                                         std::vector<std::vector<double>> centers,
                                         std::vector<int64_t> excluded, int64_t first, int64_t k) {
  auto dist = [&](int64_t row, const std::vector<double>& c) {
    double s = 0;
    for (int64_t d = 0; d < dim; ++d) s += (x[row * dim + d] - c[d]) * (x[row * dim + d] - c[d]);
    return s;
  };
  auto point = [&](int64_t row) {
    return std::vector<double>(x.begin() + row * dim, x.begin() + (row + 1) * dim);
  };
  std::vector<int64_t> picks;
  while (static_cast<int64_t>(picks.size()) < k) {
    int64_t best = -1;
    double best_d = -1;
    if (centers.empty()) {
      best = first;
    } else {
      for (int64_t row : rows) {  // ascending: ties keep the lower row
        if (std::find(excluded.begin(), excluded.end(), row) != excluded.end()) continue;
        double d = std::numeric_limits<double>::infinity();
        for (const auto& c : centers) d = std::min(d, dist(row, c));
        if (d > best_d) {
          best_d = d;
          best = row;
        }
      }
    }
    picks.push_back(best);
    excluded.push_back(best);
    centers.push_back(point(best));
  }
  return picks;
}

TEST_P(Influence, CoresetEqualsABruteForceKCenterGreedy) {
  auto rng = seeded_rng(17201);
  const int64_t n = 300, c = 4, dim = 6, k = 25;
  const auto probs = random_probabilities(n, c, rng);
  const auto x = random_normal(n * dim, rng, 3.0f);
  const auto extra = random_normal(2 * dim, rng, 3.0f);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = k;
  opt.strategy = Strategy::coreset;
  opt.embeddings = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  const auto scores = score(*resources_, view, opt.scoring);
  const int64_t best = engine::rank_top(scores.data(), n, 1).indices[0];
  auto point = [&](const float* p) { return std::vector<double>(p, p + dim); };

  // L = 0: the first pick is the best-ranked row.
  Selection sel = select(*resources_, view, opt);
  EXPECT_EQ(sel.indices, brute_force_kcenter(x, dim, all, {}, {}, best, k));
  for (PickReason r : sel.reasons) EXPECT_EQ(r, PickReason::coreset);
  // Labeled rows, as indices.
  opt.labeled_rows = {5, 77, 5, 250};
  sel = select(*resources_, view, opt);
  EXPECT_EQ(sel.indices,
            brute_force_kcenter(x, dim, all,
                                {point(&x[5 * dim]), point(&x[77 * dim]), point(&x[250 * dim])},
                                {5, 77, 250}, -1, k));
  // And as embeddings of rows outside the pool.
  opt.labeled_rows = {};
  opt.labeled_embeddings = EmbeddingView::matrix(extra.data(), DType::f32, 2, dim);
  sel = select(*resources_, view, opt);
  EXPECT_EQ(sel.indices,
            brute_force_kcenter(x, dim, all, {point(&extra[0]), point(&extra[dim])}, {}, -1, k));
  // Over the top 100 candidates by entropy.
  opt.candidates = 100;
  std::vector<int64_t> rows = engine::rank_top(scores.data(), n, 100).indices;
  std::sort(rows.begin(), rows.end());
  EXPECT_EQ(select(*resources_, view, opt).indices,
            brute_force_kcenter(x, dim, rows, {point(&extra[0]), point(&extra[dim])}, {}, -1, k));
}

TEST_P(Influence, CoresetChunkedEqualsInMemory) {
  auto rng = seeded_rng(17202);
  const int64_t n = 4000, c = 3, dim = 128, k = 30;
  const auto probs = random_probabilities(n, c, rng);
  const auto x = random_normal(n * dim, rng);
  const auto x16 = encode(x, DType::bf16);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  for (DType dtype : {DType::f32, DType::bf16}) {
    SelectOptions opt;
    opt.k = k;
    opt.strategy = Strategy::coreset;
    opt.labeled_rows = {0, 1, 2};
    opt.embeddings = EmbeddingView::matrix(
        dtype == DType::f32 ? static_cast<const void*>(x.data()) : x16.data(), dtype, n, dim);
    resources_->set_memory_budget(0);
    const Selection whole = select(*resources_, view, opt);
    // Room for the candidates' ranking and distances, and for a tenth of the embeddings.
    resources_->set_memory_budget(static_cast<std::size_t>(
        resources_->backend().working_bytes_fixed(engine::ScoreProblem{view, opt.scoring}, n) +
        n * engine::kCenterSearchBytesPerRow +
        n * dim * static_cast<int64_t>(dtype_size(dtype)) / 10));
    EXPECT_EQ(select(*resources_, view, opt).indices, whole.indices);
  }
}

TEST_P(Influence, CoresetBadArguments) {
  const std::vector<float> probs = {0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.7f};
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 3, 2);
  SelectOptions opt;
  opt.k = 2;
  opt.strategy = Strategy::coreset;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "no embeddings";
  opt.embeddings = EmbeddingView::matrix(x.data(), DType::f32, 3, 2);
  opt.labeled_rows = {3};
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "labeled row out of range";
  opt.labeled_rows = {0, 1};
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "2 picks, 1 unlabeled row";
  opt.labeled_rows = {};
  std::vector<float> wrong(3);
  opt.labeled_embeddings = EmbeddingView::matrix(wrong.data(), DType::f32, 1, 3);
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "labeled D differs";
  wrong = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  opt.labeled_embeddings = EmbeddingView::matrix(wrong.data(), DType::f32, 1, 2);
  EXPECT_THROW(select(*resources_, view, opt), InvalidInput) << "NaN labeled embedding";
  opt.labeled_embeddings.reset();
  x[4] = std::numeric_limits<float>::infinity();
  try {
    select(*resources_, view, opt);
    ADD_FAILURE() << "Inf embedding accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 2) << e.what();
  }
}

}  // namespace
}  // namespace quarry::test
