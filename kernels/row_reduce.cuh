#pragma once
// Device helpers shared by the scoring kernels: reading a row with 16-byte loads where alignment
// allows, and merging per-thread accumulators.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

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

/// A fresh accumulator for a row: logits carry the softmax scale (1 / temperature), which they
/// apply to differences only (see LogitStats); probabilities are not scaled.
template <typename Stats>
__device__ __forceinline__ Stats fresh_stats(float scale) {
  if constexpr (std::is_same_v<Stats, LogitStats<float>>)
    return Stats(scale);
  else
    return Stats{};
}

/// Feeds the row into `stats`: lane takes the 16-byte pieces lane,
/// lane + lanes, ... and then the elements of the tail past the last whole piece. With kVector the
/// pieces are read with 16-byte loads (streaming: the pool is read once); without, element by
/// element for rows that are not 16-byte aligned. Either way each lane sees the same values in the
/// same order, so a row's score does not depend on where it sits in memory.
template <bool kVector, typename T, typename Stats>
__device__ __forceinline__ void accumulate_row(const T* __restrict__ row, int64_t classes, int lane,
                                               int lanes, Stats& stats) {
  constexpr int kVec = kVecElems<T>;
  const int64_t pieces = classes / kVec;
  const uint4* vrow = reinterpret_cast<const uint4*>(row);
#pragma unroll 4
  for (int64_t v = lane; v < pieces; v += lanes) {
    T values[kVec];
    if constexpr (kVector) {
      const uint4 raw = __ldcs(vrow + v);
      memcpy(values, &raw, sizeof raw);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) values[j] = row[v * kVec + j];
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) stats.add(to_float(values[j]));
  }
  for (int64_t c = pieces * kVec + lane; c < classes; c += lanes) stats.add(to_float(row[c]));
}

}  // namespace quarry::kernels
