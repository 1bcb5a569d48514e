// Built instead of cuda_loader.cpp when quarry is built without CUDA.

#include "engine/backend.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {
constexpr char kNotBuilt[] =
    "this build of quarry has no CUDA backend; rebuild it with the CUDA toolkit installed";
}

CudaAvailability cuda_availability() {
  CudaAvailability availability;
  availability.status = CudaStatus::not_built;
  availability.detail = kNotBuilt;
  return availability;
}

std::unique_ptr<Backend> make_cuda_backend(int, void*) {
  throw BackendUnavailable(kNotBuilt);
}

int cuda_device_count() {
  return 0;
}

std::string describe_cuda_device(int) {
  throw BackendUnavailable(kNotBuilt);
}

}  // namespace quarry::engine
