// The measure table and the options schema: they agree with the enums, the parsers and the checks
// built from them; partials are validated field by field; errors name the input they are about.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quarry/quarry.hpp"

namespace quarry {
namespace {

TEST(MeasureTable, AgreesWithTheEnumAndTheParsers) {
  ASSERT_EQ(measures().size(), static_cast<size_t>(kMeasureCount));
  for (int i = 0; i < kMeasureCount; ++i) {
    const MeasureInfo& m = measures()[i];
    EXPECT_EQ(static_cast<int>(m.measure), i) << m.name;
    EXPECT_EQ(parse_measure(m.name), m.measure);
    EXPECT_EQ(to_string(m.measure), m.name);
    EXPECT_EQ(pool_kind(m.measure), m.pool_kind);
    EXPECT_EQ(needs_features(m.measure), m.features);
    EXPECT_EQ(is_committee_measure(m.measure), m.pool_kind == PoolKind::committee);
    EXPECT_EQ(is_llm_measure(m.measure),
              m.pool_kind != PoolKind::predictions && m.pool_kind != PoolKind::committee);
    // Only predictions and committees read logits; LLM outputs are log-probabilities already.
    EXPECT_EQ(m.logits, !is_llm_measure(m.measure)) << m.name;
    EXPECT_EQ(m.lengths,
              m.pool_kind == PoolKind::token_logprobs || m.pool_kind == PoolKind::top_logprobs)
        << m.name;
    EXPECT_FALSE(m.formula.empty()) << m.name;
  }
  EXPECT_THROW(measure_info(static_cast<Measure>(kMeasureCount)), InvalidArgument);
}

// The shardable column is what select_partial accepts: every measure is tried on a pool of its
// kind.
TEST(MeasureTable, ShardableIsWhatPartialsCarry) {
  Resources res(Device::cpu);
  std::vector<float> probs = {0.2f, 0.8f, 0.6f, 0.4f, 0.5f, 0.5f};     // [3, 2]
  std::vector<float> committee = {0.2f, 0.8f, 0.6f, 0.4f, 0.5f, 0.5f,  // [2, 3, 2]
                                  0.3f, 0.7f, 0.9f, 0.1f, 0.4f, 0.6f};
  std::vector<float> tokens = {-0.1f, -0.2f, -1.0f, -0.3f, -0.5f, -0.5f};  // [3, 2]
  std::vector<float> top = {-0.1f, -2.0f, -0.2f, -1.9f, -0.3f, -1.5f,      // [3, 2, 2]
                            -0.4f, -1.2f, -0.5f, -1.0f, -0.6f, -0.9f};
  std::vector<float> features = {1, 2, 3, 4, 5, 6};  // [3, 2]
  for (const MeasureInfo& m : measures()) {
    SelectOptions opt;
    opt.k = 2;
    opt.scoring.measure = m.measure;
    if (m.features) opt.scoring.features = EmbeddingView::matrix(features.data(), DType::f32, 3, 2);
    PoolView pool;
    switch (m.pool_kind) {
      case PoolKind::predictions:
        pool = PoolView::matrix(probs.data(), DType::f32, 3, 2);
        break;
      case PoolKind::committee:
        pool = PoolView::committee(committee.data(), DType::f32, 2, 3, 2);
        break;
      case PoolKind::token_logprobs:
        pool = PoolView::token_logprobs(tokens.data(), DType::f32, 3, 2);
        break;
      case PoolKind::top_logprobs:
        pool = PoolView::top_logprobs(top.data(), DType::f32, 3, 2, 2);
        break;
      case PoolKind::samples:
        pool = PoolView::samples(top.data(), DType::f32, 3, 2, 2);
        break;
    }
    EXPECT_NO_THROW(select(res, pool, opt)) << m.name;  // the pool fits the measure
    if (m.shardable)
      EXPECT_NO_THROW(select_partial(res, pool, opt, 0, 3)) << m.name;
    else
      EXPECT_THROW(select_partial(res, pool, opt, 0, 3), InvalidArgument) << m.name;
  }
}

TEST(MeasureTable, OptionChecksFollowTheTable) {
  for (const MeasureInfo& m : measures()) {
    if (m.alpha)
      EXPECT_NO_THROW(check_measure_options(m.measure, true, false, "--"));
    else
      EXPECT_THROW(check_measure_options(m.measure, true, false, "--"), InvalidArgument);
    if (m.threshold)
      EXPECT_NO_THROW(check_measure_options(m.measure, false, true, ""));
    else
      EXPECT_THROW(check_measure_options(m.measure, false, true, ""), InvalidArgument);
  }
  try {
    check_measure_options(Measure::entropy, false, true, "--");
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(),
                 "--threshold applies to semantic_sets and semantic_entropy, not to entropy");
  }
  EXPECT_EQ(llm_measures_by_input(),
            "token log-probabilities [N, T]: sequence_nll, perplexity, min_token_prob; top-K "
            "log-probabilities [N, T, K]: mean_token_entropy, max_token_entropy, "
            "mean_token_margin; sampled answers [N, S, D]: sample_dispersion, eigenscore, "
            "semantic_sets, semantic_entropy");
}

TEST(OptionSchema, EverySpellingFindsItsOption) {
  for (const OptionInfo& o : option_schema()) {
    EXPECT_EQ(&option_info(o.name), &o);
    if (!o.json_key.empty()) EXPECT_EQ(&option_info(o.json_key), &o) << o.name;
    if (!o.cli_flag.empty() && o.cli_flag.find(',') == std::string_view::npos)
      EXPECT_EQ(&option_info(o.cli_flag), &o) << o.name;
    EXPECT_FALSE(o.help.empty()) << o.name;
  }
  // The four spellings of one option.
  const OptionInfo& iters = option_info("kmeans_iters");
  EXPECT_EQ(iters.cli_flag, "--kmeans-iters");
  EXPECT_EQ(iters.json_key, "kmeans_iterations");
  EXPECT_EQ(iters.cpp_field, "SelectOptions::kmeans.iterations");
  EXPECT_EQ(&option_info("--kmeans-iters"), &iters);
  EXPECT_EQ(&option_info("kmeans_iterations"), &iters);
  EXPECT_EQ(&option_info("-k"), &option_info("k"));
  EXPECT_EQ(&option_info("--k"), &option_info("k"));
  EXPECT_THROW(option_info("kmeans_iteration"), InvalidArgument);
}

// Integer ranges are the C++ fields' ranges.
TEST(OptionSchema, IntegerRangesAreTheFieldsRanges) {
  auto range = [](const char* name) {
    const OptionInfo& o = option_info(name);
    EXPECT_EQ(o.type, OptionType::integer) << name;
    return std::pair<int64_t, uint64_t>(o.min, o.max);
  };
  using L64 = std::numeric_limits<int64_t>;
  using L32 = std::numeric_limits<int>;
  const std::pair<int64_t, uint64_t> i64{L64::min(), L64::max()}, i32{L32::min(), L32::max()};
  EXPECT_EQ(range("k"), i64);
  EXPECT_EQ(range("candidates"), i64);
  EXPECT_EQ(range("classes"), i64);
  EXPECT_EQ(range("row_offset"), i64);
  EXPECT_EQ(range("pool_rows"), i64);
  EXPECT_EQ(range("kmeans_iters"), i32);
  EXPECT_EQ(range("cuda_device"), i32);
  EXPECT_EQ(range("seed"), (std::pair<int64_t, uint64_t>(0, std::numeric_limits<uint64_t>::max())));
  try {
    check_integer_option(option_info("kmeans_iters"), "kmeans_iters", int64_t{1} << 31);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(),
                 "kmeans_iters: '2147483648' is not an integer from -2147483648 to 2147483647");
  }
  EXPECT_THROW(check_integer_option(option_info("seed"), "seed", -1), InvalidArgument);
  EXPECT_NO_THROW(check_unsigned_option(option_info("seed"), "seed", ~uint64_t{0}));
  EXPECT_THROW(check_unsigned_option(option_info("k"), "k", uint64_t{1} << 63), InvalidArgument);
}

// A partial with rows 0..9 of a 10-row pool, k = 5, as JSON.
nlohmann::json partial_json() {
  std::vector<float> probs;
  for (int r = 0; r < 10; ++r) {
    const float p = 0.5f + 0.045f * static_cast<float>(r);  // distinct scores
    probs.insert(probs.end(), {p, 1.0f - p});
  }
  Resources res(Device::cpu);
  SelectOptions opt;
  opt.k = 5;
  const Partial p =
      select_partial(res, PoolView::matrix(probs.data(), DType::f32, 10, 2), opt, 0, 10);
  return nlohmann::json::parse(to_json(p));
}

Selection merge_json(const nlohmann::json& j) {
  Resources res(Device::cpu);
  return merge(res, {partial_from_json(j.dump())}, 5);
}

TEST(PartialValidation, AWellFormedPartialMerges) {
  EXPECT_EQ(merge_json(partial_json()).indices.size(), 5u);
}

TEST(PartialValidation, RefusesARowListedTwice) {
  nlohmann::json j = partial_json();
  for (auto& row : j["indices"]) row = 7;  // descending scores, one row
  EXPECT_THROW(merge_json(j), InvalidInput);
  j = partial_json();
  j["indices"][1] = j["indices"][0];
  try {
    merge_json(j);
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("more than once"), std::string::npos) << e.what();
  }
}

TEST(PartialValidation, RefusesNonIntegerIndices) {
  nlohmann::json j = partial_json();
  j["indices"][0] = 0.5;
  EXPECT_THROW(partial_from_json(j.dump()), InvalidInput);
  j = partial_json();
  j["explore_rows"] = {1.5};
  EXPECT_THROW(partial_from_json(j.dump()), InvalidInput);
  j = partial_json();
  j["k"] = 5.0;
  EXPECT_THROW(partial_from_json(j.dump()), InvalidInput);
}

TEST(PartialValidation, RefusesOptionsOutOfRangeInsteadOfTruncating) {
  nlohmann::json j = partial_json();
  j["kmeans_iterations"] = int64_t{1} << 40;
  try {
    partial_from_json(j.dump());
    FAIL();
  } catch (const InvalidInput& e) {
    EXPECT_NE(std::string(e.what()).find("kmeans_iterations: '1099511627776' is not an integer"),
              std::string::npos)
        << e.what();
  }
  j = partial_json();
  j["seed"] = -1;
  EXPECT_THROW(partial_from_json(j.dump()), InvalidInput);
  j = partial_json();
  j["k"] = std::numeric_limits<uint64_t>::max();
  EXPECT_THROW(partial_from_json(j.dump()), InvalidInput);
}

// Errors about a row name the input the row is of.
TEST(ErrorInput, RowErrorsNameTheirInput) {
  Resources res(Device::cpu);
  std::vector<float> probs = {0.2f, 0.8f, 0.6f, 0.4f, 0.5f, 0.5f};
  const PoolView pool = PoolView::matrix(probs.data(), DType::f32, 3, 2);
  auto input_of = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const InvalidInput& e) {
      EXPECT_GE(e.row(), 0);
      return e.input();
    }
    return "(no error)";
  };
  std::vector<float> bad_probs = probs;
  bad_probs[3] = NAN;
  SelectOptions opt;
  opt.k = 2;
  EXPECT_EQ(
      input_of([&] { select(res, PoolView::matrix(bad_probs.data(), DType::f32, 3, 2), opt); }),
      "pool");
  std::vector<float> emb = {1, 2, NAN, 4, 5, 6};
  SelectOptions diverse = opt;
  diverse.embeddings = EmbeddingView::matrix(emb.data(), DType::f32, 3, 2);
  EXPECT_EQ(input_of([&] { select(res, pool, diverse); }), "embeddings");
  SelectOptions egl = opt;
  egl.scoring.measure = Measure::egl;
  egl.scoring.features = EmbeddingView::matrix(emb.data(), DType::f32, 3, 2);
  EXPECT_EQ(input_of([&] { select(res, pool, egl); }), "features");
  std::vector<double> costs = {1.0, -1.0, 2.0};
  SelectOptions budget;
  budget.costs = costs.data();
  budget.cost_count = 3;
  budget.budget = 2.0;
  EXPECT_EQ(input_of([&] { select(res, pool, budget); }), "costs");
  std::vector<float> tokens = {-0.1f, -0.2f, -1.0f, -0.3f, -0.5f, -0.5f};
  std::vector<int64_t> lengths = {1, 3, 2};
  SelectOptions nll = opt;
  nll.scoring.measure = Measure::sequence_nll;
  EXPECT_EQ(input_of([&] {
              select(res, PoolView::token_logprobs(tokens.data(), DType::f32, 3, 2, lengths.data()),
                     nll);
            }),
            "lengths");
}

}  // namespace
}  // namespace quarry
