#include "engine/pipeline.hpp"

#include <cmath>
#include <string>

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
  if (options.logits && !(std::isfinite(options.temperature) && options.temperature > 0.0f))
    throw InvalidArgument("temperature must be finite and > 0, got " +
                          std::to_string(options.temperature));
}

void throw_bad_row(const BadRow& bad) {
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

void score(Backend& backend, const PoolView& pool, const ScoreOptions& options, float* scores_out) {
  validate(pool, options);
  if (scores_out == nullptr) throw InvalidArgument("scores output is a null pointer");
  backend.score(ScoreProblem{pool, options}, scores_out);
}

Selection select(Backend& backend, const PoolView& pool, const SelectOptions& options) {
  validate(pool, options.scoring);
  if (options.k < 1 || options.k > pool.rows)
    throw InvalidArgument("k must be between 1 and the number of rows (" +
                          std::to_string(pool.rows) + "), got " + std::to_string(options.k));
  Ranked ranked = backend.top(ScoreProblem{pool, options.scoring}, options.k);
  Selection selection;
  selection.indices = std::move(ranked.indices);
  selection.scores = std::move(ranked.scores);
  selection.reasons.assign(selection.indices.size(), PickReason::rank);
  return selection;
}

}  // namespace quarry::engine
