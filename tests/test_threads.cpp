// The CPU backend's thread pool (engine/threads.hpp): every chunk runs once, errors come back to
// the caller, nested and concurrent loops finish, and results do not depend on the thread count.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/threads.hpp"
#include "quarry/quarry.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

using engine::parallel_for;
using engine::prepare_calling_thread;
using engine::run_chunks;

// Calls made by the test itself with a thread setting, as a Resources call would set it.
struct CallThreads {
  explicit CallThreads(int threads) { prepare_calling_thread(threads); }
  ~CallThreads() { prepare_calling_thread(0); }
};

TEST(ThreadPool, EveryChunkRunsOnceOnEveryTeamSize) {
  for (int team : {1, 2, 3, 8}) {
    for (int64_t chunks : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{1000}}) {
      std::vector<std::atomic<int>> runs(chunks);
      std::atomic<int> bad_slot{0};
      run_chunks(chunks, team, [&](int64_t i, int slot) {
        runs[i].fetch_add(1);
        if (slot < 0 || slot >= team) bad_slot.fetch_add(1);
      });
      for (int64_t i = 0; i < chunks; ++i)
        ASSERT_EQ(runs[i].load(), 1) << "team " << team << ", chunk " << i << " of " << chunks;
      EXPECT_EQ(bad_slot.load(), 0);
    }
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeInFixedRanges) {
  CallThreads threads(4);
  const int64_t n = 1'000'003;
  std::vector<int> seen(n, 0);
  std::vector<std::pair<int64_t, int64_t>> ranges((n + 999) / 1000);
  parallel_for(n, 1000, 1, [&](int64_t begin, int64_t end, int) {
    ranges[begin / 1000] = {begin, end};
    for (int64_t i = begin; i < end; ++i) ++seen[i];
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << i;
  for (size_t r = 0; r < ranges.size(); ++r) {
    EXPECT_EQ(ranges[r].first, static_cast<int64_t>(r) * 1000);
    EXPECT_EQ(ranges[r].second, std::min<int64_t>(n, (static_cast<int64_t>(r) + 1) * 1000));
  }
}

TEST(ThreadPool, SmallWorkStaysOnTheCallingThread) {
  CallThreads threads(8);
  EXPECT_EQ(engine::team_for(engine::kWorkPerThread), 1);
  EXPECT_EQ(engine::team_for(2 * engine::kWorkPerThread - 1), 1);
  EXPECT_EQ(engine::team_for(2 * engine::kWorkPerThread), 2);
  EXPECT_EQ(engine::team_for(int64_t{1} << 40), 8);
  const auto caller = std::this_thread::get_id();
  std::atomic<int> elsewhere{0};
  parallel_for(1000, 10, 1, [&](int64_t, int64_t, int) {
    if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
  });
  EXPECT_EQ(elsewhere.load(), 0);
}

TEST(ThreadPool, AChunksExceptionReachesTheCallerAndThePoolGoesOn) {
  std::atomic<int> ran{0};
  EXPECT_THROW(run_chunks(1000, 4,
                          [&](int64_t i, int) {
                            ran.fetch_add(1);
                            if (i == 10) throw std::runtime_error("chunk 10");
                          }),
               std::runtime_error);
  EXPECT_GE(ran.load(), 11);
  std::atomic<int64_t> sum{0};
  run_chunks(100, 4, [&](int64_t i, int) { sum.fetch_add(i); });
  EXPECT_EQ(sum.load(), 4950);
}

TEST(ThreadPool, NestedAndConcurrentLoopsFinish) {
  // A loop inside a chunk finds the pool busy and runs on its thread.
  std::atomic<int64_t> inner{0};
  run_chunks(16, 4, [&](int64_t, int) {
    run_chunks(100, 4, [&](int64_t j, int) { inner.fetch_add(j); });
  });
  EXPECT_EQ(inner.load(), 16 * 4950);
  // Callers on several threads at once: one gets the pool, the others run alone.
  std::vector<std::thread> callers;
  std::vector<int64_t> sums(6, 0);
  for (int t = 0; t < 6; ++t)
    callers.emplace_back([&, t] {
      for (int repeat = 0; repeat < 50; ++repeat) {
        std::atomic<int64_t> sum{0};
        run_chunks(64, 3, [&](int64_t i, int) { sum.fetch_add(i + t); });
        sums[t] += sum.load();
      }
    });
  for (auto& c : callers) c.join();
  for (int t = 0; t < 6; ++t) EXPECT_EQ(sums[t], 50 * (2016 + 64 * t)) << t;
}

TEST(ThreadPool, AvailableCpusIsWithinTheMachine) {
  const int cpus = engine::available_cpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

// cgroup files laid out under a temporary directory as /proc/self/cgroup and /sys/fs/cgroup
// show them, for v2 (a quota on the process's group and a smaller one on an ancestor), v1, and
// a container whose /proc path names the host's hierarchy above its own root.
TEST(ThreadPool, CgroupQuotasAreReadForV1AndV2) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("quarry-cgroup-" + std::to_string(getpid()));
  fs::remove_all(root);
  auto write = [](const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
  };
  auto limit = [&](const char* proc, const char* sys) {
    return engine::cgroup_cpu_limit((root / proc).string(), (root / sys).string());
  };
  write(root / "proc-v2", "0::/user.slice/job\n");
  write(root / "sys/user.slice/job/cpu.max", "max 100000\n");
  EXPECT_EQ(limit("proc-v2", "sys"), 0.0);
  write(root / "sys/user.slice/job/cpu.max", "250000 100000\n");
  EXPECT_EQ(limit("proc-v2", "sys"), 2.5);
  write(root / "sys/user.slice/cpu.max", "150000 100000\n");
  EXPECT_EQ(limit("proc-v2", "sys"), 1.5);

  write(root / "proc-v1", "5:memory:/a\n4:cpu,cpuacct:/docker/c1\n");
  write(root / "sys1/cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "-1\n");
  write(root / "sys1/cpu,cpuacct/docker/c1/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(limit("proc-v1", "sys1"), 0.0);
  write(root / "sys1/cpu,cpuacct/docker/c1/cpu.cfs_quota_us", "50000\n");
  EXPECT_EQ(limit("proc-v1", "sys1"), 0.5);

  // The host's path does not exist inside the container; its own root holds the quota.
  write(root / "proc-ns", "0::/kubepods/pod7/c2\n");
  write(root / "sys2/cpu.max", "300000 100000\n");
  EXPECT_EQ(limit("proc-ns", "sys2"), 3.0);
  EXPECT_EQ(limit("missing", "sys2"), 0.0);
  fs::remove_all(root);
}

TEST(ThreadPool, ResourcesThreadsAreCheckedAndDescribed) {
  Resources resources(Device::cpu);
  EXPECT_EQ(resources.threads(), 0);
  resources.set_threads(3);
  EXPECT_EQ(resources.threads(), 3);
  EXPECT_EQ(resources.describe(), "cpu (3 threads)");
  EXPECT_THROW(resources.set_threads(-1), InvalidArgument);
  EXPECT_THROW(resources.set_threads(5000), InvalidArgument);
  EXPECT_EQ(resources.threads(), 3);
}

// The same picks and scores with one thread and with more threads than this machine has cores
// (so that helpers run even on a one-core runner), for every kind of loop the backend has.
TEST(ThreadPool, PicksAndScoresDoNotDependOnTheThreadCount) {
  auto rng = seeded_rng(2412);
  const int64_t n = 60'000, c = 12, dim = 24, members = 5;
  const std::vector<float> probs = random_probabilities(n, c, rng);
  const std::vector<float> committee = random_probabilities(members * n, c, rng);
  const std::vector<float> logits = random_logits(n, c, rng);
  const std::vector<float> embeddings = random_normal(n * dim, rng);
  std::vector<float> tokens = random_normal(n * 40, rng);
  for (float& t : tokens) t = -std::fabs(t);
  std::vector<int32_t> votes(members * n);
  for (auto& v : votes) v = static_cast<int32_t>(rng() % c);

  struct Case {
    const char* name;
    PoolView pool;
    SelectOptions options;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, PoolView pool, Measure measure) {
    SelectOptions o;
    o.k = 200;
    o.scoring.measure = measure;
    cases.push_back({name, pool, o});
    return &cases.back().options;
  };
  const PoolView matrix = PoolView::matrix(probs.data(), DType::f32, n, c);
  add("entropy", matrix, Measure::entropy);
  add("margin", matrix, Measure::margin);
  add("logits", PoolView::matrix(logits.data(), DType::f32, n, c), Measure::entropy)
      ->scoring.logits = true;
  add("bald", PoolView::committee(committee.data(), DType::f32, members, n, c), Measure::bald);
  add("votes", PoolView::votes(votes.data(), DType::i32, members, n, c), Measure::vote_entropy);
  add("tokens", PoolView::token_logprobs(tokens.data(), DType::f32, n, 40), Measure::perplexity);
  SelectOptions* diversity = add("diversity", matrix, Measure::margin);
  diversity->embeddings = EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim);
  SelectOptions* coreset = add("coreset", matrix, Measure::margin);
  coreset->strategy = Strategy::coreset;
  coreset->embeddings = EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim);
  coreset->k = 30;
  SelectOptions* badge = add("badge", matrix, Measure::margin);
  badge->strategy = Strategy::badge;
  badge->scoring.features = EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim);
  badge->k = 30;

  Resources one(Device::cpu), many(Device::cpu);
  one.set_threads(1);
  many.set_threads(4);
  for (const Case& test : cases) {
    SCOPED_TRACE(test.name);
    const Selection a = select(one, test.pool, test.options);
    const Selection b = select(many, test.pool, test.options);
    ASSERT_EQ(a.indices.size(), static_cast<size_t>(test.options.k));
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(a.scores, b.scores);
    EXPECT_EQ(a.clusters, b.clusters);
    const std::vector<float> sa = score(one, test.pool, test.options.scoring);
    const std::vector<float> sb = score(many, test.pool, test.options.scoring);
    EXPECT_EQ(sa, sb);
  }
  const KMeansResult ka =
      kmeans(one, EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim), 16, {});
  const KMeansResult kb =
      kmeans(many, EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim), 16, {});
  EXPECT_EQ(ka.centroids, kb.centroids);
  EXPECT_EQ(ka.assignments, kb.assignments);
}

// A bad row is reported as the lowest one whichever thread finds it.
TEST(ThreadPool, TheLowestBadRowIsReportedOnAnyThreadCount) {
  auto rng = seeded_rng(77);
  const int64_t n = 200'000, c = 10;
  std::vector<float> probs = random_probabilities(n, c, rng);
  probs[150'000 * c + 3] = -1.0f;
  probs[90'001 * c + 1] = std::nanf("");
  for (int threads : {1, 2, 4}) {
    Resources resources(Device::cpu);
    resources.set_threads(threads);
    try {
      score(resources, PoolView::matrix(probs.data(), DType::f32, n, c), {});
      FAIL() << "no error with " << threads << " threads";
    } catch (const InvalidInput& e) {
      EXPECT_EQ(e.row(), 90'001) << threads << " threads: " << e.what();
    }
  }
}

}  // namespace
}  // namespace quarry::test
