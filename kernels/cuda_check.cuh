#pragma once
// Checking CUDA calls and launches. Failures become quarry::CudaError (quarry::OutOfMemory for
// allocation failures). Set QUARRY_SYNC_LAUNCHES=1 to synchronise after every launch, so an
// asynchronous fault is reported by the launch that caused it.

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "quarry/error.hpp"

namespace quarry::kernels {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* what, const char* file,
                                          int line) {
  std::string message = std::string("CUDA error in ") + what + " (" + file + ":" +
                        std::to_string(line) + "): " + cudaGetErrorName(status) + ": " +
                        cudaGetErrorString(status);
  // Clear a non-sticky error (an allocation failure, a bad argument), or the next launch check
  // would report it again after the caller recovered.
  (void)cudaGetLastError();
  if (status == cudaErrorMemoryAllocation) throw OutOfMemory(message);
  throw CudaError(message);
}

inline bool sync_after_launches() {
  static const bool enabled = [] {
    const char* v = std::getenv("QUARRY_SYNC_LAUNCHES");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return enabled;
}

}  // namespace quarry::kernels

#define QUARRY_CUDA_CHECK(call)                                                       \
  do {                                                                                \
    const cudaError_t quarry_status_ = (call);                                        \
    if (quarry_status_ != cudaSuccess)                                                \
      ::quarry::kernels::throw_cuda_error(quarry_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: reports a bad configuration at once, and in debug mode any fault.
#define QUARRY_CHECK_LAUNCH(stream)                     \
  do {                                                  \
    QUARRY_CUDA_CHECK(cudaGetLastError());              \
    if (::quarry::kernels::sync_after_launches())       \
      QUARRY_CUDA_CHECK(cudaStreamSynchronize(stream)); \
  } while (0)
