// The `quarry` program end to end: outputs, exit codes, one-line errors, no output after errors.

#include <omp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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
    dir_ = fs::path(::testing::TempDir()) /
           ("quarry_cli_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
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
    const std::string cmd = shell_prefix + cli_path() + " " + args + " " +
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
};

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

TEST_F(Cli, InfoShowsVersionAndBackends) {
  const CliResult r = run("info");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("quarry " + version()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("backends: cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpus:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cpu: " + std::to_string(omp_get_max_threads()) + " threads; row loops"),
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
  if (have_gpu()) GTEST_SKIP() << "a GPU is present";
  write_pool("pool.npy");
  expect_usage_error("select " + path("pool.npy") + " -k 3 --device cuda -o " + path("o.npy"),
                     "CUDA", path("o.npy"));
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
// (Below what a job needs, OpenBLAS 0.3.21's thread at startup retries its 128 MB buffer
// forever, and the program hangs at exit: the probes run under `timeout`.)
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

}  // namespace
}  // namespace quarry::test
