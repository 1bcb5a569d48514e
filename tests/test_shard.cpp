// Sharded pools on every backend: select() over a list of shards, and partials made shard by
// shard (through JSON, merged in any order or as a tree) give exactly the single-pool selection:
// uneven shards, ties across shard boundaries, every measure family, diversity and exploration.
// Bad partials and mismatched shards are refused.

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "test_util.hpp"

namespace quarry::test {
namespace {

// Rows [first, first + count) of a view, in place.
PoolView slice(const PoolView& pool, int64_t first, int64_t count) {
  PoolView part = pool;
  part.data = static_cast<const char*>(pool.data) +
              first * pool.row_stride * static_cast<int64_t>(dtype_size(pool.dtype));
  part.rows = count;
  return part;
}

EmbeddingView slice(const EmbeddingView& e, int64_t first, int64_t count) {
  EmbeddingView part = e;
  part.data = static_cast<const char*>(e.data) +
              first * e.row_stride * static_cast<int64_t>(dtype_size(e.dtype));
  part.rows = count;
  return part;
}

void expect_same(const Selection& got, const Selection& want, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(got.indices, want.indices);
  EXPECT_EQ(got.scores, want.scores);
  EXPECT_EQ(got.reasons, want.reasons);
  EXPECT_EQ(got.clusters, want.clusters);
}

class Sharded : public OnEveryBackend {
 protected:
  // Checks every way of selecting from `pool` cut into shards of `sizes` rows against select() on
  // the whole pool: select() over the shards; one partial per shard (through JSON) merged in
  // reverse order; a tree of combine() steps; and merges asking for fewer picks than the
  // partials were made for.
  void expect_sharded_equals_whole(const PoolView& pool, const std::vector<int64_t>& sizes,
                                   const SelectOptions& options,
                                   std::optional<EmbeddingView> embeddings = std::nullopt) {
    ASSERT_EQ(std::accumulate(sizes.begin(), sizes.end(), int64_t{0}), pool.rows);
    SelectOptions whole_options = options;
    whole_options.embeddings = embeddings;
    const Selection whole = select(*resources_, pool, whole_options);
    ASSERT_EQ(static_cast<int64_t>(whole.indices.size()), options.k);

    std::vector<PoolView> shards;
    std::vector<EmbeddingView> shard_embeddings;
    std::vector<int64_t> offsets;
    int64_t offset = 0;
    for (int64_t rows : sizes) {
      shards.push_back(slice(pool, offset, rows));
      if (embeddings) shard_embeddings.push_back(slice(*embeddings, offset, rows));
      offsets.push_back(offset);
      offset += rows;
    }
    expect_same(select(*resources_, shards, options, shard_embeddings), whole, "select(shards)");

    std::vector<Partial> partials;
    for (size_t i = 0; i < shards.size(); ++i) {
      SelectOptions shard_options = whole_options;
      if (embeddings) shard_options.embeddings = shard_embeddings[i];
      const Partial p = select_partial(*resources_, shards[i], shard_options, offsets[i],
                                       options.explore > 0 ? pool.rows : 0);
      // What travels: k rows, or with diversity max(k, candidates) rows (all, in a small shard).
      const int64_t clusters = options.k - std::llround(options.explore * options.k);
      const int64_t kept =
          embeddings ? std::max(options.k, options.candidates ? options.candidates : 10 * clusters)
                     : options.k;
      EXPECT_EQ(static_cast<int64_t>(p.indices.size()), std::min(kept, sizes[i]));
      EXPECT_EQ(p.embeddings.size(), p.indices.size() * (embeddings ? embeddings->dim : 0));
      EXPECT_LE(static_cast<int64_t>(p.explore_rows.size()), options.explore > 0 ? options.k : 0);
      partials.push_back(partial_from_json(to_json(p)));
      EXPECT_EQ(partials.back().indices, p.indices);
      EXPECT_EQ(partials.back().scores, p.scores);
      EXPECT_EQ(partials.back().embeddings, p.embeddings);
      EXPECT_EQ(partials.back().explore_scores, p.explore_scores);
    }
    std::vector<Partial> reversed(partials.rbegin(), partials.rend());
    expect_same(merge(*resources_, reversed, options.k), whole, "merge(partials)");

    // A tree reduction: neighbours combined pairwise, then the results merged.
    std::vector<Partial> level = partials;
    while (level.size() > 1) {
      std::vector<Partial> next;
      for (size_t i = 0; i < level.size(); i += 2)
        next.push_back(i + 1 < level.size() ? combine(std::vector<Partial>{level[i], level[i + 1]})
                                            : level[i]);
      level = std::move(next);
    }
    expect_same(merge(*resources_, level, options.k), whole, "tree of combine()");

    for (int64_t fewer : {int64_t{1}, options.k / 2}) {
      if (fewer < 1 || fewer == options.k) continue;
      whole_options.k = fewer;
      expect_same(merge(*resources_, partials, fewer), select(*resources_, pool, whole_options),
                  "merge for k = " + std::to_string(fewer));
    }
  }

  // Uneven cuts of n rows: one-row shards, shards with fewer rows than k, one big shard.
  static std::vector<std::vector<int64_t>> uneven_cuts(int64_t n) {
    return {{n}, {1, n - 1}, {n - 1, 1}, {1, 1, 3, n - 10, 5}, {n / 3, 2, n - n / 3 - 2}};
  }
};

QUARRY_ON_EVERY_BACKEND(Sharded);

TEST_P(Sharded, SingleModelMeasures) {
  auto rng = seeded_rng(9001);
  const int64_t n = 300, c = 7;
  const auto probs = random_probabilities(n, c, rng);
  const auto logits = random_logits(n, c, rng);
  for (Measure measure :
       {Measure::entropy, Measure::margin, Measure::least_confidence, Measure::ratio}) {
    for (bool from_logits : {false, true}) {
      SCOPED_TRACE(std::string(to_string(measure)) + (from_logits ? " logits" : ""));
      const PoolView pool =
          PoolView::matrix(from_logits ? logits.data() : probs.data(), DType::f32, n, c);
      SelectOptions opt;
      opt.k = 12;
      opt.scoring.measure = measure;
      opt.scoring.logits = from_logits;
      for (const auto& sizes : uneven_cuts(n)) expect_sharded_equals_whole(pool, sizes, opt);
    }
  }
}

TEST_P(Sharded, ExactTiesAcrossShardBoundaries) {
  // Every row is one of three probability rows, so scores tie exactly in long runs; cuts fall
  // inside the runs and k ends inside one.
  const int64_t n = 120, c = 3;
  const float rows[3][3] = {{0.5f, 0.25f, 0.25f}, {0.25f, 0.5f, 0.25f}, {0.75f, 0.125f, 0.125f}};
  std::vector<float> probs;
  for (int64_t r = 0; r < n; ++r) {
    const int kind = r % 5 == 0 ? 2 : static_cast<int>(r % 2);
    probs.insert(probs.end(), rows[kind], rows[kind] + 3);
  }
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 50;
  for (const auto& sizes : uneven_cuts(n)) expect_sharded_equals_whole(pool, sizes, opt);
  for (const std::vector<int64_t> sizes : {std::vector<int64_t>{7, 7, 7, 99}, {60, 60}})
    expect_sharded_equals_whole(pool, sizes, opt);
  // k = N: every row, ties in row order.
  opt.k = n;
  expect_sharded_equals_whole(pool, {1, 59, 60}, opt);
}

TEST_P(Sharded, CommitteeMeasuresAndLayouts) {
  auto rng = seeded_rng(9002);
  const int64_t m = 4, n = 150, c = 3;
  const auto members_first = random_probabilities(m * n, c, rng, 1.0f);
  const auto rows_first = to_rows_first(members_first, m, n, c);
  for (Measure measure : {Measure::vote_entropy, Measure::consensus_entropy, Measure::kl_max,
                          Measure::bald, Measure::variation_ratio}) {
    SCOPED_TRACE(std::string(to_string(measure)));
    SelectOptions opt;
    opt.k = 20;
    opt.scoring.measure = measure;
    for (const auto& sizes : uneven_cuts(n)) {
      expect_sharded_equals_whole(PoolView::committee(members_first.data(), DType::f32, m, n, c),
                                  sizes, opt);
      expect_sharded_equals_whole(
          PoolView::committee(rows_first.data(), DType::f32, m, n, c, Layout::rows_first), sizes,
          opt);
    }
  }
}

TEST_P(Sharded, VotesWithRowsNobodyVotedOn) {
  auto rng = seeded_rng(9003);
  const int64_t m = 5, n = 90;
  std::vector<int32_t> votes(m * n);
  std::uniform_int_distribution<int32_t> vote(-1, 2);
  for (auto& v : votes) v = vote(rng);
  for (int64_t r : {0, 17, 18, 89})  // nobody voted: these score -inf and come last
    for (int64_t i = 0; i < m; ++i) votes[i * n + r] = -1;
  const PoolView pool = PoolView::votes(votes.data(), DType::i32, m, n);
  for (Measure measure : {Measure::vote_entropy, Measure::variation_ratio}) {
    SCOPED_TRACE(std::string(to_string(measure)));
    SelectOptions opt;
    opt.scoring.measure = measure;
    opt.k = 15;
    for (const auto& sizes : uneven_cuts(n)) expect_sharded_equals_whole(pool, sizes, opt);
    opt.k = n;  // the -inf rows travel through JSON as "-inf"
    expect_sharded_equals_whole(pool, {17, 2, 70, 1}, opt);
  }
}

TEST_P(Sharded, HalfAndDoublePrecisionPools) {
  auto rng = seeded_rng(9004);
  const int64_t n = 200, c = 4;
  SelectOptions opt;
  opt.k = 25;
  opt.explore = 0.2;
  for (DType dtype : {DType::f16, DType::bf16}) {
    const auto bits = encode(random_pool_values(n, c, dtype, false, rng), dtype);
    expect_sharded_equals_whole(PoolView::matrix(bits.data(), dtype, n, c), {3, 1, 196}, opt);
  }
  const auto probs = random_probabilities(n, c, rng);
  const std::vector<double> wide(probs.begin(), probs.end());
  expect_sharded_equals_whole(PoolView::matrix(wide.data(), DType::f64, n, c), {3, 1, 196}, opt);
}

TEST_P(Sharded, Diversity) {
  auto rng = seeded_rng(9005);
  const int64_t n = 400, c = 3, d = 6;
  const auto probs = random_probabilities(n, c, rng);
  const auto emb = random_normal(n * d, rng);
  const auto emb16 = encode(emb, DType::f16);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 12;
  opt.seed = opt.kmeans.seed = 5;
  for (const auto& sizes : uneven_cuts(n)) {
    expect_sharded_equals_whole(pool, sizes, opt,
                                EmbeddingView::matrix(emb.data(), DType::f32, n, d));
    expect_sharded_equals_whole(pool, sizes, opt,
                                EmbeddingView::matrix(emb16.data(), DType::f16, n, d));
  }
  opt.candidates = 37;
  opt.kmeans.iterations = 4;
  expect_sharded_equals_whole(pool, {5, 200, 1, 194}, opt,
                              EmbeddingView::matrix(emb.data(), DType::f32, n, d));
  // Every row a candidate.
  opt.candidates = n;
  expect_sharded_equals_whole(pool, {100, 300}, opt,
                              EmbeddingView::matrix(emb.data(), DType::f32, n, d));
}

TEST_P(Sharded, Exploration) {
  auto rng = seeded_rng(9006);
  const int64_t n = 250, c = 4, d = 3;
  const auto probs = random_probabilities(n, c, rng);
  const auto emb = random_normal(n * d, rng);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  for (uint64_t seed : {1u, 2u, 99u}) {
    SelectOptions opt;
    opt.k = 16;
    opt.explore = 0.25;
    opt.seed = opt.kmeans.seed = seed;
    for (const auto& sizes : uneven_cuts(n)) {
      expect_sharded_equals_whole(pool, sizes, opt);
      expect_sharded_equals_whole(pool, sizes, opt,
                                  EmbeddingView::matrix(emb.data(), DType::f32, n, d));
    }
  }
  // Nearly every pick explored, and k = N with half of it explored.
  SelectOptions opt;
  opt.explore = 0.9;
  opt.k = 10;
  expect_sharded_equals_whole(pool, {1, 1, 248}, opt);
  opt.explore = 0.5;
  opt.k = n;
  expect_sharded_equals_whole(pool, {1, 124, 125}, opt);
}

TEST_P(Sharded, ScoreOverShardsEqualsTheWholePool) {
  auto rng = seeded_rng(9007);
  const int64_t m = 3, n = 100, c = 5;
  const auto probs = random_probabilities(m * n, c, rng, 1.0f);
  const PoolView pool = PoolView::committee(probs.data(), DType::f32, m, n, c);
  ScoreOptions opt;
  opt.measure = Measure::bald;
  const std::vector<PoolView> shards = {slice(pool, 0, 1), slice(pool, 1, 60), slice(pool, 61, 39)};
  EXPECT_EQ(score(*resources_, shards, opt), score(*resources_, pool, opt));
  // A bad row is named by its row in the whole pool.
  std::vector<float> bad = probs;
  bad[(1 * n + 70) * c] = -0.5f;  // member 1, row 70
  const PoolView bad_pool = PoolView::committee(bad.data(), DType::f32, m, n, c);
  try {
    score(*resources_, std::vector<PoolView>{slice(bad_pool, 0, 61), slice(bad_pool, 61, 39)}, opt);
    ADD_FAILURE() << "negative probability accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 70) << e.what();
  }
}

TEST_P(Sharded, MismatchedShardsAreRefused) {
  auto rng = seeded_rng(9008);
  const auto a = random_probabilities(10, 4, rng);
  const auto b = random_probabilities(10, 5, rng);
  const auto b16 = encode(random_pool_values(10, 4, DType::f16, false, rng), DType::f16);
  const PoolView va = PoolView::matrix(a.data(), DType::f32, 10, 4);
  SelectOptions opt;
  opt.k = 3;
  auto expect_refused = [&](const std::vector<PoolView>& shards, const std::string& expect) {
    try {
      select(*resources_, shards, opt);
      ADD_FAILURE() << "accepted: " << expect;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  expect_refused({va, PoolView::matrix(b.data(), DType::f32, 10, 5)}, "5 classes");
  expect_refused({va, PoolView::matrix(b16.data(), DType::f16, 10, 4)}, "f16");
  expect_refused({va, PoolView::committee(a.data(), DType::f32, 2, 5, 4)}, "2 members");
  expect_refused({}, "no shards");
  opt.k = 21;
  expect_refused({va, va}, "k must be between 1 and the number of rows (20)");
  // Embeddings: one per shard, agreeing in D.
  opt.k = 3;
  const auto e = random_normal(10 * 3, rng);
  const auto ev = EmbeddingView::matrix(e.data(), DType::f32, 10, 3);
  EXPECT_THROW(select(*resources_, std::vector<PoolView>{va, va}, opt, std::vector{ev}),
               InvalidArgument);
  EXPECT_THROW(select(*resources_, std::vector<PoolView>{va, va}, opt,
                      std::vector{ev, EmbeddingView::matrix(e.data(), DType::f32, 15, 2)}),
               InvalidArgument);
  SelectOptions with_embeddings = opt;
  with_embeddings.embeddings = ev;
  EXPECT_THROW(select(*resources_, std::vector<PoolView>{va, va}, with_embeddings),
               InvalidArgument);
  // What a partial cannot carry: other strategies, budgets.
  opt.strategy = Strategy::coreset;
  expect_refused({va, va}, "--strategy coreset");
  opt.strategy = Strategy::rank;
  const std::vector<double> costs(20, 1.0);
  opt.costs = costs.data();
  opt.cost_count = 20;
  opt.budget = 5;
  expect_refused({va, va}, "budget");
}

TEST_P(Sharded, BadPartialsAreRefused) {
  auto rng = seeded_rng(9009);
  const int64_t n = 60, c = 4;
  const auto probs = random_probabilities(n, c, rng);
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 5;
  const Partial first = select_partial(*resources_, slice(pool, 0, 30), opt, 0);
  const Partial second = select_partial(*resources_, slice(pool, 30, 30), opt, 30);
  auto expect_refused = [&](const std::vector<Partial>& partials, int64_t k,
                            const std::string& expect) {
    try {
      merge(*resources_, partials, k);
      ADD_FAILURE() << "accepted: " << expect;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  expect_refused({first, second}, 6, "made with k = 5");
  expect_refused({first, first}, 5, "overlap");
  // Without the pool's row count a missing last shard cannot be seen; with it, it is refused.
  expect_refused({select_partial(*resources_, slice(pool, 0, 30), opt, 0, n)}, 5,
                 "rows [30, 60) of the 60-row pool are in no partial");
  expect_refused({second}, 5, "rows [0, 30) are in no partial");
  expect_refused({}, 5, "no partials");
  SelectOptions margin = opt;
  margin.scoring.measure = Measure::margin;
  expect_refused({first, select_partial(*resources_, slice(pool, 30, 30), margin, 30)}, 5,
                 "measure margin");
  SelectOptions explore = opt;
  explore.explore = 0.2;
  EXPECT_THROW(select_partial(*resources_, slice(pool, 30, 30), explore, 30), InvalidArgument)
      << "exploration needs the pool's row count";
  expect_refused({first, select_partial(*resources_, slice(pool, 30, 30), explore, 30, n)}, 5,
                 "exploration fraction");
  const auto other = random_probabilities(30, 5, rng);
  expect_refused(
      {first,
       select_partial(*resources_, PoolView::matrix(other.data(), DType::f32, 30, 5), opt, 30)},
      5, "classes 5");
  // Tampered partials: rows out of order, rows it does not cover, too few rows.
  Partial swapped = second;
  std::swap(swapped.indices[0], swapped.indices[1]);
  std::swap(swapped.scores[0], swapped.scores[1]);
  expect_refused({first, swapped}, 5, "rank order");
  Partial outside = second;
  outside.indices[4] = 3;
  expect_refused({first, outside}, 5, "not a row it covers");
  Partial short_partial = second;
  short_partial.indices.pop_back();
  short_partial.scores.pop_back();
  expect_refused({first, short_partial}, 5, "holds 4 rows");
  // Crafted row ranges and sizes whose sums would overflow int64.
  constexpr int64_t kLargest = std::numeric_limits<int64_t>::max();
  Partial far = second;
  far.shards = {RowRange{kLargest - 5, 30}};
  expect_refused({first, far}, 5, "30 rows from row 9223372036854775802 are not rows of a pool");
  Partial huge = second;
  huge.shards = {RowRange{0, kLargest / 2 + 1}, RowRange{0, kLargest / 2 + 1}};
  expect_refused({first, huge}, 5, "add up to more than a pool can hold");
  Partial wide = second;
  wide.embedding_dim = int64_t{1} << 61;
  expect_refused({first, wide}, 5, "embedding_dim of 2305843009213693952 is too large");
  // Not JSON, or not a partial.
  EXPECT_THROW(partial_from_json("{\"indices\": [1]}"), InvalidInput);
  EXPECT_THROW(partial_from_json("[1, 2"), InvalidInput);
  std::string text = to_json(first);
  text.replace(text.find("\"entropy\""), 9, "\"entropi\"");
  EXPECT_THROW(partial_from_json(text), InvalidInput);
}

}  // namespace
}  // namespace quarry::test
