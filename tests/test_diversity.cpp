// Diversity (k-means over the top candidates) and exploration, on every backend; CPU (FAISS) vs
// GPU k-means from the same initial centroids.

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <thread>

#include "engine/cpu/faiss_plugin.hpp"
#include "engine/kmeans_host.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

using Diversity = OnEveryBackend;

QUARRY_ON_EVERY_BACKEND(Diversity);

// A pool whose most uncertain rows all sit in 3 of 50 well-separated embedding blobs.
struct BlobPool {
  int64_t n = 2000, blobs = 50, dim = 8;
  std::vector<float> probs, embeddings;
  std::vector<int> blob_of;
  explicit BlobPool(uint64_t seed) {
    auto rng = seeded_rng(seed);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    std::uniform_real_distribution<float> jitter(0.0f, 0.01f);
    std::vector<float> centers(blobs * dim);
    for (auto& c : centers) c = std::normal_distribution<float>(0.0f, 10.0f)(rng);
    for (int64_t r = 0; r < n; ++r) {
      const int b = static_cast<int>(r % blobs);
      blob_of.push_back(b);
      const float p = b < 3 ? 0.5f + jitter(rng) : 0.9f + jitter(rng);
      probs.push_back(p);
      probs.push_back(1.0f - p);
      for (int64_t j = 0; j < dim; ++j) embeddings.push_back(centers[b * dim + j] + noise(rng));
    }
  }
  PoolView pool() const { return PoolView::matrix(probs.data(), DType::f32, n, 2); }
  EmbeddingView emb() const { return EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim); }
  size_t distinct_blobs(const std::vector<int64_t>& rows) const {
    std::set<int> s;
    for (int64_t r : rows) s.insert(blob_of[r]);
    return s.size();
  }
};

TEST_P(Diversity, PlantedBlobsSpreadTheSelection) {
  const BlobPool blobs(6001);
  SelectOptions opt;
  opt.k = 20;
  opt.scoring.measure = Measure::margin;
  const Selection plain = select(*resources_, blobs.pool(), opt);
  EXPECT_LE(blobs.distinct_blobs(plain.indices), 3u) << "uncertainty alone crowds into 3 blobs";
  opt.embeddings = blobs.emb();
  opt.candidates = blobs.n;
  const Selection diverse = select(*resources_, blobs.pool(), opt);
  ASSERT_EQ(diverse.indices.size(), 20u);
  EXPECT_GE(blobs.distinct_blobs(diverse.indices), 18u);
  std::set<int32_t> clusters(diverse.clusters.begin(), diverse.clusters.end());
  EXPECT_EQ(clusters.size(), 20u) << "one pick per cluster";
  for (size_t i = 0; i < diverse.indices.size(); ++i) {
    EXPECT_EQ(diverse.reasons[i], PickReason::cluster);
    if (i > 0) EXPECT_LE(diverse.scores[i], diverse.scores[i - 1]) << "best first";
  }
  // The same inputs and seed give the same picks.
  EXPECT_EQ(select(*resources_, blobs.pool(), opt).indices, diverse.indices);
}

TEST_P(Diversity, EveryClusterPicksItsBestCandidate) {
  const BlobPool blobs(6002);
  SelectOptions opt;
  opt.k = 10;
  opt.embeddings = blobs.emb();
  opt.candidates = 300;
  const Selection sel = select(*resources_, blobs.pool(), opt);
  ASSERT_EQ(sel.indices.size(), 10u);
  std::set<int64_t> unique(sel.indices.begin(), sel.indices.end());
  EXPECT_EQ(unique.size(), 10u);
  // Every pick is among the 300 best rows.
  const auto scores = score(*resources_, blobs.pool(), opt.scoring);
  std::vector<float> sorted = scores;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  for (float s : sel.scores) EXPECT_GE(s, sorted[299]);
}

TEST_P(Diversity, MoreClustersThanDistinctPointsStillGivesKPicks) {
  // 30 rows whose embeddings take only 4 distinct values: clusters end up empty and are made up
  // from the next-best candidates.
  const int64_t n = 30;
  std::vector<float> probs, emb;
  for (int64_t r = 0; r < n; ++r) {
    const float p = 0.5f + 0.01f * static_cast<float>(r);
    probs.insert(probs.end(), {p, 1.0f - p});
    emb.push_back(static_cast<float>(r % 4));
  }
  SelectOptions opt;
  opt.k = 10;
  opt.embeddings = EmbeddingView::matrix(emb.data(), DType::f32, n, 1);
  opt.candidates = n;
  const Selection sel = select(*resources_, PoolView::matrix(probs.data(), DType::f32, n, 2), opt);
  ASSERT_EQ(sel.indices.size(), 10u);
  EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(), 10u);
  EXPECT_GE(std::count(sel.reasons.begin(), sel.reasons.end(), PickReason::cluster), 4);
}

TEST_P(Diversity, KMeansClosedForms) {
  auto rng = seeded_rng(6003);
  const int64_t n = 500, dim = 3;
  const std::vector<float> x = random_normal(n * dim, rng);
  // k = 1: the centroid is the mean and the inertia the total squared deviation.
  const KMeansResult one =
      kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, n, dim), 1);
  double inertia = 0;
  for (int64_t j = 0; j < dim; ++j) {
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += x[i * dim + j] / n;
    EXPECT_NEAR(one.centroids[j], mean, 1e-4);
    for (int64_t i = 0; i < n; ++i) inertia += (x[i * dim + j] - mean) * (x[i * dim + j] - mean);
  }
  EXPECT_NEAR(one.inertia, inertia, 1e-3 * inertia);
  // k = n: every point is its own cluster.
  const KMeansResult all =
      kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, 50, dim), 50);
  EXPECT_NEAR(all.inertia, 0.0, 1e-3);
  // D = 1, two far groups, k = 2.
  std::vector<float> line = {0.0f, 0.1f, 0.2f, 100.0f, 100.1f, 100.2f};
  const KMeansResult two =
      kmeans(*resources_, EmbeddingView::matrix(line.data(), DType::f32, 6, 1), 2);
  EXPECT_EQ(two.assignments[0], two.assignments[2]);
  EXPECT_EQ(two.assignments[3], two.assignments[5]);
  EXPECT_NE(two.assignments[0], two.assignments[3]);
  EXPECT_NEAR(two.inertia, 4 * 0.01, 1e-3);
}

// Squared distances of coordinates near 1e19 in 16-D overflow float (FAISS aborted the process),
// and those of coordinates near 1e-21 vanish. k-means is the same for any power-of-two scale of
// the points, so huge and tiny copies of a clustered set must give its clusters, with centroids
// and inertia scaled back.
TEST_P(Diversity, HugeAndTinyCoordinatesClusterAsTheirScaledCopy) {
  auto rng = seeded_rng(6010);
  const int64_t n = 240, dim = 16, k = 4;
  std::vector<float> base(n * dim);
  std::normal_distribution<float> noise(0.0f, 0.05f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j)
      base[i * dim + j] = ((i % k) == (j % k) ? 1.0f : -1.0f) + noise(rng);
  KMeansOptions opt;
  opt.seed = 3;
  opt.iterations = 10;
  const KMeansResult want =
      kmeans(*resources_, EmbeddingView::matrix(base.data(), DType::f32, n, dim), k, opt);
  for (int exponent : {63, 100, -70}) {
    SCOPED_TRACE("coordinates times 2^" + std::to_string(exponent));
    std::vector<float> scaled(base);
    for (float& v : scaled) v = std::ldexp(v, exponent);
    const KMeansResult got =
        kmeans(*resources_, EmbeddingView::matrix(scaled.data(), DType::f32, n, dim), k, opt);
    EXPECT_EQ(got.assignments, want.assignments);
    ASSERT_EQ(got.centroids.size(), want.centroids.size());
    for (size_t i = 0; i < want.centroids.size(); ++i)
      EXPECT_TRUE(near_rel(got.centroids[i], std::ldexp(want.centroids[i], exponent), 1e-6f, 0.0f));
    EXPECT_NEAR(got.inertia / std::ldexp(want.inertia, 2 * exponent), 1.0, 1e-5);
  }
}

// Unnormalised features: nanosecond timestamps (1.7e18) in 128-D, three groups 1e16 apart. The
// squared norms overflow float; the groups must still be found.
TEST_P(Diversity, TimestampFeaturesAreClustered) {
  auto rng = seeded_rng(6011);
  const int64_t n = 90, dim = 128, k = 3;
  std::normal_distribution<double> noise(0.0, 1e14);
  std::vector<float> x(n * dim);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j)
      x[i * dim + j] =
          static_cast<float>(1.7e18 + 1e16 * double(i % k) * (j % 2 ? 1 : -1) + noise(rng));
  const KMeansResult r =
      kmeans(*resources_, EmbeddingView::matrix(x.data(), DType::f32, n, dim), k);
  std::set<int32_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(r.assignments[i], r.assignments[i % k]) << "point " << i;
    labels.insert(r.assignments[i]);
  }
  EXPECT_EQ(labels.size(), 3u);
  EXPECT_TRUE(std::isfinite(r.inertia));
}

TEST_P(Diversity, ExplorationFractionIsExactWithoutDuplicates) {
  auto rng = seeded_rng(6004);
  const int64_t n = 1000, c = 5;
  const auto probs = random_probabilities(n, c, rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.k = 100;
  opt.explore = 0.25;
  opt.seed = 42;
  const Selection sel = select(*resources_, view, opt);
  ASSERT_EQ(sel.indices.size(), 100u);
  EXPECT_EQ(std::count(sel.reasons.begin(), sel.reasons.end(), PickReason::exploration), 25);
  EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(), 100u);
  // The first 75 are exactly the top 75 by rank; explored rows are outside them.
  SelectOptions plain;
  plain.k = 75;
  const Selection top = select(*resources_, view, plain);
  EXPECT_TRUE(std::equal(top.indices.begin(), top.indices.end(), sel.indices.begin()));
  const auto scores = score(*resources_, view, ScoreOptions{});
  for (int i = 75; i < 100; ++i) EXPECT_EQ(sel.scores[i], scores[sel.indices[i]]);
  // Seeded: the same seed repeats, another seed differs.
  EXPECT_EQ(select(*resources_, view, opt).indices, sel.indices);
  opt.seed = 43;
  EXPECT_NE(select(*resources_, view, opt).indices, sel.indices);
  // k = N with half exploration still returns every row exactly once.
  opt.k = n;
  opt.explore = 0.5;
  const Selection everything = select(*resources_, view, opt);
  EXPECT_EQ(std::set<int64_t>(everything.indices.begin(), everything.indices.end()).size(),
            static_cast<size_t>(n));
}

TEST_P(Diversity, BadDiversityArguments) {
  const BlobPool blobs(6005);
  SelectOptions opt;
  opt.k = 10;
  opt.embeddings = blobs.emb();
  opt.embeddings->rows = blobs.n - 1;
  EXPECT_THROW(select(*resources_, blobs.pool(), opt), InvalidArgument) << "row count";
  opt.embeddings = blobs.emb();
  opt.embeddings->dim = 0;
  EXPECT_THROW(select(*resources_, blobs.pool(), opt), InvalidArgument) << "D = 0";
  opt.embeddings = blobs.emb();
  opt.candidates = 5;
  EXPECT_THROW(select(*resources_, blobs.pool(), opt), InvalidArgument) << "m < k";
  opt.candidates = 0;
  for (double eps : {1.0, -0.1, std::nan("")}) {
    opt.explore = eps;
    EXPECT_THROW(select(*resources_, blobs.pool(), opt), InvalidArgument) << eps;
  }
  opt.explore = 0;
  // A non-finite embedding on a candidate row names that row.
  std::vector<float> emb = blobs.embeddings;
  emb[1 * blobs.dim + 2] = std::numeric_limits<float>::infinity();  // row 1 is in blob 1: uncertain
  opt.embeddings = EmbeddingView::matrix(emb.data(), DType::f32, blobs.n, blobs.dim);
  opt.candidates = blobs.n;
  try {
    select(*resources_, blobs.pool(), opt);
    ADD_FAILURE() << "Inf embedding accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 1) << e.what();
  }
}

// k-means sets OpenBLAS to one thread while it runs. Called from several threads at once it must
// still give the application its own setting back (per-call save and restore left it at 1).
TEST(KMeansBlas, ConcurrentCallsKeepTheApplicationsBlasThreads) {
  auto rng = seeded_rng(6020);
  const int64_t n = 300, dim = 8;
  const std::vector<float> x = random_normal(n * dim, rng);
  auto set =
      reinterpret_cast<void (*)(int)>(engine::faiss_plugin_symbol("openblas_set_num_threads"));
  auto get = reinterpret_cast<int (*)()>(engine::faiss_plugin_symbol("openblas_get_num_threads"));
  if (!set || !get) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  const int original = get();
  set(2);
  if (get() != 2) {
    set(original);
    GTEST_SKIP() << "OpenBLAS cannot run 2 threads here";
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&x] {
      Resources cpu(Device::cpu);
      KMeansOptions opt;
      opt.iterations = 2;
      for (int call = 0; call < 25; ++call)
        kmeans(cpu, EmbeddingView::matrix(x.data(), DType::f32, n, dim), 5, opt);
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(get(), 2);
  set(original);
}

TEST(KMeansParity, GpuInertiaWithinOnePercentOfFaiss) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(6100);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto [n, dim, k] :
       {std::tuple<int64_t, int64_t, int64_t>{5000, 16, 50}, {20000, 64, 200}, {3000, 1, 10}}) {
    std::vector<float> x(n * dim);
    for (auto& v : x) v = normal(rng);
    KMeansOptions opt;
    opt.iterations = 20;
    opt.initial_centroids = engine::kmeans_plus_plus(x.data(), n, dim, k, 7);
    Resources cpu(Device::cpu), gpu(Device::cuda);
    const auto view = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
    const KMeansResult a = kmeans(cpu, view, k, opt);
    const KMeansResult b = kmeans(gpu, view, k, opt);
    EXPECT_NEAR(b.inertia, a.inertia, 0.01 * a.inertia) << n << "x" << dim << " k=" << k;
    EXPECT_LE(b.iterations, 20);
    // Run after run, the GPU repeats itself exactly.
    EXPECT_EQ(kmeans(gpu, view, k, opt).assignments, b.assignments);
  }
}

}  // namespace
}  // namespace quarry::test
