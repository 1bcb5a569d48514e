// The `quarry` program end to end: outputs, exit codes, one-line errors, no output after errors.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/threads.hpp"
#include "npy.hpp"
#include "npy_files.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int exit_code;
  std::string out, err;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    // Named by suite, test and process: tests of the same name in other suites, and other
    // processes running this suite at the same time, each get a directory of their own.
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / ("quarry_cli_" + std::string(test->test_suite_name()) +
                                             "_" + test->name() + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (HasFailure()) return;  // kept to look at
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The quarry program: $QUARRY_CLI, else the one beside this test binary (as a staged copy of
  // the build has it), else the one the build made.
  static std::string cli_path() {
    if (const char* env = std::getenv("QUARRY_CLI")) return env;
    std::error_code ec;
    const fs::path sibling = fs::read_symlink("/proc/self/exe", ec).parent_path() / "quarry";
    if (!ec && fs::exists(sibling)) return sibling.string();
    return QUARRY_CLI_PATH;
  }

  // `shell_prefix` runs first in the same shell: `ulimit ...; `. `stdout_to` replaces the
  // redirection of stdout to a file: ">/dev/full", ">&-".
  CliResult run(const std::string& args, const std::string& shell_prefix = "",
                const std::string& stdout_to = "") const {
    const std::string cmd = shell_prefix + launcher_ + cli_path() + " " + args + " " +
                            (stdout_to.empty() ? ">" + path("stdout") : stdout_to) + " 2>" +
                            path("stderr") + " </dev/null";
    std::filesystem::remove(path("stdout"));
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(path("stdout")),
            read_text(path("stderr"))};
  }

  // Runs a command that must fail with exit code 2, one line on stderr containing `expect`, and
  // no file at `output`.
  void expect_usage_error(const std::string& args, const std::string& expect,
                          const std::string& output = "",
                          const std::string& shell_prefix = "") const {
    const CliResult r = run(args, shell_prefix);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    if (!output.empty()) EXPECT_FALSE(fs::exists(output)) << output << " after " << args;
    // No temporary file left behind either.
    for (const auto& entry : fs::directory_iterator(dir_))
      EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos);
  }

  // A 200 x 5 pool of probabilities whose row r has entropy increasing with (r * 37) % 200.
  std::vector<float> write_pool(const std::string& name) const {
    auto rng = seeded_rng(4000);
    auto pool = random_probabilities(200, 5, rng);
    write_npy(path(name), pool, "<f4", {200, 5});
    return pool;
  }

  fs::path dir_;
  std::string launcher_;  // put before the program: environment variables, a loader
};

// What `quarry info` prints about CUDA for this availability.
std::string cuda_info_line(const CudaAvailability& cuda) {
  if (cuda.status == CudaStatus::available) return "cuda: available (driver CUDA ";
  return "cuda: unavailable: " + std::string(to_string(cuda.status)) + " (" + cuda.detail + ")\n";
}

// stdout of a shell command.
std::string capture(const std::string& command) {
  std::string out;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
      out.append(buffer, n);
    pclose(pipe);
  }
  return out;
}

TEST_F(Cli, SelectPrintsOneIndexPerLineBestFirst) {
  const auto pool = write_pool("pool.npy");
  const CliResult r = run("select " + path("pool.npy") + " -k 7 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Resources cpu(Device::cpu);
  SelectOptions opt;
  opt.k = 7;
  const auto want = select(cpu, PoolView::matrix(pool.data(), DType::f32, 200, 5), opt);
  std::string expected;
  for (int64_t i : want.indices) expected += std::to_string(i) + "\n";
  EXPECT_EQ(r.out, expected);
}

TEST_F(Cli, SelectWritesNpyAndJson) {
  const auto pool = write_pool("pool.npy");
  ASSERT_EQ(
      run("select " + path("pool.npy") + " -k 10 --measure margin -o " + path("out.npy")).exit_code,
      0);
  const auto npy = io::NpyArray::open(path("out.npy"));
  EXPECT_EQ(npy.dtype(), DType::i64);
  EXPECT_EQ(npy.shape(), (std::vector<int64_t>{10}));

  const CliResult r =
      run("select " + path("pool.npy") + " -k 10 --measure margin --output " + path("out.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text(path("out.json")));
  ASSERT_EQ(j["indices"].size(), 10u);
  ASSERT_EQ(j["scores"].size(), 10u);
  ASSERT_EQ(j["reasons"].size(), 10u);
  EXPECT_EQ(j["measure"], "margin");
  const auto* from_npy = static_cast<const int64_t*>(npy.data());
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(j["indices"][i].get<int64_t>(), from_npy[i]);
    EXPECT_EQ(j["reasons"][i], "rank");
    if (i > 0) EXPECT_LE(j["scores"][i].get<float>(), j["scores"][i - 1].get<float>());
  }
}

TEST_F(Cli, ScoreWritesFloat32Scores) {
  const auto pool = write_pool("pool.npy");
  const CliResult r = run("score " + path("pool.npy") + " --measure least_confidence --output " +
                          path("scores.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto a = io::NpyArray::open(path("scores.npy"));
  ASSERT_EQ(a.dtype(), DType::f32);
  ASSERT_EQ(a.shape(), (std::vector<int64_t>{200}));
  const auto* s = static_cast<const float*>(a.data());
  for (int r = 0; r < 200; ++r) {
    const float p1 = *std::max_element(pool.begin() + r * 5, pool.begin() + r * 5 + 5);
    EXPECT_TRUE(near_rel(s[r], 1.0f - p1, 1e-6f)) << r;
  }
}

TEST_F(Cli, LogitsAndHalfPrecisionFiles) {
  auto rng = seeded_rng(4001);
  const auto logits = random_logits(300, 12, rng);
  write_npy(path("logits.npy"), logits, "<f4", {300, 12}, 2);
  write_npy(path("logits16.npy"), encode(logits, DType::f16), "<f2", {300, 12}, 3);
  const CliResult a = run("select " + path("logits.npy") + " -k 5 --logits --temperature 2");
  const CliResult b = run("select " + path("logits16.npy") + " -k 5 --logits --temperature 2");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(std::count(a.out.begin(), a.out.end(), '\n'), 5);
  // Without --logits the same file is refused: its rows do not sum to 1.
  expect_usage_error("select " + path("logits.npy") + " -k 5", "--logits");
}

// LLM outputs: the measure says how the array is read; --lengths, --samples, --alpha and
// --threshold reach the engine, and the scores are the API's.
TEST_F(Cli, LlmOutputsScoreAsTheApi) {
  auto rng = seeded_rng(4016);
  const int64_t n = 50, steps = 9, k = 4, s = 5, d = 6;
  std::uniform_int_distribution<int64_t> length(1, steps);
  std::vector<int64_t> lengths(n);
  for (int64_t& l : lengths) l = length(rng);
  std::vector<int32_t> lengths32(lengths.begin(), lengths.end());
  std::vector<float> tokens = random_normal(n * steps, rng);
  for (float& x : tokens) x = -std::fabs(x);
  std::vector<float> top = random_normal(n * steps * k, rng);
  for (float& x : top) x = -std::fabs(x) - 0.1f;
  const std::vector<float> answers = random_normal(n * s * d, rng);
  write_npy(path("tokens.npy"), tokens, "<f4", {n, steps});
  write_npy(path("top.npy"), encode(top, DType::f16), "<f2", {n, steps, k});
  write_npy(path("answers.npy"), answers, "<f4", {n, s, d});
  write_npy(path("len.npy"), lengths, "<i8", {n});
  write_npy(path("len32.npy"), lengths32, "<i4", {n});
  Resources cpu(Device::cpu);
  auto expect_scores = [&](const std::string& args, const PoolView& view,
                           const ScoreOptions& options) {
    const CliResult r = run("score " + args + " --device cpu -o " + path("s.npy"));
    ASSERT_EQ(r.exit_code, 0) << args << "\n" << r.err;
    const auto got = io::NpyArray::open(path("s.npy"));
    const auto* g = static_cast<const float*>(got.data());
    EXPECT_EQ(std::vector<float>(g, g + n), score(cpu, view, options)) << args;
  };
  ScoreOptions options;
  options.measure = Measure::perplexity;
  expect_scores(path("tokens.npy") + " --measure perplexity --lengths " + path("len.npy"),
                PoolView::token_logprobs(tokens.data(), DType::f32, n, steps, lengths.data()),
                options);
  expect_scores(path("tokens.npy") + " --measure perplexity --lengths " + path("len32.npy"),
                PoolView::token_logprobs(tokens.data(), DType::f32, n, steps, lengths.data()),
                options);
  options.measure = Measure::sequence_nll;  // without lengths: every step
  expect_scores(path("tokens.npy") + " --measure sequence_nll",
                PoolView::token_logprobs(tokens.data(), DType::f32, n, steps), options);
  options.measure = Measure::mean_token_margin;
  const auto top16 = encode(top, DType::f16);
  expect_scores(path("top.npy") + " --measure mean_token_margin --lengths " + path("len.npy"),
                PoolView::top_logprobs(top16.data(), DType::f16, n, steps, k, lengths.data()),
                options);
  options.measure = Measure::eigenscore;
  options.eigenscore_alpha = 0.01;
  expect_scores(path("answers.npy") + " --samples --measure eigenscore --alpha 0.01",
                PoolView::samples(answers.data(), DType::f32, n, s, d), options);
  options.measure = Measure::semantic_sets;
  options.semantic_threshold = 0.25;
  expect_scores(path("answers.npy") + " --samples --measure semantic_sets --threshold 0.25",
                PoolView::samples(answers.data(), DType::f32, n, s, d), options);
  const CliResult r = run("select " + path("top.npy") + " -k 5 --measure max_token_entropy " +
                          "--lengths " + path("len.npy") + " -o " + path("picks.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text(path("picks.json")));
  EXPECT_EQ(j["measure"], "max_token_entropy");
  EXPECT_EQ(j["indices"].size(), 5u);
}

TEST_F(Cli, LlmUsageAndDataErrorsAreExitCode2) {
  const int64_t n = 20, steps = 6, k = 3;
  std::vector<float> tokens(n * steps, -0.5f), top(n * steps * k, -1.0f);
  write_npy(path("tokens.npy"), tokens, "<f4", {n, steps});
  write_npy(path("top.npy"), top, "<f4", {n, steps, k});
  write_npy(path("len.npy"), std::vector<int64_t>(n, 3), "<i8", {n});
  write_npy(path("short.npy"), std::vector<int64_t>(n - 1, 3), "<i8", {n - 1});
  write_npy(path("flen.npy"), std::vector<float>(n, 3.0f), "<f4", {n});
  const std::string t = path("tokens.npy"), k3 = path("top.npy"),
                    len = " --lengths " + path("len.npy"), out = path("out.npy");
  expect_usage_error("score " + t + len + " -o " + out, "needs --measure", out);
  expect_usage_error("score " + k3 + " --samples -o " + out, "needs --measure", out);
  expect_usage_error(
      "score " + t + " --measure perplexity --lengths " + path("short.npy") + " -o " + out,
      "1-D int32 or int64 array of 20 values", out);
  expect_usage_error(
      "score " + t + " --measure perplexity --lengths " + path("flen.npy") + " -o " + out,
      "lengths must be", out);
  expect_usage_error("score " + k3 + " --measure perplexity" + len + " -o " + out,
                     "[N, T] token log-probabilities", out);
  expect_usage_error("score " + t + " --measure mean_token_entropy" + len + " -o " + out,
                     "[N, T, K] top-K", out);
  expect_usage_error("score " + k3 + " --measure mean_token_entropy --samples -o " + out,
                     "--samples", out);
  expect_usage_error("score " + k3 + " --measure eigenscore --samples" + len + " -o " + out,
                     "lengths do not apply to sampled answers", out);
  expect_usage_error("score " + t + " --measure entropy" + len + " -o " + out,
                     "lengths do not apply to entropy", out);
  expect_usage_error("score " + t + " --measure perplexity --alpha 0.1 -o " + out, "--alpha", out);
  expect_usage_error("score " + k3 + " --measure eigenscore --threshold 0.5 -o " + out,
                     "--threshold", out);
  expect_usage_error("score " + t + " --measure perplexity --logits -o " + out, "--logits", out);
  expect_usage_error("score " + k3 + " --measure eigenscore --alpha -1 -o " + out, "alpha", out);
  // Bad data: a length past T names the lengths file and the row; a positive log-probability
  // names the pool file and the row.
  std::vector<int64_t> lengths(n, 3);
  lengths[11] = steps + 1;
  write_npy(path("badlen.npy"), lengths, "<i8", {n});
  expect_usage_error(
      "select " + t + " -k 2 --measure perplexity --lengths " + path("badlen.npy") + " -o " + out,
      path("badlen.npy") + ": row 11: length outside", out);
  tokens[7 * steps + 1] = 0.5f;
  write_npy(path("positive.npy"), tokens, "<f4", {n, steps});
  expect_usage_error(
      "select " + path("positive.npy") + " -k 2 --measure sequence_nll" + len + " -o " + out,
      path("positive.npy") + ": row 7: positive log-probability", out);
}

TEST_F(Cli, InfoShowsVersionAndBackends) {
  const CliResult r = run("info");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("quarry " + version()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("backends: cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpus:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu: " + engine::threads_text(engine::automatic_threads()) + "; row loops"),
            std::string::npos)
      << r.out;
}

TEST_F(Cli, BadDataIsExitCode2WithTheFirstBadRowAndNoOutput) {
  auto pool = write_pool("pool.npy");
  pool[57 * 5 + 2] = std::nanf("");
  pool[99 * 5 + 2] = std::nanf("");
  write_npy(path("nan.npy"), pool, "<f4", {200, 5});
  for (const char* out : {"out.npy", "out.json"})
    expect_usage_error("select " + path("nan.npy") + " -k 3 -o " + path(out), "row 57", path(out));
  auto negative = write_pool("pool.npy");
  negative[8 * 5] = -negative[8 * 5];
  write_npy(path("neg.npy"), negative, "<f4", {200, 5});
  expect_usage_error("score " + path("neg.npy") + " -o " + path("s.npy"), "row 8", path("s.npy"));
  auto above = std::vector<float>(200 * 5, 0.2f);
  above[3 * 5] = 1.5f;
  write_npy(path("above.npy"), above, "<f4", {200, 5});
  expect_usage_error("select " + path("above.npy") + " -k 2 -o " + path("o.npy"), "row 3",
                     path("o.npy"));
}

TEST_F(Cli, BadArgumentsAreExitCode2) {
  write_pool("pool.npy");
  const std::string pool = path("pool.npy"), out = path("out.npy");
  expect_usage_error("select " + pool + " -k 0 -o " + out, "k must be", out);
  expect_usage_error("select " + pool + " -k 201 -o " + out, "k must be", out);
  expect_usage_error("select " + pool + " -o " + out, "k", out);  // -k missing
  expect_usage_error("select " + pool + " -k 3 --measure nonsense -o " + out, "unknown measure",
                     out);
  expect_usage_error("select " + pool + " -k 3 --measure bald -o " + out, "committee", out);
  expect_usage_error("select " + pool + " -k 3 --device tpu -o " + out, "unknown device", out);
  expect_usage_error("select " + pool + " -k 3 -o " + path("out.csv"), "--output", path("out.csv"));
  expect_usage_error("select " + pool + " -k 3 --logits --temperature 0 -o " + out, "temperature",
                     out);
  expect_usage_error("frobnicate", "frobnicate");
}

TEST_F(Cli, CudaRequestWithoutAGpuIsExitCode2) {
  const CudaAvailability cuda = cuda_availability();
  if (cuda.status == CudaStatus::available) GTEST_SKIP() << "a GPU is present";
  write_pool("pool.npy");
  expect_usage_error(
      "select " + path("pool.npy") + " -k 3 --device cuda -o " + path("o.npy"),
      "CUDA is unavailable: " + std::string(to_string(cuda.status)) + " (" + cuda.detail + ")",
      path("o.npy"));
}

TEST_F(Cli, InfoSaysWhyCudaIsUnavailable) {
  const CudaAvailability cuda = cuda_availability();
  const CliResult r = run("info");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(cuda_info_line(cuda)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(built_with_cuda() ? "backends: cpu, cuda (" + cuda.plugin_path + ")\n"
                                         : "backends: cpu (built without CUDA)\n"),
            std::string::npos)
      << r.out;
  if (!built_with_cuda()) {
    EXPECT_EQ(cuda.status, CudaStatus::not_built);
    return;
  }
  // The plugin sits beside libquarry.so, and the status comes from the first missing piece.
  EXPECT_TRUE(fs::exists(cuda.plugin_path)) << cuda.plugin_path;
  EXPECT_EQ(fs::path(cuda.plugin_path).filename(), "libquarry_cuda.so");
  EXPECT_EQ(cuda.status == CudaStatus::no_driver || cuda.status == CudaStatus::no_device,
            cuda_device_count() == 0);

  // Without the plugin library: the reason names the file looked for; auto runs on the CPU.
  write_pool("pool.npy");
  const std::string missing = path("nowhere/libquarry_cuda.so");
  launcher_ = "QUARRY_CUDA_LIBRARY=" + missing + " ";
  const CliResult without = run("info");
  ASSERT_EQ(without.exit_code, 0) << without.err;
  EXPECT_NE(without.out.find("cuda: unavailable: no plugin library (" + missing + " not found"),
            std::string::npos)
      << without.out;
  expect_usage_error("select " + path("pool.npy") + " -k 3 --device cuda",
                     "CUDA is unavailable: no plugin library (" + missing + " not found");
  const CliResult automatic = run("select " + path("pool.npy") + " -k 3 --device auto");
  launcher_.clear();
  EXPECT_EQ(automatic.exit_code, 0) << automatic.err;
  EXPECT_EQ(automatic.out, run("select " + path("pool.npy") + " -k 3 --device cpu").out);
}

// The program and libquarry need no CUDA library, and a CPU run loads none: on a machine without
// the CUDA libraries (simulated by a loader that sees only the libraries ldd lists, without its
// cache, which is where the toolkit's folder is registered) select, score and info work.
TEST_F(Cli, RunsOnAMachineWithoutCudaLibraries) {
  const char* cuda_libraries[] = {"libcuda.", "libcudart", "libcublas", "libquarry_cuda"};
  const std::string needed = capture("ldd " + cli_path());
  ASSERT_NE(needed.find("libquarry.so => /"), std::string::npos) << needed;
  std::string libquarry, interpreter;
  std::istringstream lines(needed);
  fs::create_directories(path("libs"));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string name, arrow, file;
    words >> name >> arrow >> file;
    if (arrow == "=>" && !file.empty() && file[0] == '/') {
      fs::create_symlink(file, path("libs/" + name));
      if (name == "libquarry.so") libquarry = file;
    } else if (!name.empty() && name[0] == '/') {
      interpreter = name;
    }
  }
  ASSERT_FALSE(interpreter.empty()) << needed;
  const std::string needed_by_library = capture("ldd " + libquarry);
  for (const char* cuda : cuda_libraries) {
    EXPECT_EQ(needed.find(cuda), std::string::npos) << needed;
    EXPECT_EQ(needed_by_library.find(cuda), std::string::npos) << needed_by_library;
  }

  const auto pool = write_pool("pool.npy");
  const CliResult want = run("select " + path("pool.npy") + " -k 5 --device cpu");
  ASSERT_EQ(want.exit_code, 0) << want.err;
  const CudaAvailability cuda = cuda_availability();
  if (cuda.status != CudaStatus::available) {
    // A run with device auto opens no CUDA runtime library (the loader's own log says so).
    launcher_ = "LD_DEBUG=files ";
    const CliResult logged = run("select " + path("pool.npy") + " -k 5 --device auto");
    ASSERT_EQ(logged.exit_code, 0);
    EXPECT_EQ(logged.out, want.out);
    EXPECT_NE(logged.err.find("file=libquarry.so"), std::string::npos) << "no loader log";
    for (const char* library : {"file=libcudart", "file=libcublas", "file=libquarry_cuda"})
      EXPECT_EQ(logged.err.find(library), std::string::npos) << library;
  }

  launcher_ = interpreter + " --inhibit-cache --library-path " + path("libs") + " ";
  for (const char* device : {"cpu", "auto"}) {
    const CliResult r = run("select " + path("pool.npy") + " -k 5 --device " + device);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // (Where CUDA is available auto may run on the GPU, whose ranking may differ at near ties.)
    if (device == std::string("cpu") || cuda.status != CudaStatus::available)
      EXPECT_EQ(r.out, want.out) << device;
  }
  const CliResult scores = run("score " + path("pool.npy") + " --device cpu");
  EXPECT_EQ(scores.exit_code, 0) << scores.err;
  EXPECT_EQ(std::count(scores.out.begin(), scores.out.end(), '\n'), 200);
  const CliResult info = run("info");
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("cuda: "), std::string::npos) << info.out;
  if (cuda.status != CudaStatus::available) {
    EXPECT_NE(info.out.find(cuda_info_line(cuda)), std::string::npos) << info.out;
    expect_usage_error("select " + path("pool.npy") + " -k 3 --device cuda",
                       "CUDA is unavailable: " + std::string(to_string(cuda.status)));
  }
}

TEST_F(Cli, BadFilesAreExitCode2) {
  const std::vector<float> data(12, 0.5f);
  const std::string out = path("out.npy");
  write_npy(path("1d.npy"), data, "<f4", {12});
  expect_usage_error("select " + path("1d.npy") + " -k 1 -o " + out, "shape (12,)", out);
  write_npy(path("4d.npy"), data, "<f4", {1, 2, 3, 2});
  expect_usage_error("select " + path("4d.npy") + " -k 1 -o " + out, "shape", out);
  write_npy(path("be.npy"), data, ">f4", {6, 2});
  expect_usage_error("select " + path("be.npy") + " -k 1 -o " + out, "big-endian", out);
  write_npy(path("c8.npy"), data, "<c8", {3, 2});
  expect_usage_error("select " + path("c8.npy") + " -k 1 -o " + out, "complex", out);
  write_npy(path("obj.npy"), data, "|O", {6, 2});
  expect_usage_error("select " + path("obj.npy") + " -k 1 -o " + out, "object", out);
  write_npy(path("f.npy"), data, "<f4", {6, 2}, 1, true);
  expect_usage_error("select " + path("f.npy") + " -k 1 -o " + out, "Fortran", out);
  write_npy(path("trunc.npy"), data, "<f4", {7, 2});
  expect_usage_error("select " + path("trunc.npy") + " -k 1 -o " + out, "truncated", out);
  { std::ofstream(path("text.npy")) << "not numpy at all"; }
  expect_usage_error("select " + path("text.npy") + " -k 1 -o " + out, "not a .npy", out);
  expect_usage_error("select " + path("missing.npy") + " -k 1 -o " + out, "missing.npy", out);
  write_npy(path("empty.npy"), std::vector<float>{}, "<f4", {0, 5});
  expect_usage_error("select " + path("empty.npy") + " -k 1 -o " + out, "no rows", out);
  // Empty, with other dimensions whose product overflows 64 bits: too large, as NumPy says.
  const int64_t huge = int64_t{1} << 62;
  write_npy(path("huge_empty.npy"), std::vector<float>{}, "<f4", {0, huge, huge});
  expect_usage_error("select " + path("huge_empty.npy") + " -k 1 -o " + out, "too large", out);
  // Empty committees are named with their file.
  write_npy(path("no_members.npy"), std::vector<float>{}, "<f4", {0, 5, 3});
  expect_usage_error("select " + path("no_members.npy") + " -k 1 -o " + out,
                     path("no_members.npy") + ": the pool has no members", out);
  write_npy(path("no_rows.npy"), std::vector<float>{}, "<f4", {5, 0, 3});
  expect_usage_error("select " + path("no_rows.npy") + " -k 1 -o " + out,
                     path("no_rows.npy") + ": the pool has no rows", out);
  write_npy(path("no_voters.npy"), std::vector<int32_t>{}, "<i4", {0, 5});
  expect_usage_error("select " + path("no_voters.npy") + " -k 1 -o " + out,
                     path("no_voters.npy") + ": the pool has no members", out);
}

// A FIFO as the pool or the embeddings is refused at once (opening it used to wait for a writer,
// forever); `timeout` turns a hang into a failure.
TEST_F(Cli, FifosAreRefusedWithoutWaiting) {
  write_pool("pool.npy");
  ASSERT_EQ(mkfifo(path("fifo.npy").c_str(), 0600), 0);
  const std::string out = path("out.npy");
  expect_usage_error("select " + path("fifo.npy") + " -k 1 -o " + out, "not a regular file", out,
                     "timeout 60 ");
  expect_usage_error(
      "select " + path("pool.npy") + " -k 1 --embeddings " + path("fifo.npy") + " -o " + out,
      "fifo.npy: not a regular file", out, "timeout 60 ");
  expect_usage_error("score " + dir_.string() + " -o " + out, "is a directory", out);
}

TEST_F(Cli, CommitteesAndVotes) {
  auto rng = seeded_rng(4002);
  const int64_t m = 5, n = 60, c = 4;
  const auto members_first = random_probabilities(m * n, c, rng, 1.0f);
  const auto rows_first = to_rows_first(members_first, m, n, c);
  write_npy(path("committee.npy"), members_first, "<f4", {m, n, c});
  write_npy(path("dropout.npy"), rows_first, "<f4", {n, m, c});
  for (const char* measure : {"bald", "kl_max", "vote_entropy", "consensus_entropy"}) {
    const CliResult a =
        run("select " + path("committee.npy") + " -k 8 --measure " + std::string(measure));
    const CliResult b = run("select " + path("dropout.npy") +
                            " -k 8 --layout rows-first --measure " + std::string(measure));
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out) << measure;
  }
  // A 3-D pool defaults to consensus_entropy.
  EXPECT_EQ(run("select " + path("committee.npy") + " -k 8").out,
            run("select " + path("committee.npy") + " -k 8 --measure consensus_entropy").out);
  // Votes: [M, N] integers, -1 abstained. Rows 0 and 3 are split, row 1 agrees, nobody voted on
  // row 2, which comes last.
  const std::vector<int32_t> votes = {0, 1, -1, 2,  //
                                      1, 1, -1, 0};
  write_npy(path("votes.npy"), votes, "<i4", {2, 4});
  const CliResult v = run("select " + path("votes.npy") + " -k 4 -o " + path("votes.json"));
  ASSERT_EQ(v.exit_code, 0) << v.err;
  const auto j = nlohmann::json::parse(read_text(path("votes.json")));
  EXPECT_EQ(j["measure"], "vote_entropy");
  EXPECT_EQ(j["indices"], nlohmann::json({0, 3, 1, 2}));
  // The row nobody voted on scores -inf: "-inf" in JSON (null would read as NaN), -inf on stdout.
  EXPECT_EQ(j["scores"][3], "-inf");
  EXPECT_NEAR(j["scores"][0].get<double>(), std::log(2.0), 1e-6);
  ASSERT_EQ(run("score " + path("votes.npy") + " -o " + path("scores.json")).exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(read_text(path("scores.json")))["scores"][2], "-inf");
  EXPECT_NE(run("score " + path("votes.npy")).out.find("\n-inf\n"), std::string::npos);
  // Committee measures need a committee and single-model measures a single model.
  expect_usage_error("select " + path("committee.npy") + " -k 3 --measure entropy", "committee");
  expect_usage_error("select " + path("votes.npy") + " -k 3 --measure bald", "votes");
  expect_usage_error("select " + path("committee.npy") + " -k 3 --layout sideways", "--layout");
  // With --classes 2, the vote for class 2 (member 0, row 3) is out of range.
  EXPECT_EQ(run("select " + path("votes.npy") + " -k 2 --classes 3").exit_code, 0);
  expect_usage_error("select " + path("votes.npy") + " -k 2 --classes 2 -o " + path("o.npy"),
                     "row 3", path("o.npy"));
  expect_usage_error("select " + path("committee.npy") + " -k 2 --classes 2", "--classes");
  std::vector<int32_t> bad_votes = votes;
  bad_votes[5] = -3;  // member 1, row 1
  write_npy(path("bad_votes.npy"), bad_votes, "<i4", {2, 4});
  expect_usage_error("select " + path("bad_votes.npy") + " -k 1 -o " + path("o.npy"), "row 1",
                     path("o.npy"));
}

// k-means loads FAISS from its plugin: a plugin that is missing, or a file that is not it, fails
// the selection that needs it with one line naming the cause (exit 2, no output), and `quarry
// info` says k-means is unavailable; selection without diversity never loads it.
TEST_F(Cli, AMissingFaissPluginFailsOnlyKMeansClearly) {
  auto rng = seeded_rng(4004);
  const int64_t n = 50, d = 4;
  write_npy(path("pool.npy"), random_probabilities(n, 3, rng), "<f4", {n, 3});
  write_npy(path("emb.npy"), random_normal(n * d, rng), "<f4", {n, d});
  const std::string diverse = "select " + path("pool.npy") + " -k 5 --embeddings " +
                              path("emb.npy") + " -o " + path("out.json");
  const std::string missing = "QUARRY_FAISS_LIBRARY=" + path("nowhere.so") + " ";
  expect_usage_error(
      diverse, "k-means on the CPU needs quarry's FAISS plugin: cannot load " + path("nowhere.so"),
      path("out.json"), missing);
  write_npy(path("not-a-library.so"), std::vector<float>{1.0f}, "<f4", {1});
  expect_usage_error(diverse, "needs quarry's FAISS plugin: cannot load", path("out.json"),
                     "QUARRY_FAISS_LIBRARY=" + path("not-a-library.so") + " ");
  const std::string not_the_plugin =
      (fs::path(QUARRY_CLI_PATH).parent_path() / "libquarry.so").string();
  expect_usage_error(diverse, not_the_plugin + " is not quarry's FAISS plugin", path("out.json"),
                     "QUARRY_FAISS_LIBRARY=" + not_the_plugin + " ");
  const CliResult info = run("info", missing);
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("k-means unavailable: cannot load " + path("nowhere.so")),
            std::string::npos)
      << info.out;
  const CliResult plain = run("select " + path("pool.npy") + " -k 5", missing);
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
}

TEST_F(Cli, DiversityAndExploration) {
  auto rng = seeded_rng(4003);
  const int64_t n = 400, c = 3, d = 4;
  const auto pool = random_probabilities(n, c, rng);
  const std::vector<float> emb = random_normal(n * d, rng);
  write_npy(path("pool.npy"), pool, "<f4", {n, c});
  write_npy(path("emb.npy"), emb, "<f4", {n, d});
  const std::string base = "select " + path("pool.npy") + " -k 12 --embeddings " + path("emb.npy");
  const CliResult r = run(base + " --candidates 100 --explore 0.25 --seed 3 -o " + path("d.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text(path("d.json")));
  ASSERT_EQ(j["indices"].size(), 12u);
  ASSERT_EQ(j["clusters"].size(), 12u);
  int explored = 0;
  for (int i = 0; i < 12; ++i) {
    if (j["reasons"][i] == "exploration") {
      ++explored;
      EXPECT_EQ(j["clusters"][i], -1);
    } else {
      EXPECT_GE(j["clusters"][i].get<int>(), 0);
    }
  }
  EXPECT_EQ(explored, 3);
  // Same seed, same picks.
  const CliResult again = run(base + " --candidates 100 --explore 0.25 --seed 3");
  std::string expected;
  for (const auto& i : j["indices"]) expected += std::to_string(i.get<int64_t>()) + "\n";
  EXPECT_EQ(again.out, expected);

  write_npy(path("short.npy"), std::vector<float>(emb.begin(), emb.end() - d), "<f4", {n - 1, d});
  expect_usage_error("select " + path("pool.npy") + " -k 5 --embeddings " + path("short.npy") +
                         " -o " + path("o.npy"),
                     "rows", path("o.npy"));
  expect_usage_error(base + " --candidates 5 -o " + path("o.npy"), "candidates", path("o.npy"));
  expect_usage_error(base + " --explore 1.5 -o " + path("o.npy"), "exploration", path("o.npy"));
  auto bad = emb;
  bad[7] = std::nanf("");
  write_npy(path("nan_emb.npy"), bad, "<f4", {n, d});
  expect_usage_error("select " + path("pool.npy") + " -k 5 --candidates 400 --embeddings " +
                         path("nan_emb.npy") + " -o " + path("o.npy"),
                     "nan_emb.npy: embeddings row 1", path("o.npy"));
  write_npy(path("zero_d.npy"), std::vector<float>{}, "<f4", {n, 0});
  expect_usage_error("select " + path("pool.npy") + " -k 5 --embeddings " + path("zero_d.npy"),
                     "D = 0");
}

// Embeddings near 1e19 in 16-D overflow float squared distances; FAISS used to abort on them.
TEST_F(Cli, HugeEmbeddingsAreClusteredWithoutAnAbort) {
  auto rng = seeded_rng(4004);
  const int64_t n = 400, d = 16;
  write_npy(path("pool.npy"), random_probabilities(n, 3, rng), "<f4", {n, 3});
  write_npy(path("emb.npy"), random_normal(n * d, rng, 1e19f), "<f4", {n, d});
  const CliResult r =
      run("select " + path("pool.npy") + " -k 10 --device cpu --embeddings " + path("emb.npy"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 10) << r.out;
}

// Out of memory is a resource failure: exit code 1 and one line, never an abort (std::bad_alloc
// inside an OpenMP region ended the process) and never "bad input" (a pool that cannot be
// memory-mapped for lack of address space was exit code 2). The address space given is what a
// tiny job needs (found by bisection: it depends on the build, cuBLAS maps hundreds of MB) plus
// 150 MB: not enough for 8M x 56 bytes of committee scratch per thread, nor for a 1 GB pool.
// (Below what a job needs, OpenBLAS 0.3.21's thread, started when k-means loads it, retries its 128
// MB buffer forever, and the program hangs at exit: the probes run under `timeout`.)
TEST_F(Cli, RunningOutOfMemoryIsExitCode1) {
  QUARRY_SKIP_UNDER_ASAN();
  write_npy(path("tiny.npy"), std::vector<float>{0.5f, 0.5f}, "<f4", {1, 2});
  auto runs_within = [&](int64_t kib) {
    return run("select " + path("tiny.npy") + " -k 1 --device cpu",
               "ulimit -v " + std::to_string(kib) + "; timeout 3 ")
               .exit_code == 0;
  };
  int64_t low = int64_t{128} << 10, high = int64_t{64} << 20;  // KiB: 128 MB to 64 GB
  if (!runs_within(high)) GTEST_SKIP() << "quarry does not run within 64 GB of address space";
  while (high - low > (int64_t{16} << 10)) {
    const int64_t middle = (low + high) / 2;
    (runs_within(middle) ? high : low) = middle;
  }
  std::printf("[ limit    ] a tiny job runs in %lld MB of address space\n",
              static_cast<long long>(high >> 10));
  const std::string limit = "ulimit -v " + std::to_string(high + (int64_t{150} << 10)) + "; ";
  const int64_t classes = int64_t{8} << 20;
  write_npy(path("wide.npy"), std::vector<float>(2 * classes, 1.0f / classes), "<f4",
            {2, 1, classes});
  const CliResult scratch =
      run("score " + path("wide.npy") + " --device cpu --measure bald -o " + path("s.npy"), limit);
  EXPECT_EQ(scratch.exit_code, 1) << scratch.err;
  EXPECT_NE(scratch.err.find("quarry: error: out of host memory"), std::string::npos)
      << scratch.err;
  EXPECT_EQ(std::count(scratch.err.begin(), scratch.err.end(), '\n'), 1) << scratch.err;
  EXPECT_FALSE(fs::exists(path("s.npy")));
  // A 1 GB pool (sparse: its data was never written) cannot be mapped.
  write_npy(path("big.npy"), std::vector<float>{}, "<f4", {int64_t{1} << 27, 2});
  fs::resize_file(path("big.npy"), fs::file_size(path("big.npy")) + (int64_t{1} << 30));
  const CliResult map = run("select " + path("big.npy") + " -k 1 --device cpu", limit);
  EXPECT_EQ(map.exit_code, 1) << map.err;
  EXPECT_NE(map.err.find("cannot map"), std::string::npos) << map.err;
  EXPECT_EQ(std::count(map.err.begin(), map.err.end(), '\n'), 1) << map.err;
}

TEST_F(Cli, MemoryBudgetAndProgress) {
  write_pool("pool.npy");
  // The CPU backend: these budgets are below the CUDA backend's fixed working memory.
  const std::string base = "select " + path("pool.npy") + " -k 9 --device cpu";
  const CliResult whole = run(base);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  for (const char* budget : {"2K", "3000", "0.5M", "1GiB"}) {
    const CliResult chunked = run(base + " --memory-budget " + budget);
    EXPECT_EQ(chunked.exit_code, 0) << budget << ": " << chunked.err;
    EXPECT_EQ(chunked.out, whole.out) << budget;
  }
  expect_usage_error(base + " --memory-budget 10 -o " + path("o.npy"), "too small", path("o.npy"));
  expect_usage_error(base + " --memory-budget lots -o " + path("o.npy"), "--memory-budget",
                     path("o.npy"));
  expect_usage_error(base + " --memory-budget 0", "--memory-budget");
  // Below one byte: it used to mean "no budget".
  expect_usage_error(base + " --memory-budget 0.5", "--memory-budget");
  expect_usage_error(base + " --memory-budget 1e-300", "--memory-budget");
  // --progress draws the progress line on stderr even though it is not a terminal.
  const CliResult shown = run(base + " --memory-budget 2K --progress");
  EXPECT_EQ(shown.exit_code, 0);
  EXPECT_NE(shown.err.find("200 / 200 rows"), std::string::npos) << shown.err;
  EXPECT_EQ(shown.out, whole.out);
  EXPECT_TRUE(run(base + " --progress --quiet").err.empty());
  EXPECT_TRUE(whole.err.empty()) << "no progress when stderr is not a terminal";
}

// Output that cannot be written is a failure, exit code 1 and one line, not exit 0 with the
// output lost: a full device, a closed stdout.
TEST_F(Cli, WriteErrorsOnStdoutAreExitCode1) {
  write_pool("pool.npy");
  for (const std::string& command :
       {"select " + path("pool.npy") + " -k 5", "score " + path("pool.npy"), std::string("info")})
    for (const char* stdout_to : {">/dev/full", ">&-"}) {
      const CliResult r = run(command, "", stdout_to);
      EXPECT_EQ(r.exit_code, 1) << command << " " << stdout_to << ": " << r.err;
      EXPECT_NE(r.err.find("quarry: error: cannot write to standard output"), std::string::npos)
          << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
  // Nothing to write to stdout: a closed stdout does not matter.
  EXPECT_EQ(run("select " + path("pool.npy") + " -k 5 -o " + path("o.npy"), "", ">&-").exit_code,
            0);
}

// A file size limit stops the output's write: exit code 1 with the reason, and neither the
// output nor its temporary file left behind (SIGXFSZ used to end the program mid-write).
TEST_F(Cli, AFileSizeLimitLeavesNoPartialOutput) {
  auto rng = seeded_rng(4005);
  write_npy(path("pool.npy"), random_probabilities(2000, 4, rng), "<f4", {2000, 4});
  for (const char* out : {"s.npy", "s.json"}) {
    const CliResult r = run("score " + path("pool.npy") + " -o " + path(out), "ulimit -f 1; ");
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path(out)));
    for (const auto& entry : fs::directory_iterator(dir_))
      EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

// New output files get 0666 less the umask, as any program's; a file replaced keeps its mode.
TEST_F(Cli, OutputFilesRespectTheUmaskAndKeepTheirMode) {
  write_pool("pool.npy");
  auto mode = [](const std::string& p) { return fs::status(p).permissions() & fs::perms::mask; };
  using fs::perms;
  ASSERT_EQ(
      run("select " + path("pool.npy") + " -k 3 -o " + path("new.json"), "umask 077; ").exit_code,
      0);
  EXPECT_EQ(mode(path("new.json")), perms::owner_read | perms::owner_write);
  ASSERT_EQ(
      run("select " + path("pool.npy") + " -k 3 -o " + path("new.npy"), "umask 022; ").exit_code,
      0);
  EXPECT_EQ(mode(path("new.npy")),
            perms::owner_read | perms::owner_write | perms::group_read | perms::others_read);
  fs::permissions(path("new.npy"), perms::owner_read | perms::owner_write | perms::group_read);
  ASSERT_EQ(run("score " + path("pool.npy") + " -o " + path("new.npy"), "umask 000; ").exit_code,
            0);
  EXPECT_EQ(mode(path("new.npy")), perms::owner_read | perms::owner_write | perms::group_read);
}

// --output naming an input (by any name: a hard or symbolic link) would replace it.
TEST_F(Cli, AnOutputThatIsAnInputIsRefused) {
  auto rng = seeded_rng(4006);
  write_npy(path("pool.npy"), random_probabilities(100, 3, rng), "<f4", {100, 3});
  write_npy(path("emb.npy"), random_normal(100 * 4, rng), "<f4", {100, 4});
  const std::string pool_bytes = read_text(path("pool.npy"));
  fs::create_hard_link(path("pool.npy"), path("hard.npy"));
  fs::create_symlink(path("emb.npy"), path("soft.npy"));
  const std::string select = "select " + path("pool.npy") + " -k 3 --embeddings " + path("emb.npy");
  for (const char* out : {"pool.npy", "hard.npy", "emb.npy", "soft.npy"})
    expect_usage_error(select + " -o " + path(out), "is the input file");
  expect_usage_error("score " + path("pool.npy") + " -o " + path("hard.npy"), "is the input file");
  EXPECT_EQ(read_text(path("pool.npy")), pool_bytes);
}

// Integers out of their option's range are refused, not saturated (--seed -1, 2^64 and 1e23 all
// ran as 2^64 - 1).
TEST_F(Cli, IntegerOptionsOutOfRangeAreRefused) {
  write_pool("pool.npy");
  const std::string base = "select " + path("pool.npy") + " -k 3";
  for (const char* seed : {"-1", "18446744073709551616", "1e23", "0x10", "3.5", "''"})
    expect_usage_error(base + " --seed " + seed, "--seed");
  expect_usage_error("select " + path("pool.npy") + " -k 9223372036854775808",
                     "-k: '9223372036854775808' is not an integer");
  expect_usage_error("select " + path("pool.npy") + " -k 1e2", "-k");
  expect_usage_error(base + " --kmeans-iters 99999999999", "--kmeans-iters");
  expect_usage_error(base + " --candidates 12abc", "--candidates");
  expect_usage_error(base + " --classes 1e3", "--classes");
  // The ends of the ranges are fine.
  EXPECT_EQ(run(base + " --seed 18446744073709551615").exit_code, 0);
  EXPECT_EQ(run("select " + path("pool.npy") + " -k +3").out, run(base).out);
}

TEST_F(Cli, AnExistingOutputIsNotTouchedByAFailedRun) {
  auto pool = write_pool("pool.npy");
  { std::ofstream(path("keep.npy")) << "previous results"; }
  pool[0] = std::nanf("");
  write_npy(path("nan.npy"), pool, "<f4", {200, 5});
  EXPECT_EQ(run("select " + path("nan.npy") + " -k 3 -o " + path("keep.npy")).exit_code, 2);
  EXPECT_EQ(read_text(path("keep.npy")), "previous results");
}

// Rows [first, first + count) of a [members, rows, width] array, as its own C-order array (a
// single model's [rows, classes] has members = 1; votes [members, rows] have width = 1).
template <typename T>
std::vector<T> rows_slice(const std::vector<T>& a, int64_t members, int64_t rows, int64_t width,
                          int64_t first, int64_t count) {
  std::vector<T> out;
  for (int64_t m = 0; m < members; ++m)
    out.insert(out.end(), a.begin() + (m * rows + first) * width,
               a.begin() + (m * rows + first + count) * width);
  return out;
}

class ShardedCli : public Cli {
 protected:
  // Writes the pool (and embeddings) whole and cut into files of `sizes` rows; returns the
  // shard files' names and their first rows.
  template <typename T>
  void write_shards(const std::vector<T>& pool, const std::string& descr,
                    std::vector<int64_t> shape, int rows_axis, const std::vector<int64_t>& sizes,
                    const std::vector<float>* embeddings = nullptr, int64_t dim = 0) {
    write_npy(path("whole.npy"), pool, descr, shape);
    if (embeddings) write_npy(path("whole_emb.npy"), *embeddings, "<f4", {shape[rows_axis], dim});
    const int64_t members = rows_axis == 1 ? shape[0] : 1, rows = shape[rows_axis];
    const int64_t width = pool.size() / (members * rows);
    shard_files_.clear();
    embedding_files_.clear();
    offsets_.clear();
    int64_t first = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<int64_t> part_shape = shape;
      part_shape[rows_axis] = sizes[i];
      shard_files_.push_back(path("shard" + std::to_string(i) + ".npy"));
      write_npy(shard_files_.back(), rows_slice(pool, members, rows, width, first, sizes[i]), descr,
                part_shape);
      if (embeddings) {
        embedding_files_.push_back(path("emb" + std::to_string(i) + ".npy"));
        write_npy(embedding_files_.back(), rows_slice(*embeddings, 1, rows, dim, first, sizes[i]),
                  "<f4", {sizes[i], dim});
      }
      offsets_.push_back(first);
      first += sizes[i];
    }
    pool_rows_ = first;
  }

  static std::string joined(const std::vector<std::string>& names) {
    std::string text;
    for (const auto& n : names) text += " " + n;
    return text;
  }

  nlohmann::json run_json(const std::string& args, const std::string& out_name) {
    const CliResult r = run(args + " -o " + path(out_name));
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(read_text(path(out_name))) : nlohmann::json{};
  }

  // select over the shard files, and each shard's partial merged (in reverse order), equal
  // select on the whole file: indices, scores, reasons and clusters.
  void expect_sharded_equals_whole(const std::string& k_and_options) {
    const bool diversity = !embedding_files_.empty();
    const nlohmann::json whole =
        run_json("select " + path("whole.npy") + " " + k_and_options +
                     (diversity ? " --embeddings " + path("whole_emb.npy") : ""),
                 "whole.json");
    ASSERT_FALSE(whole.is_null());
    auto same = [&](const nlohmann::json& got, const std::string& what) {
      for (const char* key : {"indices", "scores", "reasons", "clusters", "measure"})
        EXPECT_EQ(got.value(key, nlohmann::json()), whole.value(key, nlohmann::json()))
            << what << ": " << key << " for " << k_and_options;
    };
    same(run_json("select" + joined(shard_files_) + " " + k_and_options +
                      (diversity ? " --embeddings" + joined(embedding_files_) : ""),
                  "files.json"),
         "select over the files");
    std::vector<std::string> partials;
    for (size_t i = 0; i < shard_files_.size(); ++i) {
      partials.push_back(path("part" + std::to_string(i) + ".json"));
      const CliResult r = run("select " + shard_files_[i] + " " + k_and_options +
                              (diversity ? " --embeddings " + embedding_files_[i] : "") +
                              " --row-offset " + std::to_string(offsets_[i]) + " --pool-rows " +
                              std::to_string(pool_rows_) + " -o " + partials.back());
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    std::reverse(partials.begin(), partials.end());
    const std::string k = k_and_options.substr(0, k_and_options.find(' ', 3));
    same(run_json("merge" + joined(partials) + " " + k, "merged.json"), "merge");
  }

  std::vector<std::string> shard_files_, embedding_files_;
  std::vector<int64_t> offsets_;
  int64_t pool_rows_ = 0;
};

TEST_F(ShardedCli, SingleModelFilesAndPartialsEqualOneFile) {
  const auto pool = write_pool("unused.npy");
  write_shards(pool, "<f4", {200, 5}, 0, {1, 3, 96, 100});
  for (const char* measure : {"entropy", "margin", "least_confidence", "ratio"})
    expect_sharded_equals_whole("-k 10 --measure " + std::string(measure));
  // score over the files writes the scores of the whole file.
  ASSERT_EQ(run("score" + joined(shard_files_) + " -o " + path("s1.npy")).exit_code, 0);
  ASSERT_EQ(run("score " + path("whole.npy") + " -o " + path("s2.npy")).exit_code, 0);
  EXPECT_EQ(read_text(path("s1.npy")), read_text(path("s2.npy")));
}

TEST_F(ShardedCli, TiesAcrossFileBoundaries) {
  // Rows repeat one of two probability rows: long runs of exactly equal scores, cut by the files.
  std::vector<float> pool;
  for (int r = 0; r < 90; ++r) {
    const bool sure = r % 3 == 0;
    pool.insert(pool.end(), {sure ? 0.75f : 0.5f, sure ? 0.25f : 0.5f});
  }
  write_shards(pool, "<f4", {90, 2}, 0, {10, 1, 40, 39});
  expect_sharded_equals_whole("-k 45");
  expect_sharded_equals_whole("-k 70");
}

TEST_F(ShardedCli, CommitteesAndVotes) {
  auto rng = seeded_rng(4100);
  const int64_t m = 4, n = 80, c = 3;
  const auto committee = random_probabilities(m * n, c, rng, 1.0f);
  write_shards(committee, "<f4", {m, n, c}, 1, {1, 30, 2, 47});
  for (const char* measure : {"consensus_entropy", "kl_max", "bald", "vote_entropy"})
    expect_sharded_equals_whole("-k 12 --measure " + std::string(measure));
  std::vector<int32_t> votes(m * n);
  std::uniform_int_distribution<int32_t> vote(-1, 2);
  for (auto& v : votes) v = vote(rng);
  for (int64_t i = 0; i < m; ++i) votes[i * n + 31] = -1;  // nobody voted: scores -inf
  write_shards(votes, "<i4", {m, n}, 1, {31, 1, 48});
  expect_sharded_equals_whole("-k 80");
  expect_sharded_equals_whole("-k 9 --measure variation_ratio");
}

TEST_F(ShardedCli, DiversityAndExploration) {
  auto rng = seeded_rng(4101);
  const int64_t n = 300, c = 4, d = 5;
  const auto pool = random_probabilities(n, c, rng);
  const auto emb = random_normal(n * d, rng);
  write_shards(pool, "<f4", {n, c}, 0, {2, 150, 1, 147}, &emb, d);
  expect_sharded_equals_whole("-k 10 --seed 4");
  expect_sharded_equals_whole("-k 10 --candidates 40 --kmeans-iters 5 --explore 0.3 --seed 4");
  embedding_files_.clear();
  expect_sharded_equals_whole("-k 10 --explore 0.3 --seed 11");
}

TEST_F(ShardedCli, BadShardsAndPartialsAreExitCode2) {
  auto rng = seeded_rng(4102);
  write_npy(path("a.npy"), random_probabilities(20, 4, rng), "<f4", {20, 4});
  write_npy(path("b.npy"), random_probabilities(20, 4, rng), "<f4", {20, 4});
  write_npy(path("c5.npy"), random_probabilities(20, 5, rng), "<f4", {20, 5});
  write_npy(path("h.npy"), encode(random_probabilities(20, 4, rng), DType::f16), "<f2", {20, 4});
  const std::string a = path("a.npy"), b = path("b.npy"), out = path("o.json");
  expect_usage_error("select " + a + " " + path("c5.npy") + " -k 3 -o " + out, "agree", out);
  expect_usage_error("select " + a + " " + path("h.npy") + " -k 3 -o " + out, "f16", out);
  expect_usage_error("score " + a + " " + path("c5.npy") + " -o " + path("s.npy"), "shape (20, 5)",
                     path("s.npy"));
  expect_usage_error("select " + a + " " + b + " -k 3 --embeddings " + a + " -o " + out,
                     "one embeddings file per pool file", out);
  // A bad row in the second file is named by its file and its row in the whole pool.
  auto bad = random_probabilities(20, 4, rng);
  bad[5 * 4 + 1] = std::nanf("");
  write_npy(path("bad.npy"), bad, "<f4", {20, 4});
  expect_usage_error("select " + a + " " + path("bad.npy") + " -k 3 -o " + out,
                     "bad.npy (pool rows [20, 40)): row 25", out);

  auto partial = [&](const std::string& file, int64_t offset, const std::string& extra,
                     const std::string& name) {
    const CliResult r = run("select " + file + " -k 3 --row-offset " + std::to_string(offset) +
                            " " + extra + " -o " + path(name));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return path(name);
  };
  const std::string pa = partial(a, 0, "", "pa.json"), pb = partial(b, 20, "", "pb.json");
  ASSERT_EQ(run("merge " + pa + " " + pb + " -k 3 -o " + path("m.npy")).exit_code, 0);
  expect_usage_error("merge " + pa + " " + pb + " -k 4 -o " + out, "made with k = 3", out);
  expect_usage_error("merge " + pa + " " + pa + " -k 3 -o " + out, "overlap", out);
  expect_usage_error("merge " + pb + " -k 3 -o " + out, "rows [0, 20) are in no partial", out);
  const std::string margin = partial(b, 20, "--measure margin", "margin.json");
  expect_usage_error("merge " + pa + " " + margin + " -k 3 -o " + out,
                     "partial 1 (" + margin + ") was made with measure margin", out);
  const std::string wide = partial(path("c5.npy"), 20, "", "wide.json");
  expect_usage_error("merge " + pa + " " + wide + " -k 3 -o " + out, "classes 5", out);
  const std::string half = partial(path("h.npy"), 20, "", "half.json");
  expect_usage_error("merge " + pa + " " + half + " -k 3 -o " + out, "dtype f16", out);
  { std::ofstream(path("junk.json")) << "{\"indices\": [1, 2]}"; }
  expect_usage_error("merge " + pa + " " + path("junk.json") + " -k 3 -o " + out,
                     "junk.json: not a quarry partial", out);
  expect_usage_error("merge " + path("nope.json") + " -k 3 -o " + out, "nope.json", out);
  expect_usage_error("select " + a + " -k 3 --row-offset 0 -o " + path("p.npy"), ".json",
                     path("p.npy"));
  expect_usage_error("select " + a + " -k 3 --pool-rows 40 -o " + out, "--row-offset", out);
  expect_usage_error("select " + a + " -k 3 --explore 0.5 --row-offset 0 -o " + out, "--pool-rows",
                     out);
  expect_usage_error("select " + a + " -k 3 --row-offset 30 --pool-rows 40 -o " + out,
                     "not rows of a pool of 40 rows", out);
  // A partial on stdout is its JSON.
  const CliResult r = run("select " + a + " -k 2 --row-offset 0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(partial_from_json(r.out).indices.size(), 2u);
}

TEST_F(Cli, EglBadgeAndCoresetFromFiles) {
  const auto pool = write_pool("pool.npy");
  auto rng = seeded_rng(4017);
  const auto h = random_normal(200 * 6, rng);
  write_npy(path("feat.npy"), h, "<f4", {200, 6});
  const std::string common = "--device cpu --features " + path("feat.npy");
  // egl scores, as the API gives them.
  ASSERT_EQ(run("score " + path("pool.npy") + " --measure egl -o " + path("s.npy") + " " + common)
                .exit_code,
            0);
  Resources cpu(Device::cpu);
  const PoolView view = PoolView::matrix(pool.data(), DType::f32, 200, 5);
  ScoreOptions egl;
  egl.measure = Measure::egl;
  egl.features = EmbeddingView::matrix(h.data(), DType::f32, 200, 6);
  const auto want = score(cpu, view, egl);
  const auto got = io::NpyArray::open(path("s.npy"));
  EXPECT_TRUE(std::equal(want.begin(), want.end(), static_cast<const float*>(got.data())));
  // BADGE.
  CliResult r = run("select " + path("pool.npy") + " -k 8 --strategy badge --seed 3 -o " +
                    path("b.json") + " " + common);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SelectOptions opt;
  opt.k = 8;
  opt.strategy = Strategy::badge;
  opt.seed = 3;
  opt.scoring.features = egl.features;
  auto j = nlohmann::json::parse(read_text(path("b.json")));
  EXPECT_EQ(j["indices"].get<std::vector<int64_t>>(), select(cpu, view, opt).indices);
  EXPECT_EQ(j["reasons"][0], "badge");
  EXPECT_FALSE(j.contains("clusters"));
  // Core-set from labeled row indices, and from labeled embeddings.
  write_npy(path("emb.npy"), h, "<f4", {200, 6});
  write_npy(path("lab.npy"), std::vector<int64_t>{3, 9}, "<i8", {2});
  write_npy(path("labemb.npy"), std::vector<float>(h.begin(), h.begin() + 12), "<f4", {2, 6});
  opt = SelectOptions{};
  opt.k = 5;
  opt.strategy = Strategy::coreset;
  opt.embeddings = EmbeddingView::matrix(h.data(), DType::f32, 200, 6);
  opt.labeled_rows = {3, 9};
  r = run("select " + path("pool.npy") + " -k 5 --strategy coreset --embeddings " +
          path("emb.npy") + " --labeled " + path("lab.npy") + " --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string lines;
  for (int64_t i : select(cpu, view, opt).indices) lines += std::to_string(i) + "\n";
  EXPECT_EQ(r.out, lines);
  r = run("select " + path("pool.npy") + " -k 5 --strategy coreset --embeddings " +
          path("emb.npy") + " --labeled " + path("labemb.npy") + " --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  opt.labeled_rows.clear();
  opt.labeled_embeddings = EmbeddingView::matrix(h.data(), DType::f32, 2, 6);
  lines.clear();
  for (int64_t i : select(cpu, view, opt).indices) lines += std::to_string(i) + "\n";
  EXPECT_EQ(r.out, lines);
}

TEST_F(Cli, SelectionUnderABudget) {
  const auto pool = write_pool("pool.npy");
  std::vector<float> costs(200);
  for (int r = 0; r < 200; ++r) costs[r] = static_cast<float>(1 + r % 4);
  write_npy(path("costs.npy"), costs, "<f4", {200});
  const std::string base = "select " + path("pool.npy") + " --costs " + path("costs.npy");
  CliResult r = run(base + " --budget 20 -o " + path("g.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(read_text(path("g.json")));
  EXPECT_EQ(j["budget"].get<double>(), 20.0);
  double spent = 0;
  for (const auto& i : j["indices"]) spent += costs[i.get<int64_t>()];
  EXPECT_EQ(j["cost_spent"].get<double>(), spent);
  EXPECT_LE(spent, 20.0);
  // To stdout: the indices, and the cost on stderr.
  r = run(base + " --budget 20 --exact-budget --candidates 50");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("of the budget 20"), std::string::npos) << r.err;
  EXPECT_GT(std::count(r.out.begin(), r.out.end(), '\n'), 4);
  // Exploration within the budget.
  r = run(base + " --budget 30 --explore 0.2 --seed 4 -o " + path("e.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(read_text(path("e.json")));
  EXPECT_NE(std::find(j["reasons"].begin(), j["reasons"].end(), "exploration"), j["reasons"].end());
  EXPECT_LE(j["cost_spent"].get<double>(), 30.0);
}

TEST_F(Cli, BadCostsBudgetsAndSideInputsAreExitCode2) {
  write_pool("pool.npy");
  const std::string pool = path("pool.npy"), out = path("out.json");
  std::vector<float> costs(200, 2.0f);
  auto with_costs = [&](const std::vector<float>& c) {
    write_npy(path("c.npy"), c, "<f4", {static_cast<int64_t>(c.size())});
    return "select " + pool + " --costs " + path("c.npy") + " -o " + out;
  };
  costs[17] = 0;
  expect_usage_error(with_costs(costs) + " --budget 10", "c.npy: costs row 17", out);
  costs[17] = -1;
  expect_usage_error(with_costs(costs) + " --budget 10", "costs row 17", out);
  costs[17] = std::nanf("");
  expect_usage_error(with_costs(costs) + " --budget 10", "costs row 17", out);
  costs[17] = 2;
  expect_usage_error(with_costs(costs) + " --budget 1.5", "below the cheapest", out);
  expect_usage_error(with_costs(costs), "budget", out);
  expect_usage_error(with_costs(std::vector<float>(199, 1.0f)) + " --budget 5", "199", out);
  expect_usage_error("select " + pool + " --budget 5 -o " + out, "--costs", out);
  expect_usage_error(with_costs(costs) + " --budget 10 -k 3", "either k or a budget", out);
  costs[5] = 1.5f;
  expect_usage_error(with_costs(costs) + " --budget 10 --exact-budget", "integer costs", out);
  expect_usage_error("select " + pool + " -k 2 --strategy random -o " + out, "unknown strategy",
                     out);
  expect_usage_error("select " + pool + " -k 2 --strategy badge -o " + out, "features", out);
  expect_usage_error("select " + pool + " -k 2 --strategy coreset -o " + out, "embeddings", out);
  expect_usage_error("score " + pool + " --measure egl -o " + path("s.npy"), "--features",
                     path("s.npy"));
  std::vector<float> h(200 * 3, 1.0f);
  h[42 * 3 + 1] = std::nanf("");
  write_npy(path("feat.npy"), h, "<f4", {200, 3});
  expect_usage_error(
      "select " + pool + " -k 2 --measure egl --features " + path("feat.npy") + " -o " + out,
      "feat.npy: features row 42", out);
  write_npy(path("lab.npy"), std::vector<float>{1, 2, 3}, "<f4", {3});
  write_npy(path("emb.npy"), std::vector<float>(200 * 3, 1.0f), "<f4", {200, 3});
  expect_usage_error("select " + pool + " -k 2 --strategy coreset --embeddings " + path("emb.npy") +
                         " --labeled " + path("lab.npy") + " -o " + out,
                     "labeled rows must be", out);
}

}  // namespace
}  // namespace quarry::test
