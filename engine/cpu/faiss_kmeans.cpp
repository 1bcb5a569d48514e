// libquarry_faiss.so: FAISS's Lloyd iterations and nearest-centroid search for the CPU backend's
// k-means (faiss_plugin.hpp). Everything of FAISS stays inside this library (its static code and
// template instances are hidden, cmake/quarry-hidden.map); it exports the two functions below.

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>

#include <limits>
#include <memory>
#include <mutex>

#include "engine/cpu/faiss_plugin.hpp"
#include "quarry/interrupt.hpp"

namespace quarry::engine {
namespace {

// FAISS polls its interrupt callback between k-means iterations, on the calling thread: ours asks
// that thread's InterruptCheck. Installed once, unless the program set one of its own.
struct FaissInterrupt final : faiss::InterruptCallback {
  bool want_interrupt() override { return interrupt_requested(); }
};

void install_faiss_interrupt() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::lock_guard<std::mutex> lock(faiss::InterruptCallback::lock);
    if (!faiss::InterruptCallback::instance)
      faiss::InterruptCallback::instance = std::make_unique<FaissInterrupt>();
  });
}

}  // namespace
}  // namespace quarry::engine

extern "C" {

__attribute__((visibility("default"))) const char* quarry_faiss_plugin_version() {
  return QUARRY_VERSION;
}

__attribute__((visibility("default"))) void quarry_faiss_kmeans(
    const quarry::engine::FaissKMeansJob& job) {
  faiss::IndexFlatL2 index(job.d);
  if (job.iterations > 0) {
    faiss::ClusteringParameters params;
    params.niter = job.iterations;
    params.seed = job.seed;
    params.verbose = false;
    params.min_points_per_centroid = 1;  // few points per cluster is the normal case here
    params.max_points_per_centroid = std::numeric_limits<int>::max();  // never subsample
    faiss::Clustering clustering(job.d, static_cast<int>(job.k), params);
    clustering.centroids = *job.centroids;  // FAISS starts from centroids given to it
    quarry::engine::install_faiss_interrupt();
    try {
      clustering.train(job.n, job.points, index);
    } catch (const faiss::FaissException&) {
      quarry::poll_interrupt();  // FAISS stopped because this call was interrupted
      throw;
    }
    *job.centroids = clustering.centroids;
  }
  index.reset();
  index.add(job.k, job.centroids->data());
  job.distances->resize(job.n);
  std::vector<faiss::Index::idx_t> labels(job.n);
  index.search(job.n, job.points, 1, job.distances->data(), labels.data());
  job.labels->assign(labels.begin(), labels.end());
}

}  // extern "C"
