#pragma once
// Device memory from a stream-ordered pool, pinned host memory, and the current device, for the
// CUDA backend.

#include <cuda_runtime.h>

#include <cstddef>

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
