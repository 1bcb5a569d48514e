// Loads the CUDA backend only where it can run. The driver (libcuda.so.1) is asked first, loaded on
// its own with dlopen: with no device it is unloaded again and nothing of CUDA stays in the
// process. Only when the driver reports a device is the plugin (libquarry_cuda.so, which links
// cudart and cuBLAS) loaded, from $QUARRY_CUDA_LIBRARY or from beside libquarry.so. Each is looked
// up once per process and never unloaded: backends the plugin makes may live until exit.
// cuda.h supplies the driver API's types; libcuda itself is not linked.

#include <cuda.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/backend.hpp"
#include "engine/plugin_path.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

template <typename Fn>
Fn find_symbol(void* library, const char* name) {
  return reinterpret_cast<Fn>(dlsym(library, name));
}

// What the driver reported, asked once.
struct Driver {
  std::string error;  // why it cannot be used; empty when it can
  int version = 0;
  int device_count = 0;
  decltype(&cuGetErrorName) error_name = nullptr;
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetName) device_name = nullptr;
  decltype(&cuDeviceGetAttribute) device_attribute = nullptr;
  decltype(&cuDeviceTotalMem) device_memory = nullptr;  // cuDeviceTotalMem_v2

  std::string name_of(CUresult result) const {
    const char* name = nullptr;
    if (error_name != nullptr && error_name(result, &name) == CUDA_SUCCESS && name != nullptr)
      return name;
    return "CUresult " + std::to_string(static_cast<int>(result));
  }
  void check(CUresult result, const char* call) const {
    if (result != CUDA_SUCCESS) throw CudaError(std::string(call) + " failed: " + name_of(result));
  }
};

Driver probe_driver() {
  Driver driver;
  void* library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    driver.error = loader_error();
    return driver;
  }
  const auto init = find_symbol<decltype(&cuInit)>(library, "cuInit");
  const auto get_version =
      find_symbol<decltype(&cuDriverGetVersion)>(library, "cuDriverGetVersion");
  const auto get_count = find_symbol<decltype(&cuDeviceGetCount)>(library, "cuDeviceGetCount");
  driver.error_name = find_symbol<decltype(&cuGetErrorName)>(library, "cuGetErrorName");
  driver.device_get = find_symbol<decltype(&cuDeviceGet)>(library, "cuDeviceGet");
  driver.device_name = find_symbol<decltype(&cuDeviceGetName)>(library, "cuDeviceGetName");
  driver.device_attribute =
      find_symbol<decltype(&cuDeviceGetAttribute)>(library, "cuDeviceGetAttribute");
  driver.device_memory = find_symbol<decltype(&cuDeviceTotalMem)>(library, "cuDeviceTotalMem_v2");
  CUresult result = CUDA_SUCCESS;
  if (init == nullptr || get_version == nullptr || get_count == nullptr ||
      driver.device_get == nullptr || driver.device_name == nullptr ||
      driver.device_attribute == nullptr || driver.device_memory == nullptr) {
    driver.error = "libcuda.so.1 lacks the driver functions quarry needs";
  } else if (get_version(&driver.version) != CUDA_SUCCESS) {
    driver.error = "cuDriverGetVersion failed";
  } else if ((result = init(0)) == CUDA_ERROR_NO_DEVICE) {
    driver.device_count = 0;
  } else if (result != CUDA_SUCCESS) {
    driver.error = "cuInit failed: " + driver.name_of(result);
  } else if ((result = get_count(&driver.device_count)) != CUDA_SUCCESS) {
    driver.error = "cuDeviceGetCount failed: " + driver.name_of(result);
  } else if (driver.version / 1000 < CUDA_VERSION / 1000) {
    // The runtime the plugin links needs a driver of its major version or newer.
    driver.error = "the driver supports CUDA " + std::to_string(driver.version / 1000) + "." +
                   std::to_string(driver.version % 1000 / 10) +
                   "; quarry's CUDA backend needs CUDA " + std::to_string(CUDA_VERSION / 1000) +
                   " or newer";
  }
  if (!driver.error.empty() || driver.device_count == 0) {
    // Nothing will use the driver: leave no CUDA library in the process.
    dlclose(library);
    Driver unusable;
    unusable.error = driver.error;
    unusable.version = driver.version;
    return unusable;
  }
  return driver;
}

const Driver& driver() {
  static const Driver probed = probe_driver();
  return probed;
}

std::string plugin_path() {
  return engine::plugin_path("QUARRY_CUDA_LIBRARY", QUARRY_CUDA_PLUGIN_NAME);
}

struct Plugin {
  CudaAvailability availability;
  CudaPluginCreateFn create = nullptr;
};

// Opens the plugin at `path`; on failure, why.
CudaPluginCreateFn open_plugin(const std::string& path, std::string& error) {
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    error = loader_error();
    // The plugin's run path looks in the nvidia-* wheels beside a pip-installed quarry, then the
    // loader's usual places; say so when one of the CUDA libraries was in neither.
    if (error.find("libcu") != std::string::npos)
      error +=
          " (pip install nvidia-cuda-runtime nvidia-cublas beside quarry, or put the CUDA "
          "toolkit's libraries on the loader's path)";
    return nullptr;
  }
  return reinterpret_cast<CudaPluginCreateFn>(plugin_entry(library, path, kCudaPluginVersionSymbol,
                                                           kCudaPluginCreateSymbol,
                                                           "quarry's CUDA backend", error));
}

// Checks from the most basic cause up; the plugin is loaded only when the driver has a device.
Plugin find_plugin() {
  Plugin plugin;
  CudaAvailability& a = plugin.availability;
  a.plugin_path = plugin_path();
  const Driver& d = driver();
  a.driver_version = d.version;
  a.device_count = d.device_count;
  if (access(a.plugin_path.c_str(), F_OK) != 0) {
    a.status = CudaStatus::no_plugin;
    a.detail = a.plugin_path + " not found (set QUARRY_CUDA_LIBRARY to the file)";
  } else if (!d.error.empty()) {
    a.status = CudaStatus::no_driver;
    a.detail = d.error;
  } else if (d.device_count == 0) {
    a.status = CudaStatus::no_device;
    a.detail = "the driver reports no CUDA device";
  } else if ((plugin.create = open_plugin(a.plugin_path, a.detail)) == nullptr) {
    a.status = CudaStatus::no_plugin;
  } else {
    a.status = CudaStatus::available;
    a.detail = "loaded " + a.plugin_path;
  }
  return plugin;
}

const Plugin& plugin() {
  static const Plugin found = find_plugin();
  return found;
}

}  // namespace

CudaAvailability cuda_availability() {
  return plugin().availability;
}

int cuda_device_count() {
  return driver().device_count;
}

std::string describe_cuda_device(int device) {
  const Driver& d = driver();
  if (d.device_get == nullptr || device < 0 || device >= d.device_count)
    throw BackendUnavailable("CUDA device " + std::to_string(device) + " does not exist (" +
                             std::to_string(d.device_count) + " found)");
  CUdevice handle = 0;
  d.check(d.device_get(&handle, device), "cuDeviceGet");
  char name[256] = {};
  d.check(d.device_name(name, sizeof name, handle), "cuDeviceGetName");
  int major = 0, minor = 0, processors = 0;
  d.check(d.device_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, handle),
          "cuDeviceGetAttribute");
  d.check(d.device_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, handle),
          "cuDeviceGetAttribute");
  d.check(d.device_attribute(&processors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, handle),
          "cuDeviceGetAttribute");
  std::size_t bytes = 0;
  d.check(d.device_memory(&bytes, handle), "cuDeviceTotalMem");
  char line[384];
  std::snprintf(line, sizeof line, "%d: %s (sm_%d%d, %.1f GiB, %d SMs)", device, name, major, minor,
                static_cast<double>(bytes) / (1u << 30), processors);
  return line;
}

std::unique_ptr<Backend> make_cuda_backend(int device, void* stream) {
  const Plugin& p = plugin();
  if (p.create == nullptr)
    throw BackendUnavailable("the CUDA backend is unavailable: " + p.availability.detail);
  if (device < 0 || device >= p.availability.device_count)
    throw BackendUnavailable("CUDA device " + std::to_string(device) + " does not exist (" +
                             std::to_string(p.availability.device_count) + " found)");
  return std::unique_ptr<Backend>(p.create(device, stream));
}

}  // namespace quarry::engine
