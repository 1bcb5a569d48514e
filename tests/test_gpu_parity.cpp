// The CPU backend is the oracle for the CUDA backend: same random pools (printed seeds), scores
// within a relative 1e-5, and the GPU's picks exactly the rank order of the GPU's own scores.

#include <algorithm>
#include <numeric>

#include "engine/backend.hpp"
#include "engine/ranking.hpp"
#include "test_util.hpp"

#if defined(QUARRY_WITH_CUDA)
#include <cuda_runtime.h>

#include <limits>
#include <tuple>
#endif

namespace quarry::test {
namespace {

struct ParityCase {
  int64_t rows;
  int64_t classes;
  DType dtype;
  bool logits;
};

std::string case_name(const ::testing::TestParamInfo<ParityCase>& info) {
  const auto& p = info.param;
  return std::to_string(p.rows) + "x" + std::to_string(p.classes) + "_" +
         std::string(to_string(p.dtype)) + (p.logits ? "_logits" : "_probs");
}

class GpuParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(GpuParity, ScoresAndPicksMatchTheCpu) {
  QUARRY_REQUIRE_GPU();
  const ParityCase p = GetParam();
  auto rng = seeded_rng(3000 + p.classes * 7 + p.rows + static_cast<int>(p.dtype) * 3 + p.logits);
  const std::vector<float> values = random_pool_values(p.rows, p.classes, p.dtype, p.logits, rng);
  std::vector<uint16_t> half;
  const void* data = values.data();
  if (p.dtype != DType::f32) {
    half = encode(values, p.dtype);
    data = half.data();
  }
  const PoolView view = PoolView::matrix(data, p.dtype, p.rows, p.classes);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (Measure m : {Measure::entropy, Measure::least_confidence, Measure::margin, Measure::ratio}) {
    SCOPED_TRACE(std::string(to_string(m)));
    ScoreOptions so;
    so.measure = m;
    so.logits = p.logits;
    const auto got = expect_backends_agree(cpu, gpu, view, so, 1e-5f, 1e-6f);
    for (int64_t k : {int64_t{1}, std::min<int64_t>(p.rows, 33), p.rows}) {
      SelectOptions so_k;
      so_k.scoring = so;
      so_k.k = k;
      const Selection sel = select(gpu, view, so_k);
      const engine::Ranked ref = engine::rank_top(got.data(), p.rows, k);
      EXPECT_EQ(sel.indices, ref.indices) << "k=" << k;
      EXPECT_EQ(sel.scores, ref.scores) << "k=" << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuParity,
    ::testing::Values(
        ParityCase{1000, 1, DType::f32, false}, ParityCase{1000, 2, DType::f32, false},
        ParityCase{4000, 31, DType::f32, false}, ParityCase{4000, 32, DType::f32, true},
        ParityCase{4000, 33, DType::f32, false}, ParityCase{3000, 100, DType::f32, true},
        ParityCase{3000, 100, DType::f16, false}, ParityCase{3000, 100, DType::bf16, true},
        ParityCase{1000, 1000, DType::f32, false}, ParityCase{500, 1000, DType::f16, true},
        ParityCase{64, 20000, DType::bf16, true}, ParityCase{6, 262144, DType::f32, false},
        ParityCase{6, 262144, DType::bf16, true}),
    case_name);

#if defined(QUARRY_WITH_CUDA)
TEST(GpuDeviceMemory, DevicePoolsAreReadInPlace) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(3100);
  const int64_t n = 10000, c = 50;
  const auto pool = random_probabilities(n, c, rng);
  const DeviceCopy device(pool);
  Resources gpu(Device::cuda);
  SelectOptions opt;
  opt.k = 100;
  const Selection from_device =
      select(gpu, PoolView::matrix(device.get(), DType::f32, n, c, MemorySpace::device), opt);
  const Selection from_host = select(gpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt);
  EXPECT_EQ(from_device.indices, from_host.indices);
  // A host pointer declared as device memory is refused, not dereferenced.
  EXPECT_THROW(
      select(gpu, PoolView::matrix(pool.data(), DType::f32, n, c, MemorySpace::device), opt),
      InvalidArgument);
}

// Scores do not depend on where rows sit: a device pool read with 16-byte loads, the same rows one
// float off alignment (read element by element), and the host copy streamed through staging
// buffers all give bitwise the same scores; so do rows padded to a stride.
TEST(GpuDeviceMemory, ScoresDoNotDependOnAlignment) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(3102);
  for (auto [n, c, stride] : {std::tuple<int64_t, int64_t, int64_t>{3000, 10, 10},
                              {3000, 10, 12},
                              {2000, 37, 37},
                              {500, 1000, 1001}}) {
    SCOPED_TRACE("C " + std::to_string(c) + " stride " + std::to_string(stride));
    const auto dense = random_probabilities(n, c, rng);
    std::vector<float> padded(n * stride, 0.0f);
    for (int64_t r = 0; r < n; ++r)
      std::copy_n(dense.begin() + r * c, c, padded.begin() + r * stride);
    float* device = nullptr;
    ASSERT_EQ(cudaMalloc(&device, (padded.size() + 1) * sizeof(float)), cudaSuccess);
    auto view_at = [&](const float* data, MemorySpace space) {
      PoolView view = PoolView::matrix(data, DType::f32, n, c, space);
      view.row_stride = stride;
      return view;
    };
    Resources gpu(Device::cuda);
    const ScoreOptions opt;
    const auto from_host = score(gpu, view_at(padded.data(), MemorySpace::host), opt);
    for (int64_t offset : {0, 1}) {
      ASSERT_EQ(cudaMemcpy(device + offset, padded.data(), padded.size() * sizeof(float),
                           cudaMemcpyHostToDevice),
                cudaSuccess);
      EXPECT_EQ(score(gpu, view_at(device + offset, MemorySpace::device), opt), from_host)
          << "device pool at offset " << offset;
    }
    // Streamed in chunks of 333 rows, one scoring call each (staging slots are reused within a
    // call only past 512 MiB: GpuStreaming.StagingSlotsAreReusedWithoutMixingChunks).
    const PoolView host_view = view_at(padded.data(), MemorySpace::host);
    const engine::Backend& backend = gpu.backend();
    gpu.set_memory_budget(static_cast<std::size_t>(
        backend.working_bytes_fixed(engine::ScoreProblem{host_view, opt}, 0) +
        backend.working_bytes_per_row(host_view) * 333));
    EXPECT_EQ(score(gpu, host_view, opt), from_host);
    // A device pointer declared as host memory is refused, not copied from.
    EXPECT_THROW(score(gpu, view_at(device, MemorySpace::host), opt), InvalidArgument);
    cudaFree(device);
  }
}

// Every kind of pool can live in device memory: committees (both layouts, half precision), votes,
// pools chunked by a budget while read in place, and embeddings for k-means. Each gives bitwise
// the result of the same data in host memory.
TEST(GpuDeviceMemory, EveryInputKindIsReadFromDeviceMemory) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(3103);
  Resources gpu(Device::cuda);
  {  // committees, f16, both layouts
    const int64_t m = 5, n = 3000, c = 20;
    const auto half = encode(random_probabilities(m * n, c, rng), DType::f16);
    const DeviceCopy device(half);
    for (Layout layout : {Layout::members_first, Layout::rows_first})
      for (Measure measure : {Measure::bald, Measure::kl_max, Measure::vote_entropy}) {
        SCOPED_TRACE(std::string(to_string(measure)) +
                     (layout == Layout::rows_first ? " rows-first" : " members-first"));
        ScoreOptions opt;
        opt.measure = measure;
        const auto on_host =
            score(gpu, PoolView::committee(half.data(), DType::f16, m, n, c, layout), opt);
        EXPECT_EQ(score(gpu,
                        PoolView::committee(device.get(), DType::f16, m, n, c, layout,
                                            MemorySpace::device),
                        opt),
                  on_host);
      }
  }
  {  // votes, with abstentions
    const int64_t m = 7, n = 4000;
    std::uniform_int_distribution<int32_t> vote(-1, 3);
    std::vector<int32_t> votes(m * n);
    for (auto& v : votes) v = vote(rng);
    const DeviceCopy device(votes);
    ScoreOptions opt;
    opt.measure = Measure::vote_entropy;
    EXPECT_EQ(
        score(gpu, PoolView::votes(device.get(), DType::i32, m, n, 0, MemorySpace::device), opt),
        score(gpu, PoolView::votes(votes.data(), DType::i32, m, n), opt));
  }
  {  // a device pool chunked by a budget, read in place
    const int64_t n = 20000, c = 30;
    const auto probs = random_probabilities(n, c, rng);
    const DeviceCopy device(probs);
    const PoolView view = PoolView::matrix(device.get(), DType::f32, n, c, MemorySpace::device);
    SelectOptions opt;
    opt.k = 500;
    const Selection whole = select(gpu, view, opt);
    Resources budgeted(Device::cuda);
    const engine::Backend& backend = budgeted.backend();
    budgeted.set_memory_budget(static_cast<std::size_t>(
        backend.working_bytes_fixed(engine::ScoreProblem{view, opt.scoring}, opt.k) +
        backend.working_bytes_per_row(view) * 3001));
    const Selection chunked = select(budgeted, view, opt);
    EXPECT_EQ(chunked.indices, whole.indices);
    EXPECT_EQ(chunked.scores, whole.scores);
    EXPECT_LE(budgeted.peak_device_memory(), budgeted.memory_budget());
  }
  {  // embeddings for k-means, and a non-finite one named by its row
    const int64_t n = 2000, dim = 16;
    auto points = random_normal(n * dim, rng, 1.0f);
    const DeviceCopy device(points);
    KMeansOptions opt;
    opt.seed = 3;
    const KMeansResult on_device = kmeans(
        gpu, EmbeddingView::matrix(device.get(), DType::f32, n, dim, MemorySpace::device), 20, opt);
    const KMeansResult on_host =
        kmeans(gpu, EmbeddingView::matrix(points.data(), DType::f32, n, dim), 20, opt);
    EXPECT_EQ(on_device.assignments, on_host.assignments);
    EXPECT_EQ(on_device.centroids, on_host.centroids);
    points[1234 * dim + 5] = std::numeric_limits<float>::infinity();
    const DeviceCopy bad(points);
    try {
      kmeans(gpu, EmbeddingView::matrix(bad.get(), DType::f32, n, dim, MemorySpace::device), 20,
             opt);
      ADD_FAILURE() << "a non-finite embedding was accepted";
    } catch (const InvalidInput& e) {
      EXPECT_EQ(e.row(), 1234) << e.what();
    }
  }
}

TEST(GpuDeviceMemory, BorrowedStreamIsUsedAndNotDestroyed) {
  QUARRY_REQUIRE_GPU();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    Resources gpu(0, stream);
    const std::vector<float> pool = {0.5f, 0.5f, 0.9f, 0.1f};
    SelectOptions opt;
    opt.k = 2;
    EXPECT_EQ(select(gpu, PoolView::matrix(pool.data(), DType::f32, 2, 2), opt).indices,
              (std::vector<int64_t>{0, 1}));
  }
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess) << "the stream must outlive Resources";
  cudaStreamDestroy(stream);
}
#endif

}  // namespace
}  // namespace quarry::test
