#include "quarry/resources.hpp"

#include "engine/backend.hpp"
#include "quarry/error.hpp"

namespace quarry {

Resources::Resources(Device device, int cuda_device) {
  switch (device) {
    case Device::cpu:
      backend_ = engine::make_cpu_backend();
      break;
    case Device::cuda:
      backend_ = engine::make_cuda_backend(cuda_device, nullptr);
      break;
    case Device::automatic:
      backend_ = engine::cuda_device_count() > 0 ? engine::make_cuda_backend(cuda_device, nullptr)
                                                 : engine::make_cpu_backend();
      break;
  }
}

Resources::Resources(int cuda_device, void* cuda_stream)
    : backend_(engine::make_cuda_backend(cuda_device, cuda_stream)) {}

Resources::~Resources() = default;
Resources::Resources(Resources&&) noexcept = default;
Resources& Resources::operator=(Resources&&) noexcept = default;

Device Resources::device() const {
  return backend_->kind();
}
std::string Resources::describe() const {
  return backend_->describe();
}
engine::Backend& Resources::backend() {
  return *backend_;
}

bool built_with_cuda() {
#if defined(QUARRY_WITH_CUDA)
  return true;
#else
  return false;
#endif
}
int cuda_device_count() {
  return engine::cuda_device_count();
}
std::vector<std::string> cuda_device_descriptions() {
  return engine::cuda_device_descriptions();
}
std::string version() {
  return QUARRY_VERSION;
}

}  // namespace quarry
