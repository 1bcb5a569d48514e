// BADGE (Ash et al., 2020): k-means++ seeding on gradient embeddings, over a center search that
// never forms them.

#include <cstring>
#include <numeric>
#include <random>

#include "engine/strategies.hpp"
#include "engine/threads.hpp"
#include "quarry/error.hpp"
#include "quarry/interrupt.hpp"

namespace quarry::engine {

namespace {

// float64 probabilities (scikit-learn's predict_proba) reach the searches, which read float32,
// float16 or bfloat16 in place, as the candidates' rows converted to a compact float32 pool, with
// their features gathered alongside: the search then names candidates by their position.
struct CompactCandidates {
  std::vector<float> probs;
  std::vector<char> features;
  PoolView pool;
  EmbeddingView feature_view;
};

CompactCandidates compact(const PoolView& pool, const EmbeddingView& features,
                          const std::vector<int64_t>& candidates) {
  if (features.space != MemorySpace::host)
    throw InvalidArgument(
        "BADGE over float64 probabilities needs the features in host memory (or float32 "
        "probabilities)");
  const auto m = static_cast<int64_t>(candidates.size());
  const int64_t classes = pool.classes, dim = features.dim;
  const auto feature_bytes = static_cast<int64_t>(dim * dtype_size(features.dtype));
  CompactCandidates c;
  c.probs.resize(static_cast<std::size_t>(m * classes));
  c.features.resize(static_cast<std::size_t>(m * feature_bytes));
  const auto* probs = static_cast<const double*>(pool.data);
  const auto* feats = static_cast<const char*>(features.data);
  const auto row_bytes = features.row_stride * static_cast<int64_t>(dtype_size(features.dtype));
  parallel_for(m, 256, classes + dim, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      const double* in = probs + candidates[i] * pool.row_stride;
      for (int64_t k = 0; k < classes; ++k) c.probs[i * classes + k] = static_cast<float>(in[k]);
      std::memcpy(c.features.data() + i * feature_bytes, feats + candidates[i] * row_bytes,
                  feature_bytes);
    }
  });
  c.pool = PoolView::committee(c.probs.data(), DType::f32, 1, m, classes);
  c.pool.space = MemorySpace::host;
  c.feature_view = features;
  c.feature_view.data = c.features.data();
  c.feature_view.rows = m;
  c.feature_view.row_stride = dim;
  c.feature_view.space = MemorySpace::host;
  return c;
}

}  // namespace

std::vector<int64_t> badge_picks(Backend& backend, const CallContext& call, const PoolView& pool,
                                 const SelectOptions& options,
                                 const std::vector<int64_t>& candidates, PickTaker& taker) {
  const bool converted = pool.dtype == DType::f64;
  CompactCandidates c;
  std::vector<int64_t> search_rows;
  if (converted) {
    c = compact(pool, *options.scoring.features, candidates);
    search_rows.resize(candidates.size());
    std::iota(search_rows.begin(), search_rows.end(), int64_t{0});
  }
  std::unique_ptr<CenterSearch> search;
  try {
    search = converted ? backend.center_search({CenterSearchSpec::Space::badge_gradients,
                                                c.feature_view, c.pool, search_rows},
                                               call)
                       : backend.center_search({CenterSearchSpec::Space::badge_gradients,
                                                *options.scoring.features, pool, candidates},
                                               call);
  } catch (const InvalidInput& e) {
    if (!converted || e.row() < 0) throw;
    throw_bad_row({candidates[e.row()], kernels::kBadFeature});  // the row in the pool
  }
  // One 53-bit uniform per draw, written out rather than left to a library's distribution, so that
  // the draws are the same with every standard library.
  std::mt19937_64 rng(options.seed);
  auto uniform = [&rng] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  std::vector<int64_t> picks;
  bool first = true;
  while (!taker.done()) {
    poll_interrupt();  // each pick is a pass over the candidates
    const int64_t at = first ? search->farthest() : search->draw(uniform());
    first = false;
    if (at < 0) break;
    const int64_t row = candidates[at];
    search->add_rows({converted ? at : row});
    if (taker.offer(row)) picks.push_back(row);
  }
  return picks;
}

}  // namespace quarry::engine
