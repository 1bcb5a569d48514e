#pragma once
// Device helpers shared by the scoring kernels: reading a row with 16-byte loads where alignment
// allows, and merging per-thread accumulators.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "kernels/measures.hpp"

namespace quarry::kernels {

/// Combines two partial accumulators; the reduction operator handed to CUB.
struct MergeStats {
  template <typename Stats>
  __device__ __forceinline__ Stats operator()(const Stats& a, const Stats& b) const {
    Stats r = a;
    r.merge(b);
    return r;
  }
};

/// Elements per 16-byte load.
template <typename T>
inline constexpr int kVecElems = 16 / static_cast<int>(sizeof(T));

/// True when every row of `data` starts on a 16-byte boundary, so rows can be read with 16-byte
/// loads.
template <typename T>
inline bool rows_are_16b_aligned(const void* data, int64_t row_stride) {
  return reinterpret_cast<uintptr_t>(data) % 16 == 0 &&
         (row_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0;
}

/// Feeds elements lane, lane + lanes, ... of `row` (scaled by `scale`) into `stats`. With kVector
/// the row is read in 16-byte pieces (streaming loads: the pool is read once), then the tail.
template <bool kVector, typename T, typename Stats>
__device__ __forceinline__ void accumulate_row(const T* __restrict__ row, int64_t classes, int lane,
                                               int lanes, float scale, Stats& stats) {
  int64_t tail = 0;
  if constexpr (kVector) {
    constexpr int kVec = kVecElems<T>;
    const int64_t vectors = classes / kVec;
    const uint4* vrow = reinterpret_cast<const uint4*>(row);
#pragma unroll 4
    for (int64_t v = lane; v < vectors; v += lanes) {
      const uint4 raw = __ldcs(vrow + v);
      T values[kVec];
      memcpy(values, &raw, sizeof raw);
#pragma unroll
      for (int j = 0; j < kVec; ++j) stats.add(to_float(values[j]) * scale);
    }
    tail = vectors * kVec;
  }
  for (int64_t c = tail + lane; c < classes; c += lanes) stats.add(to_float(row[c]) * scale);
}

}  // namespace quarry::kernels
