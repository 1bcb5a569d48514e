#pragma once
// Selection strategies: how select() turns ranked candidates into picks. Each strategy says how
// many candidates it needs, turns them into picks, and says whether a shard's partial result can
// carry it; strategy_for() is the one place that chooses among them. Exploration is not a
// strategy: select() adds it to every strategy's picks.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.hpp"
#include "engine/budget.hpp"
#include "engine/pipeline.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// A validated select() call as a strategy sees it.
struct StrategyCall {
  Backend& backend;
  const CallContext& call;
  const ScoreProblem& problem;
  const SelectOptions& options;
  /// The picks the strategy makes: k less the exploration picks; under a budget, k (0: no cap).
  int64_t picks = 0;
  /// Under a budget: the strategy's share of it (the rest is exploration's).
  bool budgeted = false;
  double budget = 0;
};

/// A strategy's picks in the order it took them, and what they cost (under a budget).
struct StrategyPicks {
  std::vector<Pick> picks;
  double cost_spent = 0;
};

class SelectionStrategy {
 public:
  /// candidates() of a strategy that reads every row's score, in row order, not ranked.
  static constexpr int64_t kEveryRowScored = -1;

  virtual ~SelectionStrategy() = default;
  /// The candidates it needs: the best `n` rows in rank order (select() ranks them), or
  /// kEveryRowScored. Checks the options that size them (throws InvalidArgument).
  virtual int64_t candidates(const StrategyCall& call) const = 0;
  /// Its picks from the candidates (or every row's scores, in row order).
  virtual StrategyPicks picks(const StrategyCall& call, const Ranked& candidates) const = 0;
  /// Empty when a shard's partial result carries what a merge needs for this strategy (its best
  /// rows, embeddings and exploration scores); otherwise why it does not.
  virtual std::string unshardable_reason() const { return {}; }
};

/// The strategy the options ask for: options.strategy, with embeddings (k-means diversity) or a
/// budget (greedy or exact) for ranking. `picks`: the strategy's picks; when none are left (all
/// of k explored, no budget), ranking, which scores the pool to validate it.
const SelectionStrategy& strategy_for(const SelectOptions& options, int64_t picks);

// The center-search loops of BADGE and core-set (badge.cpp, coreset.cpp).

/// BADGE's k-means++ seeding over `candidates` (ascending pool rows) on the gradient embeddings
/// of the pool's probabilities and options.scoring.features: the first pick is the candidate of
/// largest gradient norm, each next one drawn with probability proportional to its squared
/// distance to the nearest pick so far, one uniform u = (mt19937_64(options.seed)() >> 11) * 2^-53
/// per draw. Picks are offered to `taker` until it is done or no candidate is left.
std::vector<int64_t> badge_picks(Backend& backend, const CallContext& call, const PoolView& pool,
                                 const SelectOptions& options,
                                 const std::vector<int64_t>& candidates, PickTaker& taker);

/// Core-set k-center greedy over `candidates` (ascending pool rows) of options.embeddings, from
/// the labeled rows and labeled embeddings as the first centers: each pick is the candidate
/// farthest from every center so far (lowest row on ties). Without labeled rows the first pick is
/// `best_candidate`, the best-ranked candidate. Picks are offered to `taker` as in badge_picks.
std::vector<int64_t> coreset_picks(Backend& backend, const CallContext& call,
                                   const SelectOptions& options,
                                   const std::vector<int64_t>& candidates, int64_t best_candidate,
                                   PickTaker& taker);

}  // namespace quarry::engine
