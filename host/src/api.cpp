#include "quarry/api.hpp"

#include "engine/pipeline.hpp"

namespace quarry {

void score(Resources& resources, const PoolView& pool, const ScoreOptions& options,
           float* scores_out) {
  engine::score(resources.backend(), pool, options, scores_out);
}

std::vector<float> score(Resources& resources, const PoolView& pool, const ScoreOptions& options) {
  std::vector<float> scores(pool.rows > 0 ? pool.rows : 0);  // engine::score rejects rows < 1
  engine::score(resources.backend(), pool, options, scores.data());
  return scores;
}

Selection select(Resources& resources, const PoolView& pool, const SelectOptions& options) {
  return engine::select(resources.backend(), pool, options);
}

KMeansResult kmeans(Resources& resources, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options) {
  return engine::kmeans(resources.backend(), points, k, options);
}

}  // namespace quarry
