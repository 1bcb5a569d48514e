#pragma once
// Launch shape and lane sums of the kernels that give each row a warp (egl, center searches).

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace quarry::kernels {

/// Threads per block; each warp of the block owns a row at a time.
inline constexpr int kWarpRowThreads = 256;

/// Blocks for `rows` rows, a warp each, at least 1 and at most 2^20 (the kernels loop over the
/// rest).
inline unsigned warp_row_blocks(int64_t rows) {
  constexpr int64_t warps = kWarpRowThreads / 32;
  return static_cast<unsigned>(std::clamp<int64_t>((rows + warps - 1) / warps, 1, 1 << 20));
}

/// The sum over a warp's lanes by a butterfly: every lane gets the same bits.
__device__ __forceinline__ double warp_sum(double x) {
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

}  // namespace quarry::kernels
