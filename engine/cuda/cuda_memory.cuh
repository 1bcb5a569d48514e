#pragma once
// Device memory from a stream-ordered pool, pinned host memory, and the current device, for the
// CUDA backend.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda_check.cuh"

namespace quarry::engine {

/// Device memory from the backend's pool. It holds exactly what the last call asked for (a larger
/// block left over from an earlier call would count against this call's memory budget) and can be
/// handed back early with release().
class DeviceBuffer {
 public:
  DeviceBuffer(cudaMemPool_t pool, cudaStream_t stream) : pool_(pool), stream_(stream) {}
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T = void>
  T* ensure(std::size_t bytes) {
    if (bytes != bytes_) {
      release();
      if (bytes > 0) QUARRY_CUDA_CHECK(cudaMallocFromPoolAsync(&ptr_, bytes, pool_, stream_));
      bytes_ = bytes;
    }
    return static_cast<T*>(ptr_);
  }
  void release() {
    if (ptr_ != nullptr) QUARRY_CUDA_CHECK(cudaFreeAsync(ptr_, stream_));
    ptr_ = nullptr;
    bytes_ = 0;
  }

 private:
  cudaMemPool_t pool_;
  cudaStream_t stream_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Pinned host memory that grows on demand (page-locked, so copies from it run at full speed and
/// asynchronously).
struct PinnedBuffer {
  char* data = nullptr;
  std::size_t bytes = 0;
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (data != nullptr) cudaFreeHost(data);
  }
  void ensure(std::size_t wanted) {
    if (wanted <= bytes) return;
    if (data != nullptr) QUARRY_CUDA_CHECK(cudaFreeHost(data));
    data = nullptr;
    bytes = 0;
    QUARRY_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&data), wanted));
    bytes = wanted;
  }
};

/// A CUDA event (no timing) owned for a scope: destroyed on every way out, a throw included.
class Event {
 public:
  Event() { QUARRY_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  ~Event() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

/// The one way host data reaches the device a chunk at a time: two pinned staging buffers used in
/// turn. While kernels on `stream` read chunk i, the host fills the other buffer with chunk i+1 and
/// its copy runs on `copy_stream` (a copy engine's own stream, or `stream` itself). Chunk i reuses
/// slot i % 2 once the copies of chunk i-2 have left its pinned buffer (the host waits) and the
/// kernels that read chunk i-2 on the device are done (the copy stream waits). Device memory is
/// the caller's: copies go wherever it says.
class HostPager {
 public:
  /// `pinned`: two buffers, kept by the caller across pagers (their size only grows).
  HostPager(cudaStream_t stream, cudaStream_t copy_stream, PinnedBuffer* pinned)
      : stream_(stream), copy_stream_(copy_stream), pinned_(pinned) {
    // The first copies start after everything queued so far (the device buffers' allocation too).
    for (const Event& consumed : consumed_)
      QUARRY_CUDA_CHECK(cudaEventRecord(consumed.get(), stream_));
  }
  ~HostPager() {
    for (const Event& copied : copied_) cudaEventSynchronize(copied.get());  // pinned outlives
  }
  HostPager(const HostPager&) = delete;
  HostPager& operator=(const HostPager&) = delete;

  /// Makes each pinned buffer hold at least `bytes`; before the first chunk only.
  void reserve(std::size_t bytes) {
    for (int s = 0; s < 2; ++s) pinned_[s].ensure(bytes);
  }
  /// Starts chunk `i`: returns its slot's pinned buffer, free to fill.
  char* begin(int64_t i) {
    slot_ = static_cast<int>(i % 2);
    QUARRY_CUDA_CHECK(cudaEventSynchronize(copied_[slot_].get()));
    QUARRY_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, consumed_[slot_].get(), 0));
    return pinned_[slot_].data;
  }
  /// Queues a copy of part of the chunk (from its pinned buffer, or host memory that stays
  /// valid, such as a pinned pool) to device memory.
  void copy(void* device, const void* host, std::size_t bytes) {
    QUARRY_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, copy_stream_));
  }
  /// The chunk's copies are queued: kernels queued on `stream` from now on see them.
  void copied() {
    QUARRY_CUDA_CHECK(cudaEventRecord(copied_[slot_].get(), copy_stream_));
    if (copy_stream_ != stream_)
      QUARRY_CUDA_CHECK(cudaStreamWaitEvent(stream_, copied_[slot_].get(), 0));
  }
  /// The kernels that read the chunk on the device are queued.
  void consumed() { QUARRY_CUDA_CHECK(cudaEventRecord(consumed_[slot_].get(), stream_)); }

 private:
  cudaStream_t stream_, copy_stream_;
  PinnedBuffer* pinned_;
  Event copied_[2], consumed_[2];
  int slot_ = 0;
};

/// Makes `device` current for the guard's lifetime and then restores the caller's device: a
/// library call must not change which device its caller's CUDA calls go to.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    QUARRY_CUDA_CHECK(cudaGetDevice(&saved_));
    if (saved_ != device) QUARRY_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(saved_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int saved_ = 0;
};

}  // namespace quarry::engine
