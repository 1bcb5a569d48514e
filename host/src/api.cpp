#include "quarry/api.hpp"

#include <new>
#include <string>

#include "engine/pipeline.hpp"
#include "quarry/error.hpp"

namespace quarry {

namespace {

// Host memory running out is an OutOfMemory error like device memory running out.
template <typename Work>
auto translating_bad_alloc(Work&& work) -> decltype(work()) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    throw OutOfMemory("out of host memory");
  }
}

}  // namespace

void score(Resources& resources, const PoolView& pool, const ScoreOptions& options,
           float* scores_out) {
  translating_bad_alloc([&] { engine::score(resources.backend(), pool, options, scores_out); });
}

std::vector<float> score(Resources& resources, const PoolView& pool, const ScoreOptions& options) {
  return translating_bad_alloc([&] {
    engine::validate(pool, options);  // before the scores are allocated
    std::vector<float> scores(pool.rows);
    engine::score(resources.backend(), pool, options, scores.data());
    return scores;
  });
}

Selection select(Resources& resources, const PoolView& pool, const SelectOptions& options) {
  return translating_bad_alloc([&] { return engine::select(resources.backend(), pool, options); });
}

KMeansResult kmeans(Resources& resources, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options) {
  return translating_bad_alloc(
      [&] { return engine::kmeans(resources.backend(), points, k, options); });
}

}  // namespace quarry
