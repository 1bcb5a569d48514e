#include "engine/kmeans_host.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "engine/backend.hpp"
#include "engine/threads.hpp"
#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

template <typename T>
void gather_typed(const EmbeddingView& points, const std::vector<int64_t>* rows, float* out) {
  const T* data = static_cast<const T*>(points.data);
  const int64_t n = rows ? static_cast<int64_t>(rows->size()) : points.rows;
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  const int64_t first_bad =
      parallel_min(n, 256, points.dim, kNone, [&](int64_t begin, int64_t end, int) {
        int64_t range_bad = kNone;
        for (int64_t i = begin; i < end; ++i) {
          const int64_t row = rows ? (*rows)[i] : i;
          const T* src = data + row * points.row_stride;
          bool finite = true;
          for (int64_t j = 0; j < points.dim; ++j) {
            const float v = kernels::to_float(src[j]);
            finite &= kernels::is_finite(v);
            out[i * points.dim + j] = v;
          }
          if (!finite) range_bad = std::min(range_bad, row);
        }
        return range_bad;
      });
  if (first_bad != kNone) throw_bad_embedding(first_bad);
}

}  // namespace

void throw_bad_embedding(int64_t row) {
  throw InvalidInput("embeddings row " + std::to_string(row) + ": non-finite value (NaN or Inf)",
                     row, "embeddings");
}

std::vector<float> gather_embeddings(const EmbeddingView& points,
                                     const std::vector<int64_t>* rows) {
  const int64_t n = rows ? static_cast<int64_t>(rows->size()) : points.rows;
  std::vector<float> out(n * points.dim);
  if (points.dtype == DType::f32)
    gather_typed<float>(points, rows, out.data());
  else if (points.dtype == DType::f16)
    gather_typed<kernels::f16_bits>(points, rows, out.data());
  else if (points.dtype == DType::bf16)
    gather_typed<kernels::bf16_bits>(points, rows, out.data());
  else
    throw InvalidArgument("embeddings must be f32, f16 or bf16");
  return out;
}

std::vector<float> Backend::gather(const EmbeddingView& points, const std::vector<int64_t>& rows,
                                   const CallContext&) {
  if (points.space != MemorySpace::host)
    throw InvalidArgument("the " + describe() + " backend needs the embeddings in host memory");
  return engine::gather_embeddings(points, &rows);
}

int kmeans_scale_exponent(float largest, int64_t dim) {
  // |x - c|^2 <= D (2 largest)^2, and a quarter of the float range to spare for sums.
  const double ceiling =
      std::sqrt(static_cast<double>(std::numeric_limits<float>::max()) / (16.0 * double(dim)));
  const double floor = std::ldexp(1.0, -40);
  if (largest == 0.0f || (largest >= floor && largest <= ceiling)) return 0;
  int exponent = 0;
  std::frexp(largest, &exponent);  // largest = f 2^exponent, f in [1/2, 1)
  return 1 - exponent;
}

int scale_kmeans_inputs(float largest_point, std::vector<float>& initial, int64_t dim,
                        bool lloyd_runs) {
  // From the points alone: initial centroids far from them must not shrink the points' distances
  // into underflow (centroids at 1e30 would leave every point at 0).
  const int exponent = kmeans_scale_exponent(largest_point, dim);
  scale_by_power_of_two(initial.data(), static_cast<int64_t>(initial.size()), exponent);
  // The scaled points are within kmeans_scale_exponent's ceiling (|x| <= C); centroids up to 2C
  // keep every squared distance and norm below a quarter of the float range. A coordinate beyond
  // that is more than C from every point, far beyond the points' own spread in any practical
  // case, so Lloyd's first step leaves the centroid empty; moved in to 2C it stays empty, and the
  // backend reseeds it as it does any empty cluster.
  const auto edge =
      static_cast<float>(2.0 * std::sqrt(static_cast<double>(std::numeric_limits<float>::max()) /
                                         (16.0 * double(dim))));
  for (size_t i = 0; i < initial.size(); ++i) {
    if (std::fabs(initial[i]) <= edge) continue;
    if (!lloyd_runs)
      throw InvalidArgument(
          "initial_centroids: centroid " + std::to_string(static_cast<int64_t>(i) / dim) +
          " is too far from the points for float32 distances, and no k-means iteration would "
          "move it (iterations = 0, or no more points than clusters)");
    initial[i] = std::copysign(edge, initial[i]);
  }
  return exponent;
}

float largest_magnitude(const float* x, int64_t count) {
  // The largest magnitude is the negated smallest of the negated magnitudes.
  return -parallel_min(count, 1 << 14, 1, -0.0f, [&](int64_t begin, int64_t end, int) {
    float largest = 0.0f;
    for (int64_t i = begin; i < end; ++i) largest = std::max(largest, std::fabs(x[i]));
    return -largest;
  });
}

void scale_by_power_of_two(float* x, int64_t count, int exponent) {
  if (exponent == 0) return;
  parallel_for(count, 1 << 14, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) x[i] = std::ldexp(x[i], exponent);
  });
}

std::vector<float> kmeans_plus_plus(const float* x, int64_t n, int64_t dim, int64_t k,
                                    uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> centroids(k * dim);
  std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
  int64_t chosen = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
  for (int64_t c = 0; c < k; ++c) {
    std::copy_n(x + chosen * dim, dim, centroids.begin() + c * dim);
    if (c + 1 == k) break;
    const float* centroid = centroids.data() + c * dim;
    parallel_for(n, 256, dim, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) {
        float d2 = 0;
        // A vector sum (its order fixed by the build, so results repeat): without the pragma the
        // float sum stays sequential, one add at a time.
#pragma omp simd reduction(+ : d2)
        for (int64_t j = 0; j < dim; ++j) {
          const float diff = x[i * dim + j] - centroid[j];
          d2 += diff * diff;
        }
        nearest[i] = std::min(nearest[i], static_cast<double>(d2));
      }
    });
    // Summed in order, not in an OpenMP reduction, whose order (and so the last bits, and the
    // point chosen) could change from run to run.
    double total = 0;
    for (int64_t i = 0; i < n; ++i) total += nearest[i];
    if (total <= 0) {  // every point coincides with a centroid: take any
      chosen = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
      continue;
    }
    double target = std::uniform_real_distribution<double>(0.0, total)(rng);
    chosen = n - 1;
    for (int64_t i = 0; i < n; ++i) {
      target -= nearest[i];
      if (target < 0) {
        chosen = i;
        break;
      }
    }
  }
  return centroids;
}

}  // namespace quarry::engine
