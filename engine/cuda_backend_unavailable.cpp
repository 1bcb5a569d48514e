// Built instead of cuda_backend.cu when quarry is built without CUDA.

#include "engine/backend.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

std::unique_ptr<Backend> make_cuda_backend(int, void*) {
  throw BackendUnavailable(
      "this build of quarry has no CUDA backend (rebuild with the CUDA toolkit installed); use "
      "--device cpu");
}
int cuda_device_count() {
  return 0;
}
std::vector<std::string> cuda_device_descriptions() {
  return {};
}

}  // namespace quarry::engine
