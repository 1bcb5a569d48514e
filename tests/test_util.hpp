#pragma once
// Helpers shared by the tests: seeded random pools, 16-bit float encoding, backends to test.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "engine/backend.hpp"
#include "quarry/quarry.hpp"

#if defined(QUARRY_WITH_CUDA)
#include <cuda_runtime.h>

#include <stdexcept>
#endif

namespace quarry::test {

/// Seeds are fixed and printed so a failure can be reproduced.
inline std::mt19937_64 seeded_rng(uint64_t seed) {
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  return std::mt19937_64(seed);
}

/// Random probability rows (softmax of normal logits scaled by `sharpness`), row-major [n, c].
inline std::vector<float> random_probabilities(int64_t n, int64_t c, std::mt19937_64& rng,
                                               float sharpness = 2.0f) {
  std::normal_distribution<float> normal(0.0f, sharpness);
  std::vector<float> out(n * c);
  std::vector<double> z(c);
  for (int64_t r = 0; r < n; ++r) {
    double m = -1e300, s = 0;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, z[j] = normal(rng));
    for (int64_t j = 0; j < c; ++j) s += (z[j] = std::exp(z[j] - m));
    for (int64_t j = 0; j < c; ++j) out[r * c + j] = static_cast<float>(z[j] / s);
  }
  return out;
}

/// `count` independent normal values with mean 0 and standard deviation `scale`.
inline std::vector<float> random_normal(int64_t count, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> out(count);
  for (float& x : out) x = normal(rng);
  return out;
}

inline std::vector<float> random_logits(int64_t n, int64_t c, std::mt19937_64& rng,
                                        float scale = 3.0f) {
  return random_normal(n * c, rng, scale);
}

/// float -> IEEE binary16 bits, round to nearest even.
inline uint16_t to_f16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> Inf
  if (x < 0x38800000u) {                                               // subnormal or zero
    float a;
    std::memcpy(&a, &x, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  const uint32_t rounded = x + 0xfffu + ((x >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

/// float -> bfloat16 bits, round to nearest even.
inline uint16_t to_bf16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline std::vector<uint16_t> encode(const std::vector<float>& v, DType dtype) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = dtype == DType::f16 ? to_f16_bits(v[i]) : to_bf16_bits(v[i]);
  return out;
}

/// AddressSanitizer reserves terabytes of address space (so `ulimit -v` cannot apply) and ends
/// the process on a failed allocation instead of throwing std::bad_alloc: tests of running out of
/// memory skip under it.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#define QUARRY_SKIP_UNDER_ASAN()                                                              \
  do {                                                                                        \
    if (::quarry::test::kAddressSanitizer)                                                    \
      GTEST_SKIP() << "AddressSanitizer aborts on a failed allocation and ignores ulimit -v"; \
  } while (0)

inline bool have_gpu() {
  return built_with_cuda() && cuda_device_count() > 0;
}

#define QUARRY_REQUIRE_GPU()                                           \
  do {                                                                 \
    if (!::quarry::test::have_gpu()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

/// Base of the tests that run on every backend; the CUDA instances skip without a GPU.
class OnEveryBackend : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::cuda) QUARRY_REQUIRE_GPU();
    resources_ = std::make_unique<Resources>(GetParam());
  }
  std::unique_ptr<Resources> resources_;
};

#define QUARRY_ON_EVERY_BACKEND(Suite)                                                    \
  INSTANTIATE_TEST_SUITE_P(Backends, Suite, ::testing::Values(Device::cpu, Device::cuda), \
                           [](const auto& info) { return std::string(to_string(info.param)); })

/// Random pool values of `rows` rows: logits, or probabilities. 16-bit probabilities are multiples
/// of 1/256 (exact in f16 and bf16, so rows still sum to 1 after encoding).
inline std::vector<float> random_pool_values(int64_t rows, int64_t classes, DType dtype,
                                             bool logits, std::mt19937_64& rng) {
  if (logits) return random_logits(rows, classes, rng, 2.0f);
  if (dtype == DType::f32) return random_probabilities(rows, classes, rng, 1.0f);
  std::vector<float> values(rows * classes, 0.0f);
  std::uniform_int_distribution<int64_t> pick(0, classes - 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < 256; ++i) values[r * classes + pick(rng)] += 1.0f / 256.0f;
  return values;
}

/// A [members, rows, classes] array reordered to [rows, members, classes].
inline std::vector<float> to_rows_first(const std::vector<float>& members_first, int64_t members,
                                        int64_t rows, int64_t classes) {
  std::vector<float> out(members_first.size());
  for (int64_t m = 0; m < members; ++m)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < classes; ++c)
        out[(r * members + m) * classes + c] = members_first[(m * rows + r) * classes + c];
  return out;
}

/// |a - b| <= rel * |b| + abs
inline ::testing::AssertionResult near_rel(float a, float b, float rel, float abs = 1e-6f) {
  if (a == b) return ::testing::AssertionSuccess();  // equal infinities (rows nobody voted on)
  if (std::fabs(a - b) <= rel * std::fabs(b) + abs) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs " << b << " (diff " << a - b << ")";
}

/// Expects got[r] near want[r] for every row; reports the first few rows that are not.
inline void expect_scores_match(const std::vector<float>& got, const std::vector<float>& want,
                                float rel, float abs) {
  ASSERT_EQ(got.size(), want.size());
  int reported = 0;
  for (size_t r = 0; r < got.size() && reported < 5; ++r)
    if (!near_rel(got[r], want[r], rel, abs)) {
      ADD_FAILURE() << "row " << r << ": " << got[r] << " vs " << want[r];
      ++reported;
    }
}

/// Scores `view` with the CPU backend (the oracle) and the CUDA backend, expects the scores to
/// agree, and returns the GPU's.
inline std::vector<float> expect_backends_agree(Resources& cpu, Resources& gpu,
                                                const PoolView& view, const ScoreOptions& options,
                                                float rel, float abs) {
  const auto want = score(cpu, view, options);
  const auto got = score(gpu, view, options);
  expect_scores_match(got, want, rel, abs);
  return got;
}

/// The memory budget that makes `resources` score `pool` in chunks of `rows` rows while keeping
/// `count` results.
inline std::size_t budget_for_rows(Resources& resources, const PoolView& pool,
                                   const ScoreOptions& options, int64_t count, int64_t rows) {
  const engine::Backend& backend = resources.backend();
  return static_cast<std::size_t>(
      backend.working_bytes_fixed(engine::ScoreProblem{pool, options}, count) +
      backend.working_bytes_per_row(pool) * rows);
}

#if defined(QUARRY_WITH_CUDA)
// A copy of host data in device memory, freed when it goes out of scope.
class DeviceCopy {
 public:
  template <typename T>
  explicit DeviceCopy(const std::vector<T>& host) {
    const std::size_t bytes = host.size() * sizeof(T);
    if (cudaMalloc(&data_, bytes) != cudaSuccess ||
        cudaMemcpy(data_, host.data(), bytes, cudaMemcpyHostToDevice) != cudaSuccess)
      throw std::runtime_error("device copy failed");
  }
  ~DeviceCopy() { cudaFree(data_); }
  DeviceCopy(const DeviceCopy&) = delete;
  DeviceCopy& operator=(const DeviceCopy&) = delete;
  void* get() const { return data_; }

 private:
  void* data_ = nullptr;
};
#endif

}  // namespace quarry::test
