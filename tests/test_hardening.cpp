// Calls at the edges: far or non-finite k-means starts, bfloat16 rounding of rows, row offsets at
// the end of int64, and stopping a call from outside it.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/measures.hpp"
#include "quarry/quarry.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

class Hardening : public OnEveryBackend {};
QUARRY_ON_EVERY_BACKEND(Hardening);

double inertia_of(const std::vector<float>& x, int64_t n, int64_t dim,
                  const std::vector<float>& centroids, int64_t k) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < k; ++c) {
      double d2 = 0;
      for (int64_t j = 0; j < dim; ++j) {
        const double d = double(x[i * dim + j]) - double(centroids[c * dim + j]);
        d2 += d * d;
      }
      best = std::min(best, d2);
    }
    total += best;
  }
  return total;
}

TEST_P(Hardening, KMeansRefusesNonFiniteInitialCentroids) {
  auto rng = seeded_rng(7001);
  const int64_t n = 100, dim = 3, k = 2;
  const std::vector<float> x = random_normal(n * dim, rng);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), kernels::kInf, -kernels::kInf}) {
    KMeansOptions options;
    options.initial_centroids.assign(x.begin(), x.begin() + k * dim);
    options.initial_centroids[4] = bad;
    try {
      kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, n, dim), k, options);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("initial_centroids: centroid 1"), std::string::npos)
          << e.what();
    }
  }
}

TEST_P(Hardening, KMeansFromFarInitialCentroidsHasTheTrueInertia) {
  auto rng = seeded_rng(7002);
  const int64_t n = 200, dim = 4, k = 3;
  const std::vector<float> x = random_normal(n * dim, rng);
  KMeansOptions options;
  options.initial_centroids = {1e30f, 1e30f, 1e30f, 1e30f, 0, 0, 0, 0, 1, 1, 1, 1};
  const KMeansResult r =
      kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, n, dim), k, options);
  const double want = inertia_of(x, n, dim, r.centroids, k);
  EXPECT_GT(r.inertia, 100.0);  // was 0: the points vanished when scaled with the centroids
  EXPECT_NEAR(r.inertia, want, 1e-4 * want);
  for (float c : r.centroids) EXPECT_LT(std::fabs(c), 10.0f);
}

// bfloat16 rows round each probability to 8 significant bits: sums miss 1 by up to 2^-8.
TEST_P(Hardening, BFloat16RowsGetTheirOwnSumTolerance) {
  // 0.5 + 0.2480 + 0.2480 (bf16 of 0.249) = 0.996: off by 4e-3, within 2^-7.
  const std::vector<float> row = {0.5f, 0.248046875f, 0.248046875f};
  const std::vector<uint16_t> bits = encode(row, DType::bf16);
  EXPECT_NO_THROW(score(*resources_, PoolView::matrix(bits.data(), DType::bf16, 1, 3), {}));
  // The same float32 values are bf16 values too, and get the same tolerance...
  EXPECT_NO_THROW(score(*resources_, PoolView::matrix(row.data(), DType::f32, 1, 3), {}));
  // ...but a float32 row off by as much, whose values are not all bf16, keeps 1e-3.
  const std::vector<float> f32_row = {0.5f, 0.248f, 0.248f};
  EXPECT_THROW(score(*resources_, PoolView::matrix(f32_row.data(), DType::f32, 1, 3), {}),
               InvalidInput);
  // Off by more than 2^-7 (1/64 here) in bf16: refused.
  const std::vector<uint16_t> off = encode({0.5f, 0.484375f}, DType::bf16);
  EXPECT_THROW(score(*resources_, PoolView::matrix(off.data(), DType::bf16, 1, 2), {}),
               InvalidInput);
}

TEST_P(Hardening, RowOffsetsWhoseRowsPassInt64AreRefused) {
  const std::vector<float> pool(20 * 2, 0.5f);
  SelectOptions options;
  options.k = 3;
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, 20, 2);
  const int64_t last = std::numeric_limits<int64_t>::max();
  EXPECT_THROW(select_partial(*resources_, view, options, last - 10, 0), InvalidArgument);
  const Partial p = select_partial(*resources_, view, options, last - 20, 0);
  for (int64_t row : p.indices) EXPECT_GE(row, last - 20);
}

TEST_P(Hardening, AnInterruptCheckStopsALongCall) {
  const int64_t n = 2'000'000, c = 8;
  const std::vector<float> pool(n * c, 1.0f / c);
  SelectOptions options;
  options.k = 5;
  int polls = 0;
  {
    const InterruptCheck check([&] { return ++polls >= 1; });
    EXPECT_THROW(select(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), options),
                 Interrupted);
  }
  EXPECT_EQ(polls, 1);
  // Without the check the same call runs to the end, and the Resources are whole.
  const Selection sel =
      select(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), options);
  EXPECT_EQ(sel.indices, (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST_P(Hardening, AnInterruptCheckStopsKMeansIterations) {
  if (GetParam() == Device::cuda) GTEST_SKIP() << "the CUDA k-means is not polled";
  auto rng = seeded_rng(7003);
  const int64_t n = 20'000, dim = 16, k = 64;
  const std::vector<float> x = random_normal(n * dim, rng);
  KMeansOptions options;
  options.iterations = 100'000;  // minutes, unless stopped
  int polls = 0;
  const InterruptCheck check([&] { return ++polls >= 3; });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, n, dim), k, options),
               Interrupted);
  EXPECT_EQ(polls, 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

}  // namespace
}  // namespace quarry::test
