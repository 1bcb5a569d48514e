#pragma once
// Exact device top-k with quarry's rank rule (descending score, ascending row on ties) by radix
// select: three histogram passes find the k-th largest score t, CUB's stable DeviceSelect keeps
// the rows above t and the lowest-indexed rows equal to t, and CUB's stable radix sort orders them.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace quarry::kernels {

/// Bytes of scratch memory topk() needs for `n` scores and `k` results.
std::size_t topk_workspace_bytes(int64_t n, int64_t k);

/// Writes the k best of `n` scores, in rank order, to `out_indices` and `out_scores` (device).
/// `workspace` holds at least topk_workspace_bytes(n, k) bytes. Requires 1 <= k <= n and scores
/// without NaN.
void topk(const float* scores, int64_t n, int64_t k, int64_t* out_indices, float* out_scores,
          void* workspace, std::size_t workspace_bytes, cudaStream_t stream);

}  // namespace quarry::kernels
