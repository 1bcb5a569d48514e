#pragma once
// Host-side pieces of k-means used by the CPU backend: gathering embeddings as float32 and seeded
// k-means++ initialisation.

#include <cstdint>
#include <vector>

#include "quarry/types.hpp"

namespace quarry::engine {

/// The listed rows (all rows when `rows` is null) of a host embedding view as a dense float32
/// [n, dim] matrix. Throws InvalidInput naming the first row with a non-finite coordinate.
std::vector<float> gather_embeddings(const EmbeddingView& points, const std::vector<int64_t>* rows);

/// Throws InvalidInput for a non-finite coordinate in embeddings row `row`.
[[noreturn]] void throw_bad_embedding(int64_t row);

/// k-means++ (Arthur & Vassilvitskii): the first centroid uniformly at random, each next one with
/// probability proportional to the squared distance to the nearest centroid chosen so far.
/// Deterministic for a given seed. Returns k * dim floats.
std::vector<float> kmeans_plus_plus(const float* x, int64_t n, int64_t dim, int64_t k,
                                    uint64_t seed);

}  // namespace quarry::engine
