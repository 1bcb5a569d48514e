#pragma once
// Exact device top-k with quarry's rank rule (descending score, ascending row on ties) by radix
// select: three histogram passes find the k-th largest score t, CUB's stable DeviceSelect keeps
// the rows above t and the lowest-indexed rows equal to t, and CUB's stable radix sort orders them.
// With the seeded tie-break the rows equal to t are first sorted by their tie_key (a 64-bit CUB
// radix sort), so those of lowest key are kept; the caller orders the k results' ties by key.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace quarry::kernels {

/// The seeded tie-break: rows of equal score rank by kernels::tie_key(seed, row_offset + row).
struct TopkTies {
  bool seeded = false;
  uint64_t seed = 0;
  int64_t row_offset = 0;
};

/// Bytes of scratch memory topk() needs for `n` scores and `k` results.
std::size_t topk_workspace_bytes(int64_t n, int64_t k, bool seeded_ties = false);

/// Writes the k best of `n` scores to `out_indices` and `out_scores` (device): in rank order
/// (descending score, ascending row on ties), or with seeded ties the k best by (score, tie key)
/// in descending score order, ties in ascending row order (the caller sorts them by key; k is
/// host-sized). `workspace` holds at least topk_workspace_bytes(n, k, ties.seeded) bytes.
/// Requires 1 <= k <= n and scores without NaN.
void topk(const float* scores, int64_t n, int64_t k, int64_t* out_indices, float* out_scores,
          void* workspace, std::size_t workspace_bytes, cudaStream_t stream,
          const TopkTies& ties = {});

}  // namespace quarry::kernels
