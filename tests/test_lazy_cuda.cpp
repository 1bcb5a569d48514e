// Which CUDA libraries a process holds. CPU work, with Device::cpu or with Device::automatic on a
// machine without a GPU, leaves none mapped: the driver is asked on its own and let go again, and
// the CUDA backend's library (with cudart and cuBLAS) is loaded only when a device is there. This
// program links no CUDA library itself, so /proc/self/maps shows exactly what libquarry loaded.
// The same for FAISS and OpenBLAS: only a k-means loads them. Tests run in file order when the
// program runs whole: the ones that load CUDA come last.

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "quarry/quarry.hpp"

namespace quarry::test {
namespace {

// The file names of the libraries mapped into this process whose names start with a prefix.
std::vector<std::string> mapped_libraries(std::initializer_list<const char*> prefixes) {
  std::vector<std::string> found;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.rfind('/');
    if (slash == std::string::npos) continue;
    const std::string file = line.substr(slash + 1);
    for (const char* prefix : prefixes)
      if (file.rfind(prefix, 0) == 0 && std::find(found.begin(), found.end(), file) == found.end())
        found.push_back(file);
  }
  return found;
}

std::vector<std::string> mapped_cuda_libraries() {
  return mapped_libraries(
      {"libcuda.", "libcudart.", "libcublas.", "libcublasLt.", "libquarry_cuda."});
}

bool has_library(const std::vector<std::string>& mapped, const std::string& prefix) {
  return std::any_of(mapped.begin(), mapped.end(),
                     [&](const std::string& file) { return file.rfind(prefix, 0) == 0; });
}

std::string joined(const std::vector<std::string>& files) {
  std::string text;
  for (const auto& f : files) text += f + " ";
  return text;
}

// Selects 2 of 3 rows: the two most uncertain, rows 1 and 2.
void select_two_of_three(Resources& resources) {
  const float probs[] = {0.9f, 0.1f, 0.5f, 0.5f, 0.7f, 0.3f};
  SelectOptions options;
  options.k = 2;
  const Selection picks = select(resources, PoolView::matrix(probs, DType::f32, 3, 2), options);
  EXPECT_EQ(picks.indices, (std::vector<int64_t>{1, 2}));
}

// Scoring and selecting without diversity load neither FAISS's plugin nor OpenBLAS; the first
// k-means loads both, and `quarry info`'s CPU line names the BLAS.
TEST(LazyFaiss, OnlyKMeansLoadsFaissAndOpenBlas) {
  Resources cpu(Device::cpu);
  select_two_of_three(cpu);
  auto mapped = mapped_libraries({"libquarry_faiss.", "libopenblas", "libfaiss"});
  EXPECT_TRUE(mapped.empty()) << joined(mapped);
  const float points[] = {0.0f, 0.0f, 0.1f, 0.0f, 5.0f, 5.0f, 5.1f, 5.0f};
  KMeansOptions options;
  options.iterations = 5;
  const KMeansResult result =
      kmeans(cpu, EmbeddingView::matrix(points, DType::f32, 4, 2), 2, options);
  EXPECT_EQ(result.assignments[0], result.assignments[1]);
  EXPECT_EQ(result.assignments[2], result.assignments[3]);
  EXPECT_NE(result.assignments[0], result.assignments[2]);
  mapped = mapped_libraries({"libquarry_faiss."});
  EXPECT_TRUE(has_library(mapped, "libquarry_faiss.")) << joined(mapped);
  EXPECT_NE(cpu_description().find("BLAS"), std::string::npos) << cpu_description();
}

TEST(LazyCuda, CpuWorkLoadsNoCudaLibrary) {
  Resources cpu(Device::cpu);
  select_two_of_three(cpu);
  const auto mapped = mapped_cuda_libraries();
  EXPECT_TRUE(mapped.empty()) << joined(mapped);
}

TEST(LazyCuda, DeviceAutoLoadsTheCudaLibrariesOnlyWithAGpu) {
  Resources automatic(Device::automatic);
  select_two_of_three(automatic);
  const CudaAvailability cuda = cuda_availability();
  const auto mapped = mapped_cuda_libraries();
  if (cuda.status == CudaStatus::available) {
    EXPECT_EQ(automatic.device(), Device::cuda);
    for (const char* library : {"libquarry_cuda.", "libcudart.", "libcublas.", "libcuda."})
      EXPECT_TRUE(has_library(mapped, library)) << library << " not in " << joined(mapped);
    return;
  }
  EXPECT_EQ(automatic.device(), Device::cpu) << cuda.detail;
  // The driver stays loaded only where it reports a device (and the plugin is what is missing).
  const bool driver_kept = cuda_device_count() > 0;
  EXPECT_EQ(has_library(mapped, "libcuda."), driver_kept) << joined(mapped);
  for (const char* library : {"libquarry_cuda.", "libcudart.", "libcublas."})
    EXPECT_FALSE(has_library(mapped, library)) << library << " in " << joined(mapped);
}

TEST(LazyCuda, AvailabilityNamesTheFirstMissingPiece) {
  const CudaAvailability cuda = cuda_availability();
  EXPECT_FALSE(cuda.detail.empty());
  if (!built_with_cuda()) {
    EXPECT_EQ(cuda.status, CudaStatus::not_built);
    EXPECT_TRUE(cuda.plugin_path.empty());
    EXPECT_EQ(cuda_device_count(), 0);
    EXPECT_THROW(Resources(Device::cuda), BackendUnavailable);
    return;
  }
  // Asked independently: can this process load the driver at all? (Loads it when it can.)
  if (void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
    dlclose(driver);
    // The driver loads: whatever is missing comes after loading it.
    EXPECT_EQ(cuda.detail.find("libcuda.so.1:"), std::string::npos) << cuda.detail;
  } else {
    EXPECT_EQ(cuda.status, CudaStatus::no_driver);
    EXPECT_NE(cuda.detail.find("libcuda.so.1"), std::string::npos) << cuda.detail;
    EXPECT_EQ(cuda.device_count, 0);
    EXPECT_EQ(cuda.driver_version, 0);
    try {
      Resources resources(Device::cuda);
      ADD_FAILURE() << "no BackendUnavailable";
    } catch (const BackendUnavailable& e) {
      EXPECT_NE(std::string(e.what()).find("no driver (" + cuda.detail + ")"), std::string::npos)
          << e.what();
    }
  }
  if (cuda.status == CudaStatus::available) EXPECT_GT(cuda.device_count, 0);
  if (cuda.status == CudaStatus::no_driver || cuda.status == CudaStatus::no_device)
    EXPECT_EQ(cuda.device_count, 0) << cuda.detail;
  EXPECT_EQ(cuda.device_count, cuda_device_count());
}

// Control for the tests above: the CUDA backend's library brings cudart and cuBLAS with it, and
// mapped_cuda_libraries() sees them. Loads them, so it comes last.
TEST(LazyCuda, ThePluginBringsTheCudaRuntimeWithIt) {
  if (!built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  const std::string plugin = cuda_availability().plugin_path;
  void* library = dlopen(plugin.c_str(), RTLD_LAZY | RTLD_LOCAL);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto mapped = mapped_cuda_libraries();
  for (const char* expected : {"libquarry_cuda.", "libcudart.", "libcublas."})
    EXPECT_TRUE(has_library(mapped, expected)) << expected << " not in " << joined(mapped);
}

}  // namespace
}  // namespace quarry::test
