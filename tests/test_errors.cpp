// Bad input through the API: a clear exception, the first bad row, never a wrong answer.

#include <limits>
#include <new>

#include "engine/ranking.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

class BadInput : public OnEveryBackend {
 protected:
  // Returns the row of the InvalidInput thrown by scoring, or -2 when nothing was thrown.
  int64_t bad_row(const std::vector<float>& pool, int64_t n, int64_t c, bool logits = false,
                  std::string* message = nullptr) {
    ScoreOptions opt;
    opt.logits = logits;
    try {
      score(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), opt);
    } catch (const InvalidInput& e) {
      if (message) *message = e.what();
      return e.row();
    }
    return -2;
  }
};

QUARRY_ON_EVERY_BACKEND(BadInput);

std::vector<float> uniform_pool(int64_t n, int64_t c) {
  return std::vector<float>(n * c, 1.0f / static_cast<float>(c));
}

TEST_P(BadInput, NonFiniteValuesNameTheFirstBadRow) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    auto pool = uniform_pool(1000, 4);
    pool[700 * 4 + 1] = bad;
    pool[300 * 4 + 3] = bad;
    std::string message;
    EXPECT_EQ(bad_row(pool, 1000, 4, false, &message), 300);
    EXPECT_NE(message.find("row 300"), std::string::npos) << message;
    EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
    EXPECT_EQ(bad_row(pool, 1000, 4, true), 300) << "logits are checked too";
  }
}

// A bad value is found wherever it sits in a row: the first element, a vector's middle, the
// tail that does not fill a vector, and past the first block of a long row; in a row scored with
// others (the CPU scores short rows eight at a time) and in one scored alone.
TEST_P(BadInput, EveryPositionOfARowIsChecked) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t n = 13;
  for (int64_t c : {1, 7, 8, 9, 33, 2051}) {
    for (int64_t position : {int64_t{0}, c / 2, c - 1}) {
      for (int64_t row : {3, 10}) {
        SCOPED_TRACE("C = " + std::to_string(c) + ", position " + std::to_string(position) +
                     ", row " + std::to_string(row));
        auto pool = uniform_pool(n, c);
        std::string message;
        pool[row * c + position] = nan;
        EXPECT_EQ(bad_row(pool, n, c, false, &message), row);
        EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
        EXPECT_EQ(bad_row(pool, n, c, true, &message), row) << "logits";
        EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
        pool[row * c + position] = -1e-6f;
        EXPECT_EQ(bad_row(pool, n, c, false, &message), row);
        EXPECT_NE(message.find("negative"), std::string::npos) << message;
        EXPECT_EQ(message.find("non-finite"), std::string::npos) << message;
        pool[row * c + position] = 1.0011f;  // just past 1 + the sum tolerance
        EXPECT_EQ(bad_row(pool, n, c, false, &message), row);
        EXPECT_NE(message.find("greater than 1"), std::string::npos) << message;
      }
    }
  }
}

// Rows that fit bfloat16 may miss a sum of 1 by up to 2^-7 (a producer rounding to bf16), others
// by 1e-3: the tolerance is chosen per row, wherever the row sits.
TEST_P(BadInput, TheSumToleranceIsChosenPerRow) {
  const int64_t n = 16, c = 4;
  for (int64_t row : {5, 13}) {
    SCOPED_TRACE("row " + std::to_string(row));
    auto pool = uniform_pool(n, c);  // 0.25: fits bf16
    pool[row * c] += 0.005f;         // 0.255 does not fit bf16
    EXPECT_EQ(bad_row(pool, n, c), row);
    pool[row * c] = 0.25f + 1.0f / 256;  // fits bf16: a sum 1 + 2^-8 is accepted
    EXPECT_EQ(bad_row(pool, n, c), -2);
    pool[row * c] = 0.25f + 1.0f / 64;  // fits bf16, but 2^-6 is too far
    EXPECT_EQ(bad_row(pool, n, c), row);
  }
}

// -0 is a valid probability (the range check reads the sign bit, so it takes the exact path).
TEST_P(BadInput, NegativeZeroIsAValidProbability) {
  const int64_t n = 12;
  for (int64_t c : {2, 9, 33}) {
    auto pool = uniform_pool(n, c);
    for (int64_t row : {2, 9})
      for (int64_t j = 0; j < c; ++j) pool[row * c + j] = j == 1 ? 1.0f : -0.0f;
    EXPECT_EQ(bad_row(pool, n, c), -2) << "C = " << c;
    ScoreOptions opt;
    const auto scores = score(*resources_, PoolView::matrix(pool.data(), DType::f32, n, c), opt);
    EXPECT_EQ(scores[2], 0.0f) << "a one-hot row has entropy 0";
    EXPECT_EQ(scores[9], 0.0f) << "a one-hot row has entropy 0";
    EXPECT_EQ(scores[0], std::log(static_cast<float>(c))) << "its neighbours keep theirs";
  }
}

TEST_P(BadInput, NegativeProbability) {
  auto pool = uniform_pool(100, 2);
  pool[42 * 2] = -0.1f;
  pool[42 * 2 + 1] = 1.1f;
  std::string message;
  EXPECT_EQ(bad_row(pool, 100, 2, false, &message), 42);
  EXPECT_NE(message.find("negative"), std::string::npos) << message;
  EXPECT_EQ(bad_row(pool, 100, 2, true), -2) << "negative logits are fine";
}

TEST_P(BadInput, ProbabilityAboveOne) {
  auto pool = uniform_pool(100, 1);
  pool[7] = 1.5f;
  std::string message;
  EXPECT_EQ(bad_row(pool, 100, 1, false, &message), 7);
  EXPECT_NE(message.find("greater than 1"), std::string::npos) << message;
}

TEST_P(BadInput, RowsThatDoNotSumToOneSuggestLogits) {
  auto pool = uniform_pool(5000, 10);
  pool[4321 * 10 + 5] += 0.002f;
  std::string message;
  EXPECT_EQ(bad_row(pool, 5000, 10, false, &message), 4321);
  EXPECT_NE(message.find("sum to 1"), std::string::npos) << message;
  EXPECT_NE(message.find("--logits"), std::string::npos) << message;
  // Within the tolerance is accepted.
  pool[4321 * 10 + 5] -= 0.0015f;
  EXPECT_EQ(bad_row(pool, 5000, 10), -2);
}

TEST_P(BadInput, BadArgumentsAreRejectedBeforeAnyWork) {
  const auto pool = uniform_pool(10, 3);
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, 10, 3);
  SelectOptions opt;
  for (int64_t k : {-1, 0, 11}) {
    opt.k = k;
    EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << k;
  }
  opt.k = 1;
  opt.scoring.logits = true;
  for (float t : {0.0f, -1.0f, std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()}) {
    opt.scoring.temperature = t;
    EXPECT_THROW(select(*resources_, view, opt), InvalidArgument) << t;
  }
  opt.scoring = ScoreOptions{};
  PoolView empty = view;
  empty.rows = 0;
  EXPECT_THROW(select(*resources_, empty, opt), InvalidArgument);
  PoolView no_classes = view;
  no_classes.classes = 0;
  EXPECT_THROW(select(*resources_, no_classes, opt), InvalidArgument);
  PoolView null_data = view;
  null_data.data = nullptr;
  EXPECT_THROW(select(*resources_, null_data, opt), InvalidArgument);
  PoolView ints = view;
  ints.dtype = DType::i32;
  EXPECT_THROW(select(*resources_, ints, opt), InvalidArgument) << "entropy of integer votes";
  PoolView committee = PoolView::committee(pool.data(), DType::f32, 2, 5, 3);
  EXPECT_THROW(select(*resources_, committee, opt), InvalidArgument)
      << "a single-model measure on a committee";
}

// Memory that cannot be allocated (2^48 bytes: more than the address space) is OutOfMemory, not
// a std::bad_alloc escaping an OpenMP region, which ends the process.
TEST(OutOfMemory, ACommitteeTooLargeForMemoryIsOutOfMemory) {
  QUARRY_SKIP_UNDER_ASAN();
  const std::vector<float> data(8, 0.25f);  // never read: the per-thread scratch fails first
  Resources cpu(Device::cpu);
  ScoreOptions opt;
  opt.measure = Measure::bald;
  const int64_t classes = int64_t{1} << 45;
  EXPECT_THROW(score(cpu, PoolView::committee(data.data(), DType::f32, 2, 1, classes), opt),
               OutOfMemory);
}

// Allocations inside the CPU backend's parallel loops (here each thread's list of the k best)
// fail as std::bad_alloc in the caller, not as a terminate() on a helper thread.
TEST(OutOfMemory, RankingReportsAFailedAllocationFromItsThreads) {
  QUARRY_SKIP_UNDER_ASAN();
  const float score = 0.5f;  // never read: the candidate lists fail first
  const int64_t huge = int64_t{1} << 45;
  EXPECT_THROW(engine::rank_top(&score, huge, huge), std::bad_alloc);
}

// Sizes are checked without overflowing: a shape such as (0, 2^62, 2^62) holds no elements, but
// its strides do not fit 64 bits; nor do the bytes of a view made by hand with 2^61 rows of 4.
TEST(Views, SizesThatOverflowAreRefused) {
  const float x[4] = {0.25f, 0.25f, 0.25f, 0.25f};
  const int64_t huge = int64_t{1} << 62;
  EXPECT_THROW(PoolView::committee(x, DType::f32, 0, huge, huge), InvalidArgument);
  EXPECT_THROW(PoolView::committee(x, DType::f32, huge, 1, 4, Layout::rows_first), InvalidArgument);
  EXPECT_THROW(PoolView::matrix(x, DType::f32, huge, 4), InvalidArgument);
  Resources cpu(Device::cpu);
  PoolView by_hand = PoolView::matrix(x, DType::f32, 1, 4);
  by_hand.rows = int64_t{1} << 61;
  EXPECT_THROW(score(cpu, by_hand, ScoreOptions{}), InvalidArgument);
  SelectOptions opt;
  opt.k = 1;
  EXPECT_THROW(select(cpu, by_hand, opt), InvalidArgument);
  EmbeddingView points = EmbeddingView::matrix(x, DType::f32, 1, 4);
  points.rows = int64_t{1} << 61;
  EXPECT_THROW(kmeans(cpu, points, 1), InvalidArgument);
}

TEST(Resources, UnknownNamesAreClearErrors) {
  EXPECT_THROW(parse_measure("entropyy"), InvalidArgument);
  EXPECT_THROW(parse_device("gpu"), InvalidArgument);
  EXPECT_EQ(parse_measure("kl_max"), Measure::kl_max);
  EXPECT_EQ(parse_device("auto"), Device::automatic);
}

TEST(Resources, CudaWithoutAGpuIsBackendUnavailable) {
  const CudaAvailability cuda = cuda_availability();
  if (cuda.status == CudaStatus::available) GTEST_SKIP() << "a GPU is present";
  try {
    Resources resources(Device::cuda);
    ADD_FAILURE() << "no BackendUnavailable";
  } catch (const BackendUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find(std::string(to_string(cuda.status)) + " (" + cuda.detail),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(Resources(0, nullptr), BackendUnavailable);
  EXPECT_EQ(Resources(Device::automatic).device(), Device::cpu);
}

}  // namespace
}  // namespace quarry::test
