// Loads the FAISS k-means plugin (faiss_plugin.hpp) the first time a k-means runs.

#include <dlfcn.h>

#include <string>

#include "engine/cpu/faiss_plugin.hpp"
#include "engine/plugin_path.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

struct FaissPlugin {
  void* library = nullptr;
  FaissKMeansFn kmeans = nullptr;
  std::string error;  // why it cannot be used; empty when it can
};

FaissPlugin load_faiss_plugin() {
  FaissPlugin plugin;
  const bool blas_was_loaded = dlsym(RTLD_DEFAULT, "openblas_get_num_threads") != nullptr;
  const std::string path = plugin_path("QUARRY_FAISS_LIBRARY", QUARRY_FAISS_PLUGIN_NAME);
  // Local: FAISS's and OpenBLAS's symbols bind no other library's calls (faiss_plugin_symbol
  // finds OpenBLAS's through the plugin).
  void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    plugin.error =
        "cannot load " + path + ": " + loader_error() + " (set QUARRY_FAISS_LIBRARY to the file)";
    return plugin;
  }
  plugin.kmeans = reinterpret_cast<FaissKMeansFn>(
      plugin_entry(library, path, kFaissPluginVersionSymbol, kFaissKMeansSymbol,
                   "quarry's FAISS plugin", plugin.error));
  if (plugin.kmeans == nullptr) return plugin;
  // OpenBLAS, loaded with it, starts a thread per CPU that spins for about a tenth of a second
  // waiting for work, taking cores from the caller's threads. quarry runs BLAS on one thread
  // (k-means), so they go now; OpenBLAS starts them again if a call wants them. A BLAS some other
  // part of the process loaded first is left as it is.
  if (!blas_was_loaded)
    if (auto* stop_blas_threads =
            reinterpret_cast<int (*)()>(dlsym(library, "blas_thread_shutdown_")))
      stop_blas_threads();
  plugin.library = library;
  return plugin;
}

const FaissPlugin& faiss_plugin() {
  static const FaissPlugin loaded = load_faiss_plugin();
  return loaded;
}

}  // namespace

FaissKMeansFn faiss_kmeans() {
  const FaissPlugin& plugin = faiss_plugin();
  if (plugin.kmeans == nullptr)
    throw BackendUnavailable("k-means on the CPU needs quarry's FAISS plugin: " + plugin.error);
  return plugin.kmeans;
}

std::string faiss_plugin_error() {
  return faiss_plugin().error;
}

void* faiss_plugin_symbol(const char* name) {
  const FaissPlugin& plugin = faiss_plugin();
  return plugin.library != nullptr ? dlsym(plugin.library, name) : nullptr;
}

}  // namespace quarry::engine
