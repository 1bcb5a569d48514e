#include "engine/pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <unordered_set>

#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

using kernels::MeasureId;
static_assert(static_cast<int>(MeasureId::entropy) == static_cast<int>(Measure::entropy));
static_assert(static_cast<int>(MeasureId::variation_ratio) ==
              static_cast<int>(Measure::variation_ratio));

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

void validate(const PoolView& pool, const ScoreOptions& options) {
  if (pool.data == nullptr) throw InvalidArgument("pool data is a null pointer");
  if (pool.rows < 1) throw InvalidArgument("the pool has no rows");
  if (pool.members < 1) throw InvalidArgument("a committee needs at least one member");
  if (pool.member_stride < 0 || pool.row_stride < 0)
    throw InvalidArgument("strides must not be negative");
  const bool committee_measure = is_committee_measure(options.measure);
  if (pool.is_votes()) {
    if (pool.classes < 0) throw InvalidArgument("the number of classes must not be negative");
    if (options.measure != Measure::vote_entropy && options.measure != Measure::variation_ratio)
      throw InvalidArgument("integer votes support only vote_entropy and variation_ratio, not " +
                            name(options.measure));
    if (options.logits) throw InvalidArgument("--logits does not apply to integer votes");
  } else {
    if (pool.dtype != DType::f32 && pool.dtype != DType::f16 && pool.dtype != DType::bf16)
      throw InvalidArgument("unsupported dtype " + std::string(to_string(pool.dtype)));
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
  check_extent(pool.members, pool.member_stride, pool.rows, pool.row_stride,
               pool.is_votes() ? 1 : pool.classes, pool.dtype, "the pool");
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
}

void throw_bad_row(BadRow bad, int64_t row_offset) {
  bad.row += row_offset;
  const std::string row = "row " + std::to_string(bad.row) + ": ";
  const uint32_t f = bad.flags;
  if (f & kernels::kNonFinite) throw InvalidInput(row + "non-finite value (NaN or Inf)", bad.row);
  const std::string logits_hint = "; if these are logits, pass --logits (ScoreOptions::logits)";
  if (f & kernels::kNegative)
    throw InvalidInput(row + "negative probability" + logits_hint, bad.row);
  if (f & kernels::kAboveOne)
    throw InvalidInput(row + "probability greater than 1" + logits_hint, bad.row);
  if (f & kernels::kBadSum)
    throw InvalidInput(row + "probabilities do not sum to 1 (tolerance 1e-3)" + logits_hint,
                       bad.row);
  if (f & kernels::kBadVote) throw InvalidInput(row + "vote outside [-1, classes)", bad.row);
  throw InvalidInput(row + "invalid data", bad.row);
}

namespace {

// Host pools are cut into chunks of at most this many rows when progress is reported, so that it
// moves.
constexpr int64_t kProgressChunkRows = int64_t{1} << 22;

PoolView rows_of(const PoolView& pool, int64_t first, int64_t count) {
  PoolView part = pool;
  part.data = static_cast<const char*>(pool.data) +
              first * pool.row_stride * static_cast<int64_t>(dtype_size(pool.dtype));
  part.rows = count;
  return part;
}

// Rows per chunk so that the backend's working memory for `count` results stays in the budget.
int64_t rows_per_chunk(const Backend& backend, const ScoreProblem& problem, int64_t count) {
  const std::size_t budget =
      backend.memory_budget ? backend.memory_budget : backend.default_memory_budget();
  const auto per_row = static_cast<std::size_t>(backend.working_bytes_per_row(problem.pool));
  const auto fixed = static_cast<std::size_t>(backend.working_bytes_fixed(problem, count));
  if (budget < fixed + per_row)
    throw InvalidArgument("the memory budget of " + std::to_string(budget) +
                          " bytes is too small for this job: it needs at least " +
                          std::to_string(fixed + per_row) +
                          " bytes (one row of working memory and room for the results)");
  int64_t rows = static_cast<int64_t>(std::min<std::size_t>(
      (budget - fixed) / per_row, static_cast<std::size_t>(problem.pool.rows)));
  if (backend.progress && problem.pool.space == MemorySpace::host)
    rows = std::min(rows, kProgressChunkRows);
  return std::max<int64_t>(rows, 1);
}

void report(const Backend& backend, int64_t done, int64_t total) {
  if (backend.progress) backend.progress(done, total);
}

// The first `count` of two rank-ordered lists, in rank order.
Ranked merge_ranked(const Ranked& a, const Ranked& b, int64_t count) {
  Ranked out;
  size_t i = 0, j = 0;
  while (static_cast<int64_t>(out.indices.size()) < count &&
         (i < a.indices.size() || j < b.indices.size())) {
    const bool take_a =
        j >= b.indices.size() ||
        (i < a.indices.size() && (a.scores[i] > b.scores[j] ||
                                  (a.scores[i] == b.scores[j] && a.indices[i] < b.indices[j])));
    const Ranked& from = take_a ? a : b;
    size_t& at = take_a ? i : j;
    out.indices.push_back(from.indices[at]);
    out.scores.push_back(from.scores[at]);
    ++at;
  }
  return out;
}

// The `count` best rows of the pool, one budget-sized chunk of rows at a time. The merged result
// equals ranking the whole pool at once: (score, row) is a strict order, and the best `count` of
// the pool are among the best `count` of their chunks.
Ranked rank(Backend& backend, const ScoreProblem& problem, int64_t count) {
  const int64_t n = problem.pool.rows;
  const int64_t chunk = rows_per_chunk(backend, problem, count);
  Ranked best;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const ScoreProblem part{rows_of(problem.pool, r0, rows), problem.options,
                            problem.row_offset + r0};
    Ranked top = backend.top(part, std::min(count, rows));
    for (int64_t& row : top.indices) row += r0;
    best = r0 == 0 ? std::move(top) : merge_ranked(best, top, count);
    report(backend, r0 + rows, n);
  }
  return best;
}

}  // namespace

void score(Backend& backend, const PoolView& pool, const ScoreOptions& options, float* scores_out) {
  validate(pool, options);
  if (scores_out == nullptr) throw InvalidArgument("scores output is a null pointer");
  const ScoreProblem problem{pool, options};
  const int64_t chunk = rows_per_chunk(backend, problem, 0);
  for (int64_t r0 = 0; r0 < pool.rows; r0 += chunk) {
    const int64_t rows = std::min(chunk, pool.rows - r0);
    backend.score(ScoreProblem{rows_of(pool, r0, rows), options, r0}, scores_out + r0);
    report(backend, r0 + rows, pool.rows);
  }
}

namespace {

void validate_embeddings(const EmbeddingView& e, const PoolView& pool) {
  if (e.data == nullptr) throw InvalidArgument("embeddings data is a null pointer");
  if (e.rows != pool.rows)
    throw InvalidArgument("embeddings have " + std::to_string(e.rows) + " rows but the pool has " +
                          std::to_string(pool.rows));
  if (e.dim < 1) throw InvalidArgument("embeddings need at least one dimension (D = 0)");
  if (e.row_stride < e.dim) throw InvalidArgument("embedding row stride is smaller than D");
  if (e.dtype != DType::f32 && e.dtype != DType::f16 && e.dtype != DType::bf16)
    throw InvalidArgument("embeddings must be f32, f16 or bf16, not " +
                          std::string(to_string(e.dtype)));
  check_extent(1, 0, e.rows, e.row_stride, e.dim, e.dtype, "the embeddings");
}

void validate_kmeans(const KMeansOptions& options, int64_t k, int64_t dim) {
  if (options.iterations < 0) throw InvalidArgument("k-means iterations must be >= 0");
  if (!options.initial_centroids.empty() &&
      static_cast<int64_t>(options.initial_centroids.size()) != k * dim)
    throw InvalidArgument("initial centroids must hold clusters * D values");
}

// Draws `count` distinct rows of [0, n) uniformly at random among those not in `taken`
// (Floyd's algorithm over the complement, then mapped back to rows), ascending.
std::vector<int64_t> draw_unpicked(int64_t n, std::vector<int64_t> taken, int64_t count,
                                   uint64_t seed) {
  std::sort(taken.begin(), taken.end());
  const int64_t free_rows = n - static_cast<int64_t>(taken.size());
  std::mt19937_64 rng(seed);
  std::unordered_set<int64_t> drawn;
  for (int64_t j = free_rows - count; j < free_rows; ++j) {
    const int64_t t = std::uniform_int_distribution<int64_t>(0, j)(rng);
    if (!drawn.insert(t).second) drawn.insert(j);
  }
  std::vector<int64_t> ranks(drawn.begin(), drawn.end());
  std::sort(ranks.begin(), ranks.end());
  // The u-th free row is u plus the number of taken rows at or below it.
  size_t below = 0;
  for (int64_t& u : ranks) {
    int64_t row = u + static_cast<int64_t>(below);
    while (below < taken.size() && taken[below] <= row) row = u + static_cast<int64_t>(++below);
    u = row;
  }
  return ranks;
}

}  // namespace

Selection select(Backend& backend, const PoolView& pool, const SelectOptions& options) {
  validate(pool, options.scoring);
  const int64_t k = options.k;
  if (k < 1 || k > pool.rows)
    throw InvalidArgument("k must be between 1 and the number of rows (" +
                          std::to_string(pool.rows) + "), got " + std::to_string(k));
  if (!(options.explore >= 0.0 && options.explore < 1.0))
    throw InvalidArgument("the exploration fraction must be in [0, 1), got " +
                          std::to_string(options.explore));
  if (options.kmeans.iterations < 0) throw InvalidArgument("k-means iterations must be >= 0");
  const int64_t explore_picks = std::llround(options.explore * static_cast<double>(k));
  const int64_t rank_picks = k - explore_picks;
  const ScoreProblem problem{pool, options.scoring};
  Selection sel;
  auto add = [&](int64_t row, float score, PickReason reason, int32_t cluster) {
    sel.indices.push_back(row);
    sel.scores.push_back(score);
    sel.reasons.push_back(reason);
    sel.clusters.push_back(cluster);
  };

  if (options.embeddings && rank_picks > 0) {
    const EmbeddingView& emb = *options.embeddings;
    validate_embeddings(emb, pool);
    if (options.candidates < 0 || (options.candidates > 0 && options.candidates < rank_picks))
      throw InvalidArgument("the number of candidates (" + std::to_string(options.candidates) +
                            ") must be at least the number of clusters (" +
                            std::to_string(rank_picks) + ")");
    const int64_t m =
        std::min(pool.rows, options.candidates > 0 ? options.candidates : 10 * rank_picks);
    validate_kmeans(options.kmeans, rank_picks, emb.dim);
    const Ranked candidates = rank(backend, problem, m);
    const KMeansResult km = backend.kmeans(emb, &candidates.indices, rank_picks, options.kmeans);
    // Candidates are in rank order: the first one seen in a cluster is its best.
    std::vector<char> cluster_done(rank_picks, 0), picked(m, 0);
    int64_t count = 0;
    for (int64_t i = 0; i < m; ++i) {
      const int32_t c = km.assignments[i];
      if (!cluster_done[c]) {
        cluster_done[c] = picked[i] = 1;
        ++count;
      }
    }
    // Clusters left empty are made up from the next-best candidates not yet picked.
    for (int64_t i = 0; i < m && count < rank_picks; ++i)
      if (!picked[i]) {
        picked[i] = 2;
        ++count;
      }
    for (int64_t i = 0; i < m; ++i)
      if (picked[i])
        add(candidates.indices[i], candidates.scores[i],
            picked[i] == 1 ? PickReason::cluster : PickReason::rank, km.assignments[i]);
  } else {
    // Ranked even when every pick is explored: scoring the pool is what validates it.
    const Ranked top = rank(backend, problem, std::max<int64_t>(rank_picks, 1));
    for (int64_t i = 0; i < rank_picks; ++i)
      add(top.indices[i], top.scores[i], PickReason::rank, -1);
  }

  if (explore_picks > 0) {
    std::vector<int64_t> rows = draw_unpicked(pool.rows, sel.indices, explore_picks, options.seed);
    // Exploration picks are few: score each one again rather than keep every row's score.
    std::vector<float> scores(rows.size());
    for (size_t i = 0; i < rows.size(); ++i)
      backend.score(ScoreProblem{rows_of(pool, rows[i], 1), options.scoring, rows[i]}, &scores[i]);
    std::vector<int64_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && rows[a] < rows[b]);
    });
    for (int64_t i : order) add(rows[i], scores[i], PickReason::exploration, -1);
  }
  return sel;
}

KMeansResult kmeans(Backend& backend, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options) {
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
  return backend.kmeans(points, nullptr, k, options);
}

}  // namespace quarry::engine
