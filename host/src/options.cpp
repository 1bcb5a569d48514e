// The options schema (quarry/options.hpp): the one place an option's spellings, type, range and
// default are written.

#include "quarry/options.hpp"

#include <array>
#include <cstdint>
#include <limits>

#include "quarry/error.hpp"

namespace quarry {

namespace {

using T = OptionType;
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr uint64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kIntMin = std::numeric_limits<int>::min();
constexpr uint64_t kIntMax = std::numeric_limits<int>::max();
constexpr uint64_t kUint64Max = std::numeric_limits<uint64_t>::max();

// Columns: name (Python), flag (CLI), JSON key (partials), C++ field, type, min, max, default,
// applies to, help. Integer ranges are the C++ fields' (finer checks, such as k <= N, are the
// engine's); the help is the command line's.
const std::array<OptionInfo, 25> kSchema = {{
    {"measure", "--measure", "measure", "ScoreOptions::measure", T::text, 0, 0, "",
     "every pool (quarry measures lists them)", "how rows are scored"},
    {"layout", "--layout", "", "pool_from_array(layout)", T::text, 0, 0, "members-first",
     "3-D committee pools",
     "axis order of a 3-D pool: members-first [M, N, C] or rows-first [N, M, C]"},
    {"logits", "--logits", "logits", "ScoreOptions::logits", T::flag, 0, 0, "false",
     "measures with the logits column", "the pool holds logits: apply softmax(z / T) first"},
    {"temperature", "--temperature", "temperature", "ScoreOptions::temperature", T::number, 0, 0,
     "1", "with logits (finite, > 0)", "softmax temperature T for --logits"},
    {"classes", "--classes", "classes", "pool_from_array(classes)", T::integer, kInt64Min,
     kInt64Max, "0", "integer votes (>= 0; 0 = any vote >= 0)",
     "integer votes: the number of classes C; a vote >= C is an error (default: any vote >= 0 is "
     "a class)"},
    {"features", "--features", "", "ScoreOptions::features", T::array, 0, 0, "",
     "measures with the features column (egl), strategy badge",
     "FEAT.npy [N, D] float: penultimate-layer features of the pool rows, for --measure egl and "
     "--strategy badge"},
    {"lengths", "--lengths", "", "PoolView::lengths", T::array, 0, 0, "",
     "measures with the lengths column (token and top-K log-probabilities)",
     "LEN.npy [N] int32/int64: each row's number of valid steps (1..T) for token or top-K "
     "log-probabilities; steps past it are never read (default: all T)"},
    {"alpha", "--alpha", "", "ScoreOptions::eigenscore_alpha", T::number, 0, 0, "1e-3",
     "measures with the alpha column (eigenscore; finite, >= 0)",
     "eigenscore: alpha in ln eigenvalues(E J E^T + alpha I) (default 1e-3)"},
    {"threshold", "--threshold", "", "ScoreOptions::semantic_threshold", T::number, 0, 0, "0.9",
     "measures with the threshold column (semantic_sets, semantic_entropy; finite)",
     "semantic_sets, semantic_entropy: answers with cosine similarity >= this are joined (default "
     "0.9)"},
    {"k", "-k,--k", "k", "SelectOptions::k", T::integer, kInt64Min, kInt64Max, "",
     "select (1 <= k <= N; optional with a budget)",
     "number of rows to select (with --budget: the most picks of a batch strategy)"},
    {"embeddings", "--embeddings", "", "SelectOptions::embeddings", T::array, 0, 0, "",
     "strategy rank (k-means diversity), strategy coreset",
     "EMB.npy [N, D] float, one per pool file (after the pool files): spread the picks over "
     "k-means clusters of the top candidates, or the space to cover with --strategy coreset"},
    {"candidates", "--candidates", "candidates", "SelectOptions::candidates", T::integer, kInt64Min,
     kInt64Max, "0", "k-means diversity, badge, coreset, exact budget (>= 0; 0 = the default)",
     "top rows by score to choose among: k-means diversity (default 10*k), badge and coreset "
     "(default every row), --exact-budget (default 1000)"},
    {"kmeans_iters", "--kmeans-iters", "kmeans_iterations", "SelectOptions::kmeans.iterations",
     T::integer, kIntMin, kIntMax, "25", "k-means diversity (>= 1); quarry.kmeans(iterations=)",
     "k-means iterations at most"},
    {"explore", "--explore", "explore", "SelectOptions::explore", T::number, 0, 0, "0",
     "every strategy (0 <= explore < 1)",
     "fraction of the k picks (or of the --budget) drawn at random from the rest (0 <= EPS < 1)"},
    {"seed", "--seed", "seed", "SelectOptions::seed, SelectOptions::kmeans.seed", T::integer, 0,
     kUint64Max, "0", "k-means++, badge, exploration",
     "seed for k-means++, BADGE and exploration (0 to 2^64 - 1)"},
    {"strategy", "--strategy", "", "SelectOptions::strategy", T::text, 0, 0, "rank",
     "select (rank, badge, coreset)",
     "rank (by score; with --embeddings, k-means diversity), badge (needs --features) or coreset "
     "(needs --embeddings)"},
    {"tie_break", "--tie-break", "tie_break", "SelectOptions::tie_break", T::text, 0, 0, "row",
     "every strategy's ranking (row, random)",
     "equal scores: row (lowest row first) or random (seeded by --seed: a hash of the seed and "
     "the row, alike on every backend and sharding)"},
    {"labeled", "--labeled", "", "SelectOptions::labeled_rows, labeled_embeddings", T::array, 0, 0,
     "", "strategy coreset",
     "LAB.npy for --strategy coreset: integer row indices [L] of labeled rows, or float "
     "embeddings [L, D] of labeled rows"},
    {"costs", "--costs", "", "SelectOptions::costs", T::array, 0, 0, "", "budgets",
     "COST.npy [N]: each row's labeling cost (positive), with --budget"},
    {"budget", "--budget", "", "SelectOptions::budget", T::number, 0, 0, "", "with costs (> 0)",
     "total cost to spend instead of -k: picks maximise the total score within it (batch "
     "strategies: their picks in order while they fit)"},
    {"exact_budget", "--exact-budget", "", "SelectOptions::exact_budget", T::flag, 0, 0, "false",
     "budgets with integer costs",
     "with --budget: the exact 0/1 knapsack over the top --candidates rows (default 1000); "
     "integer costs"},
    {"row_offset", "--row-offset", "", "select_partial(row_offset)", T::integer, kInt64Min,
     kInt64Max, "", "partial results (>= 0)",
     "write this shard's partial result (.json) for `quarry merge`: its first row is row R of the "
     "whole pool"},
    {"pool_rows", "--pool-rows", "pool_rows", "select_partial(pool_rows)", T::integer, kInt64Min,
     kInt64Max, "0", "partial results (>= 0; needed with explore)",
     "with --row-offset: the whole pool's row count (needed with --explore)"},
    {"cuda_device", "", "", "Resources(device, cuda_device)", T::integer, kIntMin, kIntMax, "0",
     "the CUDA backend", "the CUDA device's ordinal"},
    {"threads", "--threads", "", "Resources::set_threads", T::integer, 0, 4096, "0",
     "the CPU backend (0 = automatic)",
     "CPU threads at most (0: the CPUs this process may use, from its affinity and cgroup quota, "
     "at most OMP_NUM_THREADS); small pools use fewer"},
}};

std::string range_text(const OptionInfo& o) {
  return std::to_string(o.min) + " to " + std::to_string(o.max);
}

}  // namespace

std::string_view to_string(OptionType type) {
  switch (type) {
    case OptionType::integer:
      return "integer";
    case OptionType::number:
      return "number";
    case OptionType::flag:
      return "flag";
    case OptionType::text:
      return "text";
    case OptionType::array:
      return "array";
  }
  return "unknown";
}

const std::vector<OptionInfo>& option_schema() {
  static const std::vector<OptionInfo> rows(kSchema.begin(), kSchema.end());
  return rows;
}

const OptionInfo& option_info(std::string_view name) {
  for (const OptionInfo& o : option_schema()) {
    if (o.name == name || (!o.json_key.empty() && o.json_key == name)) return o;
    // "-k,--k" names two flags.
    for (std::string_view flags = o.cli_flag; !flags.empty();) {
      const auto comma = flags.find(',');
      if (flags.substr(0, comma) == name) return o;
      flags = comma == std::string_view::npos ? std::string_view() : flags.substr(comma + 1);
    }
  }
  throw InvalidArgument("unknown option '" + std::string(name) + "'");
}

std::string integer_range_message(const OptionInfo& option, std::string_view spelling,
                                  std::string_view got) {
  return std::string(spelling) + ": '" + std::string(got) + "' is not an integer from " +
         range_text(option);
}

void check_integer_option(const OptionInfo& option, std::string_view spelling, int64_t value) {
  if (value < option.min || (value >= 0 && static_cast<uint64_t>(value) > option.max))
    throw InvalidArgument(integer_range_message(option, spelling, std::to_string(value)));
}

void check_unsigned_option(const OptionInfo& option, std::string_view spelling, uint64_t value) {
  if (value > option.max || (option.min > 0 && value < static_cast<uint64_t>(option.min)))
    throw InvalidArgument(integer_range_message(option, spelling, std::to_string(value)));
}

void check_measure_options(Measure measure, bool alpha, bool threshold, std::string_view prefix) {
  const MeasureInfo& m = measure_info(measure);
  auto refuse = [&](const char* option, bool MeasureInfo::*column) {
    throw InvalidArgument(
        std::string(prefix) + option + " applies to " +
        measure_names([column](const MeasureInfo& info) { return info.*column; }, " and ") +
        ", not to " + std::string(m.name));
  };
  if (alpha && !m.alpha) refuse("alpha", &MeasureInfo::alpha);
  if (threshold && !m.threshold) refuse("threshold", &MeasureInfo::threshold);
}

}  // namespace quarry
