// Selection under a labeling budget, on every backend: the greedy rule as documented, the exact
// knapsack against every subset of tiny instances, batch strategies and exploration within a
// budget, and bad costs.

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "test_util.hpp"

namespace quarry::test {
namespace {

class Budget : public OnEveryBackend {};

QUARRY_ON_EVERY_BACKEND(Budget);

double cost_of(const std::vector<int64_t>& rows, const std::vector<double>& costs) {
  double total = 0;
  for (int64_t r : rows) total += costs[r];
  return total;
}

double score_of(const std::vector<int64_t>& rows, const std::vector<float>& scores) {
  double total = 0;
  for (int64_t r : rows) total += scores[r];
  return total;
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// The rule of docs/budgets.md, written out again: by score / cost descending (ties: lower row),
// take each row that fits; then the best-scoring row that fits alone, if it scores more than that
// set.
std::vector<int64_t> documented_greedy(const std::vector<float>& scores,
                                       const std::vector<double>& costs, double budget) {
  const auto n = static_cast<int64_t>(scores.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return scores[a] / costs[a] > scores[b] / costs[b];
  });
  std::vector<int64_t> set;
  double spent = 0, total = 0;
  for (int64_t r : order)
    if (spent + costs[r] <= budget) {
      set.push_back(r);
      spent += costs[r];
      total += scores[r];
    }
  int64_t best = -1;
  for (int64_t r = 0; r < n; ++r)
    if (costs[r] <= budget && (best < 0 || scores[r] > scores[best])) best = r;
  if (best >= 0 && scores[best] > total) return {best};
  return set;
}

TEST_P(Budget, GreedyFollowsTheDocumentedRule) {
  auto rng = seeded_rng(17301);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 80, c = 4;
    const auto probs = random_probabilities(n, c, rng, 1.5f);
    std::vector<double> costs(n);
    std::uniform_real_distribution<double> cost(0.5, 10.0);
    for (double& x : costs) x = cost(rng);
    const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
    SelectOptions opt;
    opt.costs = costs.data();
    opt.cost_count = static_cast<int64_t>(costs.size());
    opt.budget = std::uniform_real_distribution<double>(10.0, 100.0)(rng);
    const Selection sel = select(*resources_, view, opt);
    const auto scores = score(*resources_, view, opt.scoring);
    EXPECT_EQ(sorted(sel.indices), sorted(documented_greedy(scores, costs, opt.budget)));
    EXPECT_LE(cost_of(sel.indices, costs), opt.budget);
    EXPECT_DOUBLE_EQ(sel.cost_spent, cost_of(sel.indices, costs));
    for (size_t i = 1; i < sel.indices.size(); ++i)
      EXPECT_GE(sel.scores[i - 1], sel.scores[i]) << "listed best first";
    for (size_t i = 0; i < sel.indices.size(); ++i) {
      EXPECT_EQ(sel.scores[i], scores[sel.indices[i]]);
      EXPECT_EQ(sel.reasons[i], PickReason::rank);
    }
  }
}

TEST_P(Budget, TheBestSingleRowReplacesAPoorerGreedySet) {
  // Row 1 has the better score per cost and is taken first; row 0 then no longer fits, and alone
  // it scores more than row 1.
  const std::vector<float> probs = {0.5f, 0.5f, 0.95f, 0.05f};
  const std::vector<double> costs = {10.0, 1.0};
  SelectOptions opt;
  opt.scoring.measure = Measure::least_confidence;
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 10.0;
  const Selection sel = select(*resources_, PoolView::matrix(probs.data(), DType::f32, 2, 2), opt);
  EXPECT_EQ(sel.indices, (std::vector<int64_t>{0}));
  EXPECT_EQ(sel.cost_spent, 10.0);
  // With room for both, both are taken.
  opt.budget = 11.0;
  EXPECT_EQ(select(*resources_, PoolView::matrix(probs.data(), DType::f32, 2, 2), opt).indices,
            (std::vector<int64_t>{0, 1}));
}

TEST_P(Budget, RowsNobodyVotedOnAreNeverPicked) {
  // 3 members' votes on 6 rows; rows 1 and 4 have no votes and score -inf.
  const std::vector<int32_t> votes = {0, -1, 1, 0, -1, 2, 1, -1, 1, 0, -1, 2, 2, -1, 1, 1, -1, 0};
  const std::vector<double> costs(6, 1.0);
  SelectOptions opt;
  opt.scoring.measure = Measure::vote_entropy;
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 100;
  // Row 2's members agree (score 0): the greedy rule takes it since it fits; the knapsack,
  // which gains nothing from it, may leave it.
  const Selection greedy =
      select(*resources_, PoolView::votes(votes.data(), DType::i32, 3, 6), opt);
  EXPECT_EQ(sorted(greedy.indices), (std::vector<int64_t>{0, 2, 3, 5}));
  opt.exact_budget = true;
  const Selection exact = select(*resources_, PoolView::votes(votes.data(), DType::i32, 3, 6), opt);
  EXPECT_EQ(sorted(exact.indices), (std::vector<int64_t>{0, 3, 5}));
}

TEST_P(Budget, ExactEqualsTheBestSubsetOfTinyInstances) {
  auto rng = seeded_rng(17302);
  const int64_t n = 10, c = 3;
  std::uniform_int_distribution<int> cost(1, 7);
  for (int trial = 0; trial < 30; ++trial) {
    const auto probs = random_probabilities(n, c, rng, 1.0f);
    std::vector<double> costs(n);
    for (double& x : costs) x = cost(rng);
    const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
    const auto scores = score(*resources_, view, ScoreOptions{});
    for (double budget : {1.0, 4.5, 9.0, 17.9, 30.0, 70.0}) {
      if (budget < *std::min_element(costs.begin(), costs.end())) continue;
      double best = 0;
      for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        double spent = 0, total = 0;
        for (int64_t r = 0; r < n; ++r)
          if (mask >> r & 1) {
            spent += costs[r];
            total += scores[r];
          }
        if (spent <= std::floor(budget)) best = std::max(best, total);
      }
      SelectOptions opt;
      opt.costs = costs.data();
      opt.cost_count = static_cast<int64_t>(costs.size());
      opt.budget = budget;
      opt.exact_budget = true;
      opt.candidates = n;
      const Selection sel = select(*resources_, view, opt);
      EXPECT_LE(cost_of(sel.indices, costs), std::floor(budget));
      EXPECT_NEAR(score_of(sel.indices, scores), best, 1e-9 * best) << "budget " << budget;
      EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(),
                sel.indices.size());
      // The greedy rule is within half of it.
      opt.exact_budget = false;
      EXPECT_GE(score_of(select(*resources_, view, opt).indices, scores), 0.5 * best - 1e-9);
    }
  }
}

TEST_P(Budget, ExactRestrictsItselfToTheTopCandidates) {
  auto rng = seeded_rng(17303);
  const int64_t n = 300, c = 5;
  const auto probs = random_probabilities(n, c, rng);
  const std::vector<double> costs(n, 2.0);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 21;  // 10 rows: with equal costs, the 10 best
  opt.exact_budget = true;
  opt.candidates = 50;
  const Selection sel = select(*resources_, view, opt);
  SelectOptions top;
  top.k = 10;
  EXPECT_EQ(sorted(sel.indices), sorted(select(*resources_, view, top).indices));
  EXPECT_EQ(sel.cost_spent, 20.0);
}

TEST_P(Budget, BatchStrategiesTakeTheirOwnOrderWhileItFits) {
  auto rng = seeded_rng(17304);
  const int64_t n = 120, c = 4, dim = 5;
  const auto probs = random_probabilities(n, c, rng);
  const auto x = random_normal(n * dim, rng);
  std::vector<double> costs(n);
  std::uniform_real_distribution<double> cost(1.0, 6.0);
  for (double& v : costs) v = cost(rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  for (Strategy strategy : {Strategy::coreset, Strategy::badge}) {
    SCOPED_TRACE(std::string(to_string(strategy)));
    SelectOptions opt;
    opt.strategy = strategy;
    opt.seed = 5;
    if (strategy == Strategy::coreset)
      opt.embeddings = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
    else
      opt.scoring.features = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
    opt.k = n;
    const Selection order = select(*resources_, view, opt);  // the strategy's whole order
    opt.k = 0;
    opt.costs = costs.data();
    opt.cost_count = static_cast<int64_t>(costs.size());
    opt.budget = 30;
    const Selection sel = select(*resources_, view, opt);
    std::vector<int64_t> want;
    double spent = 0;
    for (int64_t r : order.indices)
      if (spent + costs[r] <= opt.budget) {
        want.push_back(r);
        spent += costs[r];
      }
    EXPECT_EQ(sel.indices, want);
    EXPECT_DOUBLE_EQ(sel.cost_spent, spent);
    // k caps the picks.
    opt.k = 3;
    const Selection capped = select(*resources_, view, opt);
    EXPECT_EQ(capped.indices, std::vector<int64_t>(want.begin(), want.begin() + 3));
  }
}

TEST_P(Budget, DiversityTakesItsPicksWhileTheyFit) {
  auto rng = seeded_rng(17305);
  const int64_t n = 400, c = 3, dim = 4;
  const auto probs = random_probabilities(n, c, rng);
  const auto x = random_normal(n * dim, rng);
  std::vector<double> costs(n);
  std::uniform_real_distribution<double> cost(1.0, 3.0);
  for (double& v : costs) v = cost(rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.embeddings = EmbeddingView::matrix(x.data(), DType::f32, n, dim);
  opt.k = 12;
  const Selection plain = select(*resources_, view, opt);
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 15;
  const Selection sel = select(*resources_, view, opt);  // k = 12 clusters, within 15
  std::vector<int64_t> want;
  double spent = 0;
  for (int64_t r : plain.indices)
    if (spent + costs[r] <= opt.budget) {
      want.push_back(r);
      spent += costs[r];
    }
  EXPECT_EQ(sel.indices, want);
  // Without k: as many clusters as the budget buys rows.
  opt.k = 0;
  const Selection unbounded = select(*resources_, view, opt);
  EXPECT_LE(cost_of(unbounded.indices, costs), opt.budget);
  EXPECT_GE(unbounded.indices.size(), want.size());
}

TEST_P(Budget, ExplorationSpendsItsShareOfTheBudget) {
  auto rng = seeded_rng(17306);
  const int64_t n = 500, c = 4;
  const auto probs = random_probabilities(n, c, rng);
  std::vector<double> costs(n);
  std::uniform_int_distribution<int> cost(1, 5);
  for (double& v : costs) v = cost(rng);
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, n, c);
  SelectOptions opt;
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 100;
  opt.explore = 0.3;
  opt.seed = 11;
  const Selection sel = select(*resources_, view, opt);
  std::vector<int64_t> ranked, explored;
  for (size_t i = 0; i < sel.indices.size(); ++i)
    (sel.reasons[i] == PickReason::exploration ? explored : ranked).push_back(sel.indices[i]);
  EXPECT_LE(cost_of(ranked, costs), 70.0);
  EXPECT_LE(cost_of(explored, costs), 30.0 + 1e-9);
  EXPECT_GT(cost_of(explored, costs), 25.0) << "drawn rows keep being taken while they fit";
  EXPECT_DOUBLE_EQ(sel.cost_spent, cost_of(sel.indices, costs));
  EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(), sel.indices.size());
  // The ranked part is the greedy choice within 70% of the budget.
  SelectOptions main = opt;
  main.explore = 0;
  main.budget = 70;
  EXPECT_EQ(sorted(ranked), sorted(select(*resources_, view, main).indices));
  // Seeded.
  EXPECT_EQ(select(*resources_, view, opt).indices, sel.indices);
  opt.seed = 12;
  EXPECT_NE(select(*resources_, view, opt).indices, sel.indices);
}

TEST_P(Budget, BadCostsAndBudgets) {
  const std::vector<float> probs = {0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.7f};
  const PoolView view = PoolView::matrix(probs.data(), DType::f32, 3, 2);
  std::vector<double> costs = {1.0, 2.0, 3.0};
  SelectOptions opt;
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.budget = 5;
  EXPECT_NO_THROW(select(*resources_, view, opt));
  for (double bad : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    costs[1] = bad;
    try {
      select(*resources_, view, opt);
      ADD_FAILURE() << "cost " << bad << " accepted";
    } catch (const InvalidInput& e) {
      EXPECT_EQ(e.row(), 1) << e.what();
    }
  }
  costs[1] = 2.0;
  for (double budget : {0.5, -3.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    opt.budget = budget;
    EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << budget;
  }
  opt.budget = 5;
  opt.cost_count = 2;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "a cost per row";
  opt.costs = costs.data();
  opt.cost_count = static_cast<int64_t>(costs.size());
  opt.k = 2;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "k and a budget";
  opt.k = 0;
  costs[2] = 2.5;
  opt.exact_budget = true;
  EXPECT_THROW(select(*resources_, view, opt), InvalidInput) << "fractional cost";
  costs[2] = 3.0;
  opt.budget = 1e15;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "table over the memory budget";
  opt.budget = 5;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  opt.embeddings = EmbeddingView::matrix(x.data(), DType::f32, 3, 2);
  opt.strategy = Strategy::coreset;
  EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << "exact with a batch strategy";
  SelectOptions no_costs;
  no_costs.budget = 5;
  EXPECT_THROW(select(*resources_, view, no_costs), InvalidArgument) << "a budget needs costs";
}

}  // namespace
}  // namespace quarry::test
