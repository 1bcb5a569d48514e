// A program outside quarry's tree that finds the installed package and selects 2 of 3 rows. With
// CUDA built, the installed CUDA backend's library is the one libquarry looks for: under argv[1],
// the installation prefix.
#include <cstdio>
#include <filesystem>
#include <quarry/quarry.hpp>
#include <string>

int main(int argc, char** argv) {
  const quarry::CudaAvailability cuda = quarry::cuda_availability();
  std::printf("cuda: %s (%s) %s\n", std::string(quarry::to_string(cuda.status)).c_str(),
              cuda.detail.c_str(), cuda.plugin_path.c_str());
  if (quarry::built_with_cuda() &&
      (argc < 2 || cuda.plugin_path.rfind(argv[1], 0) != 0 ||
       !std::filesystem::exists(cuda.plugin_path) || cuda.status == quarry::CudaStatus::no_plugin))
    return 1;
  const float probs[] = {0.9f, 0.1f, 0.5f, 0.5f, 0.7f, 0.3f};
  quarry::Resources resources(quarry::Device::cpu);
  quarry::SelectOptions options;
  options.k = 2;
  const auto picks =
      quarry::select(resources, quarry::PoolView::matrix(probs, quarry::DType::f32, 3, 2), options);
  std::printf("%lld %lld\n", static_cast<long long>(picks.indices[0]),
              static_cast<long long>(picks.indices[1]));
  return picks.indices[0] == 1 && picks.indices[1] == 2 ? 0 : 1;
}
