// The `quarry` command line: select | score | merge | info. Exit codes: 0 success, 2 bad usage or
// bad input, 1 anything else. Errors are one line on stderr; no output file is left behind.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "npy.hpp"
#include "quarry/quarry.hpp"
#include "signals.hpp"

namespace {

using namespace quarry;

// An option's default as the options schema gives it.
std::string schema_default(const char* name) {
  return std::string(option_info(name).default_value);
}

struct CommonOptions {
  std::vector<std::string> pool_paths;  // several: one pool, rows in file order
  std::string measure;                  // empty: the input's natural measure
  bool logits = false;
  float temperature = 1.0f;
  std::string layout = schema_default("layout");
  std::string device = "auto";
  std::string output = "-";
  std::string memory_budget;                        // empty: the backend's default
  std::string threads = schema_default("threads");  // 0: automatic
  bool progress = false;
  bool quiet = false;
  // Votes: the number of classes, 0 = any vote >= 0 (parse_integer).
  std::string classes = schema_default("classes");
  std::string features_path;        // penultimate-layer features [N, D] (egl, BADGE)
  std::string lengths_path;         // token or top-K log-probabilities: each row's length
  bool samples = false;             // a 3-D array holds [N, S, D] sampled answers' embeddings
  std::optional<double> alpha;      // eigenscore
  std::optional<double> threshold;  // semantic_sets, semantic_entropy
};

// CLI11 saturates integers out of range (--seed -1 and --seed 2^64 both ran as 2^64 - 1), so
// integer options are taken as text and read here: anything but an integer in the range the
// options schema gives (the C++ field's) is refused.
template <typename T>
T parse_integer(const char* flag, const std::string& text) {
  const OptionInfo& option = option_info(flag);
  T value{};
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (end - begin > 1 && begin[0] == '+' && begin[1] != '-') ++begin;  // from_chars takes no '+'
  const auto [stop, error] = std::from_chars(begin, end, value);
  if (error != std::errc() || stop != end || begin == end)
    throw InvalidArgument(integer_range_message(option, flag, text));
  if constexpr (std::is_signed_v<T>)
    check_integer_option(option, flag, value);
  else
    check_unsigned_option(option, flag, value);
  return value;
}

// The flag's name starts the library's message, so the user sees which option was wrong.
std::size_t parse_size(const std::string& text) {
  try {
    return parse_memory_size(text);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(std::string("--memory-budget: ") + e.what());
  }
}

// Rows done, rows/s and time left on one stderr line, redrawn at most 4 times a second. Shown when
// stderr is a terminal and the job has run a second, or always with --progress.
class ProgressLine {
 public:
  explicit ProgressLine(bool always) : always_(always) {}
  ~ProgressLine() {
    if (!shown_) return;
    std::fputc('\n', stderr);
    io::set_progress_line_open(false);
  }
  void operator()(int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const bool finished = done >= total;
    if (!always_ && elapsed < 1.0) return;
    if (!finished && shown_ && now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    const double left = rate > 0 ? static_cast<double>(total - done) / rate : 0.0;
    std::fprintf(stderr, "\rquarry: %lld / %lld rows (%.1f%%), %.3g rows/s, %.0f s left   ",
                 static_cast<long long>(done), static_cast<long long>(total),
                 100.0 * static_cast<double>(done) / static_cast<double>(total), rate, left);
    std::fflush(stderr);
    shown_ = true;
    io::set_progress_line_open(true);
  }

 private:
  bool always_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

// The Resources a command runs on, with the budget and progress the flags ask for.
Resources make_resources(const CommonOptions& opt, std::unique_ptr<ProgressLine>& progress) {
  Resources resources(parse_device(opt.device));
  if (!opt.memory_budget.empty()) resources.set_memory_budget(parse_size(opt.memory_budget));
  resources.set_threads(parse_integer<int>("--threads", opt.threads));
  if (!opt.quiet && (opt.progress || isatty(STDERR_FILENO))) {
    progress = std::make_unique<ProgressLine>(opt.progress);
    ProgressLine* line = progress.get();  // outlives the calls: the caller holds it
    resources.set_progress([line](int64_t done, int64_t total) { (*line)(done, total); });
  }
  return resources;
}

enum class OutputKind { stdout_lines, npy, json };

OutputKind output_kind(const std::string& output) {
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return output.size() >= s.size() && output.compare(output.size() - s.size(), s.size(), s) == 0;
  };
  if (output == "-") return OutputKind::stdout_lines;
  if (ends_with(".npy")) return OutputKind::npy;
  if (ends_with(".json")) return OutputKind::json;
  throw InvalidArgument("--output must end in .npy or .json, or be - for stdout; got '" + output +
                        "'");
}

// Writes to stdout and flushes: a write error (a full disk, /dev/full, a closed stdout) fails the
// command rather than losing its output silently. (A closed pipe, as `| head` makes, still ends
// the program by SIGPIPE, as usual.)
bool g_wrote_stdout = false;
void write_stdout(const std::string& text) {
  g_wrote_stdout = true;
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
    throw Error(std::string("cannot write to standard output: ") + std::strerror(errno));
}

// Refuses an --output that names one of the inputs (the same file, by device and inode: also
// through another name or a link), which the results would replace.
void check_output_is_not_an_input(const std::string& output,
                                  const std::vector<std::string>& inputs) {
  struct stat out {};
  if (output == "-" || ::stat(output.c_str(), &out) != 0) return;
  for (const std::string& input : inputs) {
    struct stat in {};
    if (!input.empty() && ::stat(input.c_str(), &in) == 0 && in.st_dev == out.st_dev &&
        in.st_ino == out.st_ino)
      throw InvalidArgument("--output " + output + " is the input file " + input +
                            "; the results would replace it");
  }
}

// Scores for JSON, which has no infinities: a row nobody voted on (-inf) is the string "-inf".
nlohmann::json json_scores(const std::vector<float>& scores) {
  nlohmann::json out = nlohmann::json::array();
  for (float s : scores)
    out.push_back(std::isinf(s) ? nlohmann::json(s < 0 ? "-inf" : "inf") : nlohmann::json(s));
  return out;
}

// The pool files, their views (rows in file order) and the measure.
struct Pool {
  std::vector<io::NpyArray> arrays;
  std::vector<PoolView> views;
  Measure measure;
  std::optional<io::NpyArray> lengths;
};

// Files whose rows make up one pool, in order: an error about pool row r names the file that
// holds it.
struct FileRows {
  std::vector<std::string> paths;
  std::vector<int64_t> ends;  // one past each file's last pool row

  void add(const std::string& path, int64_t rows) {
    paths.push_back(path);
    ends.push_back((ends.empty() ? 0 : ends.back()) + rows);
  }
  // "pool.npy" for one file; "b.npy (pool rows [200, 400))" when there are several.
  std::string file_of(int64_t row) const {
    if (paths.size() <= 1) return paths.empty() ? "" : paths[0];
    const auto at = std::upper_bound(ends.begin(), ends.end(), row) - ends.begin();
    const size_t i = std::min<size_t>(static_cast<size_t>(at), paths.size() - 1);
    return paths[i] + " (pool rows [" + std::to_string(i > 0 ? ends[i - 1] : 0) + ", " +
           std::to_string(ends[i]) + "))";
  }
};
FileRows pool_files, embedding_files;

std::string joined(const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& p : paths) text += (text.empty() ? "" : ", ") + p;
  return text;
}

const std::string kLlmMeasures = llm_measures_by_input(" (--samples)");

// --measure's help: the measures of each kind of pool, from the measure table, its default first.
std::string measure_help() {
  auto kind_list = [](Measure first, auto pick) {
    std::string text(to_string(first));
    text += " (default)";
    for (const MeasureInfo& m : measures())
      if (m.measure != first && pick(m))
        text += ", " + std::string(m.name) + (m.features ? " (with --features)" : "");
    return text;
  };
  return "[N, C]: " +
         kind_list(Measure::entropy,
                   [](const MeasureInfo& m) { return m.pool_kind == PoolKind::predictions; }) +
         "; committees: " +
         kind_list(Measure::consensus_entropy,
                   [](const MeasureInfo& m) { return m.pool_kind == PoolKind::committee; }) +
         "; votes: " +
         kind_list(Measure::vote_entropy, [](const MeasureInfo& m) { return m.votes; }) +
         "; LLM outputs (no default): " + kLlmMeasures;
}

// Interprets one file's shape and dtype as a pool, and picks the measure.
PoolView open_pool_file(const CommonOptions& opt, const std::string& path, io::NpyArray& array,
                        Measure& measure_out, const ArrayView* lengths = nullptr) {
  const bool integer = array.dtype() == DType::i32 || array.dtype() == DType::i64;
  if (opt.layout != "members-first" && opt.layout != "rows-first")
    throw InvalidArgument("--layout must be members-first or rows-first, got '" + opt.layout + "'");
  const auto class_count = parse_integer<int64_t>("--classes", opt.classes);
  if (class_count < 0 || (class_count > 0 && !integer))
    throw InvalidArgument("--classes takes a positive count and applies only to integer votes");
  // LLM outputs have no default measure: they answer different questions. --samples only
  // declares the kind, and must agree with the measure; pool_from_array checks the rest.
  if (opt.measure.empty() && (opt.samples || !opt.lengths_path.empty()))
    throw InvalidArgument(std::string(opt.samples ? "--samples" : "--lengths") +
                          " needs --measure: " + kLlmMeasures);
  std::optional<Measure> measure;
  if (!opt.measure.empty()) measure = parse_measure(opt.measure);
  if (opt.samples && pool_kind(*measure) != PoolKind::samples)
    throw InvalidArgument("--samples marks [N, S, D] sampled answers, but " +
                          std::string(to_string(*measure)) + " does not read them");
  const PoolSpec spec =
      pool_from_array(ArrayView::contiguous(array.data(), array.dtype(), array.shape()), measure,
                      opt.layout == "rows-first" ? Layout::rows_first : Layout::members_first,
                      class_count, path, lengths, opt.lengths_path);
  measure_out = spec.measure;
  return spec.view;
}

Pool open_pool(const CommonOptions& opt) {
  const bool llm_measure = !opt.measure.empty() && is_llm_measure(parse_measure(opt.measure));
  if (llm_measure || opt.samples || !opt.lengths_path.empty()) {
    if (opt.pool_paths.size() != 1)
      throw InvalidArgument(
          "LLM outputs (--lengths, --samples, their measures) are read from "
          "one pool file, not several");
    const std::string& path = opt.pool_paths[0];
    Pool pool;
    pool.arrays.push_back(io::NpyArray::open(path));
    // Input files are memory-mapped: if one shrinks while it is read (truncated, or rewritten by
    // another program), touching a page past its new end raises SIGBUS. That is bad input, exit
    // code 2, and leaves no output (outputs are written only after the work is done).
    io::report_truncated_input(path, 2);
    std::optional<ArrayView> lengths;
    if (!opt.lengths_path.empty()) {
      pool.lengths = io::NpyArray::open(opt.lengths_path);
      io::report_truncated_input(path + " or " + opt.lengths_path, 2);
      lengths =
          ArrayView::contiguous(pool.lengths->data(), pool.lengths->dtype(), pool.lengths->shape());
    }
    pool.views.push_back(
        open_pool_file(opt, path, pool.arrays[0], pool.measure, lengths ? &*lengths : nullptr));
    pool_files.add(path, pool.views[0].rows);
    return pool;
  }
  Pool pool;
  for (const std::string& path : opt.pool_paths) pool.arrays.push_back(io::NpyArray::open(path));
  io::report_truncated_input(joined(opt.pool_paths), 2);
  for (size_t i = 0; i < pool.arrays.size(); ++i) {
    const std::string& path = opt.pool_paths[i];
    pool.views.push_back(open_pool_file(opt, path, pool.arrays[i], pool.measure));
    const PoolView &first = pool.views[0], &view = pool.views[i];
    const io::NpyArray &first_array = pool.arrays[0], &array = pool.arrays[i];
    if (array.dtype() != first_array.dtype() ||
        array.shape().size() != first_array.shape().size() || view.members != first.members ||
        view.classes != first.classes)
      throw InvalidInput(path + " is " + std::string(to_string(array.dtype())) + " of shape " +
                         array.shape_string() + " but " + opt.pool_paths[0] + " is " +
                         std::string(to_string(first_array.dtype())) + " of shape " +
                         first_array.shape_string() +
                         ": pool files must agree in everything but the row count");
    pool_files.add(path, view.rows);
  }
  return pool;
}

ArrayView array_view(const io::NpyArray& array) {
  return ArrayView::contiguous(array.data(), array.dtype(), array.shape());
}

// A 2-D float array [rows, D] (embeddings, features) as a view.
EmbeddingView matrix_view(const io::NpyArray& array, const std::string& path,
                          const std::string& what) {
  return embeddings_from_array(array_view(array), path, what);
}

// Opens the input files besides the pool; each stays mapped while the views point into it.
struct SideInputs {
  std::vector<io::NpyArray> arrays;
  std::string files;  // named when a file shrinks while it is read

  explicit SideInputs(const std::string& pool_path) : files(pool_path) {}
  const io::NpyArray& open(const std::string& path) {
    arrays.push_back(io::NpyArray::open(path));
    files += " or " + path;
    io::report_truncated_input(files, 2);
    return arrays.back();
  }
};

ScoreOptions scoring_options(const CommonOptions& opt, Measure measure, SideInputs& inputs) {
  ScoreOptions s;
  s.measure = measure;
  s.logits = opt.logits;
  s.temperature = opt.temperature;
  if (!opt.features_path.empty())
    s.features = matrix_view(inputs.open(opt.features_path), opt.features_path, "features");
  check_measure_options(measure, opt.alpha.has_value(), opt.threshold.has_value(), "--");
  if (opt.alpha) s.eigenscore_alpha = *opt.alpha;
  if (opt.threshold) s.semantic_threshold = *opt.threshold;
  return s;
}

// An option as the options schema describes it: its flag and its help.
template <typename T>
CLI::Option* add_schema_option(CLI::App* cmd, const char* name, T& target) {
  const OptionInfo& o = option_info(name);
  return cmd->add_option(std::string(o.cli_flag), target, std::string(o.help));
}
CLI::Option* add_schema_flag(CLI::App* cmd, const char* name, bool& target) {
  const OptionInfo& o = option_info(name);
  return cmd->add_flag(std::string(o.cli_flag), target, std::string(o.help));
}

void add_common(CLI::App* cmd, CommonOptions& opt) {
  cmd->add_option("pool", opt.pool_paths,
                  "pool .npy: [N, C] one model's probabilities or logits, [M, N, C] a "
                  "committee's, [M, N] integer votes; or LLM outputs, read as --measure says: "
                  "[N, T] token log-probabilities, [N, T, K] top-K log-probabilities, [N, S, D] "
                  "sampled answers' embeddings. Several files are one pool, rows in file order")
      ->required();
  cmd->add_option("--measure", opt.measure, measure_help() + " (`quarry measures` lists them)");
  add_schema_option(cmd, "layout", opt.layout)->capture_default_str();
  add_schema_flag(cmd, "logits", opt.logits);
  add_schema_option(cmd, "temperature", opt.temperature)->capture_default_str();
  cmd->add_option("--device", opt.device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_option("--output,-o", opt.output, "OUT.npy, OUT.json, or - for stdout")
      ->capture_default_str();
  cmd->add_option("--memory-budget", opt.memory_budget,
                  "working memory (device memory on CUDA) at most SIZE bytes, e.g. 512M or 8G; "
                  "larger pools are scored in chunks (default: 80% of free GPU memory; no bound "
                  "on the CPU)");
  add_schema_option(cmd, "threads", opt.threads)->type_name("INT")->capture_default_str();
  cmd->add_flag("--progress", opt.progress,
                "show progress on stderr even when it is not a terminal");
  cmd->add_flag("--quiet", opt.quiet, "never show progress");
  add_schema_option(cmd, "classes", opt.classes)->type_name("INT");
  add_schema_option(cmd, "features", opt.features_path);
  add_schema_option(cmd, "lengths", opt.lengths_path);
  cmd->add_flag("--samples", opt.samples,
                "the 3-D pool holds [N, S, D] embeddings of S sampled answers per row");
  add_schema_option(cmd, "alpha", opt.alpha);
  add_schema_option(cmd, "threshold", opt.threshold);
}

// Integers as text: see parse_integer.
struct SelectFlags {
  std::string k;  // empty: not given (a budget instead)
  std::vector<std::string> embeddings_paths;
  std::string candidates = schema_default("candidates");
  std::string kmeans_iterations = schema_default("kmeans_iters");
  double explore = 0.0;
  std::string seed = schema_default("seed");
  std::string row_offset = "0";
  std::string pool_rows = schema_default("pool_rows");
  bool partial = false;  // --row-offset given: write this shard's partial result
  std::string strategy = schema_default("strategy");
  std::string tie_break = schema_default("tie_break");
  std::string labeled_path;
  std::string costs_path;
  double budget = 0.0;
  bool exact_budget = false;
};

// The picks as the --output asks: one index per line, .npy indices, or .json with scores and
// reasons.
void write_selection(const std::string& output, const Selection& sel, Measure measure,
                     const std::string& backend, bool with_clusters,
                     std::optional<double> budget = std::nullopt) {
  switch (output_kind(output)) {
    case OutputKind::stdout_lines: {
      std::string text;
      for (int64_t i : sel.indices) text += std::to_string(i) + '\n';
      write_stdout(text);
      break;
    }
    case OutputKind::npy:
      io::save_npy(output, sel.indices.data(), "<i8", {static_cast<int64_t>(sel.indices.size())});
      break;
    case OutputKind::json: {
      nlohmann::json j;
      j["measure"] = to_string(measure);
      j["backend"] = backend;
      j["indices"] = sel.indices;
      j["scores"] = json_scores(sel.scores);
      std::vector<std::string> reasons;
      for (PickReason r : sel.reasons) reasons.emplace_back(to_string(r));
      j["reasons"] = reasons;
      if (with_clusters) j["clusters"] = sel.clusters;
      if (budget) {
        j["cost_spent"] = sel.cost_spent;
        j["budget"] = *budget;
      }
      io::write_file_atomically(output, j.dump(1) + "\n");
      break;
    }
  }
}

void run_select(const CommonOptions& opt, const SelectFlags& flags) {
  std::vector<std::string> input_paths = opt.pool_paths;
  input_paths.insert(input_paths.end(), flags.embeddings_paths.begin(),
                     flags.embeddings_paths.end());
  input_paths.insert(input_paths.end(),
                     {opt.features_path, opt.lengths_path, flags.labeled_path, flags.costs_path});
  check_output_is_not_an_input(opt.output, input_paths);
  if (flags.partial && output_kind(opt.output) == OutputKind::npy)
    throw InvalidArgument(
        "a partial result (--row-offset) is written as .json, or to stdout "
        "with -; got '" +
        opt.output + "'");
  if (!flags.partial) output_kind(opt.output);  // checks the name before any work
  const auto row_offset = parse_integer<int64_t>("--row-offset", flags.row_offset);
  const auto pool_rows = parse_integer<int64_t>("--pool-rows", flags.pool_rows);
  if (pool_rows != 0 && !flags.partial)
    throw InvalidArgument("--pool-rows applies only to a partial result, with --row-offset");
  Pool pool = open_pool(opt);
  SideInputs inputs(joined(opt.pool_paths));
  SelectOptions select_options;
  select_options.scoring = scoring_options(opt, pool.measure, inputs);
  select_options.k = flags.k.empty() ? 0 : parse_integer<int64_t>("-k", flags.k);
  select_options.candidates = parse_integer<int64_t>("--candidates", flags.candidates);
  select_options.kmeans.iterations = parse_integer<int>("--kmeans-iters", flags.kmeans_iterations);
  select_options.seed = parse_integer<uint64_t>("--seed", flags.seed);
  select_options.explore = flags.explore;
  select_options.kmeans.seed = select_options.seed;
  select_options.strategy = parse_strategy(flags.strategy);
  select_options.tie_break = parse_tie_break(flags.tie_break);
  std::vector<io::NpyArray> embeddings;
  std::vector<EmbeddingView> embedding_views;
  if (!flags.embeddings_paths.empty()) {
    if (flags.embeddings_paths.size() != opt.pool_paths.size())
      throw InvalidArgument("--embeddings: " + std::to_string(flags.embeddings_paths.size()) +
                            " file(s) for " + std::to_string(opt.pool_paths.size()) +
                            " pool file(s); give one embeddings file per pool file, in the same "
                            "order, after the pool files");
    for (const std::string& path : flags.embeddings_paths)
      embeddings.push_back(io::NpyArray::open(path));
    io::report_truncated_input(joined(opt.pool_paths) + " or " + joined(flags.embeddings_paths), 2);
    for (size_t i = 0; i < embeddings.size(); ++i) {
      const std::string& path = flags.embeddings_paths[i];
      embedding_views.push_back(embeddings_from_array(
          ArrayView::contiguous(embeddings[i].data(), embeddings[i].dtype(), embeddings[i].shape()),
          path));
      embedding_files.add(path, embedding_views.back().rows);
    }
  }
  if (!flags.labeled_path.empty())
    labeled_from_array(array_view(inputs.open(flags.labeled_path)), select_options,
                       flags.labeled_path);
  std::vector<double> costs;
  if (!flags.costs_path.empty())
    costs = costs_from_array(array_view(inputs.open(flags.costs_path)), flags.costs_path);
  select_options.costs = costs.empty() ? nullptr : costs.data();
  select_options.cost_count = static_cast<int64_t>(costs.size());
  select_options.budget = flags.budget;
  select_options.exact_budget = flags.exact_budget;
  const bool budgeted = !costs.empty() || flags.budget != 0 || flags.exact_budget;
  if (flags.k.empty() && !budgeted)
    throw InvalidArgument("select needs -k K, or --costs COST.npy with --budget B");
  std::unique_ptr<ProgressLine> progress;
  Resources resources = make_resources(opt, progress);
  if (flags.partial) {
    const Partial partial = select_partial(resources, pool.views, select_options, embedding_views,
                                           row_offset, pool_rows);
    progress.reset();
    const std::string text = to_json(partial);
    if (opt.output == "-")
      write_stdout(text);
    else
      io::write_file_atomically(opt.output, text);
    return;
  }
  Selection sel;
  if (pool.views.size() == 1) {
    if (!embedding_views.empty()) select_options.embeddings = embedding_views[0];
    sel = select(resources, pool.views[0], select_options);
  } else {
    sel = select(resources, pool.views, select_options, embedding_views);
  }
  progress.reset();  // ends the progress line before any output
  write_selection(opt.output, sel, pool.measure, resources.describe(),
                  !embedding_views.empty() && select_options.strategy == Strategy::rank,
                  budgeted ? std::optional<double>(flags.budget) : std::nullopt);
  if (budgeted && output_kind(opt.output) != OutputKind::json)
    std::fprintf(stderr, "quarry: %zu rows costing %.17g of the budget %.17g\n", sel.indices.size(),
                 sel.cost_spent, flags.budget);
}

void run_score(const CommonOptions& opt) {
  const OutputKind kind = output_kind(opt.output);
  std::vector<std::string> input_paths = opt.pool_paths;
  input_paths.insert(input_paths.end(), {opt.features_path, opt.lengths_path});
  check_output_is_not_an_input(opt.output, input_paths);
  Pool pool = open_pool(opt);
  SideInputs inputs(joined(opt.pool_paths));
  const ScoreOptions options = scoring_options(opt, pool.measure, inputs);
  std::unique_ptr<ProgressLine> progress;
  Resources resources = make_resources(opt, progress);
  const std::vector<float> scores = pool.views.size() == 1
                                        ? score(resources, pool.views[0], options)
                                        : score(resources, pool.views, options);
  progress.reset();  // ends the progress line before any output
  switch (kind) {
    case OutputKind::stdout_lines: {
      std::string text;
      char buf[32];
      for (float s : scores) {
        std::snprintf(buf, sizeof buf, "%.9g\n", s);
        text += buf;
      }
      write_stdout(text);
      break;
    }
    case OutputKind::npy:
      io::save_npy(opt.output, scores.data(), "<f4", {static_cast<int64_t>(scores.size())});
      break;
    case OutputKind::json: {
      nlohmann::json j;
      j["measure"] = to_string(pool.measure);
      j["backend"] = resources.describe();
      j["scores"] = json_scores(scores);
      io::write_file_atomically(opt.output, j.dump(1) + "\n");
      break;
    }
  }
}

struct MergeFlags {
  std::vector<std::string> partial_paths;
  std::string k;
  std::string device = "auto";
  std::string threads = schema_default("threads");
  std::string output = "-";
};

// The merge's messages say "partial 2"; the user knows it as the third file.
std::string name_partials(const std::string& message, const std::vector<std::string>& paths) {
  std::string out;
  const std::string word = "partial ";
  size_t at = 0;
  for (size_t hit; (hit = message.find(word, at)) != std::string::npos;) {
    size_t end = hit + word.size();
    while (end < message.size() && std::isdigit(static_cast<unsigned char>(message[end]))) ++end;
    out += message.substr(at, end - at);
    if (end > hit + word.size()) {
      const size_t i = std::stoul(message.substr(hit + word.size(), end - hit - word.size()));
      if (i < paths.size()) out += " (" + paths[i] + ")";
    }
    at = end;
  }
  return out + message.substr(at);
}

void run_merge(const MergeFlags& flags) {
  output_kind(flags.output);  // checks the name before any work
  check_output_is_not_an_input(flags.output, flags.partial_paths);
  const auto k = parse_integer<int64_t>("-k", flags.k);
  std::vector<Partial> partials;
  std::string backends;
  for (const std::string& path : flags.partial_paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InvalidInput(path + ": cannot open the file");
    std::stringstream text;
    text << in.rdbuf();
    try {
      partials.push_back(partial_from_json(text.str()));
    } catch (const InvalidInput& e) {
      throw InvalidInput(path + ": " + e.what());
    }
    if (backends.find(partials.back().backend) == std::string::npos)
      backends += (backends.empty() ? "" : ", ") + partials.back().backend;
  }
  Resources resources(parse_device(flags.device));
  resources.set_threads(parse_integer<int>("--threads", flags.threads));
  Selection sel;
  try {
    sel = merge(resources, partials, k);
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(name_partials(e.what(), flags.partial_paths));
  } catch (const InvalidInput& e) {
    throw InvalidInput(name_partials(e.what(), flags.partial_paths));
  }
  write_selection(flags.output, sel, partials[0].options.scoring.measure, backends,
                  partials[0].embedding_dim > 0);
}

// `quarry measures`: the measure table, one measure a line.
void run_measures() {
  std::string text =
      "measure             reads           family        takes                 "
      "shards  score\n";
  for (const MeasureInfo& m : measures()) {
    std::string takes;
    auto add = [&](bool on, const char* word) {
      if (on) takes += (takes.empty() ? "" : ",") + std::string(word);
    };
    add(m.logits, "logits");
    add(m.votes, "votes");
    add(m.lengths, "lengths");
    add(m.alpha, "alpha");
    add(m.threshold, "threshold");
    add(m.features, "features");
    char line[160];
    std::snprintf(line, sizeof line, "%-19s %-15s %-13s %-21s %-7s ", std::string(m.name).c_str(),
                  std::string(to_string(m.pool_kind)).c_str(), std::string(m.family).c_str(),
                  takes.empty() ? "-" : takes.c_str(), m.shardable ? "yes" : "no");
    text += line + std::string(m.formula) + "\n";
  }
  write_stdout(text);
}

void run_info() {
  std::string text = "quarry " + version() + "\n";
  const CudaAvailability cuda = cuda_availability();
  text += built_with_cuda() ? "backends: cpu, cuda (" + cuda.plugin_path + ")\n"
                            : std::string("backends: cpu (built without CUDA)\n");
  if (cuda.status == CudaStatus::available)
    text += "cuda: available (driver CUDA " + std::to_string(cuda.driver_version / 1000) + "." +
            std::to_string(cuda.driver_version % 1000 / 10) + ")\n";
  else
    text +=
        "cuda: unavailable: " + std::string(to_string(cuda.status)) + " (" + cuda.detail + ")\n";
  const auto gpus = cuda_device_descriptions();
  text += gpus.empty() ? "gpus: none found\n" : "gpus:\n";
  for (const auto& g : gpus) text += "  " + g + "\n";
  text += "cpu: " + cpu_description() + "\n";
  write_stdout(text);
}

}  // namespace

int main(int argc, char** argv) {
  // A signal that ends the program removes a partly written output file; a file size limit
  // (ulimit -f) fails the write with an error instead of ending the program.
  quarry::io::remove_partial_output_on({SIGTERM, SIGINT, SIGHUP, SIGQUIT});
  signal(SIGXFSZ, SIG_IGN);

  CLI::App app{"quarry: pick the pool rows most worth labeling"};
  app.require_subcommand(1);
  app.set_version_flag("--version", quarry::version());

  CommonOptions select_opt;
  SelectFlags flags;
  auto* select_cmd = app.add_subcommand("select", "print or save the k rows to label, best first");
  add_common(select_cmd, select_opt);
  add_schema_option(select_cmd, "k", flags.k)->type_name("INT");
  add_schema_option(select_cmd, "embeddings", flags.embeddings_paths);
  add_schema_option(select_cmd, "candidates", flags.candidates)->type_name("INT");
  add_schema_option(select_cmd, "kmeans_iters", flags.kmeans_iterations)
      ->capture_default_str()
      ->type_name("INT");
  add_schema_option(select_cmd, "explore", flags.explore)->capture_default_str();
  add_schema_option(select_cmd, "seed", flags.seed)->capture_default_str()->type_name("UINT");
  add_schema_option(select_cmd, "strategy", flags.strategy)->capture_default_str();
  add_schema_option(select_cmd, "tie_break", flags.tie_break)->capture_default_str();
  add_schema_option(select_cmd, "labeled", flags.labeled_path);
  add_schema_option(select_cmd, "costs", flags.costs_path);
  add_schema_option(select_cmd, "budget", flags.budget);
  add_schema_flag(select_cmd, "exact_budget", flags.exact_budget);
  auto* row_offset =
      add_schema_option(select_cmd, "row_offset", flags.row_offset)->type_name("INT");
  add_schema_option(select_cmd, "pool_rows", flags.pool_rows)->type_name("INT");

  CommonOptions score_opt;
  auto* score_cmd = app.add_subcommand("score", "score every row");
  add_common(score_cmd, score_opt);

  MergeFlags merge_flags;
  auto* merge_cmd = app.add_subcommand(
      "merge", "merge the partial results of a pool's shards into the whole pool's k picks");
  merge_cmd->add_option("partials", merge_flags.partial_paths, "PART.json files, any order")
      ->required();
  merge_cmd->add_option("-k,--k", merge_flags.k, "number of rows to select")
      ->required()
      ->type_name("INT");
  merge_cmd->add_option("--device", merge_flags.device, "auto | cpu | cuda: runs the k-means")
      ->capture_default_str();
  merge_cmd->add_option("--output,-o", merge_flags.output, "OUT.npy, OUT.json, or - for stdout")
      ->capture_default_str();
  add_schema_option(merge_cmd, "threads", merge_flags.threads)
      ->type_name("INT")
      ->capture_default_str();

  app.add_subcommand("info", "show the version, the backends built and the GPUs found");
  auto* measures_cmd = app.add_subcommand(
      "measures", "list the measures: what each reads, the options it takes, its formula");

  if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "select" &&
      std::string(argv[1]) != "score" && std::string(argv[1]) != "merge" &&
      std::string(argv[1]) != "info" && std::string(argv[1]) != "measures") {
    std::fprintf(stderr,
                 "quarry: error: unknown command '%s' (select, score, merge, info or measures)\n",
                 argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "quarry: error: %s (see quarry --help)\n", e.what());
    return 2;
  }
  flags.partial = row_offset->count() > 0;

  try {
    if (*select_cmd)
      run_select(select_opt, flags);
    else if (*score_cmd)
      run_score(score_opt);
    else if (*merge_cmd)
      run_merge(merge_flags);
    else if (*measures_cmd)
      run_measures();
    else
      run_info();
    // Closing stdout reports what flushing could not (a file system that fails on close).
    if (g_wrote_stdout && std::fclose(stdout) != 0)
      throw quarry::Error(std::string("cannot write to standard output: ") + std::strerror(errno));
    return 0;
  } catch (const quarry::InvalidArgument& e) {
    std::fprintf(stderr, "quarry: error: %s\n", e.what());
    return 2;
  } catch (const quarry::InvalidInput& e) {
    // Row errors come from the engine, which does not know the file names: it names the input.
    const std::string& input = e.input();
    const CommonOptions& common = *select_cmd ? select_opt : score_opt;
    const std::string file = input == "embeddings" ? embedding_files.file_of(e.row())
                             : input == "features" ? common.features_path
                             : input == "labeled"  ? flags.labeled_path
                             : input == "costs"    ? flags.costs_path
                             : input == "lengths"  ? common.lengths_path
                                                   : pool_files.file_of(e.row());
    if (e.row() >= 0 && !file.empty())
      std::fprintf(stderr, "quarry: error: %s: %s\n", file.c_str(), e.what());
    else
      std::fprintf(stderr, "quarry: error: %s\n", e.what());
    return 2;
  } catch (const quarry::BackendUnavailable& e) {
    std::fprintf(stderr, "quarry: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "quarry: error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quarry: error: %s\n", e.what());
    return 1;
  }
}
