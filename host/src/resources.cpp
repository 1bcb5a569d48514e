#include "quarry/resources.hpp"

#include <mutex>
#include <utility>

#include "engine/backend.hpp"
#include "engine/threads.hpp"
#include "quarry/error.hpp"
#include "quarry/options.hpp"

namespace quarry {

// The budget and callback each call copies when it starts. The lock lets set_progress() and
// set_memory_budget() run while another thread's call starts; a running call keeps its copy.
struct Resources::Settings {
  mutable std::mutex mutex;
  engine::CallContext context;
};

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

Resources::Resources(Device device, int cuda_device) : settings_(std::make_unique<Settings>()) {
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
                            cuda_stream != nullptr ? cuda_stream : reinterpret_cast<void*>(0x1))),
      settings_(std::make_unique<Settings>()) {}

Resources::~Resources() = default;
Resources::Resources(Resources&&) noexcept = default;
Resources& Resources::operator=(Resources&&) noexcept = default;

Device Resources::device() const {
  return backend_->kind();
}
std::string Resources::describe() const {
  if (backend_->kind() == Device::cpu && threads() > 0)
    return "cpu (" + engine::threads_text(threads()) + ")";
  return backend_->describe();
}
engine::Backend& Resources::backend() {
  engine::prepare_calling_thread(threads());  // every call takes the backend here
  return *backend_;
}

engine::CallContext Resources::call_context() const {
  const std::lock_guard<std::mutex> lock(settings_->mutex);
  return settings_->context;
}

void Resources::set_memory_budget(std::size_t bytes) {
  const std::lock_guard<std::mutex> lock(settings_->mutex);
  settings_->context.memory_budget = bytes;
}
void Resources::set_threads(int threads) {
  check_integer_option(option_info("threads"), "threads", threads);
  const std::lock_guard<std::mutex> lock(settings_->mutex);
  settings_->context.threads = threads;
}
int Resources::threads() const {
  const std::lock_guard<std::mutex> lock(settings_->mutex);
  return settings_->context.threads;
}
std::size_t Resources::memory_budget() const {
  return backend_->budget_of(call_context());
}
void Resources::set_progress(std::function<void(int64_t, int64_t)> callback) {
  // The callback being replaced is destroyed after the lock is released: destroying it may run
  // code of the caller's (a Python object's release) that must not wait on this lock.
  engine::ProgressCallback old;
  {
    const std::lock_guard<std::mutex> lock(settings_->mutex);
    old = std::exchange(settings_->context.progress, std::move(callback));
  }
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
