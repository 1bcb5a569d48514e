// BADGE (Ash et al., 2020): k-means++ seeding on gradient embeddings, over a center search that
// never forms them.

#include <random>

#include "engine/strategies.hpp"

namespace quarry::engine {

std::vector<int64_t> badge_picks(Backend& backend, const CallContext& call, const PoolView& pool,
                                 const SelectOptions& options,
                                 const std::vector<int64_t>& candidates, PickTaker& taker) {
  const std::unique_ptr<CenterSearch> search = backend.center_search(
      {CenterSearchSpec::Space::badge_gradients, *options.scoring.features, pool, candidates},
      call);
  // One 53-bit uniform per draw, written out rather than left to a library's distribution, so that
  // the draws are the same with every standard library.
  std::mt19937_64 rng(options.seed);
  auto uniform = [&rng] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  std::vector<int64_t> picks;
  bool first = true;
  while (!taker.done()) {
    const int64_t at = first ? search->farthest() : search->draw(uniform());
    first = false;
    if (at < 0) break;
    const int64_t row = candidates[at];
    search->add_rows({row});
    if (taker.offer(row)) picks.push_back(row);
  }
  return picks;
}

}  // namespace quarry::engine
