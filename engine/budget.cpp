#include "engine/budget.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

std::string number(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", x);
  return text;
}

// Descending score, lower row on ties: the order budget picks are listed in.
void sort_best_first(BudgetPicks& picks) {
  std::vector<size_t> order(picks.rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return picks.scores[a] > picks.scores[b] ||
           (picks.scores[a] == picks.scores[b] && picks.rows[a] < picks.rows[b]);
  });
  BudgetPicks sorted;
  sorted.spent = picks.spent;
  for (size_t i : order) {
    sorted.rows.push_back(picks.rows[i]);
    sorted.scores.push_back(picks.scores[i]);
  }
  picks = std::move(sorted);
}

}  // namespace

bool has_budget(const SelectOptions& options) {
  return options.budget != 0.0 || options.costs != nullptr || options.cost_count != 0 ||
         options.exact_budget;
}

std::span<const double> costs_of(const SelectOptions& options) {
  return {options.costs, static_cast<size_t>(options.cost_count)};
}

void validate_budget(int64_t rows, const SelectOptions& options) {
  if (options.costs == nullptr || options.cost_count == 0)
    throw InvalidArgument(
        "a budget needs a cost for every row (--costs COST.npy, "
        "SelectOptions::costs)");
  if (options.cost_count != rows)
    throw InvalidArgument("costs have " + std::to_string(options.cost_count) +
                          " entries but the pool has " + std::to_string(rows) + " rows");
  if (!(std::isfinite(options.budget) && options.budget > 0))
    throw InvalidArgument(
        "costs need a budget that is finite and > 0 (--budget B, "
        "SelectOptions::budget), got " +
        number(options.budget));
  int64_t cheapest = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const double cost = options.costs[r];
    if (!(std::isfinite(cost) && cost > 0))
      throw InvalidInput(
          "costs row " + std::to_string(r) + ": a cost must be finite and > 0, got " + number(cost),
          r, "costs");
    if (options.exact_budget && cost != std::floor(cost))
      throw InvalidInput("costs row " + std::to_string(r) +
                             ": --exact-budget needs integer costs, got " + number(cost) +
                             " (drop --exact-budget for the greedy rule)",
                         r, "costs");
    if (cost < options.costs[cheapest]) cheapest = r;
  }
  if (options.budget < options.costs[cheapest])
    throw InvalidArgument("the budget " + number(options.budget) +
                          " is below the cheapest row's cost " + number(options.costs[cheapest]) +
                          " (row " + std::to_string(cheapest) + "): nothing can be selected");
  const bool batch = options.strategy != Strategy::rank || options.embeddings;
  if (options.exact_budget && batch)
    throw InvalidArgument("--exact-budget applies to ranking by a measure, not to " +
                          std::string(options.embeddings && options.strategy == Strategy::rank
                                          ? "diversity (--embeddings)"
                                          : to_string(options.strategy)));
  if (!batch && options.k != 0)
    throw InvalidArgument(
        "give either k or a budget when ranking by a measure (with a batch "
        "strategy, k caps the number of picks within the budget)");
}

PickTaker::PickTaker(int64_t limit) : limit_(limit) {}

PickTaker::PickTaker(std::span<const double> costs, double budget,
                     const std::vector<int64_t>& offerable, int64_t limit)
    : costs_(costs), budget_(budget), limit_(limit), by_cost_(offerable), offered_(costs.size()) {
  std::stable_sort(by_cost_.begin(), by_cost_.end(),
                   [&](int64_t a, int64_t b) { return costs_[a] < costs_[b]; });
}

bool PickTaker::offer(int64_t row) {
  if (!offered_.empty()) offered_[row] = 1;
  if (limit_ > 0 && taken_ >= limit_) return false;
  if (!costs_.empty()) {
    if (spent_ + costs_[row] > budget_) return false;
    spent_ += costs_[row];
  }
  ++taken_;
  return true;
}

bool PickTaker::done() {
  if (limit_ > 0 && taken_ >= limit_) return true;
  if (costs_.empty()) return false;
  while (cheapest_ < by_cost_.size() && offered_[by_cost_[cheapest_]]) ++cheapest_;
  return cheapest_ == by_cost_.size() || spent_ + costs_[by_cost_[cheapest_]] > budget_;
}

BudgetPicks greedy_within_budget(const std::vector<float>& scores, std::span<const double> costs,
                                 double budget) {
  const auto n = static_cast<int64_t>(scores.size());
  std::vector<int64_t> order;
  int64_t best_single = -1;
  double cheapest = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < n; ++r) {
    if (scores[r] == -std::numeric_limits<float>::infinity()) continue;  // nobody voted
    order.push_back(r);
    cheapest = std::min(cheapest, costs[r]);
    if (costs[r] <= budget && (best_single < 0 || scores[r] > scores[best_single])) best_single = r;
  }
  auto ratio = [&](int64_t r) { return static_cast<double>(scores[r]) / costs[r]; };
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const double ra = ratio(a), rb = ratio(b);
    return ra > rb || (ra == rb && a < b);
  });
  BudgetPicks greedy;
  double total = 0;
  for (int64_t r : order) {
    if (greedy.spent + cheapest > budget) break;  // nothing fits any more
    if (greedy.spent + costs[r] > budget) continue;
    greedy.rows.push_back(r);
    greedy.scores.push_back(scores[r]);
    greedy.spent += costs[r];
    total += scores[r];
  }
  if (best_single >= 0 && static_cast<double>(scores[best_single]) > total) {
    greedy.rows = {best_single};
    greedy.scores = {scores[best_single]};
    greedy.spent = costs[best_single];
  }
  sort_best_first(greedy);
  return greedy;
}

BudgetPicks exact_within_budget(const Ranked& candidates, std::span<const double> costs,
                                double budget, std::size_t table_limit) {
  std::vector<int64_t> rows;
  std::vector<float> scores;
  for (size_t i = 0; i < candidates.indices.size(); ++i)
    if (candidates.scores[i] != -std::numeric_limits<float>::infinity() &&
        costs[candidates.indices[i]] <= budget) {
      rows.push_back(candidates.indices[i]);
      scores.push_back(candidates.scores[i]);
    }
  const double capacity = std::floor(budget);
  const auto items = static_cast<double>(rows.size());
  // A bit per (item, capacity) to rebuild the choice, and the best value per capacity.
  const double table_bytes = (capacity + 1) * (items / 8 + sizeof(double));
  if (table_bytes > static_cast<double>(table_limit))
    throw InvalidArgument("--exact-budget: the knapsack table for " + std::to_string(rows.size()) +
                          " candidates and a budget of " + number(capacity) + " needs " +
                          number(std::ceil(table_bytes)) + " bytes, over the memory budget of " +
                          std::to_string(table_limit) +
                          " bytes; lower --candidates or the budget, raise --memory-budget, or "
                          "drop --exact-budget for the greedy rule");
  const auto width = static_cast<int64_t>(capacity) + 1;
  std::vector<double> best(width, 0.0);
  std::vector<uint64_t> took((rows.size() * width + 63) / 64, 0);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto cost = static_cast<int64_t>(costs[rows[i]]);
    const double value = scores[i];
    for (int64_t w = width - 1; w >= cost; --w)
      if (best[w - cost] + value > best[w]) {  // strictly better: ties keep the earlier choice
        best[w] = best[w - cost] + value;
        const uint64_t bit = i * width + w;
        took[bit / 64] |= uint64_t{1} << (bit % 64);
      }
  }
  BudgetPicks picks;
  int64_t w = width - 1;
  for (size_t i = rows.size(); i-- > 0;) {
    const uint64_t bit = i * width + w;
    if (took[bit / 64] >> (bit % 64) & 1) {
      picks.rows.push_back(rows[i]);
      picks.scores.push_back(scores[i]);
      picks.spent += costs[rows[i]];
      w -= static_cast<int64_t>(costs[rows[i]]);
    }
  }
  sort_best_first(picks);
  return picks;
}

int64_t affordable_count(std::span<const double> costs, double budget) {
  std::vector<double> sorted(costs.begin(), costs.end());
  std::sort(sorted.begin(), sorted.end());
  double spent = 0;
  int64_t count = 0;
  for (double c : sorted) {
    if (spent + c > budget) break;
    spent += c;
    ++count;
  }
  return count;
}

std::vector<int64_t> explore_within_budget(int64_t n, const std::vector<int64_t>& excluded,
                                           std::span<const double> costs, double budget,
                                           uint64_t seed, double& spent) {
  std::vector<char> skip(n, 0);
  for (int64_t r : excluded) skip[r] = 1;
  std::vector<int64_t> rows;
  double cheapest = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < n; ++r)
    if (!skip[r]) {
      rows.push_back(r);
      cheapest = std::min(cheapest, costs[r]);
    }
  // A Fisher-Yates shuffle drawn one position at a time, stopped once nothing more can fit.
  std::mt19937_64 rng(seed);
  std::vector<int64_t> taken;
  double used = 0;
  const auto free_rows = static_cast<int64_t>(rows.size());
  for (int64_t t = 0; t < free_rows && used + cheapest <= budget; ++t) {
    std::swap(rows[t], rows[std::uniform_int_distribution<int64_t>(t, free_rows - 1)(rng)]);
    if (used + costs[rows[t]] > budget) continue;
    used += costs[rows[t]];
    taken.push_back(rows[t]);
  }
  spent += used;
  return taken;
}

}  // namespace quarry::engine
