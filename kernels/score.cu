#include "kernels/committee.cuh"
#include "kernels/egl.cuh"
#include "kernels/samples.cuh"
#include "kernels/score.cuh"
#include "kernels/score_rows.cuh"
#include "kernels/sequence.cuh"

namespace quarry::kernels {

namespace {

bool is_votes(const PoolRows& pool) {
  return pool.type == ElementType::i32 || pool.type == ElementType::i64;
}
bool is_committee_measure(MeasureId m) {
  return m >= MeasureId::vote_entropy && m <= MeasureId::variation_ratio;
}

}  // namespace

std::size_t score_workspace_bytes(const PoolRows& pool, const ScoreParams& params) {
  if (is_votes(pool)) return votes_workspace_bytes(pool.members);
  if (is_committee_measure(params.measure))
    return committee_workspace_bytes(params.measure, params.logits, pool.members, pool.classes);
  return 0;
}

void launch_score(const PoolRows& pool, const ScoreParams& params, const ScoreSink& sink,
                  cudaStream_t stream) {
  const MeasureId m = params.measure;
  if (m == MeasureId::egl) return launch_score_egl(pool, params, sink, stream);
  if (is_token_measure(m) || is_top_k_measure(m))
    return launch_score_sequences(pool, params, sink, stream);
  if (is_sample_measure(m)) return launch_score_samples(pool, params, sink, stream);
  if (is_votes(pool)) return launch_score_votes(pool, params, sink, stream);
  if (is_committee_measure(m)) return launch_score_committee(pool, params, sink, stream);
  return launch_score_single_model(pool, params, sink, stream);
}

}  // namespace quarry::kernels
