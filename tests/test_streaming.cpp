// Pools scored in budget-sized chunks of rows give exactly the in-memory result, on every
// backend; the budget, progress and bad rows across chunk boundaries.

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/backend.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

class Streaming : public OnEveryBackend {
 protected:
  // The budget that gives chunks of `rows` rows for `count` results on this backend.
  std::size_t budget_for_rows(const PoolView& pool, const ScoreOptions& options, int64_t count,
                              int64_t rows) {
    return test::budget_for_rows(*resources_, pool, options, count, rows);
  }
  // Chunk sizes that hit the edges: one row, chunks that do not divide N, and one chunk.
  static constexpr int64_t kChunkRows[] = {1, 7, 64, 333, 1000, 5000};
};

QUARRY_ON_EVERY_BACKEND(Streaming);

TEST_P(Streaming, ChunkedSelectionEqualsInMemory) {
  auto rng = seeded_rng(7001);
  const int64_t n = 1000, c = 6, k = 40;
  // Coarse probabilities make many exact ties, the hardest case for merging chunks.
  std::vector<float> probs(n * c, 0.0f);
  std::uniform_int_distribution<int64_t> pick(0, c - 1);
  for (int64_t r = 0; r < n; ++r)
    for (int i = 0; i < 4; ++i) probs[r * c + pick(rng)] += 0.25f;
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = k;
  const Selection whole = select(*resources_, view, opt);
  const auto whole_scores = score(*resources_, view, opt.scoring);
  for (int64_t rows : kChunkRows) {
    SCOPED_TRACE("chunk rows " + std::to_string(rows));
    resources_->set_memory_budget(budget_for_rows(view, opt.scoring, k, rows));
    const Selection chunked = select(*resources_, view, opt);
    EXPECT_EQ(chunked.indices, whole.indices);
    EXPECT_EQ(chunked.scores, whole.scores);
    resources_->set_memory_budget(budget_for_rows(view, opt.scoring, 0, rows));
    EXPECT_EQ(score(*resources_, view, opt.scoring), whole_scores);
  }
}

TEST_P(Streaming, CommitteesAndVotesChunkedEqualInMemory) {
  auto rng = seeded_rng(7002);
  const int64_t m = 4, n = 500, c = 5;
  const auto members_first = random_probabilities(m * n, c, rng, 1.0f);
  const auto rows_first = to_rows_first(members_first, m, n, c);
  std::vector<int32_t> votes(m * n);
  std::uniform_int_distribution<int32_t> vote(-1, 3);
  for (auto& v : votes) v = vote(rng);
  const PoolView views[] = {
      PoolView::committee(members_first.data(), DType::f32, m, n, c),
      PoolView::committee(rows_first.data(), DType::f32, m, n, c, Layout::rows_first),
      PoolView::votes(votes.data(), DType::i32, m, n)};
  for (const PoolView& view : views) {
    SelectOptions opt;
    opt.k = 25;
    opt.scoring.measure = view.is_votes() ? Measure::vote_entropy : Measure::bald;
    resources_->set_memory_budget(0);
    const Selection whole = select(*resources_, view, opt);
    for (int64_t rows : {int64_t{1}, int64_t{13}, int64_t{200}}) {
      resources_->set_memory_budget(budget_for_rows(view, opt.scoring, opt.k, rows));
      EXPECT_EQ(select(*resources_, view, opt).indices, whole.indices) << rows;
    }
  }
}

TEST_P(Streaming, DiversityAndExplorationChunkedEqualInMemory) {
  auto rng = seeded_rng(7003);
  const int64_t n = 800, c = 4, d = 3;
  const auto probs = random_probabilities(n, c, rng);
  const std::vector<float> emb = random_normal(n * d, rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 20;
  opt.embeddings = EmbeddingView::matrix(emb.data(), DType::f32, n, d);
  opt.explore = 0.2;
  opt.seed = 9;
  const Selection whole = select(*resources_, view, opt);
  resources_->set_memory_budget(budget_for_rows(view, opt.scoring, 200, 37));
  const Selection chunked = select(*resources_, view, opt);
  EXPECT_EQ(chunked.indices, whole.indices);
  EXPECT_EQ(chunked.reasons, whole.reasons);
  EXPECT_EQ(chunked.clusters, whole.clusters);
}

TEST_P(Streaming, BadRowsAreNamedInPoolNumberingAcrossChunks) {
  const int64_t n = 1000, c = 3;
  std::vector<float> probs(n * c, 1.0f / 3.0f);
  probs[731 * c + 1] = std::numeric_limits<float>::quiet_NaN();
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 5;
  resources_->set_memory_budget(budget_for_rows(view, opt.scoring, opt.k, 100));
  try {
    select(*resources_, view, opt);
    ADD_FAILURE() << "NaN accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 731) << e.what();
    EXPECT_NE(std::string(e.what()).find("row 731"), std::string::npos) << e.what();
  }
}

TEST_P(Streaming, ABudgetTooSmallForOneRowIsRefused) {
  const std::vector<float> probs(100 * 4, 0.25f);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 100, 4);
  SelectOptions opt;
  opt.k = 10;
  resources_->set_memory_budget(budget_for_rows(view, opt.scoring, opt.k, 1) - 1);
  try {
    select(*resources_, view, opt);
    ADD_FAILURE() << "a budget below one row was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
  resources_->set_memory_budget(0);
  EXPECT_EQ(resources_->memory_budget(), resources_->backend().default_memory_budget());
}

TEST_P(Streaming, ProgressCountsEveryRowOnce) {
  const int64_t n = 1000;
  const std::vector<float> probs(n * 2, 0.5f);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, 2);
  std::vector<std::pair<int64_t, int64_t>> calls;
  resources_->set_progress([&](int64_t done, int64_t total) { calls.emplace_back(done, total); });
  SelectOptions opt;
  opt.k = 3;
  resources_->set_memory_budget(budget_for_rows(view, opt.scoring, opt.k, 300));
  select(*resources_, view, opt);
  ASSERT_EQ(calls.size(), 4u);  // 300, 600, 900, 1000
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, n);
    EXPECT_EQ(calls[i].first, std::min<int64_t>(n, 300 * static_cast<int64_t>(i + 1)));
  }
}

#if defined(QUARRY_WITH_CUDA)
TEST(GpuStreaming, PeakDeviceMemoryStaysUnderTheBudget) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(7100);
  const int64_t n = 1'000'000, c = 96;  // 384 MB of f32 on the host
  const auto probs = random_probabilities(n, c, rng);
  const std::size_t budget = std::size_t{256} << 20;
  Resources gpu(Device::cuda);
  gpu.set_memory_budget(budget);
  SelectOptions opt;
  opt.k = 1000;
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  const Selection streamed = select(gpu, view, opt);
  EXPECT_LE(gpu.peak_device_memory(), budget);
  Resources unbounded(Device::cuda);
  EXPECT_EQ(select(unbounded, view, opt).indices, streamed.indices);
}

// A host pool of more than two staging slots (256 MiB each) in one call: the slots are refilled
// while earlier chunks are scored from them. Every score must equal, bit for bit, the score of
// the same pool read in place from device memory (padded rows: 1.2M x 4 classes, stride 128).
TEST(GpuStreaming, StagingSlotsAreReusedWithoutMixingChunks) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(7101);
  const int64_t n = 1'200'000, c = 4, stride = 128;  // 614 MB on the host
  const auto probs = random_probabilities(n, c, rng);
  std::vector<float> padded(n * stride, -1.0f);  // the padding is never read
  for (int64_t r = 0; r < n; ++r) std::copy_n(&probs[r * c], c, &padded[r * stride]);
  PoolView host = PoolView::matrix(padded.data(), DType::f32, n, c);
  host.row_stride = stride;
  const DeviceCopy device(padded);
  PoolView resident = host;
  resident.data = device.get();
  resident.space = MemorySpace::device;
  Resources gpu(Device::cuda);
  for (Measure measure : {Measure::entropy, Measure::margin}) {
    ScoreOptions opt;
    opt.measure = measure;
    const auto streamed = score(gpu, host, opt);
    const auto in_place = score(gpu, resident, opt);
    ASSERT_EQ(streamed.size(), static_cast<size_t>(n));
    int64_t differing = 0, first = -1;
    for (int64_t r = 0; r < n; ++r)
      if (std::memcmp(&streamed[r], &in_place[r], sizeof(float)) != 0 && differing++ == 0)
        first = r;
    EXPECT_EQ(differing, 0) << to_string(measure) << ": first differing row " << first;
  }
}
#endif

}  // namespace
}  // namespace quarry::test
