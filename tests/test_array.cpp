// Arrays as views (pool_from_array, embeddings_from_array) and f64 pools converted as they are
// read.

#include <limits>

#include "test_util.hpp"

namespace quarry::test {
namespace {

TEST(PoolFromArray, ShapeGivesKindAndDefaultMeasure) {
  float data[24] = {};
  int32_t votes[6] = {};
  const auto one = pool_from_array(ArrayView::contiguous(data, DType::f32, {6, 4}));
  EXPECT_EQ(one.measure, Measure::entropy);
  EXPECT_EQ(one.view.rows, 6);
  EXPECT_EQ(one.view.classes, 4);
  EXPECT_EQ(one.view.row_stride, 4);
  const auto committee = pool_from_array(ArrayView::contiguous(data, DType::f32, {2, 3, 4}));
  EXPECT_EQ(committee.measure, Measure::consensus_entropy);
  EXPECT_EQ(committee.view.members, 2);
  EXPECT_EQ(committee.view.member_stride, 12);
  const auto rows_first = pool_from_array(ArrayView::contiguous(data, DType::f32, {3, 2, 4}),
                                          Measure::bald, Layout::rows_first);
  EXPECT_EQ(rows_first.view.rows, 3);
  EXPECT_EQ(rows_first.view.member_stride, 4);
  EXPECT_EQ(rows_first.view.row_stride, 8);
  const auto vote = pool_from_array(ArrayView::contiguous(votes, DType::i32, {2, 3}));
  EXPECT_EQ(vote.measure, Measure::vote_entropy);
  EXPECT_EQ(vote.view.members, 2);
}

TEST(PoolFromArray, StridedRowsAreReadInPlace) {
  float data[40] = {};
  ArrayView a = ArrayView::contiguous(data, DType::f32, {4, 3});
  a.strides = {10, 1};  // every row padded to 10 values
  const auto spec = pool_from_array(a);
  EXPECT_EQ(spec.view.data, data);
  EXPECT_EQ(spec.view.row_stride, 10);
  int64_t votes[12] = {};
  ArrayView v = ArrayView::contiguous(votes, DType::i64, {2, 3});
  v.strides = {1, 2};  // a transposed [rows, members] array is fine for votes
  const auto vote = pool_from_array(v);
  EXPECT_EQ(vote.view.member_stride, 1);
  EXPECT_EQ(vote.view.row_stride, 2);
}

TEST(PoolFromArray, RefusesWhatAViewCannotExpress) {
  float data[64] = {};
  auto expect_refused = [](const ArrayView& a, const char* text,
                           std::optional<Measure> m = std::nullopt) {
    try {
      pool_from_array(a, m);
      ADD_FAILURE() << "accepted; expected: " << text;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_refused(ArrayView::contiguous(data, DType::f32, {12}), "shape (12,)");
  expect_refused(ArrayView::contiguous(data, DType::f32, {2, 2, 2, 2}), "shape (2, 2, 2, 2)");
  expect_refused(ArrayView::contiguous(data, DType::f32, {0, 4}), "no rows");
  expect_refused(ArrayView::contiguous(data, DType::f32, {4, 0}), "no classes");
  expect_refused(ArrayView::contiguous(data, DType::i32, {2, 2, 2}), "integer votes");
  expect_refused(ArrayView::contiguous(data, DType::f32, {4, 4}), "committee", Measure::bald);
  expect_refused(ArrayView::contiguous(data, DType::f32, {2, 4, 4}), "single model",
                 Measure::margin);
  ArrayView transposed = ArrayView::contiguous(data, DType::f32, {4, 3});
  transposed.strides = {1, 4};
  expect_refused(transposed, "contiguous");
  ArrayView reversed = ArrayView::contiguous(data + 60, DType::f32, {4, 3});
  reversed.strides = {-3, 1};
  expect_refused(reversed, "negative strides");
}

TEST(PoolFromArray, LlmMeasuresSayHowTheArrayIsRead) {
  float data[120] = {};
  int32_t lengths[4] = {1, 2, 3, 5};
  const ArrayView len = ArrayView::contiguous(lengths, DType::i32, {4});
  ArrayView tokens = ArrayView::contiguous(data, DType::f32, {4, 5});
  tokens.strides = {7, 1};  // padded rows are read in place
  const auto t =
      pool_from_array(tokens, Measure::perplexity, Layout::members_first, 0, "pool", &len);
  EXPECT_EQ(t.measure, Measure::perplexity);
  EXPECT_EQ(t.view.rows, 4);
  EXPECT_EQ(t.view.members, 1);
  EXPECT_EQ(t.view.classes, 5);
  EXPECT_EQ(t.view.row_stride, 7);
  EXPECT_EQ(t.view.lengths, lengths);
  EXPECT_EQ(t.view.lengths_dtype, DType::i32);
  ArrayView top = ArrayView::contiguous(data, DType::f16, {2, 3, 4});
  top.strides = {30, 8, 1};  // steps strided too
  const auto k =
      pool_from_array(top, Measure::mean_token_entropy, Layout::members_first, 0, "pool");
  EXPECT_EQ(k.view.rows, 2);
  EXPECT_EQ(k.view.members, 3);
  EXPECT_EQ(k.view.classes, 4);
  EXPECT_EQ(k.view.member_stride, 8);
  EXPECT_EQ(k.view.row_stride, 30);
  EXPECT_EQ(k.view.lengths, nullptr);
  const auto s =
      pool_from_array(ArrayView::contiguous(data, DType::f32, {2, 3, 4}), Measure::eigenscore);
  EXPECT_EQ(s.view.members, 3);
  EXPECT_EQ(s.view.member_stride, 4);
  EXPECT_EQ(s.view.row_stride, 12);

  auto expect_refused = [&](const ArrayView& a, std::optional<Measure> m, const ArrayView* l,
                            const char* text) {
    try {
      pool_from_array(a, m, Layout::members_first, 0, "pool", l, "LEN");
      ADD_FAILURE() << "accepted; expected: " << text;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  const ArrayView t2 = ArrayView::contiguous(data, DType::f32, {4, 5});
  const ArrayView t3 = ArrayView::contiguous(data, DType::f32, {4, 5, 2});
  expect_refused(t3, Measure::sequence_nll, &len, "[N, T] token log-probabilities");
  expect_refused(t2, Measure::max_token_entropy, &len, "[N, T, K] top-K");
  expect_refused(t2, Measure::semantic_sets, nullptr, "[N, S, D] sampled answers");
  expect_refused(t3, Measure::eigenscore, &len, "lengths do not apply to sampled answers");
  expect_refused(t2, Measure::entropy, &len, "lengths do not apply to entropy");
  expect_refused(t2, std::nullopt, &len, "need an LLM measure");
  const ArrayView short_len = ArrayView::contiguous(lengths, DType::i32, {3});
  expect_refused(t2, Measure::perplexity, &short_len, "LEN: lengths must be a 1-D int32 or int64");
  const ArrayView float_len = ArrayView::contiguous(data, DType::f32, {4});
  expect_refused(t2, Measure::perplexity, &float_len, "LEN: lengths must be");
  try {
    pool_from_array(t3, Measure::eigenscore, Layout::rows_first);
    ADD_FAILURE() << "rows_first accepted for samples";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("layout applies to committees"), std::string::npos);
  }
}

TEST(SideArrays, CostsAndLabeledRows) {
  const int32_t int_costs[3] = {3, 1, 2};
  EXPECT_EQ(costs_from_array(ArrayView::contiguous(int_costs, DType::i32, {3})),
            (std::vector<double>{3, 1, 2}));
  const double wide[6] = {0.5, -1, 1.5, -1, 2.5, -1};
  ArrayView strided = ArrayView::contiguous(wide, DType::f64, {3});
  strided.strides = {2};
  EXPECT_EQ(costs_from_array(strided), (std::vector<double>{0.5, 1.5, 2.5}));
  EXPECT_THROW(costs_from_array(ArrayView::contiguous(wide, DType::f64, {3, 2})), InvalidArgument);
  EXPECT_THROW(costs_from_array(ArrayView::contiguous(wide, DType::f16, {3})), InvalidArgument);

  SelectOptions options;
  const int64_t rows[2] = {7, 2};
  labeled_from_array(ArrayView::contiguous(rows, DType::i64, {2}), options);
  EXPECT_EQ(options.labeled_rows, (std::vector<int64_t>{7, 2}));
  EXPECT_FALSE(options.labeled_embeddings);
  const float emb[6] = {};
  labeled_from_array(ArrayView::contiguous(emb, DType::f32, {2, 3}), options);
  ASSERT_TRUE(options.labeled_embeddings);
  EXPECT_EQ(options.labeled_embeddings->rows, 2);
  EXPECT_EQ(options.labeled_embeddings->dim, 3);
  try {
    labeled_from_array(ArrayView::contiguous(emb, DType::f32, {6}), options, "LAB");
    ADD_FAILURE() << "1-D float labeled rows accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("LAB: labeled rows must be"), std::string::npos);
  }
}

TEST(MemorySize, ParsesSuffixes) {
  EXPECT_EQ(parse_memory_size("123"), 123u);
  EXPECT_EQ(parse_memory_size("64K"), 64u << 10);
  EXPECT_EQ(parse_memory_size("1.5G"), 3u << 29);
  EXPECT_EQ(parse_memory_size("512MiB"), 512u << 20);
  EXPECT_THROW(parse_memory_size("lots"), InvalidArgument);
  EXPECT_THROW(parse_memory_size("0"), InvalidArgument);
}

using Float64 = OnEveryBackend;
QUARRY_ON_EVERY_BACKEND(Float64);

// An f64 pool gives exactly the answers of the same values in f32: it is converted, in chunks of
// at most 16 MiB of f32, into the f32 the backends read. 160,000 x 40 takes two chunks.
TEST_P(Float64, EqualsTheSamePoolInFloat32AcrossChunks) {
  auto rng = seeded_rng(6401);
  const int64_t n = 160000, c = 40;
  const auto probs = random_probabilities(n, c, rng);
  // Doubles that round to exactly the f32 values, but are not them.
  std::vector<double> wide(probs.size());
  for (size_t i = 0; i < probs.size(); ++i) wide[i] = static_cast<double>(probs[i]) * (1 + 1e-12);
  const auto narrow_view = PoolView::matrix(probs.data(), DType::f32, n, c);
  const auto wide_view = PoolView::matrix(wide.data(), DType::f64, n, c);
  SelectOptions options;
  options.k = 100;
  options.explore = 0.1;
  options.seed = 5;
  options.scoring.measure = Measure::margin;
  const Selection want = select(*resources_, narrow_view, options);
  const Selection got = select(*resources_, wide_view, options);
  EXPECT_EQ(got.indices, want.indices);
  EXPECT_EQ(got.scores, want.scores);
  EXPECT_EQ(score(*resources_, wide_view, options.scoring),
            score(*resources_, narrow_view, options.scoring));
}

TEST_P(Float64, CommitteeRowsFirstAndBadRowsNamedGlobally) {
  auto rng = seeded_rng(6402);
  const int64_t n = 70000, m = 3, c = 20;                  // 16.8 MB of f32: two chunks
  const auto probs = random_probabilities(n * m, c, rng);  // [N, M, C]
  std::vector<double> wide(probs.begin(), probs.end());
  const auto narrow = PoolView::committee(probs.data(), DType::f32, m, n, c, Layout::rows_first);
  const auto view = PoolView::committee(wide.data(), DType::f64, m, n, c, Layout::rows_first);
  SelectOptions options;
  options.k = 10;
  options.scoring.measure = Measure::bald;
  EXPECT_EQ(select(*resources_, view, options).indices,
            select(*resources_, narrow, options).indices);
  wide[(69000 * m + 2) * c + 7] = std::numeric_limits<double>::quiet_NaN();
  try {
    select(*resources_, view, options);
    FAIL() << "a NaN was accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 69000) << e.what();
  }
}

}  // namespace
}  // namespace quarry::test
