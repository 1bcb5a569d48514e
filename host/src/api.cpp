#include "quarry/api.hpp"

#include <new>
#include <string>

#include "engine/pipeline.hpp"
#include "engine/shard.hpp"
#include "quarry/error.hpp"
#include "quarry/shard.hpp"

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
  translating_bad_alloc([&] {
    engine::score(resources.backend(), resources.call_context(), pool, options, scores_out);
  });
}

std::vector<float> score(Resources& resources, const PoolView& pool, const ScoreOptions& options) {
  return translating_bad_alloc([&] {
    engine::validate(pool, options);  // before the scores are allocated
    std::vector<float> scores(pool.rows);
    engine::score(resources.backend(), resources.call_context(), pool, options, scores.data());
    return scores;
  });
}

Selection select(Resources& resources, const PoolView& pool, const SelectOptions& options) {
  return translating_bad_alloc(
      [&] { return engine::select(resources.backend(), resources.call_context(), pool, options); });
}

KMeansResult kmeans(Resources& resources, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options) {
  return translating_bad_alloc([&] {
    return engine::kmeans(resources.backend(), resources.call_context(), points, k, options);
  });
}

std::vector<float> score(Resources& resources, const std::vector<PoolView>& shards,
                         const ScoreOptions& options) {
  int64_t rows = 0;
  for (const PoolView& s : shards) rows += s.rows > 0 ? s.rows : 0;
  std::vector<float> scores(rows);
  engine::score(resources.backend(), resources.call_context(), shards, options, scores.data());
  return scores;
}

Selection select(Resources& resources, const std::vector<PoolView>& shards,
                 const SelectOptions& options, const std::vector<EmbeddingView>& embeddings) {
  int64_t rows = 0;
  for (const PoolView& s : shards) rows += s.rows;
  // One partial of every shard, merged: the same steps as shards on different machines take.
  const Partial all = engine::partial(resources.backend(), resources.call_context(), shards,
                                      options, embeddings, 0, rows);
  return engine::merge(resources.backend(), resources.call_context(),
                       std::span<const Partial>(&all, 1), options.k);
}

Partial select_partial(Resources& resources, const std::vector<PoolView>& shards,
                       const SelectOptions& options, const std::vector<EmbeddingView>& embeddings,
                       int64_t row_offset, int64_t pool_rows) {
  return engine::partial(resources.backend(), resources.call_context(), shards, options, embeddings,
                         row_offset, pool_rows);
}

Partial select_partial(Resources& resources, const PoolView& shard, const SelectOptions& options,
                       int64_t row_offset, int64_t pool_rows) {
  SelectOptions without_embeddings = options;
  without_embeddings.embeddings.reset();
  std::vector<EmbeddingView> embeddings;
  if (options.embeddings) embeddings.push_back(*options.embeddings);
  return engine::partial(resources.backend(), resources.call_context(),
                         std::span<const PoolView>(&shard, 1), without_embeddings, embeddings,
                         row_offset, pool_rows);
}

void check_shardable(const SelectOptions& options) {
  engine::check_shardable(options);
}

Partial combine(const std::vector<Partial>& partials) {
  return engine::combine(partials);
}

Selection merge(Resources& resources, const std::vector<Partial>& partials, int64_t k) {
  return engine::merge(resources.backend(), resources.call_context(), partials, k);
}

}  // namespace quarry
