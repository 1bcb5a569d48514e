#include "quarry/types.hpp"

#include <array>
#include <string>

#include "quarry/error.hpp"
#include "quarry/measures.hpp"

namespace quarry {

namespace {

constexpr std::array<std::string_view, 3> kStrategyNames = {"rank", "badge", "coreset"};

// a * b for a view's strides, refused when it overflows 64 bits (a shape such as (0, 2^62, 2^62)
// holds no elements, but its strides would).
int64_t stride_product(int64_t a, int64_t b) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product))
    throw InvalidArgument("shape too large: " + std::to_string(a) + " x " + std::to_string(b) +
                          " elements overflow 64 bits");
  return product;
}

}  // namespace

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::f16:
    case DType::bf16:
      return 2;
    case DType::i64:
    case DType::f64:
      return 8;
  }
  throw InvalidArgument("unknown dtype");
}

std::string_view to_string(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::f64:
      return "f64";
  }
  return "unknown";
}

Measure parse_measure(std::string_view name) {
  for (const MeasureInfo& m : measures())
    if (m.name == name) return m.measure;
  throw InvalidArgument("unknown measure '" + std::string(name) + "' (known: " +
                        measure_names([](const MeasureInfo&) { return true; }) + ")");
}

std::string_view to_string(Measure measure) {
  const auto i = static_cast<std::size_t>(measure);
  return i < measures().size() ? measures()[i].name : "unknown";
}

bool is_committee_measure(Measure measure) {
  return pool_kind(measure) == PoolKind::committee;
}

PoolKind pool_kind(Measure measure) {
  return measure_info(measure).pool_kind;
}

std::string_view to_string(PoolKind kind) {
  switch (kind) {
    case PoolKind::predictions:
      return "predictions";
    case PoolKind::committee:
      return "committee";
    case PoolKind::token_logprobs:
      return "token_logprobs";
    case PoolKind::top_logprobs:
      return "top_logprobs";
    case PoolKind::samples:
      return "samples";
  }
  return "unknown";
}

bool needs_features(Measure measure) {
  return measure_info(measure).features;
}

Strategy parse_strategy(std::string_view name) {
  for (std::size_t i = 0; i < kStrategyNames.size(); ++i)
    if (kStrategyNames[i] == name) return static_cast<Strategy>(i);
  throw InvalidArgument("unknown strategy '" + std::string(name) + "' (rank, badge or coreset)");
}

std::string_view to_string(Strategy strategy) {
  const auto i = static_cast<std::size_t>(strategy);
  return i < kStrategyNames.size() ? kStrategyNames[i] : "unknown";
}

TieBreak parse_tie_break(std::string_view name) {
  if (name == "row") return TieBreak::row;
  if (name == "random") return TieBreak::random;
  throw InvalidArgument("unknown tie-break '" + std::string(name) + "' (row or random)");
}

std::string_view to_string(TieBreak tie_break) {
  return tie_break == TieBreak::random ? "random" : "row";
}

Device parse_device(std::string_view name) {
  if (name == "auto") return Device::automatic;
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw InvalidArgument("unknown device '" + std::string(name) + "' (auto, cpu or cuda)");
}

std::string_view to_string(Device device) {
  switch (device) {
    case Device::automatic:
      return "auto";
    case Device::cpu:
      return "cpu";
    case Device::cuda:
      return "cuda";
  }
  return "unknown";
}

std::string_view to_string(PickReason reason) {
  switch (reason) {
    case PickReason::rank:
      return "rank";
    case PickReason::cluster:
      return "cluster";
    case PickReason::exploration:
      return "exploration";
    case PickReason::badge:
      return "badge";
    case PickReason::coreset:
      return "coreset";
  }
  return "unknown";
}

PoolView PoolView::matrix(const void* data, DType dtype, int64_t rows, int64_t classes,
                          MemorySpace space) {
  PoolView v;
  v.data = data;
  v.dtype = dtype;
  v.space = space;
  v.members = 1;
  v.rows = rows;
  v.classes = classes;
  v.member_stride = stride_product(rows, classes);
  v.row_stride = classes;
  return v;
}

PoolView PoolView::committee(const void* data, DType dtype, int64_t members, int64_t rows,
                             int64_t classes, Layout layout, MemorySpace space) {
  PoolView v = matrix(data, dtype, rows, classes, space);
  v.members = members;
  if (layout == Layout::rows_first) {
    v.member_stride = classes;
    v.row_stride = stride_product(members, classes);
  }
  return v;
}

EmbeddingView EmbeddingView::matrix(const void* data, DType dtype, int64_t rows, int64_t dim,
                                    MemorySpace space) {
  EmbeddingView v;
  v.data = data;
  v.dtype = dtype;
  v.space = space;
  v.rows = rows;
  v.dim = dim;
  v.row_stride = dim;
  return v;
}

PoolView PoolView::votes(const void* data, DType dtype, int64_t members, int64_t rows,
                         int64_t classes, MemorySpace space) {
  PoolView v;
  v.data = data;
  v.dtype = dtype;
  v.space = space;
  v.members = members;
  v.rows = rows;
  v.classes = classes;
  v.member_stride = rows;
  v.row_stride = 1;
  return v;
}

PoolView PoolView::token_logprobs(const void* data, DType dtype, int64_t rows, int64_t steps,
                                  const void* lengths, DType lengths_dtype, MemorySpace space) {
  PoolView v = matrix(data, dtype, rows, steps, space);
  v.lengths = lengths;
  v.lengths_dtype = lengths_dtype;
  return v;
}

PoolView PoolView::top_logprobs(const void* data, DType dtype, int64_t rows, int64_t steps,
                                int64_t k, const void* lengths, DType lengths_dtype,
                                MemorySpace space) {
  PoolView v = committee(data, dtype, steps, rows, k, Layout::rows_first, space);
  v.lengths = lengths;
  v.lengths_dtype = lengths_dtype;
  return v;
}

PoolView PoolView::samples(const void* data, DType dtype, int64_t rows, int64_t samples,
                           int64_t dim, MemorySpace space) {
  return committee(data, dtype, samples, rows, dim, Layout::rows_first, space);
}

}  // namespace quarry
