#include "engine/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <unordered_set>

#include "engine/budget.hpp"
#include "engine/strategies.hpp"
#include "engine/threads.hpp"
#include "kernels/measures.hpp"
#include "quarry/error.hpp"
#include "quarry/interrupt.hpp"
#include "quarry/measures.hpp"

namespace quarry::engine {

namespace {

std::string name(Measure m) {
  return std::string(to_string(m));
}

// The bytes from a view's first element to past its last, refused when they overflow 64 bits:
// every offset the backends compute is then within int64.
void check_extent(int64_t members, int64_t member_stride, int64_t rows, int64_t row_stride,
                  int64_t row_elements, DType dtype, const char* what) {
  int64_t a = 0, b = 0, elements = 0, bytes = 0;
  if (__builtin_mul_overflow(members - 1, member_stride, &a) ||
      __builtin_mul_overflow(rows - 1, row_stride, &b) || __builtin_add_overflow(a, b, &elements) ||
      __builtin_add_overflow(elements, row_elements, &elements) ||
      __builtin_mul_overflow(elements, static_cast<int64_t>(dtype_size(dtype)), &bytes))
    throw InvalidArgument(std::string(what) + " spans more than 2^63 bytes");
}

}  // namespace

// Checks a [rows, D] float matrix of `what` ("embeddings", "features") against the pool's rows.
void validate_row_matrix(const EmbeddingView& e, int64_t rows, const std::string& what) {
  if (e.data == nullptr) throw InvalidArgument(what + " data is a null pointer");
  if (e.rows != rows)
    throw InvalidArgument(what + " have " + std::to_string(e.rows) + " rows but the pool has " +
                          std::to_string(rows));
  if (e.dim < 1) throw InvalidArgument(what + " need at least one dimension (D = 0)");
  if (e.row_stride < e.dim) throw InvalidArgument(what + " row stride is smaller than D");
  if (e.dtype != DType::f32 && e.dtype != DType::f16 && e.dtype != DType::bf16)
    throw InvalidArgument(what + " must be f32, f16 or bf16, not " +
                          std::string(to_string(e.dtype)));
  check_extent(1, 0, e.rows, e.row_stride, e.dim, e.dtype, ("the " + what).c_str());
}

namespace {

// The shape and options of an LLM-output pool (token or top-K log-probabilities, or samples).
void validate_llm_pool(const PoolView& pool, const ScoreOptions& options) {
  const PoolKind kind = pool_kind(options.measure);
  const std::string measure = name(options.measure);
  if (pool.dtype != DType::f32 && pool.dtype != DType::f16 && pool.dtype != DType::bf16)
    throw InvalidArgument(measure + " needs f32, f16 or bf16 values, not " +
                          std::string(to_string(pool.dtype)));
  if (options.logits)
    throw InvalidArgument("--logits (ScoreOptions::logits) does not apply to " + measure);
  if (kind == PoolKind::token_logprobs) {
    if (pool.members != 1)
      throw InvalidArgument(measure + " reads token log-probabilities [N, T], not a 3-D array");
    if (pool.classes < 1) throw InvalidArgument("rows need at least one step (T = 0)");
    if (pool.row_stride < pool.classes)
      throw InvalidArgument("row stride is smaller than the number of steps");
  } else if (pool.classes < 1) {
    throw InvalidArgument(kind == PoolKind::samples ? "answers need at least one dimension (D = 0)"
                                                    : "steps need at least one entry (K = 0)");
  }
  if (kind == PoolKind::samples) {
    if (pool.lengths != nullptr)
      throw InvalidArgument("lengths apply to token and top-K log-probabilities, not to " +
                            measure);
    if (pool.members > kernels::kMaxSamples)
      throw InvalidArgument(measure + " supports at most " + std::to_string(kernels::kMaxSamples) +
                            " samples per row, got " + std::to_string(pool.members));
    if (!(std::isfinite(options.eigenscore_alpha) && options.eigenscore_alpha >= 0.0))
      throw InvalidArgument("eigenscore alpha must be finite and >= 0, got " +
                            std::to_string(options.eigenscore_alpha));
    if (!std::isfinite(options.semantic_threshold))
      throw InvalidArgument("the semantic threshold must be finite");
  } else if (pool.lengths != nullptr && pool.lengths_dtype != DType::i32 &&
             pool.lengths_dtype != DType::i64) {
    throw InvalidArgument("lengths must be i32 or i64, not " +
                          std::string(to_string(pool.lengths_dtype)));
  }
}

}  // namespace

void validate(const PoolView& pool, const ScoreOptions& options) {
  if (pool.data == nullptr) throw InvalidArgument("pool data is a null pointer");
  if (pool.rows < 1) throw InvalidArgument("the pool has no rows");
  if (pool.members < 1) throw InvalidArgument("a committee needs at least one member");
  if (pool.member_stride < 0 || pool.row_stride < 0)
    throw InvalidArgument("strides must not be negative");
  check_extent(pool.members, pool.member_stride, pool.rows, pool.row_stride,
               pool.is_votes() ? 1 : pool.classes, pool.dtype, "the pool");
  if (is_llm_measure(options.measure)) return validate_llm_pool(pool, options);
  if (pool.lengths != nullptr)
    throw InvalidArgument("lengths apply to token and top-K log-probabilities, not to " +
                          name(options.measure));
  const bool committee_measure = is_committee_measure(options.measure);
  if (pool.is_votes()) {
    if (pool.classes < 0) throw InvalidArgument("the number of classes must not be negative");
    if (options.measure != Measure::vote_entropy && options.measure != Measure::variation_ratio)
      throw InvalidArgument("integer votes support only vote_entropy and variation_ratio, not " +
                            name(options.measure));
    if (options.logits) throw InvalidArgument("--logits does not apply to integer votes");
  } else {
    if (pool.dtype != DType::f32 && pool.dtype != DType::f16 && pool.dtype != DType::bf16 &&
        pool.dtype != DType::f64)
      throw InvalidArgument("unsupported dtype " + std::string(to_string(pool.dtype)));
    if (pool.dtype == DType::f64 && pool.space != MemorySpace::host)
      throw InvalidArgument("f64 pools must be in host memory; convert device arrays to float32");
    if (pool.classes < 1) throw InvalidArgument("rows need at least one class");
    if (pool.members == 1 && pool.row_stride < pool.classes)
      throw InvalidArgument("row stride is smaller than the number of classes");
    if (!committee_measure && pool.members != 1)
      throw InvalidArgument(
          name(options.measure) +
          " scores a single model's predictions, but the pool is a committee of " +
          std::to_string(pool.members) +
          " members: use a committee measure (vote_entropy, consensus_entropy, "
          "kl_max, bald, variation_ratio)");
  }
  // The softmax scales differences of logits by 1 / T, which must be a finite float too.
  const float t = options.temperature;
  if (options.logits && !(std::isfinite(t) && t > 0.0f && std::isfinite(1.0f / t))) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", static_cast<double>(t));
    throw InvalidArgument(
        std::string("temperature must be finite and at least 2.94e-39 (1 / T must be a finite "
                    "float), got ") +
        text);
  }
  if (needs_features(options.measure) && !options.features)
    throw InvalidArgument(name(options.measure) +
                          " needs the penultimate-layer features of the pool rows (--features "
                          "FEAT.npy, ScoreOptions::features)");
  if (options.features) validate_row_matrix(*options.features, pool.rows, "features");
}

void throw_bad_row(BadRow bad, int64_t row_offset) {
  bad.row += row_offset;
  const std::string row = "row " + std::to_string(bad.row) + ": ";
  const uint32_t f = bad.flags;
  if (f & kernels::kNonFinite)
    throw InvalidInput(row + "non-finite value (NaN or Inf)", bad.row, "pool");
  const std::string logits_hint = "; if these are logits, pass --logits (ScoreOptions::logits)";
  if (f & kernels::kNegative)
    throw InvalidInput(row + "negative probability" + logits_hint, bad.row, "pool");
  if (f & kernels::kAboveOne)
    throw InvalidInput(row + "probability greater than 1" + logits_hint, bad.row, "pool");
  if (f & kernels::kBadSum)
    throw InvalidInput(
        row + "probabilities do not sum to 1 (tolerance 1e-3; 2^-7 for bfloat16 values)" +
            logits_hint,
        bad.row, "pool");
  if (f & kernels::kBadVote)
    throw InvalidInput(row + "vote outside [-1, classes)", bad.row, "pool");
  if (f & kernels::kBadFeature)
    throw InvalidInput("features " + row + "non-finite value (NaN or Inf)", bad.row, "features");
  if (f & kernels::kBadLength)
    throw InvalidInput(row + "length outside [1, T] (T = the steps of the array)", bad.row,
                       "lengths");
  if (f & kernels::kPositive)
    throw InvalidInput(row + "positive log-probability (log-probabilities are <= 0)", bad.row,
                       "pool");
  if (f & kernels::kEmptyStep)
    throw InvalidInput(row + "a step whose top-K log-probabilities are all -inf", bad.row, "pool");
  if (f & kernels::kScoreRange)
    throw InvalidInput("features " + row +
                           "the egl score exceeds the float range (the norm of the features is "
                           "near the float maximum); scale the features down",
                       bad.row, "features");
  throw InvalidInput(row + "invalid data", bad.row, "pool");
}

namespace {

// Host pools are cut into chunks of at most this many rows when progress is reported, so that it
// moves.
constexpr int64_t kProgressChunkRows = int64_t{1} << 22;

// f64 pools (what scikit-learn's predict_proba returns) reach the backends as f32, converted a
// chunk of at most this many bytes of f32 at a time: the pool is never copied whole.
constexpr int64_t kConvertedChunkBytes = int64_t{16} << 20;

// The pool as the backends see it: f64 becomes a contiguous f32 chunk, members first.
PoolView backend_pool(const PoolView& pool) {
  if (pool.dtype != DType::f64) return pool;
  return PoolView::committee(pool.data, DType::f32, pool.members, pool.rows, pool.classes);
}

// Rows of `part` (an f64 pool) converted into `buffer`; other pools are returned as they are.
PoolView converted(const PoolView& part, std::vector<float>& buffer) {
  if (part.dtype != DType::f64) return part;
  const int64_t rows = part.rows, classes = part.classes;
  buffer.resize(static_cast<std::size_t>(part.members * rows * classes));
  const auto* source = static_cast<const double*>(part.data);
  float* target = buffer.data();
  parallel_for(part.members * rows, 1024, classes, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t m = i / rows, r = i % rows;
      const double* in = source + m * part.member_stride + r * part.row_stride;
      float* out = target + (m * rows + r) * classes;
      for (int64_t c = 0; c < classes; ++c) out[c] = static_cast<float>(in[c]);
    }
  });
  PoolView view = backend_pool(part);
  view.data = buffer.data();
  return view;
}

// Rows [first, first + count) of a scoring problem: the pool's, and the features' with them.
ScoreProblem slice(const ScoreProblem& problem, int64_t first, int64_t count) {
  ScoreProblem part{rows_of(problem.pool, first, count), problem.options,
                    problem.row_offset + first, problem.order};
  if (EmbeddingView* f = part.options.features ? &*part.options.features : nullptr) {
    f->data = static_cast<const char*>(f->data) +
              first * f->row_stride * static_cast<int64_t>(dtype_size(f->dtype));
    f->rows = count;
  }
  return part;
}

// A slice whose pool the backends can read: f64 rows converted into `buffer`.
ScoreProblem backend_slice(const ScoreProblem& problem, int64_t first, int64_t count,
                           std::vector<float>& buffer) {
  ScoreProblem part = slice(problem, first, count);
  part.pool = converted(part.pool, buffer);
  return part;
}

// Rows per chunk so that the backend's working memory for `count` results stays in the budget.
int64_t rows_per_chunk(const Backend& backend, const CallContext& call, const ScoreProblem& problem,
                       int64_t count) {
  const std::size_t budget = backend.budget_of(call);
  ScoreProblem as_read = problem;  // f64 pools reach the backend as f32 chunks
  as_read.pool = backend_pool(problem.pool);
  const WorkingBytes bytes = backend.working_bytes(as_read, count);
  const auto per_row = static_cast<std::size_t>(bytes.per_row);
  const auto fixed = static_cast<std::size_t>(bytes.fixed);
  if (budget < fixed + per_row)
    throw InvalidArgument("the memory budget of " + std::to_string(budget) +
                          " bytes is too small for this job: it needs at least " +
                          std::to_string(fixed + per_row) +
                          " bytes (one row of working memory and room for the results)");
  int64_t rows = static_cast<int64_t>(std::min<std::size_t>(
      (budget - fixed) / per_row, static_cast<std::size_t>(problem.pool.rows)));
  if (call.progress && problem.pool.space == MemorySpace::host)
    rows = std::min(rows, kProgressChunkRows);
  if (problem.pool.dtype == DType::f64)
    rows = std::min(rows, kConvertedChunkBytes / (problem.pool.members * problem.pool.classes *
                                                  static_cast<int64_t>(sizeof(float))));
  return std::max<int64_t>(rows, 1);
}

void report(const CallContext& call, int64_t done, int64_t total) {
  if (call.progress) call.progress(done, total);
}

// The first `count` of two rank-ordered lists, in rank order; their rows are numbered from
// global row `row_offset`.
Ranked merge_ranked(const Ranked& a, const Ranked& b, int64_t count, const RankOrder& order,
                    int64_t row_offset) {
  Ranked out;
  size_t i = 0, j = 0;
  while (static_cast<int64_t>(out.indices.size()) < count &&
         (i < a.indices.size() || j < b.indices.size())) {
    const bool take_a =
        j >= b.indices.size() ||
        (i < a.indices.size() && order.before(a.scores[i], row_offset + a.indices[i], b.scores[j],
                                              row_offset + b.indices[j]));
    const Ranked& from = take_a ? a : b;
    size_t& at = take_a ? i : j;
    out.indices.push_back(from.indices[at]);
    out.scores.push_back(from.scores[at]);
    ++at;
  }
  return out;
}

}  // namespace

PoolView rows_of(const PoolView& pool, int64_t first, int64_t count) {
  PoolView part = pool;
  part.data = static_cast<const char*>(pool.data) +
              first * pool.row_stride * static_cast<int64_t>(dtype_size(pool.dtype));
  part.rows = count;
  if (pool.lengths != nullptr)
    part.lengths = static_cast<const char*>(pool.lengths) +
                   first * static_cast<int64_t>(dtype_size(pool.lengths_dtype));
  return part;
}

// The `count` best rows of the pool, one budget-sized chunk of rows at a time. The merged result
// equals ranking the whole pool at once: (score, row) is a strict order, and the best `count` of
// the pool are among the best `count` of their chunks.
Ranked rank(Backend& backend, const CallContext& call, const ScoreProblem& problem, int64_t count) {
  const int64_t n = problem.pool.rows;
  const int64_t chunk = rows_per_chunk(backend, call, problem, count);
  Ranked best;
  std::vector<float> buffer;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    poll_interrupt();
    const int64_t rows = std::min(chunk, n - r0);
    Ranked top = backend.top(backend_slice(problem, r0, rows, buffer), std::min(count, rows), call);
    for (int64_t& row : top.indices) row += r0;
    best = r0 == 0 ? std::move(top)
                   : merge_ranked(best, top, count, problem.order, problem.row_offset);
    report(call, r0 + rows, n);
  }
  return best;
}

void score(Backend& backend, const CallContext& call, const PoolView& pool,
           const ScoreOptions& options, float* scores_out, int64_t row_offset) {
  validate(pool, options);
  if (scores_out == nullptr) throw InvalidArgument("scores output is a null pointer");
  const ScoreProblem problem{pool, options, row_offset};
  const int64_t chunk = rows_per_chunk(backend, call, problem, 0);
  std::vector<float> buffer;
  for (int64_t r0 = 0; r0 < pool.rows; r0 += chunk) {
    poll_interrupt();
    const int64_t rows = std::min(chunk, pool.rows - r0);
    backend.score(backend_slice(problem, r0, rows, buffer), scores_out + r0, call);
    report(call, r0 + rows, pool.rows);
  }
}

float score_row(Backend& backend, const CallContext& call, const PoolView& pool, int64_t row,
                const ScoreOptions& options, int64_t global_row) {
  std::vector<float> buffer;
  float score = 0;
  backend.score(backend_slice(ScoreProblem{pool, options, global_row - row}, row, 1, buffer),
                &score, call);
  return score;
}

void validate_kmeans(const KMeansOptions& options, int64_t k, int64_t dim) {
  if (options.iterations < 0) throw InvalidArgument("k-means iterations must be >= 0");
  if (!options.initial_centroids.empty() &&
      static_cast<int64_t>(options.initial_centroids.size()) != k * dim)
    throw InvalidArgument("initial centroids must hold clusters * D values");
  for (size_t i = 0; i < options.initial_centroids.size(); ++i)
    if (!std::isfinite(options.initial_centroids[i]))
      throw InvalidArgument("initial_centroids: centroid " +
                            std::to_string(static_cast<int64_t>(i) / dim) +
                            " has a non-finite coordinate (NaN or Inf)");
}

PickCounts check_select_options(const SelectOptions& options) {
  if (options.k < 1)
    throw InvalidArgument("k must be at least 1, got " + std::to_string(options.k));
  if (!(options.explore >= 0.0 && options.explore < 1.0))
    throw InvalidArgument("the exploration fraction must be in [0, 1), got " +
                          std::to_string(options.explore));
  if (options.kmeans.iterations < 0) throw InvalidArgument("k-means iterations must be >= 0");
  const int64_t explored = std::llround(options.explore * static_cast<double>(options.k));
  return {options.k - explored, explored};
}

int64_t candidates_wanted(const SelectOptions& options, int64_t clusters) {
  if (options.candidates < 0 || (options.candidates > 0 && options.candidates < clusters))
    throw InvalidArgument("the number of candidates (" + std::to_string(options.candidates) +
                          ") must be at least the number of clusters (" + std::to_string(clusters) +
                          ")");
  return options.candidates > 0 ? options.candidates : 10 * clusters;
}

namespace {

// A uniform integer in [0, n) from the generator's 64-bit outputs, by rejection. Written out
// because std::uniform_int_distribution's algorithm differs between standard libraries, and
// shards and the merge must draw alike wherever they run.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t biased = (0 - n) % n;  // 2^64 mod n: outputs below it would favour small values
  for (;;) {
    const uint64_t x = rng();
    if (x >= biased) return x % n;
  }
}

}  // namespace

void append_pick(Selection& sel, const Pick& pick) {
  sel.indices.push_back(pick.row);
  sel.scores.push_back(pick.score);
  sel.reasons.push_back(pick.reason);
  sel.clusters.push_back(pick.cluster);
}

void add_rank_picks(const Ranked& ranked, int64_t count, Selection& sel) {
  for (int64_t i = 0; i < count; ++i)
    append_pick(sel, {ranked.indices[i], ranked.scores[i], PickReason::rank, -1});
}

std::vector<Pick> cluster_picks(const Ranked& candidates, const std::vector<int32_t>& assignments,
                                int64_t clusters) {
  const auto m = static_cast<int64_t>(candidates.indices.size());
  // Candidates are in rank order: the first one seen in a cluster is its best.
  std::vector<char> cluster_done(clusters, 0), picked(m, 0);
  int64_t count = 0;
  for (int64_t i = 0; i < m; ++i) {
    const int32_t c = assignments[i];
    if (!cluster_done[c]) {
      cluster_done[c] = picked[i] = 1;
      ++count;
    }
  }
  // Clusters left empty are made up from the next-best candidates not yet picked.
  for (int64_t i = 0; i < m && count < clusters; ++i)
    if (!picked[i]) {
      picked[i] = 2;
      ++count;
    }
  std::vector<Pick> picks;
  for (int64_t i = 0; i < m; ++i)
    if (picked[i])
      picks.push_back({candidates.indices[i], candidates.scores[i],
                       picked[i] == 1 ? PickReason::cluster : PickReason::rank, assignments[i]});
  return picks;
}

std::vector<Pick> exploration_picks(const std::vector<int64_t>& rows,
                                    const std::vector<float>& scores, const RankOrder& rank_order) {
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return rank_order.before(scores[a], rows[a], scores[b], rows[b]);
  });
  std::vector<Pick> picks;
  for (size_t i : order) picks.push_back({rows[i], scores[i], PickReason::exploration, -1});
  return picks;
}

ExplorationDraws::ExplorationDraws(int64_t pool_rows, uint64_t seed)
    : pool_rows_(pool_rows), rng_(seed) {}

int64_t ExplorationDraws::next() {
  for (;;) {
    const auto row = static_cast<int64_t>(uniform_below(rng_, static_cast<uint64_t>(pool_rows_)));
    if (drawn_.insert(row).second) return row;
  }
}

std::vector<int64_t> draw_unpicked(int64_t pool_rows, const std::vector<int64_t>& taken,
                                   int64_t count, uint64_t seed) {
  const std::unordered_set<int64_t> skip(taken.begin(), taken.end());
  const int64_t free_rows = pool_rows - static_cast<int64_t>(skip.size());
  if (free_rows < count)
    throw InvalidArgument(std::to_string(count) + " rows to explore, but only " +
                          std::to_string(free_rows) + " are neither picked nor labeled");
  ExplorationDraws draws(pool_rows, seed);
  std::vector<int64_t> rows;
  while (static_cast<int64_t>(rows.size()) < count) {
    const int64_t row = draws.next();
    if (!skip.count(row)) rows.push_back(row);
  }
  return rows;
}

namespace {

// Checks the strategy's own inputs: features for BADGE, embeddings and labeled rows for core-set.
void validate_strategy(const PoolView& pool, const SelectOptions& options) {
  if (options.embeddings) validate_row_matrix(*options.embeddings, pool.rows, "embeddings");
  if (options.strategy == Strategy::badge) {
    if (!options.scoring.features)
      throw InvalidArgument(
          "BADGE needs the penultimate-layer features of the pool rows "
          "(--features FEAT.npy, ScoreOptions::features)");
    if (pool.is_votes() || pool.members != 1)
      throw InvalidArgument(
          "BADGE needs a single model's probabilities [N, C], not a committee "
          "or votes");
    if (options.scoring.logits)
      throw InvalidArgument("BADGE needs probabilities, not logits: apply the softmax first");
    if (options.embeddings)
      throw InvalidArgument(
          "BADGE works on gradient embeddings made from the features; "
          "--embeddings (SelectOptions::embeddings) does not apply to it");
  }
  if (options.strategy == Strategy::coreset && !options.embeddings)
    throw InvalidArgument(
        "core-set needs the embeddings of the pool rows (--embeddings EMB.npy, "
        "SelectOptions::embeddings)");
  const bool labeled = !options.labeled_rows.empty() || options.labeled_embeddings;
  if (labeled && options.strategy != Strategy::coreset)
    throw InvalidArgument(
        "labeled rows (--labeled, SelectOptions::labeled_*) apply to "
        "--strategy coreset");
  for (int64_t r : options.labeled_rows)
    if (r < 0 || r >= pool.rows)
      throw InvalidArgument("labeled row " + std::to_string(r) + " is outside the pool's " +
                            std::to_string(pool.rows) + " rows");
  if (const auto& l = options.labeled_embeddings) {
    validate_row_matrix(*l, l->rows, "labeled embeddings");
    if (l->dim != options.embeddings->dim)
      throw InvalidArgument(
          "labeled embeddings have D = " + std::to_string(l->dim) +
          " but the pool's embeddings have D = " + std::to_string(options.embeddings->dim));
    if (l->space != MemorySpace::host)
      throw InvalidArgument("labeled embeddings must be in host memory");
  }
}

}  // namespace

Selection select(Backend& backend, const CallContext& call, const PoolView& pool,
                 const SelectOptions& options) {
  validate(pool, options.scoring);
  validate_strategy(pool, options);
  const bool budgeted = has_budget(options);
  if (budgeted) validate_budget(pool.rows, options);
  const int64_t k = options.k;
  // With a budget, k is optional: the most picks a batch strategy may take.
  if (k < (budgeted ? 0 : 1) || k > pool.rows)
    throw InvalidArgument("k must be between 1 and the number of rows (" +
                          std::to_string(pool.rows) + "), got " + std::to_string(k));
  if (!(options.explore >= 0.0 && options.explore < 1.0))
    throw InvalidArgument("the exploration fraction must be in [0, 1), got " +
                          std::to_string(options.explore));
  if (options.kmeans.iterations < 0) throw InvalidArgument("k-means iterations must be >= 0");
  // Exploration takes a share of k, or with a budget a share of the budget.
  const int64_t explore_picks =
      budgeted ? 0 : std::llround(options.explore * static_cast<double>(k));
  const int64_t strategy_picks = k - explore_picks;
  const double strategy_budget = options.budget * (1.0 - options.explore);
  const ScoreProblem problem{pool, options.scoring, 0, RankOrder::of(options)};
  const StrategyCall strategy_call{backend,        call,     problem,        options,
                                   strategy_picks, budgeted, strategy_budget};
  const SelectionStrategy& strategy = strategy_for(options, strategy_picks);
  const int64_t m = strategy.candidates(strategy_call);
  Ranked candidates;
  if (m == SelectionStrategy::kEveryRowScored) {
    candidates.scores.resize(pool.rows);
    score(backend, call, pool, options.scoring, candidates.scores.data());
  } else {
    candidates = rank(backend, call, problem, m);
  }
  Selection sel;
  auto add = [&](const Pick& p) { append_pick(sel, p); };
  const StrategyPicks picked = strategy.picks(strategy_call, candidates);
  for (const Pick& p : picked.picks) add(p);
  sel.cost_spent = picked.cost_spent;

  if (explore_picks > 0 || (budgeted && options.explore > 0)) {
    // Neither picked nor labeled already.
    std::vector<int64_t> excluded = sel.indices;
    excluded.insert(excluded.end(), options.labeled_rows.begin(), options.labeled_rows.end());
    std::vector<int64_t> rows =
        budgeted
            ? explore_within_budget(pool.rows, excluded, costs_of(options),
                                    options.budget - strategy_budget, options.seed, sel.cost_spent)
            : draw_unpicked(pool.rows, excluded, explore_picks, options.seed);
    // Exploration picks are few: score each one again rather than keep every row's score.
    std::vector<float> scores(rows.size());
    for (size_t i = 0; i < rows.size(); ++i)
      scores[i] = score_row(backend, call, pool, rows[i], options.scoring, rows[i]);
    for (const Pick& p : exploration_picks(rows, scores, problem.order)) add(p);
  }
  return sel;
}

KMeansResult kmeans(Backend& backend, const CallContext& call, const EmbeddingView& points,
                    int64_t k, const KMeansOptions& options) {
  if (points.data == nullptr) throw InvalidArgument("points data is a null pointer");
  if (points.dim < 1) throw InvalidArgument("points need at least one dimension (D = 0)");
  if (points.row_stride < points.dim) throw InvalidArgument("row stride is smaller than D");
  if (points.dtype != DType::f32 && points.dtype != DType::f16 && points.dtype != DType::bf16)
    throw InvalidArgument("points must be f32, f16 or bf16, not " +
                          std::string(to_string(points.dtype)));
  if (k < 1 || k > points.rows)
    throw InvalidArgument("k must be between 1 and the number of points (" +
                          std::to_string(points.rows) + "), got " + std::to_string(k));
  check_extent(1, 0, points.rows, points.row_stride, points.dim, points.dtype, "the points");
  validate_kmeans(options, k, points.dim);
  return backend.kmeans(points, nullptr, k, options, call);
}

}  // namespace quarry::engine
