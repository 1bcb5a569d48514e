#pragma once
// What every scoring launcher takes: a batch of pool rows on the device, the measure's settings
// and where the scores go; and the one switch from a float element type to its C++ type.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/measures.hpp"
#include "quarry/error.hpp"

namespace quarry::kernels {

/// Rows of a pool in device memory, laid out as PoolView says: value c of member m of row n at
/// data[m*member_stride + n*row_stride + c]. Token log-probabilities are `classes` steps of one
/// value; top-K log-probabilities `members` steps of `classes` entries, member_stride apart;
/// sampled answers `members` answers of `classes` values; votes one integer per member.
struct PoolRows {
  const void* data = nullptr;
  ElementType type = ElementType::f32;
  int64_t rows = 0;
  int64_t members = 1;
  int64_t classes = 0;
  int64_t row_stride = 0;
  int64_t member_stride = 0;
  const void* lengths = nullptr;  ///< each row's number of valid steps (device), or null
  ElementType length_type = ElementType::i64;
};

/// The measure and its settings.
struct ScoreParams {
  MeasureId measure = MeasureId::entropy;
  bool logits = false;
  float inv_temperature = 1.0f;             ///< 1 / T, for logits
  double alpha = 0.0;                       ///< eigenscore
  double threshold = 0.0;                   ///< semantic_sets, semantic_entropy
  const double* feature_squares = nullptr;  ///< egl: |h|^2 of each row of the batch (device)
};

/// Where a launch writes: scores[i] for row i of the batch, and `first_bad` (device; initialise it
/// to kNoBadRow) lowered with atomicMin to encode_bad_row() of the first invalid row, numbered from
/// `row_offset` (the batch's first row in the whole pool); and the device scratch that
/// score_workspace_bytes() asks for.
struct ScoreSink {
  float* scores = nullptr;
  unsigned long long* first_bad = nullptr;
  int64_t row_offset = 0;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

/// Calls fn(T{}) with T the storage type of a float element type (float, f16_bits, bf16_bits);
/// other types are refused naming `what`.
template <typename Fn>
decltype(auto) with_float_type(ElementType type, const char* what, Fn&& fn) {
  switch (type) {
    case ElementType::f32:
      return fn(float{});
    case ElementType::f16:
      return fn(f16_bits{});
    case ElementType::bf16:
      return fn(bf16_bits{});
    default:
      throw InvalidArgument(std::string(what) + " needs f32, f16 or bf16 input");
  }
}

}  // namespace quarry::kernels
