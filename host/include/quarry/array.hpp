#pragma once
// From an n-dimensional array, as a .npy file or a Python array holds it, to the views the API
// takes: the one place that decides what an array's shape means.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "quarry/types.hpp"

namespace quarry {

/// An n-dimensional array: element (i0, i1, ...) lives at data + i0*strides[0] + i1*strides[1]
/// + ... elements (not bytes).
struct ArrayView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  MemorySpace space = MemorySpace::host;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  /// A C-contiguous array of this shape.
  static ArrayView contiguous(const void* data, DType dtype, std::vector<int64_t> shape,
                              MemorySpace space = MemorySpace::host);
};

/// A pool read from an array, and the measure to score it with.
struct PoolSpec {
  PoolView view;
  Measure measure = Measure::entropy;
};

/// The measure used when none is named: entropy for one model's [N, C], consensus_entropy for a
/// committee's 3-D array, vote_entropy for integer votes.
Measure default_measure(const ArrayView& array);

/// Reads an array as a pool by its shape and dtype: [N, C] float is one model's predictions,
/// [M, N, C] float a committee ([N, M, C] with Layout::rows_first), [M, N] int32/int64 the members'
/// votes. `measure` empty: default_measure(). `classes` (votes only; 0 = infer) bounds the votes.
/// An LLM measure (pool_kind() token_logprobs, top_logprobs or samples; there is no default one)
/// says how the array is read: float [N, T] token log-probabilities, [N, T, K] top-K
/// log-probabilities or [N, S, D] sampled answers' embeddings; `lengths` (token and top-K only) is
/// a 1-D int32/int64 array of N row lengths in the pool's memory space, null for full rows.
/// `name` (a file name, "pool") and `lengths_name` start the messages. Throws InvalidArgument for
/// any other shape, an empty pool, a measure that does not fit the pool's kind, `classes` on a
/// float pool, lengths without an LLM measure that takes them, and strides the views cannot
/// express (classes not contiguous, negative or unaligned strides). The lengths' values are
/// checked when the pool is scored (InvalidInput naming the row).
PoolSpec pool_from_array(const ArrayView& array, std::optional<Measure> measure = {},
                         Layout layout = Layout::members_first, int64_t classes = 0,
                         std::string_view name = "pool", const ArrayView* lengths = nullptr,
                         std::string_view lengths_name = "lengths");

/// Reads a 2-D float array [N, D] as embeddings, or as features or labeled embeddings (`what`),
/// rows may be strided, dimensions contiguous. Throws InvalidArgument otherwise; `name` starts
/// the messages.
EmbeddingView embeddings_from_array(const ArrayView& array, std::string_view name = "embeddings",
                                    std::string_view what = "embeddings");

/// Labeling costs [N] (f32, f64, i32 or i64, host memory) as doubles for SelectOptions::costs.
/// Throws InvalidArgument for another shape, dtype or memory space; the values are checked by
/// select(). `name` starts the messages.
std::vector<double> costs_from_array(const ArrayView& array, std::string_view name = "costs");

/// The labeled rows of core-set selection into `options`: integer row indices [L] (host memory)
/// into SelectOptions::labeled_rows, or float embeddings [L, D] into labeled_embeddings (a view
/// of `array`). Throws InvalidArgument for anything else; `name` starts the messages.
void labeled_from_array(const ArrayView& array, SelectOptions& options,
                        std::string_view name = "labeled");

/// "123", "64K", "1.5G", "512MiB" -> bytes (K = 1024). Throws InvalidArgument for anything else,
/// and for sizes that are not positive.
std::size_t parse_memory_size(std::string_view text);

}  // namespace quarry
