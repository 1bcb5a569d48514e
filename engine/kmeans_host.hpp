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

/// k-means is unchanged when every coordinate is multiplied by the same power of two (exactly so in
/// floating point, barring underflow), but float squared distances overflow from coordinates
/// near 1e19 / sqrt(D) (nanosecond timestamps in 128-D), and vanish below about 1e-19. Given the
/// largest |coordinate| of the points and initial centroids, returns e such that coordinates
/// times 2^e are at most 2 in magnitude and at least 1 at their largest when that largest value
/// is outside a safe range, and 0 (no scaling) within it.
int kmeans_scale_exponent(float largest, int64_t dim);

/// Scales the initial centroids (finite; checked by the caller) for points whose largest
/// |coordinate| is `largest_point`, and returns the exponent by which to scale the points too.
/// The exponent comes from the points alone; centroid coordinates then still outside the range
/// where squared distances are safe are clipped to it when Lloyd iterations will run
/// (`lloyd_runs`), which leaves them as empty as they were, and refused (InvalidArgument) when
/// none will.
int scale_kmeans_inputs(float largest_point, std::vector<float>& initial, int64_t dim,
                        bool lloyd_runs);

/// The largest |x[i]| of count values (finite values: they are checked when gathered).
float largest_magnitude(const float* x, int64_t count);

/// x[i] *= 2^exponent, exact for results in the normal range.
void scale_by_power_of_two(float* x, int64_t count, int exponent);

/// k-means++ (Arthur & Vassilvitskii): the first centroid uniformly at random, each next one with
/// probability proportional to the squared distance to the nearest centroid chosen so far.
/// Deterministic for a given seed. Returns k * dim floats.
std::vector<float> kmeans_plus_plus(const float* x, int64_t n, int64_t dim, int64_t k,
                                    uint64_t seed);

}  // namespace quarry::engine
