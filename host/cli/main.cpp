// The `quarry` command line: select | score | info. Exit codes: 0 success, 2 bad usage or bad
// input, 1 anything else. Errors are one line on stderr; no output file is left behind.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "npy.hpp"
#include "quarry/quarry.hpp"
#include "signals.hpp"

namespace {

using namespace quarry;

struct CommonOptions {
  std::string pool_path;
  std::string measure;  // empty: the input's natural measure
  bool logits = false;
  float temperature = 1.0f;
  std::string layout = "members-first";
  std::string device = "auto";
  std::string output = "-";
  std::string memory_budget;  // empty: the backend's default
  bool progress = false;
  bool quiet = false;
  std::string classes = "0";  // votes: the number of classes, 0 = any vote >= 0 (parse_integer)
};

// CLI11 saturates integers out of range (--seed -1 and --seed 2^64 both ran as 2^64 - 1), so
// integer options are taken as text and read here: anything but an integer in the type's range is
// refused.
template <typename T>
T parse_integer(const char* flag, const std::string& text) {
  T value{};
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (end - begin > 1 && begin[0] == '+' && begin[1] != '-') ++begin;  // from_chars takes no '+'
  const auto [stop, error] = std::from_chars(begin, end, value);
  if (error != std::errc() || stop != end || begin == end)
    throw InvalidArgument(std::string(flag) + ": '" + text + "' is not an integer from " +
                          std::to_string(std::numeric_limits<T>::min()) + " to " +
                          std::to_string(std::numeric_limits<T>::max()));
  return value;
}

// "123", "64K", "1.5G", "512MiB" -> bytes (K = 1024).
std::size_t parse_size(const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  const std::string units = "KMGT";
  double scale = 1;
  if (unit.size() == 1 && units.find(unit[0]) != std::string::npos)
    for (size_t i = 0; i <= units.find(unit[0]); ++i) scale *= 1024;
  else if (!unit.empty() && unit != "B")
    used = 0;
  // At least one byte: 0.5 would round to 0, which means "no budget".
  if (used == 0 || !(value * scale >= 1) || value * scale > 1.8e19)
    throw InvalidArgument("--memory-budget: cannot read '" + text +
                          "' (a number of bytes, at least 1, optionally with K, M, G or T)");
  return static_cast<std::size_t>(value * scale);
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
                                  std::initializer_list<std::string> inputs) {
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

// Interprets the array's shape and dtype as a pool, and picks the measure.
struct Pool {
  io::NpyArray array;
  PoolView view;
  Measure measure;
};

Pool open_pool(const CommonOptions& opt) {
  io::NpyArray array = io::NpyArray::open(opt.pool_path);
  // Input files are memory-mapped: if one shrinks while it is read (truncated, or rewritten by
  // another program), touching a page past its new end raises SIGBUS. That is bad input, exit
  // code 2, and leaves no output (outputs are written only after the work is done).
  io::report_truncated_input(opt.pool_path, 2);
  const auto& shape = array.shape();
  const std::string& path = opt.pool_path;
  PoolView view;
  Measure natural;
  const bool integer = array.dtype() == DType::i32 || array.dtype() == DType::i64;
  if (opt.layout != "members-first" && opt.layout != "rows-first")
    throw InvalidArgument("--layout must be members-first or rows-first, got '" + opt.layout + "'");
  const auto class_count = parse_integer<int64_t>("--classes", opt.classes);
  if (class_count < 0 || (class_count > 0 && !integer))
    throw InvalidArgument("--classes takes a positive count and applies only to integer votes");
  if (integer && shape.size() != 2)
    throw InvalidInput(path + ": integer votes must be 2-D [members, rows], got shape " +
                       array.shape_string());
  if (!integer && shape.size() != 2 && shape.size() != 3)
    throw InvalidInput(path +
                       ": the pool must be 2-D [rows, classes], 3-D [members, rows, classes] or "
                       "2-D integer votes [members, rows]; got shape " +
                       array.shape_string());
  const bool rows_first = opt.layout == "rows-first";
  const int64_t members = integer ? shape[0] : shape.size() == 2 ? 1 : shape[rows_first ? 1 : 0];
  const int64_t rows = integer ? shape[1] : shape[shape.size() == 2 || rows_first ? 0 : 1];
  const int64_t classes = integer ? class_count : shape.back();
  // Checked before the views are made: a shape such as (0, 2^62, 2^62) is empty, yet its strides
  // would overflow.
  if (rows == 0) throw InvalidInput(path + ": the pool has no rows");
  if (members == 0) throw InvalidInput(path + ": the pool has no members");
  if (!integer && classes == 0) throw InvalidInput(path + ": rows have no classes");
  if (integer) {
    view = PoolView::votes(array.data(), array.dtype(), members, rows, classes);
    natural = Measure::vote_entropy;
  } else if (shape.size() == 2) {
    view = PoolView::matrix(array.data(), array.dtype(), rows, classes);
    natural = Measure::entropy;
  } else {
    view = PoolView::committee(array.data(), array.dtype(), members, rows, classes,
                               rows_first ? Layout::rows_first : Layout::members_first);
    natural = Measure::consensus_entropy;
  }
  const Measure measure = opt.measure.empty() ? natural : parse_measure(opt.measure);
  if (!integer && shape.size() == 2 && is_committee_measure(measure))
    throw InvalidArgument(std::string(to_string(measure)) +
                          " needs a committee: a 3-D [members, rows, classes] array or 2-D integer "
                          "votes; " +
                          path + " is a single model's [rows, classes] predictions");
  if (shape.size() == 3 && !is_committee_measure(measure))
    throw InvalidArgument(std::string(to_string(measure)) + " scores a single model, but " + path +
                          " is a committee (3-D); use vote_entropy, consensus_entropy, kl_max, "
                          "bald or variation_ratio");
  return Pool{std::move(array), view, measure};
}

ScoreOptions scoring_options(const CommonOptions& opt, Measure measure) {
  ScoreOptions s;
  s.measure = measure;
  s.logits = opt.logits;
  s.temperature = opt.temperature;
  return s;
}

void add_common(CLI::App* cmd, CommonOptions& opt) {
  cmd->add_option("pool", opt.pool_path,
                  "pool .npy: [N, C] one model's probabilities or logits, [M, N, C] a "
                  "committee's, or [M, N] integer votes")
      ->required();
  cmd->add_option("--measure", opt.measure,
                  "[N, C]: entropy (default), least_confidence, margin, ratio; committees: "
                  "consensus_entropy (default), vote_entropy, kl_max, bald, variation_ratio; "
                  "votes: vote_entropy (default), variation_ratio");
  cmd->add_option("--layout", opt.layout,
                  "axis order of a 3-D pool: members-first [M, N, C] or rows-first [N, M, C]")
      ->capture_default_str();
  cmd->add_flag("--logits", opt.logits, "the pool holds logits: apply softmax(z / T) first");
  cmd->add_option("--temperature", opt.temperature, "softmax temperature T for --logits")
      ->capture_default_str();
  cmd->add_option("--device", opt.device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_option("--output,-o", opt.output, "OUT.npy, OUT.json, or - for stdout")
      ->capture_default_str();
  cmd->add_option("--memory-budget", opt.memory_budget,
                  "working memory (device memory on CUDA) at most SIZE bytes, e.g. 512M or 8G; "
                  "larger pools are scored in chunks (default: 80% of free GPU memory; no bound "
                  "on the CPU)");
  cmd->add_flag("--progress", opt.progress,
                "show progress on stderr even when it is not a terminal");
  cmd->add_flag("--quiet", opt.quiet, "never show progress");
  cmd->add_option("--classes", opt.classes,
                  "integer votes: the number of classes C; a vote >= C is an error (default: any "
                  "vote >= 0 is a class)")
      ->type_name("INT");
}

// Integers as text: see parse_integer.
struct SelectFlags {
  std::string k;
  std::string embeddings_path;
  std::string candidates = "0";
  std::string kmeans_iterations = "25";
  double explore = 0.0;
  std::string seed = "0";
};

void run_select(const CommonOptions& opt, const SelectFlags& flags) {
  const OutputKind kind = output_kind(opt.output);
  check_output_is_not_an_input(opt.output, {opt.pool_path, flags.embeddings_path});
  Pool pool = open_pool(opt);
  SelectOptions select_options;
  select_options.scoring = scoring_options(opt, pool.measure);
  select_options.k = parse_integer<int64_t>("-k", flags.k);
  select_options.candidates = parse_integer<int64_t>("--candidates", flags.candidates);
  select_options.kmeans.iterations = parse_integer<int>("--kmeans-iters", flags.kmeans_iterations);
  select_options.seed = parse_integer<uint64_t>("--seed", flags.seed);
  select_options.kmeans.seed = select_options.seed;
  select_options.explore = flags.explore;
  std::optional<io::NpyArray> embeddings;
  if (!flags.embeddings_path.empty()) {
    embeddings = io::NpyArray::open(flags.embeddings_path);
    io::report_truncated_input(opt.pool_path + " or " + flags.embeddings_path, 2);
    const auto& shape = embeddings->shape();
    if (shape.size() != 2 || embeddings->dtype() == DType::i32 || embeddings->dtype() == DType::i64)
      throw InvalidInput(
          flags.embeddings_path + ": embeddings must be a 2-D float array [N, D], got " +
          std::string(to_string(embeddings->dtype())) + " shape " + embeddings->shape_string());
    select_options.embeddings =
        EmbeddingView::matrix(embeddings->data(), embeddings->dtype(), shape[0], shape[1]);
  }
  std::unique_ptr<ProgressLine> progress;
  Resources resources = make_resources(opt, progress);
  const Selection sel = select(resources, pool.view, select_options);
  progress.reset();  // ends the progress line before any output
  switch (kind) {
    case OutputKind::stdout_lines: {
      std::string text;
      for (int64_t i : sel.indices) text += std::to_string(i) + '\n';
      write_stdout(text);
      break;
    }
    case OutputKind::npy:
      io::save_npy(opt.output, sel.indices.data(), "<i8",
                   {static_cast<int64_t>(sel.indices.size())});
      break;
    case OutputKind::json: {
      nlohmann::json j;
      j["measure"] = to_string(pool.measure);
      j["backend"] = resources.describe();
      j["indices"] = sel.indices;
      j["scores"] = json_scores(sel.scores);
      std::vector<std::string> reasons;
      for (PickReason r : sel.reasons) reasons.emplace_back(to_string(r));
      j["reasons"] = reasons;
      if (select_options.embeddings) j["clusters"] = sel.clusters;
      io::write_file_atomically(opt.output, j.dump(1) + "\n");
      break;
    }
  }
}

void run_score(const CommonOptions& opt) {
  const OutputKind kind = output_kind(opt.output);
  check_output_is_not_an_input(opt.output, {opt.pool_path});
  Pool pool = open_pool(opt);
  std::unique_ptr<ProgressLine> progress;
  Resources resources = make_resources(opt, progress);
  const std::vector<float> scores = score(resources, pool.view, scoring_options(opt, pool.measure));
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

void run_info() {
  std::string text = "quarry " + version() + "\nbackends: cpu" +
                     (built_with_cuda() ? ", cuda" : " (built without CUDA)") + "\n";
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
  select_cmd->add_option("-k,--k", flags.k, "number of rows to select")
      ->required()
      ->type_name("INT");
  select_cmd->add_option("--embeddings", flags.embeddings_path,
                         "EMB.npy [N, D] float: spread the picks over k-means clusters of the top "
                         "candidates");
  select_cmd
      ->add_option("--candidates", flags.candidates,
                   "candidates to cluster with --embeddings (default 10*k, capped at N)")
      ->type_name("INT");
  select_cmd->add_option("--kmeans-iters", flags.kmeans_iterations, "k-means iterations at most")
      ->capture_default_str()
      ->type_name("INT");
  select_cmd
      ->add_option("--explore", flags.explore,
                   "fraction of the k picks drawn at random from the rest (0 <= EPS < 1)")
      ->capture_default_str();
  select_cmd->add_option("--seed", flags.seed, "seed for k-means++ and exploration (0 to 2^64 - 1)")
      ->capture_default_str()
      ->type_name("UINT");

  CommonOptions score_opt;
  auto* score_cmd = app.add_subcommand("score", "score every row");
  add_common(score_cmd, score_opt);

  app.add_subcommand("info", "show the version, the backends built and the GPUs found");

  if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "select" &&
      std::string(argv[1]) != "score" && std::string(argv[1]) != "info") {
    std::fprintf(stderr, "quarry: error: unknown command '%s' (select, score or info)\n", argv[1]);
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

  try {
    if (*select_cmd)
      run_select(select_opt, flags);
    else if (*score_cmd)
      run_score(score_opt);
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
    // Row errors come from the engine, which does not know the file name.
    const bool about_embeddings = std::string(e.what()).rfind("embeddings", 0) == 0;
    const std::string& file = about_embeddings ? flags.embeddings_path
                              : *select_cmd    ? select_opt.pool_path
                                               : score_opt.pool_path;
    if (e.row() >= 0)
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
