#pragma once
// The seeded tie-break's key: equal scores rank by tie_key(seed, global row) ascending instead
// of by row. One function for the host and the device, so every backend and every sharding of a
// pool orders ties alike.

#include <cstdint>

#if defined(__CUDACC__)
#define QUARRY_TIE_HD __host__ __device__ __forceinline__
#else
#define QUARRY_TIE_HD inline
#endif

namespace quarry::kernels {

/// splitmix64's output function (Steele, Lea & Flood, 2014): a bijection of 64-bit integers
/// that mixes every input bit into every output bit.
QUARRY_TIE_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// A bijection of rows for each seed: distinct rows never share a key, so (score, key) orders
/// rows strictly, and the order of a row depends only on its global number and the seed.
QUARRY_TIE_HD uint64_t tie_key(uint64_t seed, int64_t global_row) {
  return splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(global_row));
}

}  // namespace quarry::kernels
