// CPU backend benchmarks: scoring and top-k throughput, against a plain read of the same bytes.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/threads.hpp"
#include "quarry/quarry.hpp"

namespace {

using namespace quarry;

std::vector<float> probabilities(int64_t n, int64_t c) {
  std::mt19937 rng(7);
  std::exponential_distribution<float> e(1.0f);
  std::vector<float> p(n * c);
  for (int64_t r = 0; r < n; ++r) {
    float s = 0;
    for (int64_t j = 0; j < c; ++j) s += (p[r * c + j] = e(rng));
    for (int64_t j = 0; j < c; ++j) p[r * c + j] /= s;
  }
  return p;
}

// Probabilities, or with `logits` their logarithms (log-probabilities are logits).
std::vector<float> pool_values(int64_t rows, int64_t classes, bool logits) {
  auto pool = probabilities(rows, classes);
  if (logits)
    for (float& v : pool) v = std::log(std::max(v, 1e-30f));
  return pool;
}

ScoreOptions score_options(Measure measure, bool logits) {
  ScoreOptions opt;
  opt.measure = measure;
  opt.logits = logits;
  return opt;
}

// The floor: summing the pool's bytes with the same threads into 32 independent sums, so that
// neither the add latency nor the vector width limits it, only the memory system.
void BM_CpuRead(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1);
  const auto pool = probabilities(n, c);
  constexpr int kSums = 32;
  const int64_t blocks = n * c / kSums;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      float sums[kSums] = {};
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; ++b)
#pragma omp simd
        for (int l = 0; l < kSums; ++l) sums[l] += pool[b * kSums + l];
      for (float s : sums) total += s;
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(state.iterations() * blocks * kSums * 4);
}

void BM_CpuScore(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1);
  const auto measure = static_cast<Measure>(state.range(2));
  const bool logits = state.range(3) != 0;
  const auto pool = pool_values(n, c, logits);
  Resources cpu(Device::cpu);
  std::vector<float> scores(n);
  const ScoreOptions opt = score_options(measure, logits);
  for (auto _ : state)
    score(cpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt, scores.data());
  state.SetBytesProcessed(state.iterations() * n * c * 4);
  state.SetLabel(std::string(to_string(measure)) + (logits ? " logits" : " probs"));
}

void BM_CpuSelect(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), k = state.range(2);
  const auto pool = probabilities(n, c);
  Resources cpu(Device::cpu);
  SelectOptions opt;
  opt.k = k;
  for (auto _ : state)
    benchmark::DoNotOptimize(select(cpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt));
  state.SetBytesProcessed(state.iterations() * n * c * 4);
}

// Committee measure over [members, rows, classes] probabilities (members-first): the same 400 MB
// as the single-model cases when members * rows = 1M.
void BM_CpuCommittee(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), c = state.range(2);
  const auto measure = static_cast<Measure>(state.range(3));
  const bool logits = state.range(4) != 0;
  const auto pool = pool_values(m * n, c, logits);
  Resources cpu(Device::cpu);
  std::vector<float> scores(n);
  const ScoreOptions opt = score_options(measure, logits);
  for (auto _ : state)
    score(cpu, PoolView::committee(pool.data(), DType::f32, m, n, c), opt, scores.data());
  state.SetBytesProcessed(state.iterations() * m * n * c * 4);
  state.SetLabel(std::string(to_string(measure)) + (logits ? " logits" : " probs"));
}

// select with diversity: entropy + top-m candidates, FAISS k-means of their embeddings into k
// clusters, one pick per cluster.
void BM_CpuSelectDiverse(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), k = state.range(2), dim = state.range(3);
  const auto pool = probabilities(n, c);
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  std::vector<float> embeddings(n * dim);
  for (float& v : embeddings) v = normal(rng);
  Resources cpu(Device::cpu);
  SelectOptions opt;
  opt.k = k;
  opt.embeddings = EmbeddingView::matrix(embeddings.data(), DType::f32, n, dim);
  for (auto _ : state)
    benchmark::DoNotOptimize(select(cpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt));
  state.SetLabel("candidates " + std::to_string(10 * k) + ", D " + std::to_string(dim));
}

// egl over [rows, classes] probabilities and [rows, D] features: both read once.
void BM_CpuEgl(benchmark::State& state) {
  const int64_t n = state.range(0), c = state.range(1), dim = state.range(2);
  const auto pool = probabilities(n, c);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> features(n * dim);
  for (float& v : features) v = normal(rng);
  Resources cpu(Device::cpu);
  std::vector<float> scores(n);
  ScoreOptions opt;
  opt.measure = Measure::egl;
  opt.features = EmbeddingView::matrix(features.data(), DType::f32, n, dim);
  for (auto _ : state)
    score(cpu, PoolView::matrix(pool.data(), DType::f32, n, c), opt, scores.data());
  state.SetBytesProcessed(state.iterations() * n * (c + dim) * 4);
}

// ---- LLM outputs ------------------------------------------------------------------------------

// `count` f16 values from a counter-based hash (splitmix64), made by every thread: GBs of input in
// seconds. value(u) maps a uniform u in [0, 1) to the value.
template <typename Value>
std::vector<uint16_t> f16_values(int64_t count, Value value) {
  std::vector<uint16_t> out(count);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull + 0x1234567ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const auto half = static_cast<_Float16>(value(static_cast<float>(z >> 40) * 0x1p-24f));
    std::memcpy(&out[i], &half, sizeof half);
  }
  return out;
}

// The fastest of five plain reads of `bytes` bytes (32-bit words summed into 32 independent
// sums per thread, as BM_CpuRead), in seconds: the floor the LLM cases are compared with.
double plain_read_seconds(const void* data, int64_t bytes) {
  const auto* words = static_cast<const uint32_t*>(data);
  constexpr int kSums = 32;
  const int64_t blocks = bytes / 4 / kSums;
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    uint32_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      uint32_t sums[kSums] = {};
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; ++b)
#pragma omp simd
        for (int l = 0; l < kSums; ++l) sums[l] += words[b * kSums + l];
      for (uint32_t v : sums) total += v;
    }
    benchmark::DoNotOptimize(total);
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// Scores an f16 LLM-output pool and reports rows/s and the ratio to a plain read of the same
// bytes, measured in the same run.
void run_llm_case(benchmark::State& state, const PoolView& view, Measure measure, int64_t bytes) {
  Resources cpu(Device::cpu);
  std::vector<float> scores(view.rows);
  const ScoreOptions opt = score_options(measure, false);
  for (auto _ : state) score(cpu, view, opt, scores.data());
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["rows_per_second"] = benchmark::Counter(
      static_cast<double>(view.rows), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["plain_read_ms"] = plain_read_seconds(view.data, bytes) * 1e3;
  state.SetLabel(std::string(to_string(measure)) + " f16");
}

// Token log-probabilities [rows, steps] f16, every row full length.
void BM_CpuTokenLogprobs(benchmark::State& state) {
  const int64_t rows = state.range(0), steps = state.range(1);
  const auto pool = f16_values(rows * steps, [](float u) { return -8.0f * u * u; });
  run_llm_case(state, PoolView::token_logprobs(pool.data(), DType::f16, rows, steps),
               static_cast<Measure>(state.range(2)), rows * steps * 2);
}

// Top-K log-probabilities [rows, steps, K] f16 (values in (-15, 0]), every row full length.
void BM_CpuTopLogprobs(benchmark::State& state) {
  const int64_t rows = state.range(0), steps = state.range(1), k = state.range(2);
  const auto pool = f16_values(rows * steps * k, [](float u) { return -15.0f * u; });
  run_llm_case(state, PoolView::top_logprobs(pool.data(), DType::f16, rows, steps, k),
               static_cast<Measure>(state.range(3)), rows * steps * k * 2);
}

// Sampled answers' embeddings [rows, S, D] f16, uniform in [-1, 1).
void BM_CpuSamples(benchmark::State& state) {
  const int64_t rows = state.range(0), s = state.range(1), d = state.range(2);
  const auto pool = f16_values(rows * s * d, [](float u) { return 2.0f * u - 1.0f; });
  run_llm_case(state, PoolView::samples(pool.data(), DType::f16, rows, s, d),
               static_cast<Measure>(state.range(3)), rows * s * d * 2);
}

// Where a second thread starts to pay (engine/threads.hpp's kWorkPerThread): margin scoring's
// work on `values` values (each row's two largest of 10 and their validation, in 1,024-row ranges)
// on the calling thread alone (team 1) or with pool helpers, the pool's per-call cost included.
void BM_PoolBreakEven(benchmark::State& state) {
  const int64_t values = state.range(0), classes = 10, rows = values / classes;
  const int team = static_cast<int>(state.range(1));
  const std::vector<float> pool = probabilities(rows, classes);
  std::vector<float> scores(rows);
  constexpr int64_t kRows = 1024;
  for (auto _ : state) {
    engine::run_chunks((rows + kRows - 1) / kRows, team, [&](int64_t i, int) {
      for (int64_t r = i * kRows; r < std::min(rows, (i + 1) * kRows); ++r) {
        const float* row = pool.data() + r * classes;
        float top1 = -1, top2 = -1, sum = 0;
        for (int64_t c = 0; c < classes; ++c) {
          const float x = row[c];
          sum += x;
          top2 = std::max(top2, std::min(top1, x));
          top1 = std::max(top1, x);
        }
        scores[r] = std::fabs(sum - 1.0f) < 1e-3f ? 1.0f - (top1 - top2) : -1.0f;
      }
    });
    benchmark::DoNotOptimize(scores.data());
  }
  state.SetItemsProcessed(state.iterations() * values);
}

BENCHMARK(BM_PoolBreakEven)
    ->ArgNames({"values", "team"})
    ->ArgsProduct({{1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 20}, {1, 2}})
    ->UseRealTime();
BENCHMARK(BM_CpuRead)->Args({1'000'000, 100})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CpuScore)
    ->Args({100'000, 1000, static_cast<int>(Measure::entropy), 0})
    ->Args({10'000, 10000, static_cast<int>(Measure::entropy), 0})
    ->Args({1'000'000, 100, static_cast<int>(Measure::entropy), 0})
    ->Args({1'000'000, 100, static_cast<int>(Measure::margin), 0})
    ->Args({1'000'000, 100, static_cast<int>(Measure::least_confidence), 0})
    ->Args({1'000'000, 100, static_cast<int>(Measure::entropy), 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CpuEgl)->Args({1'000'000, 100, 128})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CpuSelect)->Args({1'000'000, 100, 1000})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CpuCommittee)
    ->Args({5, 200'000, 100, static_cast<int>(Measure::bald), 0})
    ->Args({5, 200'000, 100, static_cast<int>(Measure::vote_entropy), 0})
    ->Args({5, 200'000, 100, static_cast<int>(Measure::kl_max), 0})
    ->Args({5, 200'000, 100, static_cast<int>(Measure::bald), 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CpuSelectDiverse)
    ->Args({1'000'000, 100, 100, 128})
    ->Args({1'000'000, 100, 1000, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The sizes are 1M rows (5 GB and 15 GB of f16); these are 1/10 of the rows (512 MB and
// 1.5 GB), whose per-row work is the same.
BENCHMARK(BM_CpuTokenLogprobs)
    ->ArgNames({"rows", "T", "measure"})
    ->Args({1'000'000, 128, static_cast<int>(Measure::perplexity)})
    ->Args({1'000'000, 128, static_cast<int>(Measure::min_token_prob)})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CpuTopLogprobs)
    ->ArgNames({"rows", "T", "K", "measure"})
    ->Args({100'000, 128, 20, static_cast<int>(Measure::mean_token_entropy)})
    ->Args({100'000, 128, 20, static_cast<int>(Measure::mean_token_margin)})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_CpuSamples)
    ->ArgNames({"rows", "S", "D", "measure"})
    ->Args({100'000, 10, 768, static_cast<int>(Measure::eigenscore)})
    ->Args({100'000, 10, 768, static_cast<int>(Measure::semantic_entropy)})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
