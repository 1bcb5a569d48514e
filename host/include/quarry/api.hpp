#pragma once
// The two operations: score every row of a pool, and select the rows most worth labeling.

#include <vector>

#include "quarry/resources.hpp"
#include "quarry/types.hpp"

namespace quarry {

/// Scores every row of `pool` with `options.measure`; higher means "select first".
/// [in] pool: host or device memory. [out] scores_out: pool.rows floats, in host memory (or, on
/// the CUDA backend, device memory, written in place without a trip through the host).
/// Throws InvalidArgument (bad shapes/options) or InvalidInput (bad data, with the first bad row);
/// every function here throws OutOfMemory when host or device memory runs out.
void score(Resources& resources, const PoolView& pool, const ScoreOptions& options,
           float* scores_out);
/// As above, returning the scores.
std::vector<float> score(Resources& resources, const PoolView& pool, const ScoreOptions& options);

/// Returns the k rows to label: descending score, equal scores in ascending row order; with
/// diversity, the best candidate of each k-means cluster; then the exploration picks.
/// Deterministic for a given backend, inputs and seed.
Selection select(Resources& resources, const PoolView& pool, const SelectOptions& options);

/// Clusters `points` into k clusters with Lloyd's k-means (FAISS on the CPU backend, on the
/// device on the CUDA backend). Throws InvalidArgument for k < 1, k > points.rows or dim < 1, and
/// InvalidInput for non-finite coordinates.
KMeansResult kmeans(Resources& resources, const EmbeddingView& points, int64_t k,
                    const KMeansOptions& options = {});

}  // namespace quarry
