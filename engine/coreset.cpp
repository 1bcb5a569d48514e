// Core-set selection (Sener & Savarese, 2018) by k-center greedy: each pick is the candidate
// farthest from the labeled rows and the picks so far.

#include <algorithm>

#include "engine/kmeans_host.hpp"
#include "engine/strategies.hpp"
#include "quarry/error.hpp"
#include "quarry/interrupt.hpp"

namespace quarry::engine {

std::vector<int64_t> coreset_picks(Backend& backend, const CallContext& call,
                                   const SelectOptions& options,
                                   const std::vector<int64_t>& candidates, int64_t best_candidate,
                                   PickTaker& taker) {
  const std::unique_ptr<CenterSearch> search = backend.center_search(
      {CenterSearchSpec::Space::embeddings, *options.embeddings, {}, candidates}, call);
  bool centered = false;
  if (!options.labeled_rows.empty()) {
    search->add_rows(options.labeled_rows);
    centered = true;
  }
  if (options.labeled_embeddings && options.labeled_embeddings->rows > 0) {
    std::vector<float> points;
    try {
      points = gather_embeddings(*options.labeled_embeddings, nullptr);
    } catch (const InvalidInput& e) {
      throw InvalidInput(std::string("labeled ") + e.what(), e.row(), "labeled");
    }
    search->add_points(points.data(), options.labeled_embeddings->rows);
    centered = true;
  }
  std::vector<int64_t> picks;
  while (!taker.done()) {
    poll_interrupt();  // each pick is a pass over the candidates
    int64_t at;
    if (centered) {
      at = search->farthest();
      if (at < 0) break;
    } else {
      at = std::lower_bound(candidates.begin(), candidates.end(), best_candidate) -
           candidates.begin();
      centered = true;
    }
    const int64_t row = candidates[at];
    search->add_rows({row});
    if (taker.offer(row)) picks.push_back(row);
  }
  return picks;
}

}  // namespace quarry::engine
