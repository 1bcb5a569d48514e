// The CPU backend: OpenMP over rows, the per-row math of kernels/measures.hpp, sums in double.

#include <omp.h>

#include <algorithm>
#include <vector>

#include "engine/backend.hpp"
#include "engine/ranking.hpp"
#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

using kernels::LogitStats;
using kernels::MeasureId;
using kernels::ProbStats;
using kernels::RowResult;
using kernels::to_float;

template <typename T>
RowResult score_probability_row(const T* row, int64_t classes, MeasureId measure) {
  ProbStats<double> stats;
  for (int64_t c = 0; c < classes; ++c) stats.add(to_float(row[c]));
  return stats.finish(measure);
}

// Two passes over the row (the second from cache): the maximum first, so each element needs one
// exp instead of the online softmax's occasional rescaling.
template <typename T>
RowResult score_logit_row(const T* row, int64_t classes, float inv_temperature, MeasureId measure) {
  LogitStats<double> stats;
  uint32_t flags = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const float z = to_float(row[c]) * inv_temperature;
    if (kernels::is_finite(z))
      kernels::push_top2(z, stats.top1, stats.top2);
    else
      flags |= kernels::kNonFinite;
  }
  stats.flags = flags;
  if (stats.top1 == -kernels::kInf) return stats.finish(measure);  // nothing finite
  for (int64_t c = 0; c < classes; ++c) {
    const float z = to_float(row[c]) * inv_temperature;
    if (kernels::is_finite(z)) stats.add_below_max(z);
  }
  return stats.finish(measure);
}

template <typename T>
BadRow score_single_model(const PoolView& pool, const ScoreOptions& options, float* out) {
  const T* data = static_cast<const T*>(pool.data);
  const auto measure = static_cast<MeasureId>(options.measure);
  const float inv_temperature = 1.0f / options.temperature;
  uint64_t first_bad = kernels::kNoBadRow;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
  for (int64_t r = 0; r < pool.rows; ++r) {
    const T* row = data + r * pool.row_stride;
    const RowResult result = options.logits
                                 ? score_logit_row(row, pool.classes, inv_temperature, measure)
                                 : score_probability_row(row, pool.classes, measure);
    out[r] = result.score;
    if (result.flags) first_bad = std::min(first_bad, kernels::encode_bad_row(r, result.flags));
  }
  if (first_bad == kernels::kNoBadRow) return {};
  return {kernels::bad_row_of(first_bad), kernels::bad_flags_of(first_bad)};
}

class CpuBackend final : public Backend {
 public:
  Device kind() const override { return Device::cpu; }
  std::string describe() const override {
    return "cpu (" + std::to_string(omp_get_max_threads()) + " threads)";
  }

  void score(const ScoreProblem& problem, float* scores_out) override {
    if (problem.pool.space != MemorySpace::host)
      throw InvalidArgument("the CPU backend needs the pool in host memory");
    BadRow bad;
    switch (problem.pool.dtype) {
      case DType::f32:
        bad = score_single_model<float>(problem.pool, problem.options, scores_out);
        break;
      case DType::f16:
        bad = score_single_model<kernels::f16_bits>(problem.pool, problem.options, scores_out);
        break;
      case DType::bf16:
        bad = score_single_model<kernels::bf16_bits>(problem.pool, problem.options, scores_out);
        break;
      default:
        throw InvalidArgument("unsupported dtype " + std::string(to_string(problem.pool.dtype)));
    }
    if (bad.row >= 0) throw_bad_row(bad);
  }

  Ranked top(const ScoreProblem& problem, int64_t count) override {
    scores_.resize(problem.pool.rows);
    score(problem, scores_.data());
    return rank_top(scores_.data(), problem.pool.rows, count);
  }

 private:
  std::vector<float> scores_;  // reused across calls
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace quarry::engine
