// The CUDA paths no other test reaches, each against the CPU backend on random inputs (printed
// seeds): the 16-lane groups of the row and token kernels, top-K at the staging limit, kl_max's
// wide rows, committees beyond 48 KiB of shared memory, k-means over several distance tiles and
// with few clusters over many points, pools in pinned and managed memory, BADGE on 16-bit inputs,
// a second device, the legacy default stream, QUARRY_SYNC_LAUNCHES=1, and one small sweep of every
// kernel family that scripts/gpu-check.sh runs under compute-sanitizer. Skipped without a GPU.

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "npy_files.hpp"
#include "test_util.hpp"

#if defined(QUARRY_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace quarry::test {
namespace {

// 16-bit pools are stored as their bits; f32 ones as they are.
struct Encoded {
  std::vector<float> values;
  std::vector<uint16_t> half;
  DType dtype;
  const void* data() const {
    return dtype == DType::f32 ? static_cast<const void*>(values.data()) : half.data();
  }
};
Encoded encoded(std::vector<float> values, DType dtype) {
  Encoded e{std::move(values), {}, dtype};
  if (dtype != DType::f32) e.half = encode(e.values, dtype);
  return e;
}

std::string trace(const char* what, int64_t a, int64_t b, DType dtype, bool logits) {
  return std::string(what) + " " + std::to_string(a) + " x " + std::to_string(b) + " " +
         std::string(to_string(dtype)) + (logits ? " logits" : " probabilities");
}

// Token log-probabilities: each step log(u) for u uniform in (0, 1]; lengths in [1, steps].
std::vector<float> random_logprobs(int64_t count, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(1e-6f, 1.0f);
  std::vector<float> out(count);
  for (float& v : out) v = std::log(u(rng));
  return out;
}
std::vector<int64_t> random_lengths(int64_t rows, int64_t steps, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> length(1, steps);
  std::vector<int64_t> out(rows);
  for (int64_t& l : out) l = length(rng);
  return out;
}

// Top-K rows: each step's K log-probabilities in descending order, some steps with fewer than K
// (-inf after them).
std::vector<float> random_top_k(int64_t rows, int64_t steps, int64_t k, std::mt19937_64& rng) {
  std::vector<float> out(rows * steps * k);
  std::uniform_int_distribution<int64_t> present(1, k);
  for (int64_t s = 0; s < rows * steps; ++s) {
    std::vector<float> p = random_probabilities(1, k, rng, 2.0f);
    std::sort(p.begin(), p.end(), std::greater<>());
    const int64_t n = present(rng);
    for (int64_t j = 0; j < k; ++j)
      out[s * k + j] = j < n ? std::log(p[j]) : -std::numeric_limits<float>::infinity();
  }
  return out;
}

ScoreOptions measure_options(Measure m, bool logits = false) {
  ScoreOptions o;
  o.measure = m;
  o.logits = logits;
  return o;
}

const Measure kSingleModel[] = {Measure::entropy, Measure::least_confidence, Measure::margin,
                                Measure::ratio};
const Measure kCommittee[] = {Measure::vote_entropy, Measure::consensus_entropy, Measure::kl_max,
                              Measure::bald, Measure::variation_ratio};
const Measure kTokens[] = {Measure::sequence_nll, Measure::perplexity, Measure::min_token_prob};
const Measure kTopK[] = {Measure::mean_token_entropy, Measure::max_token_entropy,
                         Measure::mean_token_margin};

// score_rows: 16 lanes per row for f32 rows of 129-256 classes and 16-bit rows of 257-512.
TEST(GpuPaths, ScoreRowsSixteenLaneGroups) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25001);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (auto [classes, dtype] : {std::pair{int64_t{129}, DType::f32},
                                {int64_t{200}, DType::f32},
                                {int64_t{256}, DType::f32},
                                {int64_t{257}, DType::f16},
                                {int64_t{400}, DType::bf16},
                                {int64_t{512}, DType::f16}})
    for (bool logits : {false, true}) {
      const int64_t rows = 1500;
      SCOPED_TRACE(trace("pool", rows, classes, dtype, logits));
      const Encoded pool = encoded(random_pool_values(rows, classes, dtype, logits, rng), dtype);
      const PoolView view = PoolView::matrix(pool.data(), dtype, rows, classes);
      for (Measure m : kSingleModel) {
        SCOPED_TRACE(std::string(to_string(m)));
        expect_backends_agree(cpu, gpu, view, measure_options(m, logits), 1e-5f, 1e-6f);
      }
    }
}

// Token rows of 65-128 steps (16 lanes per row), with and without lengths; top-K steps at the
// staging limit (K = 32) and just past it.
TEST(GpuPaths, TokenSixteenLaneGroupsAndTopKAtTheStagingLimit) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25002);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t rows = 700;
  for (int64_t steps : {65, 100, 128}) {
    const auto tokens = random_logprobs(rows * steps, rng);
    const auto lengths = random_lengths(rows, steps, rng);
    for (bool with_lengths : {false, true}) {
      SCOPED_TRACE("steps " + std::to_string(steps) + (with_lengths ? " with lengths" : ""));
      const PoolView view = PoolView::token_logprobs(tokens.data(), DType::f32, rows, steps,
                                                     with_lengths ? lengths.data() : nullptr);
      for (Measure m : kTokens) {
        SCOPED_TRACE(std::string(to_string(m)));
        expect_backends_agree(cpu, gpu, view, measure_options(m), 1e-5f, 1e-6f);
      }
    }
  }
  for (int64_t k : {31, 32, 33}) {
    const int64_t steps = 40;
    SCOPED_TRACE("K = " + std::to_string(k));
    const Encoded top =
        encoded(random_top_k(rows, steps, k, rng), k == 32 ? DType::f16 : DType::f32);
    const auto lengths = random_lengths(rows, steps, rng);
    const PoolView view =
        PoolView::top_logprobs(top.data(), top.dtype, rows, steps, k, lengths.data());
    for (Measure m : kTopK) {
      SCOPED_TRACE(std::string(to_string(m)));
      expect_backends_agree(cpu, gpu, view, measure_options(m), 1e-5f, 1e-6f);
    }
  }
}

// Steps of -3e38: the GPU's sums are in double as the CPU's, so the mean is finite.
TEST(GpuPaths, PerplexityOfExtremeLogProbabilitiesIsFinite) {
  QUARRY_REQUIRE_GPU();
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const std::vector<float> tokens(4 * 100, -3e38f);
  for (int64_t steps : {4, 100}) {
    const PoolView view = PoolView::token_logprobs(tokens.data(), DType::f32, 4, steps);
    const auto got =
        expect_backends_agree(cpu, gpu, view, measure_options(Measure::perplexity), 1e-6f, 0.0f);
    for (float s : got) EXPECT_TRUE(near_rel(s, 3e38f, 1e-6f, 0.0f));
  }
}

// kl_max (and bald) with more than 1,024 classes: a block per row over more than 128 rows.
TEST(GpuPaths, KlMaxWithWideRowsOverManyRows) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25003);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t members = 5, rows = 300;
  for (int64_t classes : {1025, 3000})
    for (bool logits : {false, true}) {
      SCOPED_TRACE(trace("committee rows", rows, classes, DType::f32, logits));
      const auto values = random_pool_values(members * rows, classes, DType::f32, logits, rng);
      const PoolView view = PoolView::committee(values.data(), DType::f32, members, rows, classes);
      for (Measure m : {Measure::kl_max, Measure::bald}) {
        SCOPED_TRACE(std::string(to_string(m)));
        expect_backends_agree(cpu, gpu, view, measure_options(m, logits), 1e-4f, 1e-6f);
      }
    }
}

// Committees whose per-row scratch is past 48 KiB (opt-in shared memory) and past the device's
// shared memory (the workspace): the same answers as the CPU.
TEST(GpuPaths, CommitteesOfThousandsOfMembers) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25004);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t rows = 24, classes = 3;
  for (int64_t members : {5000, 20000})
    for (bool logits : {false, true}) {
      SCOPED_TRACE(trace("members x rows", members, rows, DType::f32, logits));
      const auto values = random_pool_values(members * rows, classes, DType::f32, logits, rng);
      const PoolView view = PoolView::committee(values.data(), DType::f32, members, rows, classes);
      for (Measure m : kCommittee) {
        SCOPED_TRACE(std::string(to_string(m)));
        expect_backends_agree(cpu, gpu, view, measure_options(m, logits), 1e-4f, 1e-6f);
      }
    }
}

// Centers on a grid 10 apart and points within 0.3 of them: every assignment is certain (TF32
// products included), so the GPU's assignments equal the CPU's and its centroids are the same
// means.
struct Blobs {
  std::vector<float> points, centers;
};
Blobs grid_blobs(int64_t n, int64_t k, int64_t dim, std::mt19937_64& rng) {
  Blobs b{std::vector<float>(n * dim), std::vector<float>(k * dim)};
  for (int64_t j = 0; j < k; ++j)
    for (int64_t d = 0, rest = j; d < dim; ++d, rest /= 4)
      b.centers[j * dim + d] = 10.0f * static_cast<float>(rest % 4);
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d)
      b.points[i * dim + d] = b.centers[(i % k) * dim + d] + noise(rng);
  return b;
}

void expect_kmeans_agree(Resources& cpu, Resources& gpu, const Blobs& b, int64_t n, int64_t k,
                         int64_t dim) {
  KMeansOptions opt;
  opt.initial_centroids = b.centers;
  opt.iterations = 3;
  const EmbeddingView points = EmbeddingView::matrix(b.points.data(), DType::f32, n, dim);
  const KMeansResult want = kmeans(cpu, points, k, opt);
  const KMeansResult got = kmeans(gpu, points, k, opt);
  EXPECT_EQ(got.assignments, want.assignments);
  expect_scores_match(got.centroids, want.centroids, 1e-5f, 1e-5f);
  EXPECT_NEAR(got.inertia, want.inertia, 1e-3 * want.inertia);
}

// k = 2,048 over 40,000 points: the 256 MiB distance tile holds 32,768 rows, so two tiles.
TEST(GpuPaths, KMeansOverSeveralDistanceTiles) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25005);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t n = 40000, k = 2048, dim = 6;
  expect_kmeans_agree(cpu, gpu, grid_blobs(n, k, dim, rng), n, k, dim);
}

// Few clusters over many points: each cluster's sum spans many pieces of the centroid update.
TEST(GpuPaths, KMeansWithFewClustersOverManyPoints) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25006);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (auto [n, k, dim] :
       {std::tuple<int64_t, int64_t, int64_t>{200000, 3, 5}, {1000, 2, 300}, {257, 1, 3}}) {
    SCOPED_TRACE(std::to_string(n) + " points, k = " + std::to_string(k));
    expect_kmeans_agree(cpu, gpu, grid_blobs(n, k, dim, rng), n, k, dim);
  }
}

// BADGE on f16 and bf16 probabilities and features picks what the CPU picks.
TEST(GpuPaths, BadgeOnSixteenBitInputs) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25007);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t n = 2000, c = 10, dim = 48;
  for (DType dtype : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(to_string(dtype)));
    const Encoded probs = encoded(random_pool_values(n, c, dtype, false, rng), dtype);
    const Encoded h = encoded(random_normal(n * dim, rng), dtype);
    SelectOptions badge;
    badge.k = 50;
    badge.strategy = Strategy::badge;
    badge.seed = 11;
    badge.scoring.features = EmbeddingView::matrix(h.data(), dtype, n, dim);
    const PoolView view = PoolView::matrix(probs.data(), dtype, n, c);
    EXPECT_EQ(select(gpu, view, badge).indices, select(cpu, view, badge).indices);
  }
}

// The quarry program: $QUARRY_CLI, else the one beside this test binary (as a staged copy of the
// build has it), else the one the build made.
std::string cli_path() {
  if (const char* env = std::getenv("QUARRY_CLI")) return env;
  std::error_code ec;
  const auto sibling = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "quarry";
  if (!ec && std::filesystem::exists(sibling)) return sibling.string();
  return QUARRY_CLI_PATH;
}

// QUARRY_SYNC_LAUNCHES=1 (read once per process): the command line selects on the GPU with a
// synchronisation after every launch, and picks what the CPU picks.
TEST(GpuPaths, SyncLaunchesGiveTheSameAnswers) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25008);
  const int64_t rows = 3000, classes = 20;
  const auto probs = random_probabilities(rows, classes, rng);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("quarry_sync_" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  write_npy(dir + "/pool.npy", probs, "<f4", {rows, classes});
  Resources cpu(Device::cpu);
  SelectOptions opt;
  opt.k = 25;
  const Selection want =
      select(cpu, PoolView::matrix(probs.data(), DType::f32, rows, classes), opt);
  const std::string command = "QUARRY_SYNC_LAUNCHES=1 '" + cli_path() + "' select '" + dir +
                              "/pool.npy' -k 25 --device cuda 2>/dev/null";
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
      out.append(buffer, n);
    EXPECT_EQ(pclose(pipe), 0) << out;
  }
  std::filesystem::remove_all(dir);
  std::istringstream lines(out);
  std::vector<int64_t> got;
  for (int64_t i; lines >> i;) got.push_back(i);
  EXPECT_EQ(got, want.indices) << out;
}

// A second device, when there is one: the same scores as the CPU, and inputs on the other device
// refused by name.
TEST(GpuPaths, NonZeroCudaDevice) {
  QUARRY_REQUIRE_GPU();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  auto rng = seeded_rng(25009);
  const int64_t rows = 2000, classes = 30, dim = 16;
  const auto probs = random_probabilities(rows, classes, rng);
  const auto h = random_normal(rows * dim, rng);
  Resources cpu(Device::cpu), gpu(Device::cuda, 1);
  ScoreOptions opt = measure_options(Measure::egl);
  opt.features = EmbeddingView::matrix(h.data(), DType::f32, rows, dim);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, rows, classes);
  expect_backends_agree(cpu, gpu, view, opt, 1e-5f, 1e-6f);
  EXPECT_NE(gpu.backend().describe().find("cuda"), std::string::npos);
#if defined(QUARRY_WITH_CUDA)
  const DeviceCopy on_zero(h);  // allocated on device 0, the current device
  opt.features = EmbeddingView::matrix(on_zero.get(), DType::f32, rows, dim, MemorySpace::device);
  try {
    score(gpu, view, opt);
    ADD_FAILURE() << "features on device 0 accepted by Resources on device 1";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("the features are on CUDA device 0"), std::string::npos)
        << e.what();
  }
#endif
}

#if defined(QUARRY_WITH_CUDA)
// Pinned host buffer holding a copy of `values`.
template <typename T>
class PinnedCopy {
 public:
  explicit PinnedCopy(const std::vector<T>& values) : bytes_(values.size() * sizeof(T)) {
    if (cudaMallocHost(&data_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMallocHost");
    std::memcpy(data_, values.data(), bytes_);
  }
  ~PinnedCopy() { cudaFreeHost(data_); }
  PinnedCopy(const PinnedCopy&) = delete;
  PinnedCopy& operator=(const PinnedCopy&) = delete;
  T* get() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
  std::size_t bytes_;
};

template <typename T>
class ManagedCopy {
 public:
  explicit ManagedCopy(const std::vector<T>& values) {
    if (cudaMallocManaged(&data_, values.size() * sizeof(T)) != cudaSuccess)
      throw std::runtime_error("cudaMallocManaged");
    std::memcpy(data_, values.data(), values.size() * sizeof(T));
  }
  ~ManagedCopy() { cudaFree(data_); }
  ManagedCopy(const ManagedCopy&) = delete;
  ManagedCopy& operator=(const ManagedCopy&) = delete;
  T* get() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
};

// Host pools in pinned memory (copied to the device directly), with and without lengths (in
// pinned or pageable memory), and pools in managed memory marked as host or device memory, each
// scored in one chunk and in many.
TEST(GpuPaths, PinnedAndManagedPools) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25010);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  const int64_t rows = 5000, classes = 12, steps = 70;
  const auto probs = random_probabilities(rows, classes, rng);
  const auto tokens = random_logprobs(rows * steps, rng);
  const auto lengths = random_lengths(rows, steps, rng);
  const PinnedCopy<float> pinned_probs(probs), pinned_tokens(tokens);
  const PinnedCopy<int64_t> pinned_lengths(lengths);
  const ManagedCopy<float> managed_probs(probs), managed_tokens(tokens);
  const ManagedCopy<int64_t> managed_lengths(lengths);
  const ScoreOptions entropy = measure_options(Measure::entropy);
  const ScoreOptions nll = measure_options(Measure::sequence_nll);
  const auto want_probs =
      score(cpu, PoolView::matrix(probs.data(), DType::f32, rows, classes), entropy);
  const auto want_tokens = score(
      cpu, PoolView::token_logprobs(tokens.data(), DType::f32, rows, steps, lengths.data()), nll);
  struct Case {
    const char* name;
    PoolView view;
    const ScoreOptions* options;
    const std::vector<float>* want;
  };
  const Case cases[] = {
      {"pinned", PoolView::matrix(pinned_probs.get(), DType::f32, rows, classes), &entropy,
       &want_probs},
      {"pinned tokens, pinned lengths",
       PoolView::token_logprobs(pinned_tokens.get(), DType::f32, rows, steps, pinned_lengths.get()),
       &nll, &want_tokens},
      {"pinned tokens, pageable lengths",
       PoolView::token_logprobs(pinned_tokens.get(), DType::f32, rows, steps, lengths.data()), &nll,
       &want_tokens},
      {"managed as host", PoolView::matrix(managed_probs.get(), DType::f32, rows, classes),
       &entropy, &want_probs},
      {"managed as device",
       PoolView::matrix(managed_probs.get(), DType::f32, rows, classes, MemorySpace::device),
       &entropy, &want_probs},
      {"managed tokens as device",
       PoolView::token_logprobs(managed_tokens.get(), DType::f32, rows, steps,
                                managed_lengths.get(), DType::i64, MemorySpace::device),
       &nll, &want_tokens},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    gpu.set_memory_budget(0);
    expect_scores_match(score(gpu, c.view, *c.options), *c.want, 1e-5f, 1e-6f);
    if (c.view.space == MemorySpace::host) {  // in chunks of 333 rows
      gpu.set_memory_budget(budget_for_rows(gpu, c.view, *c.options, 0, 333));
      expect_scores_match(score(gpu, c.view, *c.options), *c.want, 1e-5f, 1e-6f);
    }
  }
}

// Resources(device, nullptr) borrows the legacy default stream: work queued there (an
// asynchronous copy into the device pool) is ordered before quarry's, with no synchronisation
// by the caller.
TEST(GpuPaths, NullStreamIsTheLegacyDefaultStream) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25011);
  const int64_t rows = 1 << 20, classes = 8;
  const auto probs = random_probabilities(rows, classes, rng);
  Resources cpu(Device::cpu);
  Resources gpu(0, nullptr);
  EXPECT_EQ(gpu.cuda_stream(), static_cast<void*>(cudaStreamLegacy));
  const PinnedCopy<float> pinned(probs);
  void* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, probs.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(device, 0xff, probs.size() * sizeof(float)), cudaSuccess);  // NaN
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(device, pinned.get(), probs.size() * sizeof(float),
                            cudaMemcpyHostToDevice, nullptr),
            cudaSuccess);
  const ScoreOptions entropy = measure_options(Measure::entropy);
  std::vector<float> got;
  EXPECT_NO_THROW(
      got = score(gpu, PoolView::matrix(device, DType::f32, rows, classes, MemorySpace::device),
                  entropy))
      << "quarry read the pool before the copy queued on the legacy stream";
  expect_scores_match(
      got, score(cpu, PoolView::matrix(probs.data(), DType::f32, rows, classes), entropy), 1e-5f,
      1e-6f);
  cudaFree(device);
}
#endif

// Every kernel family once on small inputs, against the CPU: what scripts/gpu-check.sh runs under
// compute-sanitizer's memcheck, racecheck and synccheck (keep it fast: the tools slow kernels down
// a hundredfold).
TEST(GpuPaths, SanitizerSweep) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(25012);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  // Single-model rows: 4, 8, 16 and 32 lanes per row; probabilities, logits, f16.
  for (int64_t classes : {3, 40, 200, 600})
    for (bool logits : {false, true}) {
      const Encoded pool =
          encoded(random_pool_values(67, classes, DType::f16, logits, rng), DType::f16);
      SCOPED_TRACE(trace("rows", 67, classes, DType::f16, logits));
      const PoolView view = PoolView::matrix(pool.data(), DType::f16, 67, classes);
      expect_backends_agree(cpu, gpu, view, measure_options(Measure::entropy, logits), 1e-5f,
                            1e-6f);
      SelectOptions top;
      top.k = 33;
      top.scoring = measure_options(Measure::margin, logits);
      EXPECT_EQ(select(gpu, view, top).indices, select(cpu, view, top).indices);
    }
  // Committees: a warp per row, a block per row, opt-in shared memory, workspace scratch; votes.
  for (auto [members, classes] :
       {std::pair<int64_t, int64_t>{3, 10}, {4, 1500}, {5000, 2}, {20000, 2}}) {
    const auto values = random_pool_values(members * 9, classes, DType::f32, true, rng);
    SCOPED_TRACE(trace("committee", members, classes, DType::f32, true));
    const PoolView view = PoolView::committee(values.data(), DType::f32, members, 9, classes);
    for (Measure m : kCommittee)
      expect_backends_agree(cpu, gpu, view, measure_options(m, true), 1e-4f, 1e-6f);
  }
  std::vector<int32_t> votes(7 * 50);
  std::uniform_int_distribution<int32_t> vote(-1, 4);
  for (int32_t& v : votes) v = vote(rng);
  expect_backends_agree(cpu, gpu, PoolView::votes(votes.data(), DType::i32, 7, 50, 5),
                        measure_options(Measure::vote_entropy), 1e-6f, 1e-6f);
  // LLM outputs: tokens (4 and 16 lanes), top-K staged and not, samples.
  for (int64_t steps : {10, 100}) {
    const auto tokens = random_logprobs(30 * steps, rng);
    const auto lengths = random_lengths(30, steps, rng);
    const PoolView view =
        PoolView::token_logprobs(tokens.data(), DType::f32, 30, steps, lengths.data());
    expect_backends_agree(cpu, gpu, view, measure_options(Measure::perplexity), 1e-5f, 1e-6f);
  }
  for (int64_t k : {5, 40}) {
    const auto top = random_top_k(30, 12, k, rng);
    const PoolView view = PoolView::top_logprobs(top.data(), DType::f32, 30, 12, k);
    expect_backends_agree(cpu, gpu, view, measure_options(Measure::mean_token_entropy), 1e-5f,
                          1e-6f);
  }
  const auto answers = random_normal(20 * 6 * 16, rng);
  for (Measure m : {Measure::sample_dispersion, Measure::eigenscore, Measure::semantic_entropy})
    expect_backends_agree(cpu, gpu, PoolView::samples(answers.data(), DType::f32, 20, 6, 16),
                          measure_options(m), 1e-4f, 1e-5f);
  // egl, BADGE, core-set and k-means.
  const int64_t n = 300, c = 7, dim = 24;
  const auto probs = random_probabilities(n, c, rng);
  const auto h = random_normal(n * dim, rng);
  ScoreOptions egl = measure_options(Measure::egl);
  egl.features = EmbeddingView::matrix(h.data(), DType::f32, n, dim);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  expect_backends_agree(cpu, gpu, view, egl, 1e-5f, 1e-6f);
  SelectOptions badge;
  badge.k = 12;
  badge.strategy = Strategy::badge;
  badge.scoring.features = egl.features;
  EXPECT_EQ(select(gpu, view, badge).indices, select(cpu, view, badge).indices);
  SelectOptions coreset;
  coreset.k = 12;
  coreset.strategy = Strategy::coreset;
  coreset.embeddings = egl.features;
  EXPECT_EQ(select(gpu, view, coreset).indices, select(cpu, view, coreset).indices);
  const Blobs blobs = grid_blobs(700, 5, 3, rng);
  expect_kmeans_agree(cpu, gpu, blobs, 700, 5, 3);
  KMeansOptions seeded;  // k-means++ on the device
  seeded.seed = 5;
  const KMeansResult plus =
      kmeans(gpu, EmbeddingView::matrix(blobs.points.data(), DType::f32, 700, 3), 5, seeded);
  EXPECT_EQ(plus.assignments.size(), 700u);
}

}  // namespace
}  // namespace quarry::test
