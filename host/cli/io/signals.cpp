#include "signals.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace quarry::io {

namespace {

// What the handlers read. Only lock-free atomics and fixed buffers: a handler may run on any
// thread, at any point.
std::mutex g_writing;  // one partial output at a time
char g_partial_path[4096];
std::atomic<bool> g_partial{false};
static_assert(std::atomic<bool>::is_always_lock_free);

char g_bus_message[1024];
std::size_t g_bus_message_length = 0;
int g_bus_exit_code = 2;
std::atomic<bool> g_progress_line_open{false};

extern "C" void on_ending_signal(int signal) {
  if (g_partial.load()) ::unlink(g_partial_path);
  // SA_RESETHAND restored the default action: raised again, the signal ends the process.
  ::raise(signal);
}

extern "C" void on_sigbus(int) {
  if (g_progress_line_open.load()) {
    const ssize_t ignored = ::write(STDERR_FILENO, "\n", 1);
    (void)ignored;
  }
  const ssize_t ignored = ::write(STDERR_FILENO, g_bus_message, g_bus_message_length);
  (void)ignored;
  _exit(g_bus_exit_code);
}

}  // namespace

PartialOutput::PartialOutput(const std::string& temporary_path) : lock_(g_writing) {
  if (temporary_path.size() >= sizeof g_partial_path) return;  // not named: not removed
  std::memcpy(g_partial_path, temporary_path.c_str(), temporary_path.size() + 1);
  g_partial.store(true);
}

PartialOutput::~PartialOutput() {
  g_partial.store(false);
}

void remove_partial_output_on(std::initializer_list<int> signals) {
  struct sigaction action {};
  action.sa_handler = on_ending_signal;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int signal : signals) sigaction(signal, &action, nullptr);
}

void report_truncated_input(const std::string& files, int exit_code) {
  const std::string text =
      "quarry: error: " + files + ": the file was truncated or changed while it was being read\n";
  // A message too long for the buffer is cut, and still ends its line.
  const std::size_t length = std::min(text.size(), sizeof g_bus_message);
  std::memcpy(g_bus_message, text.data(), length);
  g_bus_message[length - 1] = '\n';
  g_bus_message_length = length;
  g_bus_exit_code = exit_code;
  struct sigaction action {};
  action.sa_handler = on_sigbus;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, nullptr);
}

void set_progress_line_open(bool open) {
  g_progress_line_open.store(open);
}

}  // namespace quarry::io
