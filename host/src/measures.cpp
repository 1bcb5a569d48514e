// The measure table (quarry/measures.hpp): the one place a measure's name, input, options and
// formula are written.

#include "quarry/measures.hpp"

#include <array>

#include "quarry/error.hpp"

namespace quarry {

namespace {

using M = Measure;
using K = PoolKind;

// Columns: measure, name, pool kind, family, logits, votes, lengths, alpha, threshold, features,
// shardable, formula. Formulas are the docs' (docs/measures.md, docs/llm.md; a test compares).
constexpr std::array<MeasureInfo, kMeasureCount> kTable = {{
    {M::least_confidence, "least_confidence", K::predictions, "uncertainty", true, false, false,
     false, false, false, true, "1 − p1"},
    {M::margin, "margin", K::predictions, "uncertainty", true, false, false, false, false, false,
     true, "1 − (p1 − p2)"},
    {M::ratio, "ratio", K::predictions, "uncertainty", true, false, false, false, false, false,
     true, "p2 / p1"},
    {M::entropy, "entropy", K::predictions, "uncertainty", true, false, false, false, false, false,
     true, "−Σc p·ln p"},
    {M::vote_entropy, "vote_entropy", K::committee, "disagreement", true, true, false, false, false,
     false, true, "−Σc v_c ln v_c"},
    {M::consensus_entropy, "consensus_entropy", K::committee, "disagreement", true, false, false,
     false, false, false, true, "H(p̄) = −Σc p̄_c ln p̄_c"},
    {M::kl_max, "kl_max", K::committee, "disagreement", true, false, false, false, false, false,
     true, "max_m KL(p_m ‖ p̄)"},
    {M::bald, "bald", K::committee, "disagreement", true, false, false, false, false, false, true,
     "H(p̄) − (1/M) Σm H(p_m)"},
    {M::variation_ratio, "variation_ratio", K::committee, "disagreement", true, true, false, false,
     false, false, true, "1 − (votes of the modal class) / (members that voted)"},
    {M::egl, "egl", K::predictions, "influence", true, false, false, false, false, true, false,
     "√(‖h‖² + 1) · Σy p_y ‖p − e_y‖"},
    {M::sequence_nll, "sequence_nll", K::token_logprobs, "token", false, false, true, false, false,
     false, false, "−Σ_{t<L} ℓ_t"},
    {M::perplexity, "perplexity", K::token_logprobs, "token", false, false, true, false, false,
     false, false, "−(1/L) Σ_{t<L} ℓ_t"},
    {M::min_token_prob, "min_token_prob", K::token_logprobs, "token", false, false, true, false,
     false, false, false, "−min_{t<L} ℓ_t"},
    {M::mean_token_entropy, "mean_token_entropy", K::top_logprobs, "top_k", false, false, true,
     false, false, false, false, "mean over the row's L steps of the step entropy −Σ p ln p"},
    {M::max_token_entropy, "max_token_entropy", K::top_logprobs, "top_k", false, false, true, false,
     false, false, false, "the largest step entropy"},
    {M::mean_token_margin, "mean_token_margin", K::top_logprobs, "top_k", false, false, true, false,
     false, false, false, "mean over the L steps of 1 − (p1 − p2)"},
    {M::sample_dispersion, "sample_dispersion", K::samples, "samples", false, false, false, false,
     false, false, false, "1 − mean_{i<j} G_ij"},
    {M::eigenscore, "eigenscore", K::samples, "samples", false, false, false, true, false, false,
     false, "(1/S) Σ_i ln λ_i(E J Eᵀ + α I_S)"},
    {M::semantic_sets, "semantic_sets", K::samples, "samples", false, false, false, false, true,
     false, false, "number of connected components of the graph with an edge where G_ij ≥ τ"},
    {M::semantic_entropy, "semantic_entropy", K::samples, "samples", false, false, false, false,
     true, false, false, "−Σ_c (|c|/S) ln(|c|/S)"},
}};

// The table and the enum agree in count (the array's size) and order (row i is measure i).
constexpr bool in_enum_order() {
  for (std::size_t i = 0; i < kTable.size(); ++i)
    if (static_cast<std::size_t>(kTable[i].measure) != i) return false;
  return true;
}
static_assert(in_enum_order(), "the measure table must list the measures in Measure order");
static_assert(kTable.back().measure == Measure::semantic_entropy,
              "a new measure needs a row in the table and a new kMeasureCount");

const std::vector<MeasureInfo>& table() {
  static const std::vector<MeasureInfo> rows(kTable.begin(), kTable.end());
  return rows;
}

}  // namespace

const std::vector<MeasureInfo>& measures() {
  return table();
}

const MeasureInfo& measure_info(Measure measure) {
  const auto i = static_cast<std::size_t>(measure);
  if (i >= kTable.size()) throw InvalidArgument("unknown measure " + std::to_string(i));
  return table()[i];
}

bool is_llm_measure(Measure measure) {
  const PoolKind kind = measure_info(measure).pool_kind;
  return kind == PoolKind::token_logprobs || kind == PoolKind::top_logprobs ||
         kind == PoolKind::samples;
}

std::string llm_measures_by_input(std::string_view samples_note) {
  auto of_kind = [](PoolKind kind) {
    return measure_names([kind](const MeasureInfo& m) { return m.pool_kind == kind; });
  };
  return "token log-probabilities [N, T]: " + of_kind(PoolKind::token_logprobs) +
         "; top-K log-probabilities [N, T, K]: " + of_kind(PoolKind::top_logprobs) +
         "; sampled answers [N, S, D]" + std::string(samples_note) + ": " +
         of_kind(PoolKind::samples);
}

}  // namespace quarry
