#pragma once
// The measure table: for every measure, what it reads, which options it takes, whether a partial
// result can carry it and its formula. The command line's help and option checks, the Python
// package's checks and docstrings, the shard refusals and the docs' tables are derived from it
// or checked against it (tests/test_tables.cpp, tests/python/test_tables.py).

#include <string>
#include <string_view>
#include <vector>

#include "quarry/types.hpp"

namespace quarry {

/// One row of the measure table.
struct MeasureInfo {
  Measure measure;
  std::string_view name;  ///< as parse_measure() reads it
  PoolKind pool_kind;     ///< what it reads
  /// "uncertainty" (one model), "disagreement" (committees), "influence" (egl), "token",
  /// "top_k", "samples" (LLM outputs).
  std::string_view family;
  bool logits;     ///< reads logits too (--logits, with --temperature)
  bool votes;      ///< reads integer votes too
  bool lengths;    ///< takes row lengths (--lengths)
  bool alpha;      ///< takes ScoreOptions::eigenscore_alpha (--alpha)
  bool threshold;  ///< takes ScoreOptions::semantic_threshold (--threshold)
  bool features;   ///< needs ScoreOptions::features (--features)
  /// Sharded selection (select_partial / merge) can carry it.
  bool shardable;
  /// The score of a row, in one line (docs/measures.md and docs/llm.md give the details).
  std::string_view formula;
};

/// Every measure, in the order of the Measure enum.
const std::vector<MeasureInfo>& measures();
/// The row of `measure`.
const MeasureInfo& measure_info(Measure measure);
/// True for the measures of LLM outputs (token or top-K log-probabilities, sampled answers).
bool is_llm_measure(Measure measure);
/// "token log-probabilities [N, T]: sequence_nll, perplexity, min_token_prob; top-K ...; sampled
/// answers [N, S, D]: ...": the LLM measures by what they read, for messages and help texts.
/// `samples_note` follows the sampled answers' shape (the command line's " (--samples)").
std::string llm_measures_by_input(std::string_view samples_note = "");
/// The names of the measures that satisfy `pick`, joined with ", " (the last with `last_joint`,
/// e.g. " and "), in table order.
template <typename Pick>
std::string measure_names(Pick pick, std::string_view last_joint = ", ") {
  std::vector<std::string_view> names;
  for (const MeasureInfo& m : measures())
    if (pick(m)) names.push_back(m.name);
  std::string text;
  for (std::size_t i = 0; i < names.size(); ++i)
    text += std::string(i == 0                  ? ""
                        : i + 1 == names.size() ? last_joint
                                                : ", ") +
            std::string(names[i]);
  return text;
}

}  // namespace quarry
