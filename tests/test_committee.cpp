// Committee measures: closed forms, identities against a float64 reference, layouts, votes,
// abstentions and bad input, on every backend; CPU vs GPU parity on random committees.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "engine/ranking.hpp"
#include "kernels/measures.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

constexpr Measure kCommitteeMeasures[] = {Measure::vote_entropy, Measure::consensus_entropy,
                                          Measure::kl_max, Measure::bald, Measure::variation_ratio};

class Committee : public OnEveryBackend {
 protected:
  // probs: [M, N, C] members-first
  std::vector<float> run(const std::vector<float>& probs, int64_t m, int64_t n, int64_t c,
                         Measure measure, bool logits = false) {
    ScoreOptions opt;
    opt.measure = measure;
    opt.logits = logits;
    return score(*resources_, PoolView::committee(probs.data(), DType::f32, m, n, c), opt);
  }
};

QUARRY_ON_EVERY_BACKEND(Committee);

/// Float64 reference of the committee quantities of row r of a members-first committee.
struct Reference {
  double consensus, mean_entropy, kl_max, mean_kl;
};
Reference reference(const std::vector<float>& p, int64_t m, int64_t n, int64_t c, int64_t r) {
  std::vector<double> mean(c, 0.0);
  double mean_entropy = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const double x = p[(i * n + r) * c + j];
      mean[j] += x / m;
      if (x > 0) mean_entropy -= x * std::log(x) / m;
    }
  double consensus = 0, kl_max = 0, mean_kl = 0;
  for (double x : mean)
    if (x > 0) consensus -= x * std::log(x);
  for (int64_t i = 0; i < m; ++i) {
    double kl = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double x = p[(i * n + r) * c + j];
      if (x > 0) kl += x * std::log(x / mean[j]);
    }
    kl_max = std::max(kl_max, kl);
    mean_kl += kl / m;
  }
  return {consensus, mean_entropy, kl_max, mean_kl};
}

TEST_P(Committee, AgreeingMembersScoreZero) {
  auto rng = seeded_rng(5001);
  const int64_t m = 6, n = 40, c = 9;
  const auto one = random_probabilities(n, c, rng);
  std::vector<float> probs;
  for (int i = 0; i < m; ++i) probs.insert(probs.end(), one.begin(), one.end());
  for (Measure measure :
       {Measure::vote_entropy, Measure::kl_max, Measure::bald, Measure::variation_ratio}) {
    const auto s = run(probs, m, n, c, measure);
    for (int64_t r = 0; r < n; ++r) EXPECT_NEAR(s[r], 0.0f, 2e-6f) << to_string(measure) << r;
  }
  // The consensus of identical members is their own entropy.
  Resources cpu(Device::cpu);
  const auto single = score(cpu, PoolView::matrix(one.data(), DType::f32, n, c), ScoreOptions{});
  const auto consensus = run(probs, m, n, c, Measure::consensus_entropy);
  for (int64_t r = 0; r < n; ++r) EXPECT_TRUE(near_rel(consensus[r], single[r], 1e-5f)) << r;
}

TEST_P(Committee, TwoMembersSplitOverTwoClasses) {
  // member 0 says class 0, member 1 says class 1, both confidently.
  const std::vector<float> probs = {0.9f, 0.1f,  //
                                    0.2f, 0.8f};
  EXPECT_TRUE(near_rel(run(probs, 2, 1, 2, Measure::vote_entropy)[0], std::log(2.0f), 1e-6f));
  EXPECT_TRUE(near_rel(run(probs, 2, 1, 2, Measure::variation_ratio)[0], 0.5f, 1e-6f));
  // consensus: mean (0.55, 0.45)
  EXPECT_TRUE(near_rel(run(probs, 2, 1, 2, Measure::consensus_entropy)[0],
                       -(0.55 * std::log(0.55) + 0.45 * std::log(0.45)), 1e-5f));
}

TEST_P(Committee, ArgmaxTiesVoteForTheLowerClass) {
  // Both members tie between classes 1 and 2: both vote class 1, so the committee agrees.
  const std::vector<float> probs = {0.2f, 0.4f,  0.4f,  //
                                    0.1f, 0.45f, 0.45f};
  EXPECT_EQ(run(probs, 2, 1, 3, Measure::vote_entropy)[0], 0.0f);
  EXPECT_EQ(run(probs, 2, 1, 3, Measure::variation_ratio)[0], 0.0f);
}

TEST_P(Committee, MatchesTheFloat64ReferenceAndBaldIsTheMeanKl) {
  auto rng = seeded_rng(5002);
  for (int64_t m : {1, 2, 5, 64}) {
    for (int64_t c : {2, 33, 1000, 5000}) {
      SCOPED_TRACE("M=" + std::to_string(m) + " C=" + std::to_string(c));
      const int64_t n = 20;
      const auto probs = random_probabilities(m * n, c, rng, 1.0f);
      const auto consensus = run(probs, m, n, c, Measure::consensus_entropy);
      const auto bald = run(probs, m, n, c, Measure::bald);
      const auto kl = run(probs, m, n, c, Measure::kl_max);
      for (int64_t r = 0; r < n; ++r) {
        const Reference ref = reference(probs, m, n, c, r);
        EXPECT_TRUE(near_rel(consensus[r], ref.consensus, 1e-5f)) << r;
        EXPECT_TRUE(near_rel(bald[r], ref.mean_kl, 1e-4f, 2e-6f)) << "bald = mean KL, row " << r;
        EXPECT_TRUE(near_rel(bald[r], ref.consensus - ref.mean_entropy, 1e-4f, 2e-6f)) << r;
        EXPECT_TRUE(near_rel(kl[r], ref.kl_max, 1e-4f, 2e-6f)) << r;
        if (m == 1) EXPECT_NEAR(bald[r], 0.0f, 2e-6f);
      }
    }
  }
}

// Members that nearly agree (MC-dropout passes: BALD and KL of order 1e-4) make BALD a small
// difference of two entropies near ln C. Both backends sum BALD from terms that are never
// negative (see divergence_term), and kl_max from the same terms plus linear parts in double,
// corrected for the float rounding of the member mean: both keep 1e-5 relative.
TEST_P(Committee, NearlyAgreeingMembersKeepTheirSmallScores) {
  auto rng = seeded_rng(5003);
  std::normal_distribution<double> noise(0.0, 0.01);
  const int64_t m = 8, n = 30, c = 50;
  const auto base = random_probabilities(n, c, rng, 1.0f);
  std::vector<float> probs(m * n * c);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      std::vector<double> row(c);
      double sum = 0;
      for (int64_t j = 0; j < c; ++j) sum += row[j] = base[r * c + j] * std::exp(noise(rng));
      for (int64_t j = 0; j < c; ++j) probs[(i * n + r) * c + j] = float(row[j] / sum);
    }
  const auto bald = run(probs, m, n, c, Measure::bald);
  const auto kl = run(probs, m, n, c, Measure::kl_max);
  for (int64_t r = 0; r < n; ++r) {
    const Reference ref = reference(probs, m, n, c, r);
    ASSERT_LT(ref.mean_kl, 1e-3) << "the committee nearly agrees";
    EXPECT_TRUE(near_rel(bald[r], ref.mean_kl, 1e-5f, 0.0f)) << "bald, row " << r;
    EXPECT_TRUE(near_rel(kl[r], ref.kl_max, 1e-5f, 0.0f)) << "kl_max, row " << r;
  }
}

TEST_P(Committee, RowsFirstLayoutGivesTheSameScores) {
  auto rng = seeded_rng(5003);
  const int64_t m = 7, n = 30, c = 12;
  const auto members_first = random_probabilities(m * n, c, rng, 1.5f);
  const auto rows_first = to_rows_first(members_first, m, n, c);
  for (Measure measure : kCommitteeMeasures) {
    ScoreOptions opt;
    opt.measure = measure;
    const auto a =
        score(*resources_, PoolView::committee(members_first.data(), DType::f32, m, n, c), opt);
    const auto b =
        score(*resources_,
              PoolView::committee(rows_first.data(), DType::f32, m, n, c, Layout::rows_first), opt);
    EXPECT_EQ(a, b) << to_string(measure);
  }
}

TEST_P(Committee, LogitsAgreeWithTheirSoftmax) {
  auto rng = seeded_rng(5004);
  const int64_t m = 5, n = 25, c = 40;
  const auto logits = random_logits(m * n, c, rng, 2.0f);
  std::vector<float> probs(logits.size());
  for (int64_t row = 0; row < m * n; ++row) {
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < c; ++j) mx = std::max<double>(mx, logits[row * c + j]);
    for (int64_t j = 0; j < c; ++j) s += std::exp(logits[row * c + j] - mx);
    for (int64_t j = 0; j < c; ++j)
      probs[row * c + j] = static_cast<float>(std::exp(logits[row * c + j] - mx) / s);
  }
  for (Measure measure : kCommitteeMeasures) {
    const auto a = run(logits, m, n, c, measure, true);
    const auto b = run(probs, m, n, c, measure);
    for (int64_t r = 0; r < n; ++r)
      EXPECT_TRUE(near_rel(a[r], b[r], 1e-4f, 3e-6f)) << to_string(measure) << " row " << r;
  }
}

// Logits whose z / T overflows float (T = 1e-38): each member's softmax is one-hot, so the
// committee of two members that disagree scores ln 2 (1/2 for variation_ratio), never NaN and
// never "non-finite".
TEST_P(Committee, ExtremeTemperaturesGiveFiniteScores) {
  const std::vector<float> logits = {10.0f, 9.0f, 0.0f,    //  member 0: class 0
                                     0.0f,  9.0f, 10.0f};  // member 1: class 2
  for (Measure measure : kCommitteeMeasures) {
    ScoreOptions opt;
    opt.measure = measure;
    opt.logits = true;
    opt.temperature = 1e-38f;
    const auto s = score(*resources_, PoolView::committee(logits.data(), DType::f32, 2, 1, 3), opt);
    const float want = measure == Measure::variation_ratio ? 0.5f : std::log(2.0f);
    EXPECT_TRUE(near_rel(s[0], want, 1e-6f, 0.0f)) << to_string(measure);
  }
}

TEST_P(Committee, VotesWithAbstentions) {
  // [M=4, N=5] votes, -1 = abstained.
  const std::vector<int32_t> votes = {0, 1,  2, -1, 3,   //
                                      0, 1,  2, -1, 3,   //
                                      1, 2,  2, -1, -1,  //
                                      2, -1, 2, -1, 3};
  ScoreOptions opt;
  opt.measure = Measure::vote_entropy;
  const PoolView view = PoolView::votes(votes.data(), DType::i32, 4, 5);
  const auto h = score(*resources_, view, opt);
  EXPECT_TRUE(near_rel(h[0], -(0.5 * std::log(0.5) + 2 * 0.25 * std::log(0.25)), 1e-6f));
  EXPECT_TRUE(near_rel(h[1], -(2.0 / 3 * std::log(2.0 / 3) + 1.0 / 3 * std::log(1.0 / 3)), 1e-6f));
  EXPECT_EQ(h[2], 0.0f);
  EXPECT_EQ(h[3], -std::numeric_limits<float>::infinity()) << "nobody voted";
  EXPECT_EQ(h[4], 0.0f);
  opt.measure = Measure::variation_ratio;
  const auto v = score(*resources_, view, opt);
  EXPECT_TRUE(near_rel(v[0], 0.5f, 1e-6f));
  EXPECT_TRUE(near_rel(v[1], 1.0f / 3.0f, 1e-6f));
  EXPECT_EQ(v[2], 0.0f);
  // The row nobody voted on ranks after every row with votes, even those scoring 0.
  SelectOptions sel;
  sel.scoring.measure = Measure::vote_entropy;
  sel.k = 5;
  EXPECT_EQ(select(*resources_, view, sel).indices, (std::vector<int64_t>{0, 1, 2, 4, 3}));
  // int64 votes give the same scores.
  std::vector<int64_t> votes64(votes.begin(), votes.end());
  opt.measure = Measure::vote_entropy;
  EXPECT_EQ(score(*resources_, PoolView::votes(votes64.data(), DType::i64, 4, 5), opt), h);
}

// A row of many distinct votes (every member a different class): the tally sorts the row once,
// O(M log M), rather than counting each class over the whole row, O(M^2) (150,000 members took
// tens of seconds). A second row mixes abstentions with three classes.
TEST_P(Committee, ManyDistinctVotesAreTalliedQuickly) {
  const int64_t m = 150000, n = 2;
  std::vector<int32_t> votes(m * n);
  std::map<int32_t, int64_t> counts;  // row 1
  for (int64_t i = 0; i < m; ++i) {
    votes[i * n] = static_cast<int32_t>((i * 7919) % m);  // a permutation of 0..m-1
    votes[i * n + 1] = i % 4 == 3 ? -1 : static_cast<int32_t>(i % 3);
    if (votes[i * n + 1] >= 0) ++counts[votes[i * n + 1]];
  }
  double voters = 0, entropy = 0, modal = 0;
  for (const auto& [vote, count] : counts) {
    voters += static_cast<double>(count);
    modal = std::max(modal, static_cast<double>(count));
  }
  for (const auto& [vote, count] : counts) entropy -= count / voters * std::log(count / voters);
  ScoreOptions opt;
  opt.measure = Measure::vote_entropy;
  const auto start = std::chrono::steady_clock::now();
  const auto h = score(*resources_, PoolView::votes(votes.data(), DType::i32, m, n), opt);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 3.0);
  EXPECT_TRUE(near_rel(h[0], std::log(static_cast<double>(m)), 1e-6f));
  EXPECT_TRUE(near_rel(h[1], entropy, 1e-6f));
  opt.measure = Measure::variation_ratio;
  const auto v = score(*resources_, PoolView::votes(votes.data(), DType::i32, m, n), opt);
  EXPECT_TRUE(near_rel(v[0], 1.0 - 1.0 / m, 1e-6f));
  EXPECT_TRUE(near_rel(v[1], 1.0 - modal / voters, 1e-6f));
}

// The in-place sort GPU threads sort their votes with, against std::sort: sizes around the
// heap's levels, duplicates and negatives, through a pointer and a strided accessor.
TEST(HeapSort, SortsLikeStdSort) {
  auto rng = seeded_rng(5010);
  for (int64_t size : {0, 1, 2, 3, 7, 8, 9, 100, 1023, 4097}) {
    std::uniform_int_distribution<int64_t> value(-2, size / 3 + 1);
    std::vector<int64_t> a(size);
    for (int64_t& x : a) x = value(rng);
    std::vector<int64_t> want = a;
    std::sort(want.begin(), want.end());
    std::vector<int64_t> got = a;
    kernels::heap_sort(got.data(), size);
    EXPECT_EQ(got, want) << size;
    // Every third element of a larger array, as the GPU's interleaved scratch.
    std::vector<int64_t> strided(3 * size, 77);
    for (int64_t i = 0; i < size; ++i) strided[3 * i] = a[i];
    struct Every3 {
      int64_t* base;
      int64_t& operator[](int64_t i) const { return base[3 * i]; }
    };
    kernels::heap_sort(Every3{strided.data()}, size);
    for (int64_t i = 0; i < size; ++i) {
      EXPECT_EQ(strided[3 * i], want[i]) << size << " at " << i;
      EXPECT_EQ(strided[3 * i + 1], 77);
    }
  }
}

TEST_P(Committee, BadCommitteeInput) {
  const int64_t m = 3, n = 50, c = 4;
  std::vector<float> probs(m * n * c, 0.25f);
  probs[(2 * n + 17) * c + 1] = std::nanf("");  // member 2, row 17
  probs[(0 * n + 30) * c + 1] = 0.5f;           // member 0, row 30 sums to 1.25
  for (Measure measure : kCommitteeMeasures) {
    ScoreOptions opt;
    opt.measure = measure;
    try {
      score(*resources_, PoolView::committee(probs.data(), DType::f32, m, n, c), opt);
      ADD_FAILURE() << to_string(measure) << " accepted a NaN";
    } catch (const InvalidInput& e) {
      EXPECT_EQ(e.row(), 17) << e.what();
    }
  }
  std::vector<int32_t> votes(2 * 10, 1);
  votes[13] = -2;
  ScoreOptions opt;
  opt.measure = Measure::vote_entropy;
  try {
    score(*resources_, PoolView::votes(votes.data(), DType::i32, 2, 10), opt);
    ADD_FAILURE() << "vote -2 accepted";
  } catch (const InvalidInput& e) {
    EXPECT_EQ(e.row(), 3);
  }
  votes[13] = 5;  // fine without a class count, out of range with 3 classes
  EXPECT_NO_THROW(score(*resources_, PoolView::votes(votes.data(), DType::i32, 2, 10), opt));
  EXPECT_THROW(score(*resources_, PoolView::votes(votes.data(), DType::i32, 2, 10, 3), opt),
               InvalidInput);
  opt.measure = Measure::bald;
  EXPECT_THROW(score(*resources_, PoolView::votes(votes.data(), DType::i32, 2, 10), opt),
               InvalidArgument)
      << "bald needs probabilities";
}

// CPU vs GPU on random committees.
struct CommitteeCase {
  int64_t members, rows, classes;
  DType dtype;
  bool logits;
  Layout layout;
};

class CommitteeParity : public ::testing::TestWithParam<CommitteeCase> {};

TEST_P(CommitteeParity, GpuMatchesCpu) {
  QUARRY_REQUIRE_GPU();
  const CommitteeCase p = GetParam();
  auto rng = seeded_rng(5100 + p.members * 31 + p.classes + p.logits);
  const int64_t total = p.members * p.rows;
  const std::vector<float> values = random_pool_values(total, p.classes, p.dtype, p.logits, rng);
  std::vector<uint16_t> half;
  const void* data = values.data();
  if (p.dtype != DType::f32) {
    half = encode(values, p.dtype);
    data = half.data();
  }
  const PoolView view = PoolView::committee(data, p.dtype, p.members, p.rows, p.classes, p.layout);
  Resources cpu(Device::cpu), gpu(Device::cuda);
  for (Measure measure : kCommitteeMeasures) {
    SCOPED_TRACE(std::string(to_string(measure)));
    ScoreOptions opt;
    opt.measure = measure;
    opt.logits = p.logits;
    const auto got = expect_backends_agree(cpu, gpu, view, opt, 1e-5f, 3e-6f);
    SelectOptions sel;
    sel.scoring = opt;
    sel.k = std::min<int64_t>(p.rows, 50);
    const engine::Ranked ref = engine::rank_top(got.data(), p.rows, sel.k);
    EXPECT_EQ(select(gpu, view, sel).indices, ref.indices);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CommitteeParity,
    ::testing::Values(CommitteeCase{1, 500, 10, DType::f32, false, Layout::members_first},
                      CommitteeCase{5, 2000, 100, DType::f32, false, Layout::members_first},
                      CommitteeCase{5, 2000, 100, DType::f32, true, Layout::rows_first},
                      CommitteeCase{64, 200, 33, DType::f32, false, Layout::rows_first},
                      CommitteeCase{64, 100, 10, DType::f16, true, Layout::members_first},
                      CommitteeCase{8, 300, 100, DType::bf16, false, Layout::members_first},
                      CommitteeCase{3, 40, 3000, DType::f32, true, Layout::members_first},
                      CommitteeCase{4, 8, 70000, DType::bf16, true, Layout::rows_first}),
    [](const auto& info) {
      const auto& p = info.param;
      return "M" + std::to_string(p.members) + "_N" + std::to_string(p.rows) + "_C" +
             std::to_string(p.classes) + "_" + std::string(to_string(p.dtype)) +
             (p.logits ? "_logits" : "_probs") +
             (p.layout == Layout::rows_first ? "_rowsfirst" : "_membersfirst");
    });

TEST(VoteParity, GpuMatchesCpuWithAbstentions) {
  QUARRY_REQUIRE_GPU();
  auto rng = seeded_rng(5200);
  for (int64_t m : {1, 5, 64}) {
    const int64_t n = 5000;
    std::vector<int32_t> votes(m * n);
    std::uniform_int_distribution<int32_t> vote(-1, 6);
    for (auto& v : votes) v = vote(rng);
    for (int64_t i = 0; i < m; ++i) votes[i * n + 77] = -1;  // an all-abstained row
    Resources cpu(Device::cpu), gpu(Device::cuda);
    for (Measure measure : {Measure::vote_entropy, Measure::variation_ratio}) {
      ScoreOptions opt;
      opt.measure = measure;
      const PoolView view = PoolView::votes(votes.data(), DType::i32, m, n);
      const auto want = score(cpu, view, opt);
      const auto got = score(gpu, view, opt);
      for (int64_t r = 0; r < n; ++r) ASSERT_TRUE(near_rel(got[r], want[r], 1e-6f)) << r;
      SelectOptions sel;
      sel.scoring = opt;
      sel.k = n;
      const auto picks = select(gpu, view, sel).indices;
      EXPECT_EQ(picks, engine::rank_top(got.data(), n, n).indices);
      EXPECT_EQ(picks.back(), m == 1 ? picks.back() : 77) << "the unvoted row ranks last";
    }
  }
}

TEST(CommitteeDeterminism, ScoresDoNotDependOnTheHeapLayout) {
  // A 4-class row whose consensus entropy once changed in its last bit with where the heap put
  // the backend's scratch arrays (a vectorized remainder loop, taken or not by a run-time check).
  const std::vector<float> row = {0x1.232b14p-3f, 0x1.3d1c7ap-4f, 0x1.6d874ap-4f, 0x1.61e0c2p-1f,
                                  0x1.544856p-3f, 0x1.cb3230p-7f, 0x1.c5adf6p-5f, 0x1.876642p-1f,
                                  0x1.1bff98p-1f, 0x1.4b1080p-6f, 0x1.8dda1ep-7f, 0x1.a6e0f8p-2f};
  Resources cpu(Device::cpu);
  for (Measure measure : kCommitteeMeasures) {
    ScoreOptions opt;
    opt.measure = measure;
    const PoolView view = PoolView::committee(row.data(), DType::f32, 3, 1, 4);
    const float first = score(cpu, view, opt)[0];
    std::vector<std::unique_ptr<char[]>> shifts;
    for (int i = 0; i < 32; ++i) {
      shifts.emplace_back(new char[16 + 8 * (i % 7)]);  // moves the next allocations
      EXPECT_EQ(score(cpu, view, opt)[0], first) << to_string(measure) << " after " << i;
    }
  }
}

}  // namespace
}  // namespace quarry::test
