#pragma once
// The FAISS k-means plugin, libquarry_faiss.so: FAISS and the BLAS it calls (OpenBLAS). libquarry
// loads it with dlopen when a k-means first runs (faiss_loader.cpp), from $QUARRY_FAISS_LIBRARY or
// from beside libquarry.so, so a process that never clusters neither loads nor starts OpenBLAS
// (about 2 ms of every program start, and a thread per CPU). quarry's own k-means++ start, the
// scaling and the error checks stay in libquarry (CpuBackend::kmeans).

#include <cstdint>
#include <string>
#include <vector>

namespace quarry::engine {

/// One k-means for the plugin: Lloyd iterations from `centroids`, then each point's nearest
/// centroid and squared distance to it.
struct FaissKMeansJob {
  const float* points = nullptr;  // n x d, row-major
  int64_t n = 0;
  int d = 0;
  int64_t k = 0;
  int iterations = 0;  // 0: only the assignment
  int seed = 0;
  std::vector<float>* centroids = nullptr;  // k x d: the start in, the trained centroids out
  std::vector<int32_t>* labels = nullptr;   // out: n
  std::vector<float>* distances = nullptr;  // out: n
};

using FaissKMeansFn = void (*)(const FaissKMeansJob& job);
using FaissPluginVersionFn = const char* (*)();
inline constexpr char kFaissKMeansSymbol[] = "quarry_faiss_kmeans";
inline constexpr char kFaissPluginVersionSymbol[] = "quarry_faiss_plugin_version";

/// The plugin's k-means, loading the plugin on the first call; throws BackendUnavailable saying
/// why when it cannot be loaded.
FaissKMeansFn faiss_kmeans();

/// Whether the plugin is loaded, and if not why not (empty when it is); loads it.
std::string faiss_plugin_error();

/// A function of the plugin or of the libraries it brought (OpenBLAS's thread setting and core
/// name), loading it; nullptr when it cannot be loaded or has no such symbol. The plugin is loaded
/// locally: its OpenBLAS never binds another library's BLAS calls, and is found only through it.
void* faiss_plugin_symbol(const char* name);

}  // namespace quarry::engine
