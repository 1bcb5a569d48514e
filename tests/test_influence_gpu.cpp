// The CPU backend is the oracle for the CUDA backend's egl, BADGE and core-set: same random inputs
// (printed seeds), egl within a relative 1e-5, the same picks; inputs in device memory, and host
// inputs streamed through the memory budget, give the same answers. Skipped without a GPU.

#include <algorithm>
#include <numeric>

#include "engine/backend.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

struct EglCase {
  int64_t rows, classes, dim;
  DType dtype;
  bool logits;
};

class GpuInfluenceParity : public ::testing::TestWithParam<EglCase> {};

TEST_P(GpuInfluenceParity, EglScoresMatchTheCpu) {
  QUARRY_REQUIRE_GPU();
  const EglCase p = GetParam();
  auto rng = seeded_rng(17500 + p.classes * 3 + p.dim + static_cast<int>(p.dtype) + p.logits);
  const auto values = random_pool_values(p.rows, p.classes, p.dtype, p.logits, rng);
  const auto h = random_normal(p.rows * p.dim, rng);
  std::vector<uint16_t> half, half_h;
  const void* data = values.data();
  const void* feats = h.data();
  if (p.dtype != DType::f32) {
    half = encode(values, p.dtype);
    half_h = encode(h, p.dtype);
    data = half.data();
    feats = half_h.data();
  }
  ScoreOptions opt;
  opt.measure = Measure::egl;
  opt.logits = p.logits;
  opt.features = EmbeddingView::matrix(feats, p.dtype, p.rows, p.dim);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const PoolView view = PoolView::matrix(data, p.dtype, p.rows, p.classes);
  const auto got = expect_backends_agree(cpu, gpu, view, opt, 1e-5f, 1e-6f);
#if defined(QUARRY_WITH_CUDA)
  // Pool and features in device memory.
  const std::size_t elem = dtype_size(p.dtype);
  std::vector<char> raw_pool(static_cast<const char*>(data),
                             static_cast<const char*>(data) + values.size() * elem);
  std::vector<char> raw_feats(static_cast<const char*>(feats),
                              static_cast<const char*>(feats) + h.size() * elem);
  const DeviceCopy d_pool(raw_pool), d_feats(raw_feats);
  ScoreOptions on_device = opt;
  on_device.features =
      EmbeddingView::matrix(d_feats.get(), p.dtype, p.rows, p.dim, MemorySpace::device);
  EXPECT_EQ(
      score(gpu, PoolView::matrix(d_pool.get(), p.dtype, p.rows, p.classes, MemorySpace::device),
            on_device),
      got);
#endif
  // Host features streamed a few rows at a time.
  const engine::ScoreProblem problem{view, opt};
  const engine::Backend& backend = gpu.backend();
  gpu.set_memory_budget(static_cast<std::size_t>(
      backend.working_bytes_fixed(problem, 0) +
      (backend.working_bytes_per_row(view) + backend.working_bytes_per_feature_row(problem)) * 37));
  EXPECT_EQ(score(gpu, view, opt), got);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuInfluenceParity,
                         ::testing::Values(EglCase{1000, 1, 8, DType::f32, false},
                                           EglCase{3000, 2, 64, DType::f32, true},
                                           EglCase{3000, 33, 768, DType::f32, false},
                                           EglCase{2000, 100, 100, DType::f16, false},
                                           EglCase{2000, 100, 31, DType::bf16, true},
                                           EglCase{200, 5000, 16, DType::f32, true}),
                         [](const auto& info) {
                           const auto& p = info.param;
                           return std::to_string(p.rows) + "x" + std::to_string(p.classes) + "x" +
                                  std::to_string(p.dim) + "_" + std::string(to_string(p.dtype)) +
                                  (p.logits ? "_logits" : "_probs");
                         });

TEST(GpuInfluence, BadgeAndCoresetPicksMatchTheCpu) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(17510);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (auto [n, c, dim, k] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{500, 10, 32, 40},
                              {3000, 100, 96, 64},
                              {257, 2, 1, 257}}) {
    SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(c) + " x " + std::to_string(dim));
    const auto probs = random_probabilities(n, c, rng);
    const auto x = random_normal(n * dim, rng);
    const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
    SelectOptions badge;
    badge.k = k;
    badge.strategy = Strategy::badge;
    badge.seed = 3;
    badge.scoring.features = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
    const Selection want_badge = select(cpu, view, badge);
    EXPECT_EQ(select(gpu, view, badge).indices, want_badge.indices);
    SelectOptions coreset;
    coreset.k = k;
    coreset.strategy = Strategy::coreset;
    coreset.embeddings = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
    coreset.labeled_rows = {0, n / 2};
    coreset.k = std::min(k, n - 2);
    const Selection want_coreset = select(cpu, view, coreset);
    EXPECT_EQ(select(gpu, view, coreset).indices, want_coreset.indices);
#if defined(QUARRY_WITH_CUDA)
    // In device memory.
    const DeviceCopy d_probs(probs), d_x(x);
    const PoolView d_view = PoolView::matrix(d_probs.get(), DType::f32, n, c, MemorySpace::device);
    badge.scoring.features =
        EmbeddingView::matrix(d_x.get(), DType::f32, n, dim, MemorySpace::device);
    EXPECT_EQ(select(gpu, d_view, badge).indices, want_badge.indices);
    coreset.embeddings = EmbeddingView::matrix(d_x.get(), DType::f32, n, dim, MemorySpace::device);
    EXPECT_EQ(select(gpu, d_view, coreset).indices, want_coreset.indices);
#endif
  }
}

TEST(GpuInfluence, StreamedCandidatesEqualResidentOnes) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(17511);
  const int64_t n = 20000, c = 20, dim = 256;
  const auto probs = random_probabilities(n, c, rng);
  const auto x = random_normal(n * dim, rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  Resources gpu(Device::cuda);
  SelectOptions badge;
  badge.k = 20;
  badge.strategy = Strategy::badge;
  badge.scoring.features = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
  SelectOptions coreset;
  coreset.k = 20;
  coreset.strategy = Strategy::coreset;
  coreset.embeddings = badge.scoring.features;
  const auto whole_badge = select(gpu, view, badge).indices;
  const auto whole_coreset = select(gpu, view, coreset).indices;
  // Room for the ranking and the per-candidate state, and a few MB of rows at a time.
  gpu.set_memory_budget(static_cast<std::size_t>(
      gpu.backend().working_bytes_fixed(engine::ScoreProblem{view, badge.scoring}, n) + n * 64 +
      (int64_t{20} << 20)));
  EXPECT_EQ(select(gpu, view, badge).indices, whole_badge);
  EXPECT_EQ(select(gpu, view, coreset).indices, whole_coreset);
}

}  // namespace
}  // namespace quarry::test
