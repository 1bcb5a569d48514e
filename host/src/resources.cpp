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

void Resources::set_memory_budget(std::size_t bytes) {
  backend_->memory_budget = bytes;
}
std::size_t Resources::memory_budget() const {
  return backend_->memory_budget ? backend_->memory_budget : backend_->default_memory_budget();
}
void Resources::set_progress(std::function<void(int64_t, int64_t)> callback) {
  backend_->progress = std::move(callback);
}
std::size_t Resources::peak_device_memory() const {
  return backend_->peak_device_memory();
}
void* Resources::cuda_stream() const {
  return backend_->cuda_stream();
}
void Resources::wait_for_stream(void* cuda_stream) {
  backend_->wait_for_stream(cuda_stream);
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
std::string cpu_description() {
  return engine::cpu_description();
}
std::string version() {
  return QUARRY_VERSION;
}

}  // namespace quarry
