#pragma once
// Selection under a labeling budget: validating costs, taking a strategy's picks while they fit,
// ranking by score within a budget (greedy or exact knapsack), and exploration within a budget.

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// True when the options ask for selection under a budget.
bool has_budget(const SelectOptions& options);
/// The options' costs as a span.
std::span<const double> costs_of(const SelectOptions& options);

/// Checks the costs, the budget and how they combine with the other options against a pool of
/// `rows` rows. Throws InvalidArgument, or InvalidInput naming the first bad cost's row.
void validate_budget(int64_t rows, const SelectOptions& options);

/// Takes a strategy's picks, offered one at a time in the strategy's own order: the first `limit`
/// of them; or, with costs, each one that still fits the budget (a `limit` > 0 then caps their
/// number).
class PickTaker {
 public:
  explicit PickTaker(int64_t limit);
  /// `offerable`: the rows the strategy may offer (its candidates), for done().
  PickTaker(std::span<const double> costs, double budget, const std::vector<int64_t>& offerable,
            int64_t limit);

  /// Offers the strategy's next pick; true when it is taken.
  bool offer(int64_t row);
  /// True once no further pick can be taken: the limit is reached, or the budget left is below
  /// the cost of every offerable row not offered yet.
  bool done();
  double spent() const { return spent_; }

 private:
  std::span<const double> costs_;
  double budget_ = 0;
  double spent_ = 0;
  int64_t limit_ = 0;
  int64_t taken_ = 0;
  std::vector<int64_t> by_cost_;  // offerable rows, cheapest first
  size_t cheapest_ = 0;           // by_cost_[cheapest_] is the cheapest row not offered yet
  std::vector<char> offered_;     // per pool row
};

/// Rows picked under a budget with their scores, best first (descending score, lower row on
/// ties), and what they cost.
struct BudgetPicks {
  std::vector<int64_t> rows;
  std::vector<float> scores;
  double spent = 0;
};

/// The greedy rule: down the rows by score / cost (ties: lower row), each row that still fits is
/// taken; then the best-scoring row that fits alone replaces that set if it scores more. Rows
/// scoring -inf are never taken.
BudgetPicks greedy_within_budget(const std::vector<float>& scores, std::span<const double> costs,
                                 double budget);

/// The exact 0/1 knapsack over `candidates` (integer costs, the budget floored) by dynamic
/// programming. Throws InvalidArgument when its table would need more than `table_limit` bytes.
BudgetPicks exact_within_budget(const Ranked& candidates, std::span<const double> costs,
                                double budget, std::size_t table_limit);

/// The most rows the budget buys, cheapest first.
int64_t affordable_count(std::span<const double> costs, double budget);

/// Exploration within a budget: the rows of [0, n) not in `excluded`, in a seeded uniformly
/// random order, each taken while it fits. Adds what they cost to `spent`.
std::vector<int64_t> explore_within_budget(int64_t n, const std::vector<int64_t>& excluded,
                                           std::span<const double> costs, double budget,
                                           uint64_t seed, double& spent);

}  // namespace quarry::engine
