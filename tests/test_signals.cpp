// The command line's signal handling (host/cli/io/signals.hpp), in child processes: a partly
// written output is removed when a signal ends the process, and a memory-mapped input that shrinks
// (SIGBUS) is one line of error and exit code 2.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "npy.hpp"
#include "signals.hpp"
#include "test_util.hpp"

namespace quarry::test {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("quarry_signals_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes 1 MB under a 4 KB file size limit, with the handlers on SIGXFSZ, which the write raises.
void write_past_a_file_size_limit(const std::string& path) {
  io::remove_partial_output_on({SIGXFSZ});
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = 4096;
  setrlimit(RLIMIT_FSIZE, &limit);
  io::write_file_atomically(path, std::string(1 << 20, 'x'));
}

// A signal in the middle of an output's write: here SIGXFSZ, raised by the write itself past a
// file size limit, so that it lands mid-write every time; SIGTERM and SIGINT take the same path.
TEST(SignalsDeathTest, ASignalDuringAWriteRemovesThePartialOutput) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const fs::path dir = fresh_dir("partial");
  EXPECT_EXIT(write_past_a_file_size_limit((dir / "out.npy").string()),
              ::testing::KilledBySignal(SIGXFSZ), "");
  EXPECT_TRUE(fs::is_empty(dir)) << "no output and no temporary file";
}

// Maps a file, empties it, and reads the mapping: SIGBUS.
void read_a_truncated_mapping(const std::string& path) {
  { std::ofstream(path, std::ios::binary) << std::string(1 << 16, 'x'); }
  const int fd = ::open(path.c_str(), O_RDWR);
  const auto* map =
      static_cast<const volatile char*>(::mmap(nullptr, 1 << 16, PROT_READ, MAP_PRIVATE, fd, 0));
  if (ftruncate(fd, 0) != 0) _exit(100);
  const char c = map[4096];
  _exit(c);  // not reached
}

// The message is one line that starts a line: after a progress line, on the next line; without
// one, where the cursor is (it used to be preceded by a blank line).
TEST(SignalsDeathTest, ATruncatedInputIsOneLineAndExitCode2) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string path = (fresh_dir("bus") / "pool.npy").string();
  EXPECT_EXIT(
      {
        io::report_truncated_input("pool.npy", 2);
        read_a_truncated_mapping(path);
      },
      ::testing::ExitedWithCode(2),
      "^quarry: error: pool.npy: the file was truncated or changed while it was being read\n$");
  EXPECT_EXIT(
      {
        io::report_truncated_input("pool.npy or emb.npy", 2);
        io::set_progress_line_open(true);
        read_a_truncated_mapping(path);
      },
      ::testing::ExitedWithCode(2),
      "^\nquarry: error: pool.npy or emb.npy: the file was truncated");
}

}  // namespace
}  // namespace quarry::test
