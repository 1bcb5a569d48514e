// The seeded tie-break (SelectOptions::tie_break = random): equal scores rank by
// splitmix64(splitmix64(seed) ^ global row). Checked against the published splitmix64 sequence
// and an independent sort; reproducible, different from row order, the same in chunks, in shards
// and through partials, and on every backend (the CUDA instances skip without a GPU).

#include <algorithm>
#include <numeric>
#include <string>

#include "engine/backend.hpp"
#include "engine/ranking.hpp"
#include "kernels/tie_key.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

TEST(TieKey, IsSplitmix64OnEveryBuild) {
  // splitmix64's first two outputs from state 0 (Vigna's reference splitmix64.c).
  EXPECT_EQ(kernels::splitmix64(0), 0xe220a8397b1dcdafull);
  EXPECT_EQ(kernels::splitmix64(0x9e3779b97f4a7c15ull), 0x6e789e6aa1b965f4ull);
  // tie_key(seed, row) = splitmix64(splitmix64(seed) ^ row), values from an independent
  // Python implementation with big integers.
  EXPECT_EQ(kernels::tie_key(0, 0), 0xa706dd2f4d197e6full);
  EXPECT_EQ(kernels::tie_key(0, 1), 0x08b4fda8c892b50eull);
  EXPECT_EQ(kernels::tie_key(7, 12345), 0x19bd65d14c45ecf7ull);
  EXPECT_EQ(kernels::tie_key(~0ull, int64_t{1} << 40), 0x37040d6ba2331cddull);
}

TEST(TieKey, RankOrderIsStrictAndScoreFirst) {
  const engine::RankOrder row{}, seeded{TieBreak::random, 5};
  EXPECT_TRUE(row.before(0.5f, 9, 0.5f, 10));
  EXPECT_FALSE(row.before(0.5f, 10, 0.5f, 9));
  // A higher score wins whatever the keys.
  for (int64_t a = 0; a < 50; ++a) {
    EXPECT_TRUE(seeded.before(0.6f, a, 0.5f, a + 1));
    EXPECT_FALSE(seeded.before(0.5f, a, 0.6f, a + 1));
    // Distinct rows never tie: exactly one of the two orders holds.
    EXPECT_NE(seeded.before(0.5f, a, 0.5f, a + 1), seeded.before(0.5f, a + 1, 0.5f, a));
    EXPECT_FALSE(seeded.before(0.5f, a, 0.5f, a));
  }
}

TEST(TieKey, OptionParsing) {
  EXPECT_EQ(parse_tie_break("row"), TieBreak::row);
  EXPECT_EQ(parse_tie_break("random"), TieBreak::random);
  EXPECT_EQ(to_string(TieBreak::random), "random");
  EXPECT_THROW(parse_tie_break("hash"), InvalidArgument);
}

// n probability rows, all of them one of `kinds` rows: long runs of exactly equal scores.
std::vector<float> tied_pool(int64_t n, int64_t c, int kinds) {
  std::vector<float> probs(n * c);
  for (int64_t r = 0; r < n; ++r) {
    const int kind = static_cast<int>((r * 7) % kinds);
    for (int64_t j = 0; j < c; ++j) probs[r * c + j] = j == kind % c ? 0.4f + 0.1f * kind : 0.0f;
    // The rest of the mass spread evenly over the other classes.
    const float rest = (1.0f - probs[r * c + kind % c]) / static_cast<float>(c - 1);
    for (int64_t j = 0; j < c; ++j)
      if (j != kind % c) probs[r * c + j] = rest;
  }
  return probs;
}

// The reference: every row's score from score(), then an independent sort by (score desc,
// tie_key asc).
std::vector<int64_t> reference_order(const std::vector<float>& scores, uint64_t seed) {
  std::vector<int64_t> rows(scores.size());
  std::iota(rows.begin(), rows.end(), int64_t{0});
  std::sort(rows.begin(), rows.end(), [&](int64_t a, int64_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return kernels::tie_key(seed, a) < kernels::tie_key(seed, b);
  });
  return rows;
}

class Ties : public OnEveryBackend {};
QUARRY_ON_EVERY_BACKEND(Ties);

TEST_P(Ties, SeededOrderMatchesAnIndependentSort) {
  const int64_t n = 2000, c = 4;
  const auto probs = tied_pool(n, c, 3);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.scoring.measure = Measure::margin;
  opt.tie_break = TieBreak::random;
  const auto scores = score(*resources_, pool, opt.scoring);
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{123456789}}) {
    for (int64_t k : {int64_t{1}, int64_t{37}, int64_t{700}, n}) {
      SCOPED_TRACE("seed " + std::to_string(seed) + ", k " + std::to_string(k));
      opt.seed = seed;
      opt.k = k;
      const Selection sel = select(*resources_, pool, opt);
      const auto want = reference_order(scores, seed);
      EXPECT_EQ(sel.indices, std::vector<int64_t>(want.begin(), want.begin() + k));
      // Reproducible.
      EXPECT_EQ(select(*resources_, pool, opt).indices, sel.indices);
    }
  }
}

TEST_P(Ties, TiesDoNotFollowRowOrder) {
  // Every row has the same score: row order picks rows 0..k-1, the seeded rule does not, and two
  // seeds pick differently.
  const int64_t n = 1000, c = 3, k = 50;
  const std::vector<float> probs(n * c, 1.0f / 3);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = k;
  std::vector<int64_t> first_rows(k);
  std::iota(first_rows.begin(), first_rows.end(), int64_t{0});
  EXPECT_EQ(select(*resources_, pool, opt).indices, first_rows);
  opt.tie_break = TieBreak::random;
  opt.seed = 1;
  const auto a = select(*resources_, pool, opt).indices;
  opt.seed = 2;
  const auto b = select(*resources_, pool, opt).indices;
  EXPECT_NE(a, first_rows);
  EXPECT_NE(a, b);
  // Spread over the pool: with 50 of 1,000 rows, the picks reach far past row 50.
  EXPECT_GT(*std::max_element(a.begin(), a.end()), 500);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
}

TEST_P(Ties, ChunkedRankingEqualsWhole) {
  const int64_t n = 1500, c = 5, k = 60;
  const auto probs = tied_pool(n, c, 4);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = k;
  opt.tie_break = TieBreak::random;
  opt.seed = 99;
  const Selection whole = select(*resources_, pool, opt);
  const engine::Backend& backend = resources_->backend();
  const engine::ScoreProblem problem{pool, opt.scoring, 0, engine::RankOrder::of(opt)};
  for (int64_t rows : {int64_t{1}, int64_t{7}, int64_t{333}}) {
    SCOPED_TRACE("chunk rows " + std::to_string(rows));
    resources_->set_memory_budget(static_cast<std::size_t>(
        backend.working_bytes_fixed(problem, k) +
        (backend.working_bytes_per_row(pool) + backend.working_bytes_per_feature_row(problem)) *
            rows));
    const Selection chunked = select(*resources_, pool, opt);
    EXPECT_EQ(chunked.indices, whole.indices);
    EXPECT_EQ(chunked.scores, whole.scores);
  }
}

TEST_P(Ties, DiversityAndExplorationUseTheSeededOrder) {
  // Exploration picks are listed best first: equal scores in tie-key order.
  const int64_t n = 400, c = 3;
  const std::vector<float> probs(n * c, 1.0f / 3);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 20;
  opt.explore = 0.5;
  opt.seed = 3;
  opt.tie_break = TieBreak::random;
  const Selection sel = select(*resources_, pool, opt);
  ASSERT_EQ(sel.indices.size(), 20u);
  for (size_t i = 1; i < 10; ++i)
    EXPECT_LT(kernels::tie_key(3, sel.indices[i - 1]), kernels::tie_key(3, sel.indices[i]));
  for (size_t i = 11; i < 20; ++i)
    EXPECT_LT(kernels::tie_key(3, sel.indices[i - 1]), kernels::tie_key(3, sel.indices[i]));
  // Diversity clusters the top candidates, which are the seeded order's first rows.
  std::vector<float> emb(n * 2);
  for (int64_t r = 0; r < n; ++r) {
    emb[2 * r] = static_cast<float>(r % 17);
    emb[2 * r + 1] = static_cast<float>(r % 5);
  }
  SelectOptions div = opt;
  div.explore = 0;
  div.k = 5;
  div.candidates = 40;
  div.embeddings = EmbeddingView::matrix(emb.data(), DType::f32, n, 2);
  const Selection picked = select(*resources_, pool, div);
  std::vector<float> scores(n, 0.0f);  // all equal
  const auto order = reference_order(scores, 3);
  const std::vector<int64_t> candidates(order.begin(), order.begin() + 40);
  for (int64_t row : picked.indices)
    EXPECT_NE(std::find(candidates.begin(), candidates.end(), row), candidates.end()) << row;
}

TEST_P(Ties, PartialsRecordTheTieBreakAndMergeExactly) {
  const int64_t n = 900, c = 4, k = 45;
  const auto probs = tied_pool(n, c, 2);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = k;
  opt.seed = 2024;
  opt.tie_break = TieBreak::random;
  const Selection whole = select(*resources_, pool, opt);
  for (const std::vector<int64_t>& sizes :
       {std::vector<int64_t>{1, 899}, {300, 300, 300}, {7, 500, 393}, {899, 1}}) {
    std::vector<PoolView> shards;
    std::vector<Partial> partials;
    int64_t offset = 0;
    for (int64_t rows : sizes) {
      PoolView part = pool;
      part.data = probs.data() + offset * c;
      part.rows = rows;
      shards.push_back(part);
      const Partial p = select_partial(*resources_, part, opt, offset, 0);
      const std::string text = to_json(p);
      EXPECT_NE(text.find("\"tie_break\":\"random\""), std::string::npos);
      partials.push_back(partial_from_json(text));
      EXPECT_EQ(partials.back().options.tie_break, TieBreak::random);
      offset += rows;
    }
    EXPECT_EQ(select(*resources_, shards, opt).indices, whole.indices);
    std::reverse(partials.begin(), partials.end());
    const Selection merged = merge(*resources_, partials, k);
    EXPECT_EQ(merged.indices, whole.indices);
    EXPECT_EQ(merged.scores, whole.scores);
  }
  // Partials made with different tie-breaks do not merge.
  SelectOptions by_row = opt;
  by_row.tie_break = TieBreak::row;
  PoolView first = pool, second = pool;
  first.rows = 450;
  second.data = probs.data() + 450 * c;
  second.rows = 450;
  const std::vector<Partial> mixed = {select_partial(*resources_, first, opt, 0, 0),
                                      select_partial(*resources_, second, by_row, 450, 0)};
  EXPECT_THROW(merge(*resources_, mixed, k), InvalidArgument);
  // A partial whose rows are in row order where the seeded order was recorded is refused.
  Partial bad = select_partial(*resources_, first, by_row, 0, 0);
  bad.options.tie_break = TieBreak::random;
  EXPECT_THROW(
      merge(*resources_,
            std::vector<Partial>{bad, select_partial(*resources_, second, opt, 450, 0)}, k),
      InvalidInput);
}

TEST(TieKey, PartialsWithoutTheFieldRankByRow) {
  // A partial written before the field existed reads as the row rule.
  std::vector<float> probs(30, 1.0f / 3);
  Resources cpu(Device::cpu);
  SelectOptions opt;
  opt.k = 3;
  std::string text =
      to_json(select_partial(cpu, PoolView::matrix(probs.data(), DType::f32, 10, 3), opt, 0, 0));
  const std::string field = "\"tie_break\":\"row\"";
  auto at = text.find(field);
  ASSERT_NE(at, std::string::npos);
  // The field and the comma that joins it to its neighbour.
  if (at > 0 && text[at - 1] == ',') {
    text.erase(at - 1, field.size() + 1);
  } else {
    ASSERT_EQ(text[at + field.size()], ',');
    text.erase(at, field.size() + 1);
  }
  EXPECT_EQ(partial_from_json(text).options.tie_break, TieBreak::row);
}

}  // namespace
}  // namespace quarry::test
