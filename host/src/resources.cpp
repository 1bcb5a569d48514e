#include "quarry/resources.hpp"

#include "engine/backend.hpp"
#include "quarry/error.hpp"

namespace quarry {

namespace {

// The CUDA backend, or BackendUnavailable naming why it cannot be had.
std::unique_ptr<engine::Backend> cuda_backend(int cuda_device, void* cuda_stream) {
  const CudaAvailability cuda = cuda_availability();
  if (cuda.status != CudaStatus::available)
    throw BackendUnavailable("CUDA is unavailable: " + std::string(to_string(cuda.status)) + " (" +
                             cuda.detail + "); use --device cpu");
  return engine::make_cuda_backend(cuda_device, cuda_stream);
}

}  // namespace

Resources::Resources(Device device, int cuda_device) {
  switch (device) {
    case Device::cpu:
      backend_ = engine::make_cpu_backend();
      break;
    case Device::cuda:
      backend_ = cuda_backend(cuda_device, nullptr);
      break;
    case Device::automatic:
      backend_ = cuda_availability().status == CudaStatus::available
                     ? cuda_backend(cuda_device, nullptr)
                     : engine::make_cpu_backend();
      break;
  }
}

// A null stream lent by the caller is CUDA's legacy default stream (PyTorch's default stream):
// borrowed as cudaStreamLegacy, which orders with it, never replaced by a private stream.
Resources::Resources(int cuda_device, void* cuda_stream)
    : backend_(cuda_backend(cuda_device,
                            cuda_stream != nullptr ? cuda_stream : reinterpret_cast<void*>(0x1))) {}

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
std::string_view to_string(CudaStatus status) {
  switch (status) {
    case CudaStatus::available:
      return "available";
    case CudaStatus::not_built:
      return "not built";
    case CudaStatus::no_plugin:
      return "no plugin library";
    case CudaStatus::no_driver:
      return "no driver";
    case CudaStatus::no_device:
      return "no device";
  }
  return "unknown";
}
CudaAvailability cuda_availability() {
  return engine::cuda_availability();
}
int cuda_device_count() {
  return engine::cuda_device_count();
}
std::vector<std::string> cuda_device_descriptions() {
  std::vector<std::string> lines;
  for (int d = 0; d < cuda_device_count(); ++d) lines.push_back(engine::describe_cuda_device(d));
  return lines;
}
std::string cpu_description() {
  return engine::cpu_description();
}
std::string version() {
  return QUARRY_VERSION;
}

}  // namespace quarry
