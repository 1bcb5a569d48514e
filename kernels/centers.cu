// Center-search kernels. Distances are summed in double by each lane over its share of the row's
// coordinates and merged with a butterfly, which gives every lane the same bits; BADGE computes a
// candidate's norm and its products with a center through one function, so that a row equal to a
// center is at distance exactly 0.

#include <algorithm>
#include <utility>

#include "kernels/centers.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/launch.cuh"
#include "kernels/prefix_draw.cuh"
#include "kernels/warp_rows.cuh"

namespace quarry::kernels {

namespace {

constexpr int kThreads = kWarpRowThreads;
constexpr int kWarps = kThreads / 32;

template <typename T>
__device__ __forceinline__ const T* row_of(const DeviceRows& v, int64_t i) {
  return static_cast<const T*>(v.data) + (v.rows ? v.rows[i] : i) * v.row_stride;
}

// Runs fn(T{}) with T the C++ type of a float element type.
template <typename Fn>
void with_type(ElementType type, Fn&& fn) {
  with_float_type(type, "center searches", std::forward<Fn>(fn));
}

// ---- core-set ----------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kThreads)
    coreset_norms_kernel(DeviceRows x, int64_t n, int64_t dim, const int64_t* names,
                         double* nearest, unsigned long long* first_bad) {
  const int lane = threadIdx.x % 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; i < n;
       i += static_cast<int64_t>(gridDim.x) * kWarps) {
    const T* row = row_of<T>(x, i);
    double sum = 0;
    for (int64_t d = lane; d < dim; d += 32) {
      const double v = to_float(row[d]);
      sum += v * v;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      nearest[i] = sum;
      if (!isfinite(sum))
        atomicMin(first_bad, static_cast<unsigned long long>(encode_bad_row(names[i], kNonFinite)));
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    coreset_update_kernel(DeviceRows x, int64_t n, int64_t dim, const float* __restrict__ centers,
                          int64_t count, bool replace, double* __restrict__ nearest) {
  const int lane = threadIdx.x % 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; i < n;
       i += static_cast<int64_t>(gridDim.x) * kWarps) {
    if (nearest[i] < 0) continue;  // the whole warp skips together
    const T* row = row_of<T>(x, i);
    double best = INFINITY;
    for (int64_t j = 0; j < count; ++j) {
      const float* c = centers + j * dim;
      double sum = 0;
      for (int64_t d = lane; d < dim; d += 32) {
        const double diff = static_cast<double>(to_float(row[d])) - c[d];
        sum += diff * diff;
      }
      best = fmin(best, warp_sum(sum));
    }
    if (lane == 0) nearest[i] = replace ? best : fmin(nearest[i], best);
  }
}

// ---- BADGE -------------------------------------------------------------------------------------

// <q_i, q_c> and <h_i, h_c> over the warp, each lane taking classes and coordinates lane,
// lane + 32, ...; q_c(c) and h_c(d) give the center's values.
template <typename P, typename F, typename QCenter, typename HCenter>
__device__ __forceinline__ void gradient_products(const P* p, int64_t classes, int32_t argmax,
                                                  const F* h, int64_t dim, QCenter q_c, HCenter h_c,
                                                  int lane, double& qq, double& hh) {
  qq = 0;
  for (int64_t c = lane; c < classes; c += 32)
    qq += static_cast<double>(to_float(p[c]) - (c == argmax ? 1.0f : 0.0f)) *
          static_cast<double>(q_c(c));
  hh = 0;
  for (int64_t d = lane; d < dim; d += 32)
    hh += static_cast<double>(to_float(h[d])) * static_cast<double>(h_c(d));
  qq = warp_sum(qq);
  hh = warp_sum(hh);
}

// The row's argmax (lowest class on ties) over the warp, in every lane.
template <typename P>
__device__ __forceinline__ int32_t warp_argmax(const P* p, int64_t classes, int lane) {
  ArgMax best;
  for (int64_t c = lane; c < classes; c += 32) best.add(to_float(p[c]), static_cast<int32_t>(c));
  for (int offset = 16; offset > 0; offset /= 2) {
    ArgMax other;
    other.value = __shfl_xor_sync(0xffffffffu, best.value, offset);
    other.index = __shfl_xor_sync(0xffffffffu, best.index, offset);
    best.merge(other);
  }
  return best.index;
}

// |q|^2 |h|^2 of a row with itself as the center: the same products as against a stored center.
template <typename P, typename F>
__device__ __forceinline__ double gradient_norm(const P* p, int64_t classes, int32_t argmax,
                                                const F* h, int64_t dim, int lane) {
  double qq, hh;
  gradient_products(
      p, classes, argmax, h, dim,
      [&](int64_t c) { return to_float(p[c]) - (c == argmax ? 1.0f : 0.0f); },
      [&](int64_t d) { return to_float(h[d]); }, lane, qq, hh);
  return qq * hh;
}

template <typename P, typename F>
__global__ void __launch_bounds__(kThreads)
    badge_prepare_kernel(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                         int64_t dim, const int64_t* names, int32_t* argmax, double* norms,
                         double* nearest, unsigned long long* first_bad) {
  const int lane = threadIdx.x % 32;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; i < n;
       i += static_cast<int64_t>(gridDim.x) * kWarps) {
    const P* p = row_of<P>(probs, i);
    const F* h = row_of<F>(features, i);
    const int32_t y = warp_argmax(p, classes, lane);
    const double norm = gradient_norm(p, classes, y, h, dim, lane);
    if (lane == 0) {
      argmax[i] = y;
      norms[i] = nearest[i] = norm;
      if (!isfinite(norm))
        atomicMin(first_bad,
                  static_cast<unsigned long long>(encode_bad_row(names[i], kBadFeature)));
    }
  }
}

template <typename P, typename F>
__global__ void badge_center_kernel(DeviceRows probs, DeviceRows features, int64_t classes,
                                    int64_t dim, float* q, float* h_out, double* norm) {
  const int lane = threadIdx.x;  // one warp
  const P* p = row_of<P>(probs, 0);
  const F* h = row_of<F>(features, 0);
  const int32_t y = warp_argmax(p, classes, lane);
  for (int64_t c = lane; c < classes; c += 32) q[c] = to_float(p[c]) - (c == y ? 1.0f : 0.0f);
  for (int64_t d = lane; d < dim; d += 32) h_out[d] = to_float(h[d]);
  const double value = gradient_norm(p, classes, y, h, dim, lane);
  if (lane == 0) *norm = value;
}

template <typename P, typename F>
__global__ void __launch_bounds__(kThreads)
    badge_update_kernel(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                        int64_t dim, const int32_t* __restrict__ argmax,
                        const double* __restrict__ norms, const float* __restrict__ q_center,
                        const float* __restrict__ h_center, const double* center_norm, bool replace,
                        double* __restrict__ nearest) {
  const int lane = threadIdx.x % 32;
  const double a_center = *center_norm;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; i < n;
       i += static_cast<int64_t>(gridDim.x) * kWarps) {
    if (nearest[i] < 0) continue;
    double qq, hh;
    gradient_products(
        row_of<P>(probs, i), classes, argmax[i], row_of<F>(features, i), dim,
        [&](int64_t c) { return q_center[c]; }, [&](int64_t d) { return h_center[d]; }, lane, qq,
        hh);
    if (lane == 0) {
      const double d = fmax(norms[i] + a_center - 2.0 * (qq * hh), 0.0);
      nearest[i] = replace ? d : fmin(nearest[i], d);
    }
  }
}

// ---- picking -----------------------------------------------------------------------------------

__global__ void retire_kernel(double* nearest, const int64_t* positions, int64_t count) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < count) nearest[positions[j]] = -1.0;
}

__global__ void draw_kernel(const double* nearest, const double* cumulative, int64_t n, double u,
                            int64_t* chosen) {
  const double total = cumulative[n - 1];
  if (!(total > 0)) {
    *chosen = -1;
    return;
  }
  double target = u * total;
  if (target >= total) target = nextafter(total, 0.0);  // u * total rounded up to the total
  *chosen = draw_from_prefix_sums(cumulative, n, target, [=](int64_t i) { return nearest[i]; });
}

}  // namespace

void launch_coreset_norms(DeviceRows x, int64_t n, int64_t dim, const int64_t* names,
                          double* nearest, unsigned long long* first_bad, cudaStream_t stream) {
  if (n <= 0) return;
  with_type(x.type, [&](auto t) {
    coreset_norms_kernel<decltype(t)>
        <<<warp_row_blocks(n), kThreads, 0, stream>>>(x, n, dim, names, nearest, first_bad);
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_coreset_update(DeviceRows x, int64_t n, int64_t dim, const float* centers,
                           int64_t count, bool replace, double* nearest, cudaStream_t stream) {
  if (n <= 0) return;
  with_type(x.type, [&](auto t) {
    coreset_update_kernel<decltype(t)>
        <<<warp_row_blocks(n), kThreads, 0, stream>>>(x, n, dim, centers, count, replace, nearest);
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_badge_prepare(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                          int64_t dim, const int64_t* names, int32_t* argmax, double* norms,
                          double* nearest, unsigned long long* first_bad, cudaStream_t stream) {
  if (n <= 0) return;
  with_type(probs.type, [&](auto p) {
    with_type(features.type, [&](auto f) {
      badge_prepare_kernel<decltype(p), decltype(f)><<<warp_row_blocks(n), kThreads, 0, stream>>>(
          probs, features, n, classes, dim, names, argmax, norms, nearest, first_bad);
    });
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_badge_center(DeviceRows probs, DeviceRows features, int64_t classes, int64_t dim,
                         float* q, float* h, double* norm, cudaStream_t stream) {
  with_type(probs.type, [&](auto p) {
    with_type(features.type, [&](auto f) {
      badge_center_kernel<decltype(p), decltype(f)>
          <<<1, 32, 0, stream>>>(probs, features, classes, dim, q, h, norm);
    });
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_badge_update(DeviceRows probs, DeviceRows features, int64_t n, int64_t classes,
                         int64_t dim, const int32_t* argmax, const double* norms, const float* q,
                         const float* h, const double* center_norm, bool replace, double* nearest,
                         cudaStream_t stream) {
  if (n <= 0) return;
  with_type(probs.type, [&](auto p) {
    with_type(features.type, [&](auto f) {
      badge_update_kernel<decltype(p), decltype(f)><<<warp_row_blocks(n), kThreads, 0, stream>>>(
          probs, features, n, classes, dim, argmax, norms, q, h, center_norm, replace, nearest);
    });
  });
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_retire(double* nearest, const int64_t* positions, int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  retire_kernel<<<static_cast<unsigned>((count + 255) / 256), 256, 0, stream>>>(nearest, positions,
                                                                                count);
  QUARRY_CHECK_LAUNCH(stream);
}

void launch_draw(const double* nearest, const double* cumulative, int64_t n, double u,
                 int64_t* chosen, cudaStream_t stream) {
  draw_kernel<<<1, 1, 0, stream>>>(nearest, cumulative, n, u, chosen);
  QUARRY_CHECK_LAUNCH(stream);
}

}  // namespace quarry::kernels
