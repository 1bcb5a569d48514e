// The kernels number the measures in their own enum (kernels/measures.hpp includes no public
// header). Every value is checked here against quarry::Measure, at compile time: a measure added
// to one enum and not the other, or out of order, does not build.

#include <array>
#include <utility>

#include "kernels/measures.hpp"
#include "quarry/types.hpp"

namespace quarry::engine {

namespace {

using kernels::MeasureId;

constexpr std::array<std::pair<Measure, MeasureId>, kMeasureCount> kMirror = {{
    {Measure::least_confidence, MeasureId::least_confidence},
    {Measure::margin, MeasureId::margin},
    {Measure::ratio, MeasureId::ratio},
    {Measure::entropy, MeasureId::entropy},
    {Measure::vote_entropy, MeasureId::vote_entropy},
    {Measure::consensus_entropy, MeasureId::consensus_entropy},
    {Measure::kl_max, MeasureId::kl_max},
    {Measure::bald, MeasureId::bald},
    {Measure::variation_ratio, MeasureId::variation_ratio},
    {Measure::egl, MeasureId::egl},
    {Measure::sequence_nll, MeasureId::sequence_nll},
    {Measure::perplexity, MeasureId::perplexity},
    {Measure::min_token_prob, MeasureId::min_token_prob},
    {Measure::mean_token_entropy, MeasureId::mean_token_entropy},
    {Measure::max_token_entropy, MeasureId::max_token_entropy},
    {Measure::mean_token_margin, MeasureId::mean_token_margin},
    {Measure::sample_dispersion, MeasureId::sample_dispersion},
    {Measure::eigenscore, MeasureId::eigenscore},
    {Measure::semantic_sets, MeasureId::semantic_sets},
    {Measure::semantic_entropy, MeasureId::semantic_entropy},
}};

constexpr bool mirrors_agree() {
  for (std::size_t i = 0; i < kMirror.size(); ++i)
    if (static_cast<std::size_t>(kMirror[i].first) != i ||
        static_cast<std::size_t>(kMirror[i].second) != i)
      return false;
  return true;
}

static_assert(kernels::kMeasureIdCount == kMeasureCount,
              "kernels::MeasureId and quarry::Measure must have as many measures");
static_assert(mirrors_agree(), "kernels::MeasureId must number every measure as quarry::Measure");

}  // namespace

}  // namespace quarry::engine
