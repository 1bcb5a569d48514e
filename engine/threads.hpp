#pragma once
// The calling thread's side of a call: how many threads it may use, the CPU backend's parallel
// loops, OpenMP after fork(), and polling for an interrupt.
//
// The CPU backend's loops run on a pool of its own rather than in OpenMP parallel regions: an
// OpenMP region ends at a barrier that waits for every thread of the team, and on a busy machine
// a team thread is often not running, so the call waits (spinning, by default) for a core the
// thread does not get. Here the calling thread takes chunks of the work itself and helpers take
// chunks only once they run: the call waits only for chunks a helper has already started.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "quarry/interrupt.hpp"

namespace quarry::engine {

/// Run at the start of every call with the Resources' thread setting (0: automatic). Sets the
/// threads this call may use on the calling thread, and in a process forked after a call had
/// run (OpenMP's and the pool's threads are then gone) starts over with new ones.
void prepare_calling_thread(int threads = 0);

/// CPUs this process may run on: those in its affinity mask, at most its cgroup's CPU quota
/// (rounded up), at least 1.
int available_cpus();

/// The smallest CPU quota, in CPUs, of the cgroup that `proc_self_cgroup` (a /proc/PID/cgroup
/// file) names and of its ancestors, read under `cgroup_root` (/sys/fs/cgroup): cgroup v2's
/// cpu.max or v1's cpu.cfs_quota_us / cpu.cfs_period_us. 0 when none is set. (available_cpus()
/// reads this process's; the arguments are for tests.)
double cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& cgroup_root);

/// The most threads the current call may use: the Resources' setting when it is not 0, else the
/// smaller of available_cpus() and OpenMP's thread count (OMP_NUM_THREADS, omp_set_num_threads,
/// threadpoolctl).
int call_threads();
/// call_threads() without a setting.
int automatic_threads();
/// "1 thread", "8 threads".
inline std::string threads_text(int threads) {
  return std::to_string(threads) + (threads == 1 ? " thread" : " threads");
}

/// Values a thread should have to itself before another thread joins it: below this, waking a
/// helper costs more than it saves (measured on a 2-core VM, bench/RESULTS.md).
inline constexpr int64_t kWorkPerThread = int64_t{1} << 16;

/// Threads for a loop touching `work` values: one below 2 * kWorkPerThread, else one per
/// kWorkPerThread values up to call_threads().
int team_for(int64_t work);

/// A non-owning reference to a callable, for the pool's loop bodies.
template <typename Signature>
class FunctionRef;
template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor)
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* object, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(object))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

/// Runs body(chunk, slot) for every chunk in [0, chunks) on up to `team` threads: the calling
/// thread (slot 0) and helpers of a process-wide pool (slots 1 .. team - 1), so per-slot scratch
/// needs `team` entries. Chunks are taken in order from a shared counter; returns when every
/// chunk has run. Helpers that have not started when the chunks run out are not waited for. A
/// chunk's exception is rethrown here (the first one; chunks not started yet are skipped). While
/// another call uses the pool (another thread's, or a loop inside a body), runs on the calling
/// thread alone.
void run_chunks(int64_t chunks, int team, FunctionRef<void(int64_t chunk, int slot)> body);

/// The threads a parallel_for over n items of work_per_item uses, for sizing per-slot scratch
/// before it.
inline int team_of(int64_t n, int64_t work_per_item) {
  return n <= 0 ? 1 : team_for(n * std::max<int64_t>(work_per_item, 1));
}

/// body(begin, end, slot) over [0, n) in ranges of `grain` items (the last one shorter), on
/// team_of(n, work_per_item) threads at most. The ranges do not depend on the thread count, so
/// results kept per range and combined in range order repeat exactly on any number of threads.
template <typename Body>
void parallel_for(int64_t n, int64_t grain, int64_t work_per_item, Body&& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t ranges = (n + grain - 1) / grain;
  const int team = team_of(n, work_per_item);
  if (team <= 1 || ranges == 1) {
    for (int64_t i = 0; i < ranges; ++i) body(i * grain, std::min(n, (i + 1) * grain), 0);
    return;
  }
  run_chunks(ranges, team,
             [&](int64_t i, int slot) { body(i * grain, std::min(n, (i + 1) * grain), slot); });
}

/// The smallest of body(begin, end, slot) over parallel_for's ranges, `none` if it is smaller
/// (or n is 0): the reduction that finds the lowest bad row. Min is exact and commutative, so
/// the result does not depend on the threads.
template <typename T, typename Body>
T parallel_min(int64_t n, int64_t grain, int64_t work_per_item, T none, Body&& body) {
  std::atomic<T> smallest{none};
  parallel_for(n, grain, work_per_item, [&](int64_t begin, int64_t end, int slot) {
    const T value = body(begin, end, slot);
    T current = smallest.load(std::memory_order_relaxed);
    // Relaxed: the pool's join orders the last store before the caller's read.
    while (value < current &&
           !smallest.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
    }
  });
  return smallest.load(std::memory_order_relaxed);
}

/// OpenMP's thread count on the calling thread for a scope (for FAISS, which runs OpenMP
/// regions of its own): call_threads(), restored after.
class OpenMpThreads {
 public:
  OpenMpThreads();
  ~OpenMpThreads();
  OpenMpThreads(const OpenMpThreads&) = delete;
  OpenMpThreads& operator=(const OpenMpThreads&) = delete;

 private:
  int saved_;
};

/// Rows per block for a loop over rows of `elements_per_row` elements that polls for an
/// interrupt between blocks: all rows when no InterruptCheck is installed, else a few
/// milliseconds of work.
int64_t interruptible_block_rows(int64_t rows, int64_t elements_per_row);

}  // namespace quarry::engine
