#include "engine/shard.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "engine/budget.hpp"
#include "engine/kmeans_host.hpp"
#include "engine/pipeline.hpp"
#include "engine/strategies.hpp"
#include "quarry/error.hpp"
#include "quarry/measures.hpp"

namespace quarry::engine {

namespace {

std::string str(int64_t v) {
  return std::to_string(v);
}

std::string range_text(int64_t begin, int64_t end) {
  std::string text = "[";  // appended, not "[" + ...: GCC 12 warns wrongly on that (-Wrestrict)
  text += str(begin);
  text += ", ";
  text += str(end);
  return text + ")";
}

std::string shape_text(const PoolView& v) {
  const std::string dtype(to_string(v.dtype));
  if (v.is_votes()) return dtype + " votes of " + str(v.members) + " members";
  return dtype + ", " + str(v.members) + (v.members == 1 ? " member, " : " members, ") +
         str(v.classes) + " classes";
}

// Runs `f`, prefixing the message of an InvalidArgument it throws with `where` (when not empty).
template <typename F>
void with_context(const std::string& where, F&& f) {
  try {
    f();
  } catch (const InvalidArgument& e) {
    if (where.empty()) throw;
    throw InvalidArgument(where + e.what());
  }
}

// Checks that every shard can be scored with `options` and that they agree in everything but
// their rows, as the parts of one pool must.
void validate_shards(std::span<const PoolView> shards, const ScoreOptions& options) {
  if (shards.empty()) throw InvalidArgument("the pool has no shards");
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string where = shards.size() > 1 ? "shard " + str(i) + ": " : "";
    with_context(where, [&] { validate(shards[i], options); });
    const PoolView &first = shards[0], &shard = shards[i];
    if (shard.dtype != first.dtype || shard.members != first.members ||
        shard.classes != first.classes)
      throw InvalidArgument("shard " + str(i) + " is " + shape_text(shard) + " but shard 0 is " +
                            shape_text(first) +
                            ": shards must agree in everything but their row count");
  }
}

void validate_shard_embeddings(std::span<const EmbeddingView> embeddings,
                               std::span<const PoolView> shards) {
  if (embeddings.size() != shards.size())
    throw InvalidArgument(str(embeddings.size()) + " embedding views for " + str(shards.size()) +
                          " shards: give one per shard");
  for (size_t i = 0; i < embeddings.size(); ++i) {
    const std::string where = shards.size() > 1 ? "shard " + str(i) + ": " : "";
    with_context(where, [&] { validate_row_matrix(embeddings[i], shards[i].rows, "embeddings"); });
    if (embeddings[i].dim != embeddings[0].dim || embeddings[i].dtype != embeddings[0].dtype)
      throw InvalidArgument(
          "shard " + str(i) + "'s embeddings are " + std::string(to_string(embeddings[i].dtype)) +
          " [" + str(embeddings[i].rows) + ", " + str(embeddings[i].dim) + "] but shard 0's are " +
          std::string(to_string(embeddings[0].dtype)) + " [" + str(embeddings[0].rows) + ", " +
          str(embeddings[0].dim) + "]: embeddings must agree in everything but their row count");
  }
}

// The context of one shard's work, which starts after `done` of all the shards' `total` rows:
// its progress reported as progress through all the shards' rows.
CallContext shard_context(const CallContext& call, int64_t done, int64_t total) {
  CallContext shard = call;
  if (call.progress)
    shard.progress = [progress = call.progress, done, total](int64_t rows, int64_t) {
      progress(done + rows, total);
    };
  return shard;
}

// Rows a partial keeps: enough for any merge asking for at most options.k picks.
int64_t rows_to_keep(const SelectOptions& options, const PickCounts& picks, bool diversity) {
  return diversity ? std::max(options.k, candidates_wanted(options, picks.ranked)) : options.k;
}

int64_t covered_rows(const Partial& p) {
  int64_t rows = 0;
  for (const RowRange& r : p.shards) rows += r.rows;
  return rows;
}

// The partial of one shard whose first row is global row `row_offset`.
Partial shard_partial(Backend& backend, const CallContext& call, const Partial& header,
                      const PoolView& pool, const EmbeddingView* embeddings,
                      const PickCounts& picks, int64_t row_offset) {
  const SelectOptions& options = header.options;
  Partial p = header;
  p.shards = {{row_offset, pool.rows}};
  const int64_t keep = std::min(pool.rows, rows_to_keep(options, picks, embeddings != nullptr));
  Ranked top = rank(backend, call,
                    ScoreProblem{pool, options.scoring, row_offset, RankOrder::of(options)}, keep);
  if (embeddings) {
    try {
      p.embeddings = backend.gather(*embeddings, top.indices, call);
    } catch (const InvalidInput& e) {
      throw_bad_embedding(e.row() + row_offset);  // the row in the whole pool
    }
  }
  for (int64_t& row : top.indices) row += row_offset;
  p.indices = std::move(top.indices);
  p.scores = std::move(top.scores);

  if (picks.explored > 0) {
    // A merge draws its exploration picks among the first k rows of this sequence (k at most
    // options.k): keep the scores of those that are this shard's.
    ExplorationDraws draws(p.pool_rows, options.seed);
    for (int64_t i = 0; i < options.k; ++i) {
      const int64_t row = draws.next();
      if (row >= row_offset && row < row_offset + pool.rows) p.explore_rows.push_back(row);
    }
    std::sort(p.explore_rows.begin(), p.explore_rows.end());
    for (int64_t row : p.explore_rows)
      p.explore_scores.push_back(
          score_row(backend, call, pool, row - row_offset, options.scoring, row));
  }
  return p;
}

// Throws InvalidInput unless `p` is a well-formed partial: what a partial read from a file must
// be before it is trusted.
void check_partial(const Partial& p, size_t index) {
  const std::string name = "partial " + str(index) + ": ";
  auto fail = [&](const std::string& what) { throw InvalidInput(name + what); };
  with_context(name, [&] { check_select_options(p.options); });
  if (p.members < 1 || p.classes < 0) fail("members must be >= 1 and classes >= 0");
  if (p.embedding_dim < 0 || p.pool_rows < 0) fail("embedding_dim and pool_rows must be >= 0");
  if (p.shards.empty()) fail("it covers no rows");
  std::vector<RowRange> ranges = p.shards;
  std::sort(ranges.begin(), ranges.end(),
            [](const RowRange& a, const RowRange& b) { return a.offset < b.offset; });
  // Every sum of offsets and row counts below is checked here first: a crafted partial must not
  // overflow one into a range that looks valid.
  constexpr int64_t kLargest = std::numeric_limits<int64_t>::max();
  int64_t covered = 0;
  for (const RowRange& r : ranges) {
    if (r.offset < 0 || r.rows < 1 || r.rows > kLargest - r.offset)
      fail(str(r.rows) + " rows from row " + str(r.offset) + " are not rows of a pool");
    if (p.pool_rows > 0 && r.offset + r.rows > p.pool_rows)
      fail("rows " + range_text(r.offset, r.offset + r.rows) + " are not rows of the pool");
    if (r.rows > kLargest - covered) fail("its row counts add up to more than a pool can hold");
    covered += r.rows;
  }
  auto covers = [&](int64_t row) {
    auto it = std::upper_bound(ranges.begin(), ranges.end(), row,
                               [](int64_t v, const RowRange& r) { return v < r.offset; });
    return it != ranges.begin() && row < std::prev(it)->offset + std::prev(it)->rows;
  };
  const auto n = static_cast<int64_t>(p.indices.size());
  if (static_cast<int64_t>(p.scores.size()) != n) fail("indices and scores differ in length");
  if (p.embedding_dim > 0 && n > kLargest / p.embedding_dim)
    fail("an embedding_dim of " + str(p.embedding_dim) + " is too large");
  const int64_t keep =
      rows_to_keep(p.options, check_select_options(p.options), p.embedding_dim > 0);
  if (n < std::min(covered_rows(p), keep) || n > covered_rows(p))
    fail("it holds " + str(n) + " rows; made with k = " + str(p.options.k) + " over " +
         str(covered_rows(p)) + " rows it should hold " + str(std::min(covered_rows(p), keep)));
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(p.scores[i]) || !covers(p.indices[i]))
      fail("row " + str(p.indices[i]) + " is not a row it covers, or its score is NaN");
    if (i > 0 && !RankOrder::of(p.options).before(p.scores[i - 1], p.indices[i - 1], p.scores[i],
                                                  p.indices[i]))
      fail("its rows are not in rank order (descending score, then the " +
           std::string(to_string(p.options.tie_break)) + " tie-break) at row " + str(p.indices[i]));
  }
  std::vector<int64_t> rows = p.indices;
  std::sort(rows.begin(), rows.end());
  if (const auto twice = std::adjacent_find(rows.begin(), rows.end()); twice != rows.end())
    fail("row " + str(*twice) + " is listed more than once");
  if (static_cast<int64_t>(p.embeddings.size()) != n * p.embedding_dim)
    fail("it needs " + str(n) + " x " + str(p.embedding_dim) + " embedding values, it holds " +
         str(p.embeddings.size()));
  for (float v : p.embeddings)
    if (!std::isfinite(v)) fail("a non-finite embedding value");
  if (p.explore_rows.size() != p.explore_scores.size())
    fail("explore_rows and explore_scores differ in length");
  if (p.options.explore > 0 && p.pool_rows == 0)
    fail("made with exploration but without the pool's row count");
  for (size_t i = 0; i < p.explore_rows.size(); ++i)
    if (!covers(p.explore_rows[i]) || std::isnan(p.explore_scores[i]) ||
        (i > 0 && p.explore_rows[i] <= p.explore_rows[i - 1]))
      fail("explore_rows must be ascending rows it covers, with scores");
}

// Throws InvalidArgument unless partial `index` was made like partial 0, so that together they
// are the partials of one pool and one selection.
void check_compatible(const Partial& first, const Partial& p, size_t index) {
  auto differ = [&](const std::string& what, const std::string& a, const std::string& b) {
    throw InvalidArgument("partial " + str(index) + " was made with " + what + " " + b +
                          ", partial 0 with " + a +
                          ": partials merge only when made with the same options from shards "
                          "of the same pool");
  };
  const SelectOptions &a = first.options, &b = p.options;
  if (a.scoring.measure != b.scoring.measure)
    differ("measure", std::string(to_string(a.scoring.measure)),
           std::string(to_string(b.scoring.measure)));
  if (a.scoring.logits != b.scoring.logits)
    differ("logits", a.scoring.logits ? "on" : "off", b.scoring.logits ? "on" : "off");
  if (a.scoring.logits && a.scoring.temperature != b.scoring.temperature)
    differ("temperature", std::to_string(a.scoring.temperature),
           std::to_string(b.scoring.temperature));
  if (first.dtype != p.dtype)
    differ("dtype", std::string(to_string(first.dtype)), std::string(to_string(p.dtype)));
  if (first.members != p.members) differ("members", str(first.members), str(p.members));
  if (first.classes != p.classes) differ("classes", str(first.classes), str(p.classes));
  if (first.embedding_dim != p.embedding_dim)
    differ("embedding dimension", str(first.embedding_dim), str(p.embedding_dim));
  if (first.embedding_dim > 0 && first.embedding_dtype != p.embedding_dtype)
    differ("embedding dtype", std::string(to_string(first.embedding_dtype)),
           std::string(to_string(p.embedding_dtype)));
  if (a.candidates != b.candidates) differ("candidates", str(a.candidates), str(b.candidates));
  if (a.kmeans.iterations != b.kmeans.iterations)
    differ("k-means iterations", str(a.kmeans.iterations), str(b.kmeans.iterations));
  if (a.kmeans.seed != b.kmeans.seed)
    differ("k-means seed", std::to_string(a.kmeans.seed), std::to_string(b.kmeans.seed));
  if (a.kmeans.initial_centroids != b.kmeans.initial_centroids)
    differ("initial centroids", "some", "others");
  if (a.explore != b.explore)
    differ("exploration fraction", std::to_string(a.explore), std::to_string(b.explore));
  if (a.seed != b.seed) differ("seed", std::to_string(a.seed), std::to_string(b.seed));
  if (a.tie_break != b.tie_break)
    differ("tie-break", std::string(to_string(a.tie_break)), std::string(to_string(b.tie_break)));
  if (first.pool_rows != p.pool_rows) differ("pool rows", str(first.pool_rows), str(p.pool_rows));
}

}  // namespace

void check_shardable(const SelectOptions& options) {
  // The strategy the options name, whatever the split of k.
  const std::string reason = strategy_for(options, 1).unshardable_reason();
  if (!reason.empty()) throw InvalidArgument(reason);
}

void score(Backend& backend, const CallContext& call, std::span<const PoolView> shards,
           const ScoreOptions& options, float* scores_out) {
  if (options.features)
    throw InvalidArgument("a sharded pool does not take features (the egl measure)");
  validate_shards(shards, options);
  if (scores_out == nullptr) throw InvalidArgument("scores output is a null pointer");
  int64_t total = 0;
  for (const PoolView& s : shards) total += s.rows;
  int64_t done = 0;
  for (const PoolView& shard : shards) {
    score(backend, shard_context(call, done, total), shard, options, scores_out + done, done);
    done += shard.rows;
  }
}

Partial partial(Backend& backend, const CallContext& call, std::span<const PoolView> shards,
                const SelectOptions& options, std::span<const EmbeddingView> embeddings,
                int64_t row_offset, int64_t pool_rows) {
  // What a partial records is enough for the strategies that say so (ranking, k-means
  // diversity; exploration always); the others, and influence scores, need more than a shard's
  // best rows.
  engine::check_shardable(options);
  if (!options.labeled_rows.empty() || options.labeled_embeddings)
    throw InvalidArgument("labeled rows apply to --strategy coreset, which is not sharded");
  if (options.scoring.features)
    throw InvalidArgument("sharded selection does not take features (the egl measure)");
  const MeasureInfo& measure = measure_info(options.scoring.measure);
  if (!measure.shardable)
    throw InvalidArgument(
        std::string("sharded selection supports the measures of predictions and committees, not ") +
        (is_llm_measure(measure.measure) ? "the LLM measure " : "") + std::string(measure.name));
  const PickCounts picks = check_select_options(options);
  validate_shards(shards, options.scoring);
  if (options.embeddings)
    throw InvalidArgument(
        "a sharded pool takes one embedding view per shard, not options.embeddings");
  if (!embeddings.empty()) {
    validate_shard_embeddings(embeddings, shards);
    candidates_wanted(options, picks.ranked);
    if (picks.ranked > 0) validate_kmeans(options.kmeans, picks.ranked, embeddings[0].dim);
  }
  if (row_offset < 0) throw InvalidArgument("the row offset must be >= 0, got " + str(row_offset));
  if (pool_rows < 0) throw InvalidArgument("the pool's row count must be >= 0");
  int64_t total = 0, end = 0;
  for (const PoolView& s : shards) total += s.rows;
  // Global rows are row_offset + a shard row, and the end of the range must be a number too.
  if (__builtin_add_overflow(row_offset, total, &end))
    throw InvalidArgument("the row offset " + str(row_offset) + " with " + str(total) +
                          " rows passes the largest row number, 2^63 - 1");
  if (pool_rows > 0 && end > pool_rows)
    throw InvalidArgument("rows " + range_text(row_offset, row_offset + total) +
                          " are not rows of a pool of " + str(pool_rows) + " rows");
  if (picks.explored > 0 && pool_rows == 0)
    throw InvalidArgument(
        "exploration draws over the whole pool: a partial made with it needs the pool's row "
        "count (--pool-rows)");
  if (pool_rows > 0 && options.k > pool_rows)
    throw InvalidArgument("k must be between 1 and the number of rows (" + str(pool_rows) +
                          "), got " + str(options.k));

  Partial header;
  header.options = options;
  header.dtype = shards[0].dtype;
  header.members = shards[0].members;
  header.classes = shards[0].classes;
  if (!embeddings.empty()) {
    header.embedding_dim = embeddings[0].dim;
    header.embedding_dtype = embeddings[0].dtype;
  }
  header.pool_rows = pool_rows;
  header.backend = backend.describe();

  std::vector<Partial> parts;
  int64_t done = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    parts.push_back(shard_partial(backend, shard_context(call, done, total), header, shards[i],
                                  embeddings.empty() ? nullptr : &embeddings[i], picks,
                                  row_offset + done));
    done += shards[i].rows;
  }
  return parts.size() == 1 ? std::move(parts[0]) : engine::combine(parts);
}

Partial combine(std::span<const Partial> partials) {
  if (partials.empty()) throw InvalidArgument("there are no partials to merge");
  for (size_t i = 0; i < partials.size(); ++i) {
    check_partial(partials[i], i);
    if (i > 0) check_compatible(partials[0], partials[i], i);
  }
  if (partials.size() == 1) return partials[0];

  Partial out = partials[0];
  out.shards.clear();
  out.indices.clear();
  out.scores.clear();
  out.embeddings.clear();
  out.explore_rows.clear();
  out.explore_scores.clear();
  for (const Partial& p : partials) {
    out.options.k = std::min(out.options.k, p.options.k);
    out.shards.insert(out.shards.end(), p.shards.begin(), p.shards.end());
    if (out.backend.find(p.backend) == std::string::npos) out.backend += ", " + p.backend;
  }
  std::sort(out.shards.begin(), out.shards.end(),
            [](const RowRange& a, const RowRange& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < out.shards.size(); ++i) {
    const RowRange &a = out.shards[i - 1], &b = out.shards[i];
    if (b.offset < a.offset + a.rows)
      throw InvalidArgument("partials overlap: rows " + range_text(a.offset, a.offset + a.rows) +
                            " and " + range_text(b.offset, b.offset + b.rows) +
                            " (each row offset must start a shard of its own)");
  }

  // The best rows of them all: (partial, position) pairs in rank order.
  std::vector<std::pair<size_t, size_t>> entries;
  for (size_t i = 0; i < partials.size(); ++i)
    for (size_t j = 0; j < partials[i].indices.size(); ++j) entries.emplace_back(i, j);
  const auto keep = static_cast<size_t>(std::min(
      covered_rows(out),
      rows_to_keep(out.options, check_select_options(out.options), out.embedding_dim > 0)));
  const RankOrder order = RankOrder::of(out.options);
  auto better = [&](const std::pair<size_t, size_t>& a, const std::pair<size_t, size_t>& b) {
    const Partial &pa = partials[a.first], &pb = partials[b.first];
    return order.before(pa.scores[a.second], pa.indices[a.second], pb.scores[b.second],
                        pb.indices[b.second]);
  };
  std::partial_sort(entries.begin(), entries.begin() + std::min(keep, entries.size()),
                    entries.end(), better);
  entries.resize(std::min(keep, entries.size()));
  const auto dim = static_cast<size_t>(out.embedding_dim);
  for (const auto& [i, j] : entries) {
    out.indices.push_back(partials[i].indices[j]);
    out.scores.push_back(partials[i].scores[j]);
    const auto first = partials[i].embeddings.begin() + static_cast<std::ptrdiff_t>(j * dim);
    out.embeddings.insert(out.embeddings.end(), first, first + static_cast<std::ptrdiff_t>(dim));
  }

  std::vector<std::pair<int64_t, float>> explore;
  for (const Partial& p : partials)
    for (size_t j = 0; j < p.explore_rows.size(); ++j)
      explore.emplace_back(p.explore_rows[j], p.explore_scores[j]);
  std::sort(explore.begin(), explore.end());
  for (const auto& [row, score] : explore) {
    out.explore_rows.push_back(row);
    out.explore_scores.push_back(score);
  }
  return out;
}

Selection merge(Backend& backend, const CallContext& call, std::span<const Partial> partials,
                int64_t k) {
  const Partial all = engine::combine(partials);
  // The partials must cover the pool's rows [0, N) exactly once: a missing shard would change
  // the answer without a sound.
  std::vector<RowRange> ranges = all.shards;
  std::sort(ranges.begin(), ranges.end(),
            [](const RowRange& a, const RowRange& b) { return a.offset < b.offset; });
  int64_t end = 0;
  for (const RowRange& r : ranges) {
    if (r.offset > end)
      throw InvalidArgument("rows " + range_text(end, r.offset) +
                            " are in no partial: a shard is missing");
    end = r.offset + r.rows;
  }
  if (all.pool_rows > 0 && end != all.pool_rows)
    throw InvalidArgument("rows " + range_text(end, all.pool_rows) + " of the " +
                          str(all.pool_rows) + "-row pool are in no partial: a shard is missing");
  const int64_t n = end;
  if (k < 1 || k > n)
    throw InvalidArgument("k must be between 1 and the number of rows (" + str(n) + "), got " +
                          str(k));
  if (k > all.options.k)
    throw InvalidArgument("the partials were made with k = " + str(all.options.k) +
                          ": they hold too few rows for k = " + str(k) + " (make them with -k " +
                          str(k) + " or more)");
  SelectOptions options = all.options;
  options.k = k;
  const PickCounts picks = check_select_options(options);
  Ranked ranked{all.indices, all.scores};
  Selection sel;
  if (all.embedding_dim > 0 && picks.ranked > 0) {
    const int64_t m = std::min(n, candidates_wanted(options, picks.ranked));
    validate_kmeans(options.kmeans, picks.ranked, all.embedding_dim);
    ranked.indices.resize(m);  // check_partial made sure that there are enough
    ranked.scores.resize(m);
    const EmbeddingView candidates =
        EmbeddingView::matrix(all.embeddings.data(), DType::f32, m, all.embedding_dim);
    const KMeansResult km = backend.kmeans(candidates, nullptr, picks.ranked, options.kmeans, call);
    for (const Pick& p : cluster_picks(ranked, km.assignments, picks.ranked)) append_pick(sel, p);
  } else {
    add_rank_picks(ranked, picks.ranked, sel);
  }

  if (picks.explored > 0) {
    const std::vector<int64_t> rows = draw_unpicked(n, sel.indices, picks.explored, options.seed);
    std::vector<float> scores;
    for (int64_t row : rows) {
      const auto it = std::lower_bound(all.explore_rows.begin(), all.explore_rows.end(), row);
      if (it == all.explore_rows.end() || *it != row)
        throw InvalidInput("the partials hold no exploration score for row " + str(row) +
                           ": they were not made by this version of quarry for this pool");
      scores.push_back(all.explore_scores[it - all.explore_rows.begin()]);
    }
    for (const Pick& p : exploration_picks(rows, scores, RankOrder::of(options)))
      append_pick(sel, p);
  }
  return sel;
}

}  // namespace quarry::engine
