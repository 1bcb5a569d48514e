#pragma once
// The small interface the selection pipeline is written against. cpu_backend and cuda_backend
// implement it; the pipeline (pipeline.cpp) validates arguments before calling it, so backends
// trust the shapes they are given and only validate the data, in the scoring pass.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/measures.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// A validated scoring problem: a pool and how to score it.
struct ScoreProblem {
  PoolView pool;
  ScoreOptions options;
};

/// Rows in rank order (descending score, ascending row on ties), with their scores.
struct Ranked {
  std::vector<int64_t> indices;
  std::vector<float> scores;
};

/// Where a backend found invalid data: the lowest bad row and what was wrong with it.
struct BadRow {
  int64_t row = -1;
  uint32_t flags = 0;  // kernels::RowFlags

  /// From the packed minimum the scoring passes keep (kernels::encode_bad_row); row -1 if none.
  static BadRow from_code(uint64_t code) {
    if (code == kernels::kNoBadRow) return {};
    return {kernels::bad_row_of(code), kernels::bad_flags_of(code)};
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device kind() const = 0;
  virtual std::string describe() const = 0;

  /// Scores every row into `scores_out` (host memory, pool.rows floats). Throws InvalidInput
  /// naming the first invalid row.
  virtual void score(const ScoreProblem& problem, float* scores_out) = 0;

  /// The `count` best rows in rank order. Throws InvalidInput naming the first invalid row.
  virtual Ranked top(const ScoreProblem& problem, int64_t count) = 0;

  /// The scores of `rows` in the pool of the last top() call.
  virtual std::vector<float> scores_at(const std::vector<int64_t>& rows) = 0;

  /// k-means over the points, or over the listed rows of them (in that order) when `rows` is
  /// not null. Arguments are checked by the caller; non-finite coordinates throw InvalidInput
  /// naming the row.
  virtual KMeansResult kmeans(const EmbeddingView& points, const std::vector<int64_t>* rows,
                              int64_t k, const KMeansOptions& options) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
/// Throws BackendUnavailable in a CPU-only build or when `device` cannot be used.
/// `stream` is a borrowed cudaStream_t, or nullptr for a stream of the backend's own.
std::unique_ptr<Backend> make_cuda_backend(int device, void* stream);
int cuda_device_count();
std::vector<std::string> cuda_device_descriptions();

/// Throws InvalidInput describing `bad` (the message names the row and the problem).
[[noreturn]] void throw_bad_row(const BadRow& bad);

}  // namespace quarry::engine
