#include "engine/threads.hpp"

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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
std::atomic<bool> g_forked{false};  // forked after that: OpenMP's threads are gone
std::atomic<uint64_t> g_forks{0};   // fork()s into this process: the pool's threads are gone

extern "C" void on_fork_child() {
  g_forks.fetch_add(1);
  if (g_called.load()) g_forked.store(true);
}

// Registered once, when the library is loaded.
const int g_registered = pthread_atfork(nullptr, nullptr, on_fork_child);

thread_local int t_threads_setting = 0;  // the current call's Resources setting; 0: automatic

// The CPU quota of one cgroup directory, in CPUs (0: none): cgroup v2's cpu.max ("max 100000" or
// "200000 100000") or v1's cpu.cfs_quota_us / cpu.cfs_period_us.
double cgroup_quota(const std::string& dir) {
  std::ifstream v2(dir + "/cpu.max");
  std::string quota;
  double period = 0;
  if (v2 >> quota >> period) {
    char* end = nullptr;
    const double q = std::strtod(quota.c_str(), &end);  // "max": no quota
    return end != quota.c_str() && *end == '\0' && q > 0 && period > 0 ? q / period : 0;
  }
  std::ifstream v1_quota(dir + "/cpu.cfs_quota_us"), v1_period(dir + "/cpu.cfs_period_us");
  double q = 0;
  if (v1_quota >> q && v1_period >> period && q > 0 && period > 0) return q / period;
  return 0;
}

}  // namespace

double cgroup_cpu_limit(const std::string& proc_self_cgroup, const std::string& cgroup_root) {
  std::ifstream self(proc_self_cgroup);
  std::string line;
  double limit = 0;
  while (std::getline(self, line)) {
    // "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1).
    const auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    std::string root;
    if (controllers.empty()) {
      root = cgroup_root;
    } else {
      std::stringstream names(controllers);
      std::string name;
      bool cpu = false;
      while (std::getline(names, name, ',')) cpu |= name == "cpu";
      if (!cpu) continue;
      root = cgroup_root + "/" + controllers;
    }
    // The directory as this process sees it (in a container the cgroup root is often mounted
    // at root, and the path from /proc names the host's view), then its ancestors.
    for (;;) {
      const double quota = cgroup_quota(root + path);
      if (quota > 0) limit = limit > 0 ? std::min(limit, quota) : quota;
      if (path.empty() || path == "/") break;
      const auto slash = path.rfind('/');
      path = slash == 0 || slash == std::string::npos ? "" : path.substr(0, slash);
    }
  }
  return limit;
}

namespace {

int count_available_cpus() {
  int cpus = 0;
  for (int size = 1024; size <= (1 << 20) && cpus == 0; size *= 2) {
    cpu_set_t* set = CPU_ALLOC(size);
    if (!set) break;
    const std::size_t bytes = CPU_ALLOC_SIZE(size);
    if (sched_getaffinity(0, bytes, set) == 0)
      cpus = CPU_COUNT_S(bytes, set);
    else if (errno != EINVAL)
      cpus = -1;
    CPU_FREE(set);
  }
  if (cpus <= 0) cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const double quota = cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup");
  if (quota > 0) cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(quota))));
  return cpus;
}

// Chunks of one call's loop, shared with the helpers that join it. Helpers hold it by shared_ptr:
// one that wakes after the call returned finds no chunk left and never touches `body`.
struct Job {
  Job(int64_t chunks_, int helpers_, FunctionRef<void(int64_t, int)> body_)
      : chunks(chunks_), helpers(helpers_), body(body_) {}
  const int64_t chunks;
  const int helpers;  // slots 1 .. helpers may join
  const FunctionRef<void(int64_t, int)> body;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> joined{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by whoever set `failed`
  std::mutex mutex;
  std::condition_variable finished;

  // Takes chunks until none is left.
  void work(int slot) {
    for (;;) {
      const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          body(i, slot);
        } catch (...) {
          if (!failed.exchange(true)) error = std::current_exception();
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
        const std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

// Helper threads that sleep until a call posts a job; never destroyed (threads still blocked in
// it at exit end with the process), and replaced in a forked child, where its threads are gone.
class Pool {
 public:
  explicit Pool(uint64_t forks) : forks_(forks) {}
  const uint64_t forks_;

  // Runs the chunks on the calling thread and up to team - 1 helpers; false (nothing run) when
  // another call holds the pool.
  bool try_run(int64_t chunks, int team, FunctionRef<void(int64_t, int)> body) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    struct Release {
      std::atomic<bool>& busy;
      ~Release() { busy.store(false, std::memory_order_release); }
    } release{busy_};
    const int helpers = std::min(team - 1, start_helpers(team - 1));
    auto job = std::make_shared<Job>(chunks, helpers, body);
    if (helpers > 0) {
      int asleep = 0;
      {
        const std::lock_guard<std::mutex> lock(mutex_);
        job_ = job;
        generation_.fetch_add(1, std::memory_order_release);
        asleep = std::min(helpers, sleeping_);
      }
      // Helpers still spinning after the last job see the new one without a wake-up.
      for (int h = 0; h < asleep; ++h) wake_.notify_one();
    }
    job->work(0);
    if (job->done.load(std::memory_order_acquire) != chunks) {
      // Only chunks a helper has started are left: short, so spin a little before sleeping.
      for (int spin = 0; spin < 2000 && job->done.load(std::memory_order_acquire) != chunks; ++spin)
        cpu_relax();
      std::unique_lock<std::mutex> lock(job->mutex);
      job->finished.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == chunks; });
    }
    if (helpers > 0) {
      const std::lock_guard<std::mutex> lock(mutex_);
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
    return true;
  }

 private:
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  // Starts helpers up to `wanted`; returns how many there are (fewer when the system refuses).
  int start_helpers(int wanted) {
    const std::lock_guard<std::mutex> lock(mutex_);
    while (started_ < wanted) {
      try {
        std::thread([this] { helper(); }).detach();
      } catch (const std::system_error&) {
        break;
      }
      ++started_;
    }
    return started_;
  }

  void helper() {
    uint64_t seen = 0;
    for (;;) {
      // A loop of picks (core-set, BADGE) posts its next job within microseconds: a helper
      // watches for it a little while before sleeping, which spares the wake-up (tens of
      // microseconds) per pick. Short enough to cost a busy machine little.
      const auto give_up = std::chrono::steady_clock::now() + kWatch;
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < give_up)
        for (int i = 0; i < 32; ++i) cpu_relax();
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleeping_;
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        --sleeping_;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
      }
      if (!job) continue;
      const int slot = job->joined.fetch_add(1, std::memory_order_relaxed) + 1;
      if (slot <= job->helpers) job->work(slot);
    }
  }

  std::atomic<bool> busy_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;             // the job being run, while one is
  std::atomic<uint64_t> generation_{0};  // jobs posted so far; changed under mutex_
  int sleeping_ = 0;                     // helpers waiting on wake_
  int started_ = 0;
  static constexpr auto kWatch = std::chrono::microseconds(50);
};

std::atomic<Pool*> g_pool{nullptr};

Pool& pool() {
  const uint64_t forks = g_forks.load(std::memory_order_acquire);
  Pool* current = g_pool.load(std::memory_order_acquire);
  while (current == nullptr || current->forks_ != forks) {
    // The first call, or the first in a forked child: the old pool (its threads gone) is left.
    auto* fresh = new Pool(forks);
    if (g_pool.compare_exchange_strong(current, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
  }
  return *current;
}

}  // namespace

void prepare_calling_thread(int threads) {
  (void)g_registered;
  t_threads_setting = std::max(threads, 0);
  g_called.store(true, std::memory_order_relaxed);
  // Per thread (an OpenMP ICV): each thread of the child that calls quarry sets its own. OpenMP
  // still runs FAISS's k-means.
  if (g_forked.load(std::memory_order_relaxed) && omp_get_max_threads() != 1)
    omp_set_num_threads(1);
}

int available_cpus() {
  static const int cpus = count_available_cpus();
  return cpus;
}

int call_threads() {
  return t_threads_setting > 0 ? t_threads_setting : automatic_threads();
}

int automatic_threads() {
  // OpenMP's count is the user's (or threadpoolctl's) limit, except in a forked child, where
  // prepare_calling_thread set it to 1 for OpenMP's sake and the pool starts afresh.
  if (g_forked.load(std::memory_order_relaxed)) return available_cpus();
  return std::max(1, std::min(available_cpus(), omp_get_max_threads()));
}

OpenMpThreads::OpenMpThreads() : saved_(omp_get_max_threads()) {
  // In a forked child OpenMP stays on one thread (prepare_calling_thread): libgomp would wait
  // for the parent's workers.
  omp_set_num_threads(g_forked.load(std::memory_order_relaxed) ? 1 : call_threads());
}
OpenMpThreads::~OpenMpThreads() {
  omp_set_num_threads(saved_);
}

int team_for(int64_t work) {
  if (work < 2 * kWorkPerThread) return 1;
  return static_cast<int>(std::min<int64_t>(call_threads(), work / kWorkPerThread));
}

void run_chunks(int64_t chunks, int team, FunctionRef<void(int64_t, int)> body) {
  if (chunks <= 0) return;
  if (team > 1 && chunks > 1 && pool().try_run(chunks, team, body)) return;
  for (int64_t i = 0; i < chunks; ++i) body(i, 0);
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
