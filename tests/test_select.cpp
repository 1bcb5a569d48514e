// Ranking and exact top-k: descending score, ties broken by ascending row, k from 1 to N.

#include <algorithm>
#include <numeric>

#include "test_util.hpp"

namespace quarry::test {
namespace {

using Select = OnEveryBackend;

QUARRY_ON_EVERY_BACKEND(Select);

/// The rank order by brute force: sort every row by (score desc, row asc).
std::vector<int64_t> reference_order(const std::vector<float>& scores) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  return idx;
}

SelectOptions options(int64_t k, Measure m = Measure::entropy, bool logits = false) {
  SelectOptions o;
  o.k = k;
  o.scoring.measure = m;
  o.scoring.logits = logits;
  return o;
}

TEST_P(Select, MatchesABruteForceSortForEveryK) {
  auto rng = seeded_rng(2001);
  const int64_t n = 3000, c = 10;
  const auto pool = random_probabilities(n, c, rng);
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, n, c);
  const auto scores = score(*resources_, view, ScoreOptions{});
  const auto order = reference_order(scores);
  for (int64_t k : {1, 2, 31, 32, 33, 255, 256, 1000, 2999, 3000}) {
    const Selection sel = select(*resources_, view, options(k));
    ASSERT_EQ(static_cast<int64_t>(sel.indices.size()), k);
    EXPECT_TRUE(std::equal(sel.indices.begin(), sel.indices.end(), order.begin())) << "k=" << k;
    for (int64_t i = 0; i < k; ++i) {
      EXPECT_EQ(sel.scores[i], scores[sel.indices[i]]);
      EXPECT_EQ(sel.reasons[i], PickReason::rank);
    }
  }
}

TEST_P(Select, ExactTiesGoToTheLowerRow) {
  // Four distinct rows repeated: every score appears 250 times.
  const int64_t n = 1000, c = 3;
  const float rows[4][3] = {
      {0.5f, 0.25f, 0.25f}, {1.0f, 0.0f, 0.0f}, {0.4f, 0.3f, 0.3f}, {0.8f, 0.1f, 0.1f}};
  std::vector<float> pool(n * c);
  for (int64_t r = 0; r < n; ++r)
    for (int j = 0; j < c; ++j) pool[r * c + j] = rows[(r * 7) % 4][j];
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, n, c);
  const Selection sel = select(*resources_, view, options(600));
  // The most uncertain row pattern (0.4, 0.3, 0.3) first, in ascending row order.
  std::vector<int64_t> expected;
  for (int pattern : {2, 0, 3})
    for (int64_t r = 0; r < n; ++r)
      if ((r * 7) % 4 == pattern) expected.push_back(r);
  expected.resize(600);
  EXPECT_EQ(sel.indices, expected);
}

TEST_P(Select, AllScoresEqual) {
  const int64_t n = 5000, c = 4;
  std::vector<float> pool(n * c, 0.25f);
  const Selection sel =
      select(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), options(1234));
  std::vector<int64_t> expected(1234);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(sel.indices, expected);
}

TEST_P(Select, OneRowPool) {
  const std::vector<float> pool = {0.6f, 0.4f};
  const Selection sel =
      select(*resources_, PoolView::matrix(pool.data(), DType::f32, 1, 2), options(1));
  ASSERT_EQ(sel.indices.size(), 1u);
  EXPECT_EQ(sel.indices[0], 0);
}

TEST_P(Select, EveryMeasureRanksByItsOwnScore) {
  auto rng = seeded_rng(2002);
  const int64_t n = 2048, c = 33;
  const auto logits = random_logits(n, c, rng);
  const PoolView view = PoolView::matrix(logits.data(), DType::f32, n, c);
  for (Measure m : {Measure::entropy, Measure::least_confidence, Measure::margin, Measure::ratio}) {
    ScoreOptions so;
    so.measure = m;
    so.logits = true;
    const auto scores = score(*resources_, view, so);
    const auto order = reference_order(scores);
    const Selection sel = select(*resources_, view, options(100, m, true));
    EXPECT_TRUE(std::equal(sel.indices.begin(), sel.indices.end(), order.begin())) << to_string(m);
  }
}

TEST_P(Select, StridedRowsReadOnlyTheirClasses) {
  // Rows of 5 classes stored 8 apart; the 3 padding values are garbage that must be ignored.
  auto rng = seeded_rng(2003);
  const int64_t n = 500, c = 5, stride = 8;
  const auto dense = random_probabilities(n, c, rng);
  std::vector<float> padded(n * stride, std::nanf(""));
  for (int64_t r = 0; r < n; ++r)
    std::copy_n(dense.begin() + r * c, c, padded.begin() + r * stride);
  PoolView view = PoolView::matrix(padded.data(), DType::f32, n, c);
  view.row_stride = stride;
  const auto a = score(*resources_, view, ScoreOptions{});
  const auto b =
      score(*resources_, PoolView::matrix(dense.data(), DType::f32, n, c), ScoreOptions{});
  EXPECT_EQ(a, b);
}

TEST_P(Select, SameInputSameOutput) {
  auto rng = seeded_rng(2004);
  const int64_t n = 20000, c = 7;
  const auto pool = random_probabilities(n, c, rng, 0.5f);
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, n, c);
  const Selection first = select(*resources_, view, options(500, Measure::margin));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(select(*resources_, view, options(500, Measure::margin)).indices, first.indices);
}

}  // namespace
}  // namespace quarry::test
