#include "engine/cpu/cpu_influence.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/cpu/cpu_clones.hpp"
#include "engine/kmeans_host.hpp"
#include "engine/threads.hpp"
#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::engine {

namespace {

using kernels::to_float;

// Runs fn(T*) with the pointer typed as the view's float dtype.
template <typename Fn>
decltype(auto) with_float_type(DType dtype, const void* data, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      return fn(static_cast<const float*>(data));
    case DType::f16:
      return fn(static_cast<const kernels::f16_bits*>(data));
    case DType::bf16:
      return fn(static_cast<const kernels::bf16_bits*>(data));
    default:
      throw InvalidArgument("expected f32, f16 or bf16 data, got " + std::string(to_string(dtype)));
  }
}

// The row functions below run once per row and center over every candidate: each is compiled for
// the machine's vector instructions, and called out of line so that every caller gets the same
// code and therefore the same bits.

// sum of x^2 over a row, in double (finite iff every value is: float squares cannot overflow it).
template <typename T>
QUARRY_CPU_CLONES QUARRY_NOINLINE double row_squares(const T* row, int64_t dim) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < dim; ++d) {
    const double v = to_float(row[d]);
    sum += v * v;
  }
  return sum;
}

// ---- expected gradient length ------------------------------------------------------------------

// Two passes over the row (the second from cache): the statistics of EglRow, then the terms of
// every class but the argmax; and one over the features.
template <typename Stats, typename P, typename F>
uint64_t score_egl_rows(const PoolView& pool, const EmbeddingView& features, const P* data,
                        const F* feature_data, float scale, bool logits, float* out) {
  return parallel_min(pool.rows, 256, 2 * pool.classes + features.dim, kernels::kNoBadRow,
                      [&](int64_t begin, int64_t end, int) {
                        uint64_t range_bad = kernels::kNoBadRow;
                        for (int64_t r = begin; r < end; ++r) {
                          const P* row = data + r * pool.row_stride;
                          Stats stats(scale);
                          for (int64_t c = 0; c < pool.classes; ++c) stats.add(to_float(row[c]), c);
                          uint32_t flags = stats.row_flags();
                          const kernels::EglRow<double> egl = stats.row();
                          double others = 0;
                          if (flags == 0)
                            for (int64_t c = 0; c < pool.classes; ++c)
                              if (c != egl.argmax)
                                others += egl.term(egl.probability(to_float(row[c]), logits));
                          const double squares =
                              row_squares(feature_data + r * features.row_stride, features.dim);
                          if (!std::isfinite(squares)) flags |= kernels::kBadFeature;
                          out[r] = kernels::egl_score(egl.terms(others), squares, flags);
                          if (flags)
                            range_bad = std::min(range_bad, kernels::encode_bad_row(r, flags));
                        }
                        return range_bad;
                      });
}

// ---- center searches ---------------------------------------------------------------------------

// What both searches share: the candidates, their distances (-1 once a candidate is a center),
// and picking from them. The candidates are split into fixed ranges, and each distance update
// (one pass over the candidates per pick) also finds each range's farthest candidate, so that
// farthest() reads only the ranges' results: one pass over the candidates per pick, not two.
class CpuCenterSearch : public CenterSearch {
 public:
  explicit CpuCenterSearch(std::vector<int64_t> rows)
      : rows_(std::move(rows)),
        nearest_(rows_.size()),
        best_of_range_((rows_.size() + kRange - 1) / kRange) {}

  int64_t farthest() override {
    double best = -1;
    int64_t best_at = -1;
    for (size_t r = 0; r < best_of_range_.size(); ++r) {
      Best& range = best_of_range_[r];
      if (range.stale) {
        const auto begin = static_cast<int64_t>(r) * kRange;
        range = best_in(begin, std::min(begin + kRange, static_cast<int64_t>(nearest_.size())));
      }
      if (range.at >= 0 && range.value > best) {  // ranges in order: ties keep the first
        best = range.value;
        best_at = range.at;
      }
    }
    return best_at;
  }

  int64_t draw(double u) override {
    double total = 0;
    for (double d : nearest_) total += d > 0 ? d : 0.0;
    const auto n = static_cast<int64_t>(nearest_.size());
    if (total > 0) {
      const double target = u * total;
      double cumulative = 0;
      int64_t last_positive = -1;
      for (int64_t i = 0; i < n; ++i) {
        if (!(nearest_[i] > 0)) continue;
        cumulative += nearest_[i];
        last_positive = i;
        if (cumulative > target) return i;
      }
      return last_positive;  // u * total rounded up to the total
    }
    for (int64_t i = 0; i < n; ++i)
      if (nearest_[i] >= 0) return i;
    return -1;
  }

 protected:
  // Candidates per range: enough work that taking a range costs nothing, few enough values that
  // a helper which stops running holds up little.
  static constexpr int64_t kRange = 256;

  struct Best {
    double value = -1;
    int64_t at = -1;
    bool stale = true;  // not known: farthest() scans the range
  };

  // The farthest candidate not yet a center in [begin, end), the lowest on ties.
  Best best_in(int64_t begin, int64_t end) const {
    Best best{-1, -1, false};
    for (int64_t i = begin; i < end; ++i)
      if (nearest_[i] > best.value) {
        best.value = nearest_[i];
        best.at = i;
      }
    return best;
  }

  // Lowers every candidate's distance to dist(i) (replacing the distances to the origin the first
  // time), then retires the candidates among `centers`.
  // `work` is the values read per candidate.
  template <typename Distance>
  void update(Distance&& dist, const std::vector<int64_t>& centers, int64_t work) {
    const auto n = static_cast<int64_t>(nearest_.size());
    parallel_for(n, kRange, work, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) {
        if (nearest_[i] < 0) continue;
        const double d = dist(i);
        nearest_[i] = replace_ ? d : std::min(nearest_[i], d);
      }
      best_of_range_[begin / kRange] = best_in(begin, end);
    });
    replace_ = false;
    for (int64_t row : centers) {
      const auto at = std::lower_bound(rows_.begin(), rows_.end(), row);
      if (at != rows_.end() && *at == row) {
        nearest_[at - rows_.begin()] = -1;
        best_of_range_[(at - rows_.begin()) / kRange].stale = true;
      }
    }
  }

  std::vector<int64_t> rows_;
  std::vector<double> nearest_;
  std::vector<Best> best_of_range_;
  bool replace_ = true;
};

// Euclidean distances, the squares summed in double (exact zeros for equal rows, no overflow for
// large coordinates).
template <typename T>
QUARRY_CPU_CLONES QUARRY_NOINLINE double squared_distance(const T* x, const float* c, int64_t dim) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t d = 0; d < dim; ++d) {
    const double diff = static_cast<double>(to_float(x[d])) - c[d];
    sum += diff * diff;
  }
  return sum;
}

template <typename T>
class CpuCoresetSearch final : public CpuCenterSearch {
 public:
  CpuCoresetSearch(const EmbeddingView& points, std::vector<int64_t> rows)
      : CpuCenterSearch(std::move(rows)),
        points_(points),
        data_(static_cast<const T*>(points.data)) {
    const auto n = static_cast<int64_t>(rows_.size());
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    const int64_t first_bad =
        parallel_min(n, kRange, points_.dim, kNone, [&](int64_t begin, int64_t end, int) {
          int64_t range_bad = kNone;
          for (int64_t i = begin; i < end; ++i) {
            nearest_[i] = row_squares(row(rows_[i]), points_.dim);
            if (!std::isfinite(nearest_[i])) range_bad = std::min(range_bad, rows_[i]);
          }
          return range_bad;
        });
    if (first_bad != kNone) throw_bad_embedding(first_bad);
  }

  void add_rows(const std::vector<int64_t>& pool_rows) override {
    std::vector<float> centers(pool_rows.size() * points_.dim);
    for (size_t j = 0; j < pool_rows.size(); ++j)
      for (int64_t d = 0; d < points_.dim; ++d)
        centers[j * points_.dim + d] = to_float(row(pool_rows[j])[d]);
    nearest_to(centers.data(), static_cast<int64_t>(pool_rows.size()), pool_rows);
  }

  void add_points(const float* points, int64_t count) override { nearest_to(points, count, {}); }

 private:
  const T* row(int64_t pool_row) const { return data_ + pool_row * points_.row_stride; }

  void nearest_to(const float* centers, int64_t count, const std::vector<int64_t>& center_rows) {
    const int64_t dim = points_.dim;
    update(
        [&](int64_t i) {
          const T* x = row(rows_[i]);
          double best = std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < count; ++j)
            best = std::min(best, squared_distance(x, centers + j * dim, dim));
          return best;
        },
        center_rows, count * dim);
  }

  EmbeddingView points_;
  const T* data_;
};

// <q_i, q_c> and <h_i, h_c> for a row (q_i = p_i - e_argmax) and a center given densely, in
// double. One function for every pair, a row with itself included, so that equal rows give
// bitwise equal products and a distance of exactly 0.
template <typename P, typename F>
QUARRY_CPU_CLONES QUARRY_NOINLINE std::pair<double, double> gradient_products(
    const P* p, int64_t classes, int64_t argmax, const F* h, int64_t dim, const float* q_center,
    const float* h_center) {
  double qq = 0, hh = 0;
#pragma omp simd reduction(+ : qq)
  for (int64_t c = 0; c < classes; ++c)
    qq += static_cast<double>(to_float(p[c]) - (c == argmax ? 1.0f : 0.0f)) * q_center[c];
#pragma omp simd reduction(+ : hh)
  for (int64_t d = 0; d < dim; ++d) hh += static_cast<double>(to_float(h[d])) * h_center[d];
  return {qq, hh};
}

template <typename P, typename F>
class CpuBadgeSearch final : public CpuCenterSearch {
 public:
  CpuBadgeSearch(const PoolView& pool, const EmbeddingView& features, std::vector<int64_t> rows)
      : CpuCenterSearch(std::move(rows)),
        pool_(pool),
        features_(features),
        probs_(static_cast<const P*>(pool.data)),
        feats_(static_cast<const F*>(features.data)),
        argmax_(rows_.size()),
        norms_(rows_.size()) {
    const auto n = static_cast<int64_t>(rows_.size());
    const int64_t work = 2 * (pool_.classes + features_.dim);
    std::vector<Center> center_of_slot(team_of(n, work), Center(pool_.classes, features_.dim));
    constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
    const int64_t first_bad =
        parallel_min(n, kRange, work, kNone, [&](int64_t begin, int64_t end, int slot) {
          Center& center = center_of_slot[slot];
          int64_t range_bad = kNone;
          for (int64_t i = begin; i < end; ++i) {
            argmax_[i] = row_argmax(rows_[i]);
            make_center(rows_[i], argmax_[i], center);
            norms_[i] = nearest_[i] = center.norm;
            if (!std::isfinite(center.norm)) range_bad = std::min(range_bad, rows_[i]);
          }
          return range_bad;
        });
    if (first_bad != kNone) throw_bad_row({first_bad, kernels::kBadFeature});
  }

  void add_rows(const std::vector<int64_t>& pool_rows) override {
    std::vector<Center> centers;
    for (int64_t row : pool_rows) {
      centers.emplace_back(pool_.classes, features_.dim);
      make_center(row, row_argmax(row), centers.back());
    }
    update(
        [&](int64_t i) {
          double best = std::numeric_limits<double>::infinity();
          for (const Center& c : centers) {
            const auto [qq, hh] = products(rows_[i], argmax_[i], c);
            const double d = norms_[i] + c.norm - 2.0 * (qq * hh);
            best = std::min(best, d > 0 ? d : 0.0);
          }
          return best;
        },
        pool_rows, static_cast<int64_t>(centers.size()) * (pool_.classes + features_.dim));
  }

  void add_points(const float*, int64_t) override {
    throw InvalidArgument("BADGE centers are pool rows, not points");
  }

 private:
  // A row's q = p - e_argmax and h as float32, and a = |q|^2 |h|^2.
  struct Center {
    std::vector<float> q, h;
    double norm = 0;
    Center(int64_t classes, int64_t dim) : q(classes), h(dim) {}
  };

  int64_t row_argmax(int64_t row) const {
    kernels::ArgMax best;
    const P* p = probs_ + row * pool_.row_stride;
    for (int64_t c = 0; c < pool_.classes; ++c) best.add(to_float(p[c]), static_cast<int32_t>(c));
    return best.index;
  }

  std::pair<double, double> products(int64_t row, int64_t argmax, const Center& c) const {
    return gradient_products(probs_ + row * pool_.row_stride, pool_.classes, argmax,
                             feats_ + row * features_.row_stride, features_.dim, c.q.data(),
                             c.h.data());
  }

  void make_center(int64_t row, int64_t argmax, Center& c) const {
    const P* p = probs_ + row * pool_.row_stride;
    for (int64_t k = 0; k < pool_.classes; ++k)
      c.q[k] = to_float(p[k]) - (k == argmax ? 1.0f : 0.0f);
    const F* h = feats_ + row * features_.row_stride;
    for (int64_t d = 0; d < features_.dim; ++d) c.h[d] = to_float(h[d]);
    const auto [qq, hh] = products(row, argmax, c);
    c.norm = qq * hh;
  }

  PoolView pool_;
  EmbeddingView features_;
  const P* probs_;
  const F* feats_;
  std::vector<int32_t> argmax_;
  std::vector<double> norms_;
};

}  // namespace

BadRow score_egl_on_cpu(const PoolView& pool, const ScoreOptions& options, float* out) {
  const EmbeddingView& features = *options.features;
  const float scale = options.logits ? 1.0f / options.temperature : 1.0f;
  const uint64_t code = with_float_type(pool.dtype, pool.data, [&](const auto* data) {
    return with_float_type(features.dtype, features.data, [&](const auto* feature_data) {
      return options.logits ? score_egl_rows<kernels::EglLogitStats<double>>(
                                  pool, features, data, feature_data, scale, true, out)
                            : score_egl_rows<kernels::EglProbStats<double>>(
                                  pool, features, data, feature_data, scale, false, out);
    });
  });
  return BadRow::from_code(code);
}

std::unique_ptr<CenterSearch> make_cpu_coreset_search(const EmbeddingView& points,
                                                      std::vector<int64_t> rows) {
  return with_float_type(points.dtype, points.data,
                         [&](const auto* data) -> std::unique_ptr<CenterSearch> {
                           using T = std::remove_cv_t<std::remove_pointer_t<decltype(data)>>;
                           return std::make_unique<CpuCoresetSearch<T>>(points, std::move(rows));
                         });
}

std::unique_ptr<CenterSearch> make_cpu_badge_search(const PoolView& pool,
                                                    const EmbeddingView& features,
                                                    std::vector<int64_t> rows) {
  return with_float_type(pool.dtype, pool.data, [&](const auto* probs) {
    return with_float_type(
        features.dtype, features.data, [&](const auto* feats) -> std::unique_ptr<CenterSearch> {
          using P = std::remove_cv_t<std::remove_pointer_t<decltype(probs)>>;
          using F = std::remove_cv_t<std::remove_pointer_t<decltype(feats)>>;
          return std::make_unique<CpuBadgeSearch<P, F>>(pool, features, std::move(rows));
        });
  });
}

}  // namespace quarry::engine
