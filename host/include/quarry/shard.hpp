#pragma once
// Pools in several shards (lists are std::vector, not std::span: .cu files that include quarry.hpp
// compile as C++17). select() and score() over a list of views treat the shards as one pool,
// rows numbered in shard order. A shard on another machine yields a Partial (its best rows, with
// global row numbers, and what the merge needs for diversity and exploration); merge() reduces
// any number of partials to exactly the selection one machine makes from the whole pool.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quarry/resources.hpp"
#include "quarry/types.hpp"

namespace quarry {

/// The global rows [offset, offset + rows) of a pool.
struct RowRange {
  int64_t offset = 0;
  int64_t rows = 0;
};

/// What one shard (or several, combined) contributes to a selection of the whole pool. Made by
/// select_partial(), reduced by merge(); to_json() / partial_from_json() carry it between
/// machines. It holds at most max(k, candidates) rows' scores (and, with diversity, their
/// embeddings) and at most k exploration scores: never the pool.
struct Partial {
  /// The options it was made with (`options.embeddings` is always empty: `embedding_dim` says
  /// whether diversity applies). Partials merge only when all but `k` agree; a merge asks for at
  /// most `options.k` picks.
  SelectOptions options;
  /// The pool's shape but its rows: every shard must have the same.
  DType dtype = DType::f32;
  int64_t members = 1;
  int64_t classes = 0;
  /// Diversity: the embeddings' dimension and dtype; 0 without diversity.
  int64_t embedding_dim = 0;
  DType embedding_dtype = DType::f32;
  /// The whole pool's row count, 0 when not stated (it must be stated with exploration).
  int64_t pool_rows = 0;
  /// The global rows this partial covers.
  std::vector<RowRange> shards;
  /// Its best rows in rank order (descending score, lower global row first): min(covered rows,
  /// max(k, candidates)) of them, where candidates is 10 per cluster by default.
  std::vector<int64_t> indices;
  std::vector<float> scores;
  /// Diversity: indices.size() x embedding_dim float32 embeddings of those rows.
  std::vector<float> embeddings;
  /// Exploration: the covered rows among the first k rows of the seeded exploration draw over the
  /// whole pool (a merge's exploration picks are among them), ascending, with their scores.
  std::vector<int64_t> explore_rows;
  std::vector<float> explore_scores;
  /// The backend that scored it (for information: partials from different backends merge).
  std::string backend;
};

/// Scores a pool made of `shards` (rows in shard order) into one vector. Shards must agree in
/// everything but their row count (dtype, members, classes); InvalidInput rows are global.
std::vector<float> score(Resources& resources, const std::vector<PoolView>& shards,
                         const ScoreOptions& options);

/// Selects from a pool made of `shards`, rows numbered in shard order: the same picks as select()
/// on the concatenated pool. `embeddings`: none, or one view per shard (row-aligned with it);
/// options.embeddings must then be unset.
Selection select(Resources& resources, const std::vector<PoolView>& shards,
                 const SelectOptions& options, const std::vector<EmbeddingView>& embeddings = {});

/// The partial result of `shards`, whose first row is global row `row_offset` of a pool of
/// `pool_rows` rows (0: not stated; required when options.explore > 0, so that exploration can
/// draw over the whole pool). options.k may exceed the shards' rows: all their rows are kept.
Partial select_partial(Resources& resources, const std::vector<PoolView>& shards,
                       const SelectOptions& options, const std::vector<EmbeddingView>& embeddings,
                       int64_t row_offset, int64_t pool_rows = 0);
/// One shard; diversity embeddings in options.embeddings, as for select().
Partial select_partial(Resources& resources, const PoolView& shard, const SelectOptions& options,
                       int64_t row_offset, int64_t pool_rows = 0);

/// Combines partials of disjoint rows into one (a step of a tree reduction). Throws
/// InvalidArgument when they were made with different options or pool shapes, or overlap.
Partial combine(const std::vector<Partial>& partials);

/// Throws InvalidArgument (saying why) unless partial results can carry the selection strategy
/// `options` ask for: ranking and k-means diversity can; BADGE, core-set and budgets cannot.
void check_shardable(const SelectOptions& options);

/// The `k` picks of the whole pool from partials that together cover its rows [0, N) exactly
/// once: equal to select() on the whole pool with the partials' options, for the backend that
/// scored them. With diversity, k-means runs here, on `resources`. Throws InvalidArgument for
/// partials made with different options or shapes, with a k below `k`, overlapping or missing
/// rows.
Selection merge(Resources& resources, const std::vector<Partial>& partials, int64_t k);

/// A partial as JSON text (the format `quarry select --row-offset` writes and `quarry merge`
/// reads). Scores of -inf (rows nobody voted on) are written as the string "-inf".
std::string to_json(const Partial& partial);
/// Reads to_json()'s text. Throws InvalidInput when it is not a well-formed partial.
Partial partial_from_json(std::string_view json);

}  // namespace quarry
