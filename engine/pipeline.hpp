#pragma once
// The selection pipeline: argument checks at the boundary, then score -> rank -> picks.

#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/backend.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// Checks shapes, strides, dtype and options against the measure; throws InvalidArgument.
void validate(const PoolView& pool, const ScoreOptions& options);

/// Scores every row; errors name rows from `row_offset`.
void score(Backend& backend, const CallContext& call, const PoolView& pool,
           const ScoreOptions& options, float* scores_out, int64_t row_offset = 0);
Selection select(Backend& backend, const CallContext& call, const PoolView& pool,
                 const SelectOptions& options);
KMeansResult kmeans(Backend& backend, const CallContext& call, const EmbeddingView& points,
                    int64_t k, const KMeansOptions& options);

// The steps of select(), shared with sharded selection (shard.cpp), so that a merge of partials
// picks exactly as one machine does.

/// `count` rows of `pool` from row `first`.
PoolView rows_of(const PoolView& pool, int64_t first, int64_t count);
/// The `count` best rows of problem.pool in rank order (descending score, ascending row), rows
/// numbered from 0 in the pool, scored one budget-sized chunk of rows at a time.
Ranked rank(Backend& backend, const CallContext& call, const ScoreProblem& problem, int64_t count);

/// Row `row` of `pool` scored again (exploration picks are few); errors name it `global_row`.
float score_row(Backend& backend, const CallContext& call, const PoolView& pool, int64_t row,
                const ScoreOptions& options, int64_t global_row);

/// How k splits: picks by rank (or by cluster, with diversity) and exploration picks.
struct PickCounts {
  int64_t ranked = 0;
  int64_t explored = 0;
};
/// Checks k >= 1 and the exploration and k-means options; returns the split of k.
PickCounts check_select_options(const SelectOptions& options);
/// Candidates to cluster into `clusters` clusters before capping at the pool's rows: as asked,
/// or 10 per cluster. Throws InvalidArgument when fewer are asked for than there are clusters.
int64_t candidates_wanted(const SelectOptions& options, int64_t clusters);
/// Checks a [rows, D] float matrix of row data (embeddings, features); `what` names it.
void validate_row_matrix(const EmbeddingView& matrix, int64_t rows, const std::string& what);
/// Checks k-means options for k clusters of dim-dimensional points.
void validate_kmeans(const KMeansOptions& options, int64_t k, int64_t dim);

/// One pick as Selection lists it.
struct Pick {
  int64_t row;
  float score;
  PickReason reason;
  int32_t cluster;
};
void append_pick(Selection& selection, const Pick& pick);
/// Appends the first `count` rows of `ranked` as rank picks.
void add_rank_picks(const Ranked& ranked, int64_t count, Selection& selection);
/// The picks of `clusters` clusters from rank-ordered candidates and their k-means assignments:
/// the best candidate of each cluster, empty clusters made up from the next-best, in rank order.
std::vector<Pick> cluster_picks(const Ranked& candidates, const std::vector<int32_t>& assignments,
                                int64_t clusters);
/// Exploration picks from the drawn rows (global rows) and their scores, best first.
std::vector<Pick> exploration_picks(const std::vector<int64_t>& rows,
                                    const std::vector<float>& scores, const RankOrder& order);

/// The rows of a pool of `pool_rows` rows in the order exploration draws them: uniform draws
/// seeded by `seed`, repeats skipped. The same sequence in every build and on every machine, so
/// that a shard can tell which of its rows the merge may draw.
class ExplorationDraws {
 public:
  ExplorationDraws(int64_t pool_rows, uint64_t seed);
  /// The next row not drawn before; at most pool_rows calls.
  int64_t next();

 private:
  int64_t pool_rows_;
  std::mt19937_64 rng_;
  std::unordered_set<int64_t> drawn_;
};
/// The exploration picks: the first `count` rows of ExplorationDraws(pool_rows, seed) that are
/// not `taken`. They lie among its first count + taken.size() rows.
std::vector<int64_t> draw_unpicked(int64_t pool_rows, const std::vector<int64_t>& taken,
                                   int64_t count, uint64_t seed);

}  // namespace quarry::engine
