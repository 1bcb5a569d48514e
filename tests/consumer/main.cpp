// A program outside quarry's tree that finds the installed package and selects 2 of 3 rows.
#include <cstdio>
#include <quarry/quarry.hpp>

int main() {
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
