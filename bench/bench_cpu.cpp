// CPU backend benchmarks: scoring and top-k throughput, against a plain read of the same bytes.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

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

}  // namespace
