#include "engine/threads.hpp"

#include <omp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "quarry/error.hpp"

namespace quarry {

namespace {

thread_local InterruptCheck* t_check = nullptr;
thread_local std::chrono::steady_clock::time_point t_last_poll{};

// The check (which in Python takes the GIL) runs at most this often.
constexpr auto kPollInterval = std::chrono::milliseconds(5);

}  // namespace

InterruptCheck::InterruptCheck(std::function<bool()> check)
    : check_(std::move(check)), outer_(t_check) {
  t_check = this;
}

InterruptCheck::~InterruptCheck() {
  t_check = outer_;
}

bool interrupt_requested() {
  InterruptCheck* check = t_check;
  if (check == nullptr || !check->check_) return false;
  if (check->requested_) return true;
  const auto now = std::chrono::steady_clock::now();
  if (now - t_last_poll < kPollInterval) return false;
  t_last_poll = now;
  check->requested_ = check->check_();
  return check->requested_;
}

void poll_interrupt() {
  if (interrupt_requested()) throw Interrupted("the call was interrupted");
}

bool interrupt_check_installed() {
  return t_check != nullptr;
}

namespace engine {

namespace {

std::atomic<bool> g_called{false};  // a call has run here: OpenMP's pool may have started
std::atomic<bool> g_forked{false};  // forked after that: the pool's threads are gone

extern "C" void on_fork_child() {
  if (g_called.load()) g_forked.store(true);
}

// Registered once, when the library is loaded.
const int g_registered = pthread_atfork(nullptr, nullptr, on_fork_child);

}  // namespace

void prepare_calling_thread() {
  (void)g_registered;
  g_called.store(true, std::memory_order_relaxed);
  // Per thread (an OpenMP ICV): each thread of the child that calls quarry sets its own.
  if (g_forked.load(std::memory_order_relaxed) && omp_get_max_threads() != 1)
    omp_set_num_threads(1);
}

int64_t interruptible_block_rows(int64_t rows, int64_t elements_per_row) {
  if (!interrupt_check_installed()) return std::max<int64_t>(rows, 1);
  // Half a million values: 20 ms of the slowest scoring (a committee's logits) on two cores, a
  // fraction of a millisecond of the fastest, where a parallel region costs microseconds.
  constexpr int64_t kBlockElements = int64_t{1} << 19;
  return std::clamp<int64_t>(kBlockElements / std::max<int64_t>(elements_per_row, 1), 1,
                             std::max<int64_t>(rows, 1));
}

}  // namespace engine

}  // namespace quarry
