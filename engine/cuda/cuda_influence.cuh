#pragma once
// The CUDA backend's influence and coverage work: staging the rows of a host or device matrix for
// kernels, the feature squares of egl, and the BADGE and core-set center searches.

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "engine/backend.hpp"
#include "engine/cuda/cuda_memory.cuh"
#include "kernels/centers.cuh"

namespace quarry::engine {

/// What the CUDA backend lends to this work: its stream, memory pool and memory budget, and (for
/// work that ends within the call) its two pinned staging buffers, kept for its lifetime.
struct CudaContext {
  cudaStream_t stream;
  cudaMemPool_t pool;
  std::size_t budget;
  int device;
  PinnedBuffer* pinned = nullptr;  // two buffers, or null: the user allocates its own
};

kernels::ElementType element_type(DType dtype);

/// Rows of a matrix (all of them, or the listed ascending rows) handed to kernels a block at a
/// time. Device matrices are read in place. Host matrices are either copied to the device once
/// (when `block_rows` covers every row) or, block by block, packed into one of the HostPager's two
/// pinned buffers and copied to one of two device buffers: while the device works on one block,
/// the host packs the next.
class RowSource {
 public:
  /// `d_rows`: the list in device memory (null without a list).
  RowSource(const CudaContext& context, const void* data, DType dtype, MemorySpace space,
            int64_t row_stride, int64_t row_elems, const std::vector<int64_t>* rows,
            const int64_t* d_rows, int64_t n, int64_t block_rows);
  ~RowSource();
  RowSource(const RowSource&) = delete;
  RowSource& operator=(const RowSource&) = delete;

  int64_t block_rows() const { return block_rows_; }
  /// Rows [first, first + count) of the list (count <= block_rows()), on the device. Call done()
  /// once the kernels that read them are queued.
  kernels::DeviceRows block(int64_t first, int64_t count);
  void done();
  /// Bytes a row takes on the device when copied.
  int64_t row_bytes() const { return row_elems_ * elem_; }

 private:
  void pack(char* out, int64_t first, int64_t count) const;

  CudaContext context_;
  const char* data_;
  kernels::ElementType type_;
  MemorySpace space_;
  int64_t row_stride_, row_elems_, elem_;
  const std::vector<int64_t>* rows_;
  const int64_t* d_rows_;
  int64_t n_, block_rows_;
  bool resident_ = false;
  DeviceBuffer device_;  // the whole copy, or two slots
  char* device_data_ = nullptr;
  PinnedBuffer own_pinned_[2];
  PinnedBuffer* pinned_;  // the context's, or own_pinned_
  HostPager pager_;       // copies on the context's stream, in order with the kernels
  int64_t blocks_ = 0;    // blocks staged so far
};

/// squares[i] = |h_i|^2 (double, device) of the features of `rows` pool rows numbered from
/// `row_offset`; lowers `first_bad` for non-finite features. `block_rows` bounds the staging of
/// host features.
void queue_feature_squares(const CudaContext& context, const EmbeddingView& features,
                           int64_t row_offset, int64_t block_rows, double* squares,
                           unsigned long long* first_bad);

std::unique_ptr<CenterSearch> make_cuda_coreset_search(const CudaContext& context,
                                                       const EmbeddingView& points,
                                                       std::vector<int64_t> rows);
std::unique_ptr<CenterSearch> make_cuda_badge_search(const CudaContext& context,
                                                     const PoolView& pool,
                                                     const EmbeddingView& features,
                                                     std::vector<int64_t> rows);

}  // namespace quarry::engine
