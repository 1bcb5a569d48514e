// The CPU backend is the oracle for the CUDA backend: same random pools (printed seeds), scores
// within a relative 1e-5, and the GPU's picks exactly the rank order of the GPU's own scores.

#include <algorithm>
#include <numeric>

#include "engine/ranking.hpp"
#include "test_util.hpp"

#if defined(QUARRY_WITH_CUDA)
#include <cuda_runtime.h>
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
  void* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, pool.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(device, pool.data(), pool.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  Resources gpu(Device::cuda);
  SelectOptions opt;
  opt.k = 100;
  const Selection from_device =
      select(gpu, PoolView::matrix(device, DType::f32, n, c, MemorySpace::device), opt);
  const Selection from_host = select(gpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt);
  EXPECT_EQ(from_device.indices, from_host.indices);
  // A host pointer declared as device memory is refused, not dereferenced.
  EXPECT_THROW(
      select(gpu, PoolView::matrix(pool.data(), DType::f32, n, c, MemorySpace::device), opt),
      InvalidArgument);
  cudaFree(device);
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
