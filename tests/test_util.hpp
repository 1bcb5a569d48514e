#pragma once
// Helpers shared by the tests: seeded random pools, 16-bit float encoding, backends to test.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "quarry/quarry.hpp"

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

inline std::vector<float> random_logits(int64_t n, int64_t c, std::mt19937_64& rng,
                                        float scale = 3.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> out(n * c);
  for (float& x : out) x = normal(rng);
  return out;
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

inline bool have_gpu() {
  return built_with_cuda() && cuda_device_count() > 0;
}

#define QUARRY_REQUIRE_GPU()                                           \
  do {                                                                 \
    if (!::quarry::test::have_gpu()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

/// |a - b| <= rel * |b| + abs
inline ::testing::AssertionResult near_rel(float a, float b, float rel, float abs = 1e-6f) {
  if (std::fabs(a - b) <= rel * std::fabs(b) + abs) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs " << b << " (diff " << a - b << ")";
}

}  // namespace quarry::test
