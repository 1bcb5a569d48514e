#pragma once
// The small interface the selection pipeline is written against. cpu_backend and cuda_backend
// implement it; the pipeline (pipeline.cpp) validates arguments before calling it, so backends
// trust the shapes they are given and only validate the data, in the scoring pass.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/measures.hpp"
#include "kernels/tie_key.hpp"
#include "quarry/resources.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

/// The one order every ranking step uses (top-k, chunk and shard merges, exploration picks), so
/// that a pool ranks alike whole, in chunks or in shards. Rows given to it are global rows.
struct RankOrder {
  TieBreak tie_break = TieBreak::row;
  uint64_t seed = 0;

  static RankOrder of(const SelectOptions& options) { return {options.tie_break, options.seed}; }
  bool seeded() const { return tie_break == TieBreak::random; }
  /// Equal scores rank by this key, ascending.
  uint64_t key(int64_t global_row) const {
    return seeded() ? kernels::tie_key(seed, global_row) : static_cast<uint64_t>(global_row);
  }
  /// Whether (score_a, row_a) ranks before (score_b, row_b): a strict total order on distinct
  /// rows (tie_key is a bijection of rows), with NaN-free scores.
  bool before(float score_a, int64_t row_a, float score_b, int64_t row_b) const {
    if (score_a != score_b) return score_a > score_b;
    return key(row_a) < key(row_b);
  }
};

/// A validated scoring problem: a pool (possibly a chunk of a larger one) and how to score it.
struct ScoreProblem {
  PoolView pool;
  ScoreOptions options;
  /// The pool's first row in the caller's numbering: errors name rows from here, and the
  /// seeded tie-break hashes rows numbered from here.
  int64_t row_offset = 0;
  /// How top() orders rows of equal score.
  RankOrder order{};
};

/// Rows in rank order (descending score, then RankOrder's tie-break), with their scores.
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

/// Greedy center selection over a list of candidate rows (ascending pool rows), keeping each
/// candidate's squared distance to its nearest center where the backend computes (device memory
/// on CUDA). Core-set measures Euclidean distance between embeddings; BADGE between gradient
/// embeddings g = (p - e_argmax) (x) h, through |g_i - g_j|^2 = a_i + a_j - 2 <q_i, q_j> <h_i, h_j>
/// with q = p - e_argmax and a = |q|^2 |h|^2, never forming g. Before the first center the
/// distances are to the origin (|x|^2, or a), so farthest() is then the candidate of largest norm.
/// Candidates are named by their position in the list.
class CenterSearch {
 public:
  virtual ~CenterSearch() = default;
  /// Makes these pool rows (any rows of the view, candidates or not) centers: each candidate's
  /// distance becomes the smaller of it and its distance to them (the first call replaces the
  /// distances to the origin), and candidates among them can no longer be picked.
  virtual void add_rows(const std::vector<int64_t>& pool_rows) = 0;
  /// Makes `count` points (host float32, [count, dim]) centers. Core-set only.
  virtual void add_points(const float* points, int64_t count) = 0;
  /// The candidate not yet made a center with the largest distance (the lowest position on ties),
  /// or -1 when none is left.
  virtual int64_t farthest() = 0;
  /// k-means++'s draw: the candidate not yet made a center whose cumulative distance, summed in
  /// double in candidate order, first exceeds u * (the total); when every distance is 0, the
  /// lowest such candidate; -1 when none is left. 0 <= u < 1.
  virtual int64_t draw(double u) = 0;
};

/// Working memory of a center search per candidate (its distance, row, BADGE's norm and argmax,
/// and on CUDA the running sum of the draw), for the memory budget.
inline constexpr int64_t kCenterSearchBytesPerRow = 40;

/// Progress of a long job: rows scored so far out of the total.
using ProgressCallback = std::function<void(int64_t rows_done, int64_t rows_total)>;

class Backend {
 public:
  virtual ~Backend() = default;

  /// Set through Resources. 0: default_memory_budget().
  std::size_t memory_budget = 0;
  ProgressCallback progress;

  virtual Device kind() const = 0;
  virtual std::string describe() const = 0;

  /// Scores every row into `scores_out` (host memory, pool.rows floats). Throws InvalidInput
  /// naming the first invalid row.
  virtual void score(const ScoreProblem& problem, float* scores_out) = 0;

  /// The `count` best rows in rank order. Throws InvalidInput naming the first invalid row.
  virtual Ranked top(const ScoreProblem& problem, int64_t count) = 0;

  /// Bytes of working memory (device memory on CUDA) that score() or top() needs per pool row,
  /// and in all for `count` results. The pipeline sizes chunks of rows from them to stay within
  /// the memory budget.
  virtual int64_t working_bytes_per_row(const PoolView& pool) const = 0;
  virtual int64_t working_bytes_fixed(const ScoreProblem& problem, int64_t count) const = 0;
  /// Further bytes per row for the features of a measure that reads them (egl).
  virtual int64_t working_bytes_per_feature_row(const ScoreProblem&) const { return 0; }
  /// The budget used when the caller sets none.
  virtual std::size_t default_memory_budget() const = 0;
  /// The most device memory the backend's pool has held (0 on the CPU).
  virtual std::size_t peak_device_memory() const { return 0; }
  /// The cudaStream_t the backend's work is ordered on (nullptr on the CPU).
  virtual void* cuda_stream() const { return nullptr; }
  /// Orders the backend's later work after what is queued now on `stream` (a cudaStream_t).
  virtual void wait_for_stream(void* /*stream*/) {}

  /// k-means over the points, or over the listed rows of them (in that order) when `rows` is
  /// not null. Arguments are checked by the caller; non-finite coordinates throw InvalidInput
  /// naming the row.
  virtual KMeansResult kmeans(const EmbeddingView& points, const std::vector<int64_t>* rows,
                              int64_t k, const KMeansOptions& options) = 0;

  /// The listed rows of `points` as a dense float32 [rows.size(), dim] matrix in host memory
  /// (what kmeans() clusters). Throws InvalidInput naming the first row with a non-finite
  /// coordinate. This reads host memory; the CUDA backend also gathers device memory.
  virtual std::vector<float> gather_embeddings(const EmbeddingView& points,
                                               const std::vector<int64_t>& rows);

  /// Core-set search over the candidate `rows` (ascending) of `points`. Arguments are checked by
  /// the caller; non-finite coordinates throw InvalidInput naming the row.
  virtual std::unique_ptr<CenterSearch> coreset_search(const EmbeddingView& points,
                                                       std::vector<int64_t> rows) = 0;
  /// BADGE search over the candidate `rows` (ascending) of a single model's probabilities (already
  /// validated by scoring) and its features; non-finite features throw InvalidInput.
  virtual std::unique_ptr<CenterSearch> badge_search(const PoolView& pool,
                                                     const EmbeddingView& features,
                                                     std::vector<int64_t> rows) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
/// Loads the CUDA backend's library if needed and makes a backend on `device`. Throws
/// BackendUnavailable naming the reason (cuda_availability()) when CUDA cannot be used, or when
/// `device` does not exist. `stream` is a borrowed cudaStream_t, or nullptr for a stream of the
/// backend's own.
std::unique_ptr<Backend> make_cuda_backend(int device, void* stream);
/// Driver-side facts, without loading the CUDA runtime (see quarry::cuda_availability()).
CudaAvailability cuda_availability();
int cuda_device_count();
/// "0: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, 132 SMs)", from the driver.
std::string describe_cuda_device(int device);
std::string cpu_description();

// The CUDA plugin's entry points, extern "C" so that the loader finds them with dlsym. A factory
// throws quarry's exceptions like any other engine code: the plugin shares libquarry's types.
extern "C" {
/// The quarry version the plugin was built from; the loader refuses a plugin of another version.
using CudaPluginVersionFn = const char* (*)();
/// A new CUDA backend on `device` (the caller owns it), with the caller's stream or its own.
using CudaPluginCreateFn = Backend* (*)(int device, void* stream);
}
inline constexpr char kCudaPluginVersionSymbol[] = "quarry_cuda_plugin_version";
inline constexpr char kCudaPluginCreateSymbol[] = "quarry_cuda_create_backend";

/// Throws InvalidInput describing `bad` (the message names the row and the problem); the row is
/// numbered from `row_offset`.
[[noreturn]] void throw_bad_row(BadRow bad, int64_t row_offset = 0);

}  // namespace quarry::engine
