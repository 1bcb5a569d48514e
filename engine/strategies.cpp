#include "engine/strategies.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

std::string sharded_only_ranking(Strategy strategy) {
  return "sharded selection supports ranking (with k-means diversity and exploration), not "
         "--strategy " +
         std::string(to_string(strategy));
}

const char kShardedBudget[] = "sharded selection takes k, not costs and a budget";

// A strategy's picks taken in their order while they fit: the first `picks`, or under a budget
// each one that still fits it.
StrategyPicks within_budget(const StrategyCall& c, std::vector<Pick> picks) {
  std::vector<int64_t> rows;
  for (const Pick& p : picks) rows.push_back(p.row);
  PickTaker taker =
      c.budgeted ? PickTaker(costs_of(c.options), c.budget, rows, c.picks) : PickTaker(c.picks);
  StrategyPicks out;
  for (const Pick& p : picks)
    if (taker.offer(p.row)) out.picks.push_back(p);
  out.cost_spent = taker.spent();
  return out;
}

// The best rows by score. Ranked even when every pick is explored: scoring the pool is what
// validates it.
class RankStrategy final : public SelectionStrategy {
 public:
  int64_t candidates(const StrategyCall& c) const override { return std::max<int64_t>(c.picks, 1); }
  StrategyPicks picks(const StrategyCall& c, const Ranked& ranked) const override {
    StrategyPicks out;
    for (int64_t i = 0; i < c.picks; ++i)
      out.picks.push_back({ranked.indices[i], ranked.scores[i], PickReason::rank, -1});
    return out;
  }
};

// Diversity: the best of each k-means cluster of the top candidates, in candidate (rank) order.
class ClusterStrategy final : public SelectionStrategy {
 public:
  int64_t candidates(const StrategyCall& c) const override {
    const int64_t k = clusters(c);
    if (k == 0) return 1;  // nothing to pick: scoring still validates the pool
    const int64_t m = std::min(c.problem.pool.rows, candidates_wanted(c.options, k));
    validate_kmeans(c.options.kmeans, k, c.options.embeddings->dim);
    return m;
  }
  StrategyPicks picks(const StrategyCall& c, const Ranked& ranked) const override {
    const int64_t k = clusters(c);
    if (k == 0) return {};
    const KMeansResult km =
        c.backend.kmeans(*c.options.embeddings, &ranked.indices, k, c.options.kmeans, c.call);
    return within_budget(c, cluster_picks(ranked, km.assignments, k));
  }
  std::string unshardable_reason() const override { return {}; }

 private:
  // Under a budget without k, as many clusters as the budget could buy rows.
  static int64_t clusters(const StrategyCall& c) {
    if (!c.budgeted) return c.picks;
    return c.options.k > 0 ? c.options.k : affordable_count(costs_of(c.options), c.budget);
  }
};

// Under a budget, ranking by score: the greedy rule over every row's score, or the exact
// knapsack over the top candidates.
class BudgetStrategy final : public SelectionStrategy {
 public:
  explicit BudgetStrategy(bool exact) : exact_(exact) {}
  int64_t candidates(const StrategyCall& c) const override {
    if (!exact_) return kEveryRowScored;
    return std::min(c.problem.pool.rows, c.options.candidates > 0 ? c.options.candidates : 1000);
  }
  StrategyPicks picks(const StrategyCall& c, const Ranked& ranked) const override {
    BudgetPicks picks;
    if (exact_) {
      const std::size_t table_limit =
          c.call.memory_budget ? c.call.memory_budget : std::size_t{4} << 30;
      picks = exact_within_budget(ranked, costs_of(c.options), c.budget, table_limit);
    } else {
      picks = greedy_within_budget(ranked.scores, costs_of(c.options), c.budget);
    }
    StrategyPicks out;
    for (size_t i = 0; i < picks.rows.size(); ++i)
      out.picks.push_back({picks.rows[i], picks.scores[i], PickReason::rank, -1});
    out.cost_spent = picks.spent;
    return out;
  }
  std::string unshardable_reason() const override { return kShardedBudget; }

 private:
  bool exact_;
};

// BADGE or core-set over the top candidates (every row by default), in the strategy's order.
class CenterSearchStrategy final : public SelectionStrategy {
 public:
  explicit CenterSearchStrategy(Strategy which) : which_(which) {}
  int64_t candidates(const StrategyCall& c) const override {
    const SelectOptions& options = c.options;
    if (options.candidates < 0 ||
        (!c.budgeted && options.candidates > 0 && options.candidates < c.picks))
      throw InvalidArgument("the number of candidates (" + std::to_string(options.candidates) +
                            ") must be at least the number of picks (" + std::to_string(c.picks) +
                            ")");
    const int64_t n = c.problem.pool.rows;
    const int64_t m = options.candidates > 0 ? std::min(n, options.candidates) : n;
    const bool badge = which_ == Strategy::badge;
    // BADGE reads the candidates' probabilities in place; f64 ones as a float32 copy of the
    // candidates' rows and features (badge_picks).
    const int64_t copied_per_row =
        badge && c.problem.pool.dtype == DType::f64
            ? c.problem.pool.classes * int64_t{sizeof(float)} +
                  c.problem.options.features->dim *
                      static_cast<int64_t>(dtype_size(c.problem.options.features->dtype))
            : 0;
    const int64_t bytes = m * (kCenterSearchBytesPerRow + copied_per_row);
    const std::size_t budget = c.backend.budget_of(c.call);
    if (static_cast<std::size_t>(bytes) > budget)
      throw InvalidArgument((badge ? "BADGE over " : "core-set over ") + std::to_string(m) +
                            " candidates needs " + std::to_string(bytes) +
                            " bytes of working memory, over the memory budget of " +
                            std::to_string(budget) + " bytes; lower --candidates");
    return m;
  }
  StrategyPicks picks(const StrategyCall& c, const Ranked& ranked) const override {
    const auto m = static_cast<int64_t>(ranked.indices.size());
    const bool badge = which_ == Strategy::badge;
    // Candidates in row order, with their scores.
    std::vector<std::pair<int64_t, float>> by_row(m);
    for (int64_t i = 0; i < m; ++i) by_row[i] = {ranked.indices[i], ranked.scores[i]};
    std::sort(by_row.begin(), by_row.end());
    std::vector<int64_t> candidates(m);
    for (int64_t i = 0; i < m; ++i) candidates[i] = by_row[i].first;
    if (!badge && !c.budgeted) {
      int64_t labeled = 0;
      std::vector<int64_t> rows = c.options.labeled_rows;
      std::sort(rows.begin(), rows.end());
      rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
      for (int64_t r : rows) labeled += std::binary_search(candidates.begin(), candidates.end(), r);
      if (m - labeled < c.picks)
        throw InvalidArgument("core-set: " + std::to_string(c.picks) +
                              " picks asked for, but only " + std::to_string(m - labeled) +
                              " candidates are not labeled already");
    }
    PickTaker taker = c.budgeted ? PickTaker(costs_of(c.options), c.budget, candidates, c.picks)
                                 : PickTaker(c.picks);
    const std::vector<int64_t> rows =
        badge ? badge_picks(c.backend, c.call, c.problem.pool, c.options, candidates, taker)
              : coreset_picks(c.backend, c.call, c.options, candidates, ranked.indices[0], taker);
    std::vector<Pick> picks;
    for (int64_t row : rows) {
      const auto at = std::lower_bound(by_row.begin(), by_row.end(),
                                       std::pair<int64_t, float>{row, -kernels::kInf});
      picks.push_back({row, at->second, badge ? PickReason::badge : PickReason::coreset, -1});
    }
    // The taker above already kept them within the budget; taking them again keeps them all.
    return within_budget(c, std::move(picks));
  }
  std::string unshardable_reason() const override { return sharded_only_ranking(which_); }

 private:
  Strategy which_;
};

}  // namespace

const SelectionStrategy& strategy_for(const SelectOptions& options, int64_t picks) {
  static const RankStrategy rank;
  static const ClusterStrategy cluster;
  static const BudgetStrategy greedy(false), exact(true);
  static const CenterSearchStrategy badge(Strategy::badge), coreset(Strategy::coreset);
  const bool budgeted = has_budget(options);
  if (!budgeted && picks <= 0) return rank;
  switch (options.strategy) {
    case Strategy::badge:
      return badge;
    case Strategy::coreset:
      return coreset;
    case Strategy::rank:
      break;
  }
  if (options.embeddings) return cluster;
  if (budgeted) return options.exact_budget ? exact : greedy;
  return rank;
}

}  // namespace quarry::engine
