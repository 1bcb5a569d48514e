#pragma once
// quarry::Resources: the backend, device, stream and memory that calls run on.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "quarry/types.hpp"

namespace quarry {

namespace engine {
class Backend;
struct CallContext;
}  // namespace engine

/// Owns the backend that runs quarry's work and what it needs: on the CUDA backend the device, a
/// stream (its own, or one borrowed from the caller), library handles and a stream-ordered memory
/// pool. Create one and reuse it across calls: scratch memory is kept and grown, not reallocated.
/// Not thread-safe: use one Resources per thread.
class Resources {
 public:
  /// Device::automatic picks CUDA when cuda_availability() says it is available, else the CPU;
  /// Device::cpu loads nothing of CUDA, not even the driver. Throws BackendUnavailable, naming
  /// the reason, when Device::cuda is asked for and cannot be had.
  explicit Resources(Device device = Device::automatic, int cuda_device = 0);
  /// Runs on `cuda_device` with the caller's stream (a cudaStream_t passed as void*); the stream is
  /// borrowed, not destroyed. nullptr is the legacy default stream (used as cudaStreamLegacy).
  /// Throws BackendUnavailable in a CPU-only build.
  Resources(int cuda_device, void* cuda_stream);
  ~Resources();
  Resources(Resources&&) noexcept;
  Resources& operator=(Resources&&) noexcept;
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;

  /// The backend actually in use: Device::cpu or Device::cuda.
  Device device() const;
  /// A one-line description, e.g. "cpu (8 threads)" or "cuda:0 NVIDIA H100 80GB HBM3".
  std::string describe() const;

  /// Caps the working memory of score() and select() (device memory on CUDA) at `bytes`: larger
  /// pools are scored in chunks of rows, with a result identical to scoring them at once.
  /// 0 restores the default: unbounded on the CPU, 80% of the device memory free when the
  /// Resources were made on CUDA. (k-means memory for diversity is not counted.)
  void set_memory_budget(std::size_t bytes);
  /// The budget in force.
  std::size_t memory_budget() const;
  /// Caps the threads the CPU backend's loops use at `threads`; 0 (the default) is automatic:
  /// the CPUs this process may run on (its affinity mask and cgroup CPU quota), at most
  /// OpenMP's thread count (OMP_NUM_THREADS). Small loops run on fewer threads whatever the
  /// setting. Throws InvalidArgument when negative.
  void set_threads(int threads);
  /// The thread setting (0: automatic).
  int threads() const;
  /// Called after each chunk of rows with (rows done, total rows); empty to stop. A call uses the
  /// callback set when it started: setting another meanwhile (from another thread, or from the
  /// callback) is safe and takes effect from the next call.
  void set_progress(std::function<void(int64_t rows_done, int64_t rows_total)> callback);
  /// The most device memory these Resources' pool has held so far (0 on the CPU).
  std::size_t peak_device_memory() const;
  /// The cudaStream_t (as void*) that work runs on: device inputs must be ready in its order
  /// (for DLPack producers: `__dlpack__(stream=...)` with it); cudaStreamLegacy (1) for the legacy
  /// default stream. nullptr on the CPU backend.
  void* cuda_stream() const;
  /// Orders the work of later calls after everything queued so far on `cuda_stream` (a producer's
  /// cudaStream_t, e.g. from __cuda_array_interface__). Does nothing on the CPU backend.
  void wait_for_stream(void* cuda_stream);

  /// Internal: the engine's backend.
  engine::Backend& backend();
  /// The memory budget and progress callback as they are now, for one call (engine use).
  engine::CallContext call_context() const;

 private:
  struct Settings;
  std::unique_ptr<engine::Backend> backend_;
  std::unique_ptr<Settings> settings_;
};

/// True when this build contains the CUDA backend.
bool built_with_cuda();

/// Whether the CUDA backend can run here, or the first reason it cannot.
enum class CudaStatus {
  available,  ///< the backend's library loaded and the driver reports a device
  not_built,  ///< this build of quarry has no CUDA backend
  no_plugin,  ///< the CUDA backend's library (libquarry_cuda.so) is missing or cannot be loaded
  no_driver,  ///< no usable NVIDIA driver: libcuda.so.1 is missing, too old, or fails to start
  no_device,  ///< the driver reports no CUDA device
};
/// "available", "not built", "no plugin library", "no driver", "no device".
std::string_view to_string(CudaStatus status);

/// What cuda_availability() found.
struct CudaAvailability {
  CudaStatus status = CudaStatus::not_built;
  /// One line: what was looked for and what failed (the loader's message), or for `available`
  /// the library loaded.
  std::string detail;
  /// Where the CUDA backend's library is looked for: $QUARRY_CUDA_LIBRARY, else beside
  /// libquarry.so. Empty in a build without CUDA.
  std::string plugin_path;
  int device_count = 0;    ///< devices the driver reports
  int driver_version = 0;  ///< the CUDA version the driver supports, e.g. 13000; 0 without one
};

/// Asks the driver (libcuda.so.1, loaded on its own) whether a device exists and, only then, loads
/// the CUDA backend's library. Without a device no CUDA library stays loaded. The answer is
/// worked out once per process.
CudaAvailability cuda_availability();

/// Number of CUDA devices the driver reports (0 in a CPU-only build or without a driver). Loads no
/// CUDA library beyond the driver.
int cuda_device_count();
/// One line per CUDA device: "0: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB, 132 SMs)".
std::vector<std::string> cuda_device_descriptions();
/// The CPU backend's setup: threads, the vector instructions its row loops use, the BLAS FAISS
/// calls, and a hint when that BLAS runs kernels older than the CPU supports.
std::string cpu_description();
/// quarry's version, "MAJOR.MINOR.PATCH".
std::string version();

}  // namespace quarry
