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

#include "engine/center_search.hpp"
#include "kernels/row_flags.hpp"
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

/// Progress of a long job: rows scored so far out of the total.
using ProgressCallback = std::function<void(int64_t rows_done, int64_t rows_total)>;

/// What one call carries besides its inputs, copied from its Resources when the call starts: a
/// callback changed meanwhile (from another thread, or from the callback itself) affects only
/// later calls, and sharded selection reports through a callback of its own without touching
/// the backend.
struct CallContext {
  /// Working memory (device memory on CUDA) at most this many bytes; 0: the backend's default.
  std::size_t memory_budget = 0;
  ProgressCallback progress;
  /// Threads the CPU backend's loops may use; 0: automatic (engine/threads.hpp's call_threads).
  int threads = 0;
};

/// Working memory that score() or top() needs (device memory on CUDA): `fixed` in all for the
/// call, and `per_row` per pool row (features included). The pipeline sizes chunks of rows from
/// them to stay within the memory budget.
struct WorkingBytes {
  int64_t fixed = 0;
  int64_t per_row = 0;
};

/// Facts about a backend that do not depend on the call.
struct BackendFacts {
  Device kind = Device::cpu;
  /// The budget used when the caller sets none.
  std::size_t default_memory_budget = 0;
  /// The most device memory the backend's pool has held (0 on the CPU).
  std::size_t peak_device_memory = 0;
  /// The cudaStream_t the backend's work is ordered on (nullptr on the CPU).
  void* cuda_stream = nullptr;
};

/// What a center search runs over: candidate `rows` (ascending pool rows) of `points`, the
/// embeddings (core-set), or for BADGE the gradient embeddings of a single model's
/// probabilities `pool` (already validated by scoring) and its features `points`.
struct CenterSearchSpec {
  enum class Space { embeddings, badge_gradients };
  Space space = Space::embeddings;
  EmbeddingView points;
  PoolView pool;  // badge_gradients only
  std::vector<int64_t> rows;
};

/// Scoring, top-k, k-means and center search on one device. It knows no strategies and holds
/// no per-call state: the memory budget and progress travel in each call's CallContext.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string describe() const = 0;
  virtual BackendFacts facts() const = 0;

  /// Scores every row into `scores_out` (host memory, pool.rows floats). Throws InvalidInput
  /// naming the first invalid row.
  virtual void score(const ScoreProblem& problem, float* scores_out, const CallContext& call) = 0;

  /// The `count` best rows in rank order. Throws InvalidInput naming the first invalid row.
  virtual Ranked top(const ScoreProblem& problem, int64_t count, const CallContext& call) = 0;

  /// Working memory of score() (count 0) or top() for `count` results.
  virtual WorkingBytes working_bytes(const ScoreProblem& problem, int64_t count) const = 0;

  /// Orders the backend's later work after what is queued now on `stream` (a cudaStream_t).
  virtual void wait_for_stream(void* /*stream*/) {}

  /// k-means over the points, or over the listed rows of them (in that order) when `rows` is
  /// not null. Arguments are checked by the caller; non-finite coordinates throw InvalidInput
  /// naming the row.
  virtual KMeansResult kmeans(const EmbeddingView& points, const std::vector<int64_t>* rows,
                              int64_t k, const KMeansOptions& options, const CallContext& call) = 0;

  /// The listed rows of `points` as a dense float32 [rows.size(), dim] matrix in host memory
  /// (what kmeans() clusters). Throws InvalidInput naming the first row with a non-finite
  /// coordinate. Host memory is read on every backend; the CUDA backend also reads device memory.
  virtual std::vector<float> gather(const EmbeddingView& points, const std::vector<int64_t>& rows,
                                    const CallContext& call);

  /// A center search over `spec` (see CenterSearch). Arguments are checked by the caller;
  /// non-finite coordinates or features throw InvalidInput naming the row.
  virtual std::unique_ptr<CenterSearch> center_search(CenterSearchSpec spec,
                                                      const CallContext& call) = 0;

  // Shorthands of facts() and working_bytes().
  Device kind() const { return facts().kind; }
  std::size_t default_memory_budget() const { return facts().default_memory_budget; }
  std::size_t peak_device_memory() const { return facts().peak_device_memory; }
  void* cuda_stream() const { return facts().cuda_stream; }
  int64_t working_bytes_fixed(const ScoreProblem& problem, int64_t count) const {
    return working_bytes(problem, count).fixed;
  }
  /// Per row, for the pool alone.
  int64_t working_bytes_per_row(const PoolView& pool) const {
    return working_bytes(ScoreProblem{pool, {}}, 0).per_row;
  }
  /// Per row, for the features of a measure that reads them (egl).
  int64_t working_bytes_per_feature_row(const ScoreProblem& problem) const {
    return working_bytes(problem, 0).per_row - working_bytes_per_row(problem.pool);
  }
  /// The budget a call on `context` works within.
  std::size_t budget_of(const CallContext& call) const {
    return call.memory_budget != 0 ? call.memory_budget : default_memory_budget();
  }
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
