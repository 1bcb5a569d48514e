#include "quarry/array.hpp"

#include <cctype>
#include <string>

#include "quarry/error.hpp"
#include "quarry/measures.hpp"

namespace quarry {

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
  return s + ")";
}

bool is_integer(DType dtype) {
  return dtype == DType::i32 || dtype == DType::i64;
}

// The views address the last axis as contiguous (classes, votes' rows excepted) and the others by
// non-negative strides; anything else would need a copy, which quarry never makes silently.
void check_strides(const ArrayView& a, bool last_axis_strided, const std::string& name) {
  if (a.strides.size() != a.shape.size())
    throw InvalidArgument(name + ": strides and shape differ in length");
  for (std::size_t i = 0; i < a.shape.size(); ++i) {
    if (a.shape[i] < 0) throw InvalidArgument(name + ": negative extent in shape");
    if (a.shape[i] > 1 && a.strides[i] < 0)
      throw InvalidArgument(name +
                            ": negative strides (a reversed view) are not supported; pass "
                            "a copy with ascending strides");
  }
  for (int64_t extent : a.shape)
    if (extent == 0) return;  // no element is addressed: any strides will do
  const std::size_t last = a.shape.size() - 1;
  if (!last_axis_strided && a.shape[last] > 1 && a.strides[last] != 1)
    throw InvalidArgument(
        name + ": the last axis must be contiguous (stride of one element); " +
        "rows may be padded or strided, but the values of a row must be adjacent; for a " +
        "Fortran-order or transposed array pass a C-order copy");
}

// LLM outputs: the measure says how the array is read; lengths go with token and top-K pools.
PoolView llm_pool(const ArrayView& array, Measure measure, Layout layout, const ArrayView* lengths,
                  const std::string& name, const std::string& lengths_name) {
  const PoolKind kind = pool_kind(measure);
  const std::string measure_name(to_string(measure));
  const auto& shape = array.shape;
  if (layout != Layout::members_first)
    throw InvalidArgument("the layout applies to committees, not to " + measure_name);
  const std::size_t dims = kind == PoolKind::token_logprobs ? 2 : 3;
  const char* expected = kind == PoolKind::token_logprobs ? "[N, T] token log-probabilities"
                         : kind == PoolKind::top_logprobs ? "[N, T, K] top-K log-probabilities"
                                                          : "[N, S, D] sampled answers' embeddings";
  if (is_integer(array.dtype) || shape.size() != dims)
    throw InvalidArgument(name + ": " + measure_name + " reads a float array " + expected +
                          ", got " + std::string(to_string(array.dtype)) + " shape " +
                          shape_string(shape));
  check_strides(array, false, name);
  if (shape[0] == 0) throw InvalidArgument(name + ": the pool has no rows");
  const void* lengths_data = nullptr;
  DType lengths_dtype = DType::i64;
  if (lengths != nullptr) {
    if (kind == PoolKind::samples)
      throw InvalidArgument(name + ": lengths do not apply to sampled answers (" + measure_name +
                            ")");
    const auto& ls = lengths->shape;
    if (!is_integer(lengths->dtype) || ls.size() != 1 || ls[0] != shape[0])
      throw InvalidArgument(lengths_name + ": lengths must be a 1-D int32 or int64 array of " +
                            std::to_string(shape[0]) + " values (one per row of " + name +
                            "), got " + std::string(to_string(lengths->dtype)) + " shape " +
                            shape_string(ls));
    check_strides(*lengths, false, lengths_name);
    if (lengths->space != array.space)
      throw InvalidArgument(lengths_name +
                            ": the lengths must be in the same memory (host or "
                            "device) as " +
                            name);
    lengths_data = lengths->data;
    lengths_dtype = lengths->dtype;
  }
  const auto& st = array.strides;
  PoolView view;
  if (kind == PoolKind::token_logprobs) {
    view = PoolView::token_logprobs(array.data, array.dtype, shape[0], shape[1], lengths_data,
                                    lengths_dtype, array.space);
    if (shape[0] > 1) view.row_stride = st[0];
  } else {
    view =
        kind == PoolKind::top_logprobs
            ? PoolView::top_logprobs(array.data, array.dtype, shape[0], shape[1], shape[2],
                                     lengths_data, lengths_dtype, array.space)
            : PoolView::samples(array.data, array.dtype, shape[0], shape[1], shape[2], array.space);
    if (shape[1] > 1) view.member_stride = st[1];
    if (shape[0] > 1) view.row_stride = st[0];
  }
  return view;
}

}  // namespace

ArrayView ArrayView::contiguous(const void* data, DType dtype, std::vector<int64_t> shape,
                                MemorySpace space) {
  ArrayView a;
  a.data = data;
  a.dtype = dtype;
  a.space = space;
  a.strides.assign(shape.size(), 1);
  for (std::size_t i = shape.size(); i-- > 1;) a.strides[i - 1] = a.strides[i] * shape[i];
  a.shape = std::move(shape);
  return a;
}

Measure default_measure(const ArrayView& array) {
  if (is_integer(array.dtype)) return Measure::vote_entropy;
  return array.shape.size() == 3 ? Measure::consensus_entropy : Measure::entropy;
}

PoolSpec pool_from_array(const ArrayView& array, std::optional<Measure> measure, Layout layout,
                         int64_t classes, std::string_view name_view, const ArrayView* lengths,
                         std::string_view lengths_name) {
  const std::string name(name_view);
  if (measure && is_llm_measure(*measure)) {
    if (classes != 0)
      throw InvalidArgument(name + ": classes applies only to integer votes, not to " +
                            std::string(to_string(*measure)));
    return PoolSpec{llm_pool(array, *measure, layout, lengths, name, std::string(lengths_name)),
                    *measure};
  }
  if (lengths != nullptr)
    throw InvalidArgument(measure ? name + ": lengths do not apply to " +
                                        std::string(to_string(*measure)) +
                                        "; they go with LLM measures: " + llm_measures_by_input()
                                  : name + ": lengths need an LLM measure (there is no default): " +
                                        llm_measures_by_input());
  const auto& shape = array.shape;
  const bool integer = is_integer(array.dtype);
  if (classes < 0 || (classes > 0 && !integer))
    throw InvalidArgument(name +
                          ": classes takes a positive count and applies only to integer "
                          "votes");
  PoolView view;
  const auto& st = array.strides;
  if (integer) {
    if (shape.size() != 2)
      throw InvalidArgument(name + ": integer votes must be 2-D [members, rows], got shape " +
                            shape_string(shape));
    check_strides(array, true, name);
    view = PoolView::votes(array.data, array.dtype, shape[0], shape[1], classes, array.space);
    view.member_stride = st[0];
    view.row_stride = st[1];
  } else if (shape.size() == 2) {
    check_strides(array, false, name);
    view = PoolView::matrix(array.data, array.dtype, shape[0], shape[1], array.space);
    view.row_stride = shape[0] > 1 ? st[0] : shape[1];
    view.member_stride = view.row_stride * shape[0];
  } else if (shape.size() == 3) {
    check_strides(array, false, name);
    const bool rows_first = layout == Layout::rows_first;
    const int64_t members = rows_first ? shape[1] : shape[0];
    const int64_t rows = rows_first ? shape[0] : shape[1];
    view =
        PoolView::committee(array.data, array.dtype, members, rows, shape[2], layout, array.space);
    view.member_stride = rows_first ? st[1] : st[0];
    view.row_stride = rows_first ? st[0] : st[1];
  } else {
    throw InvalidArgument(name +
                          ": the pool must be 2-D [rows, classes], 3-D [members, rows, classes] "
                          "or 2-D integer votes [members, rows]; got shape " +
                          shape_string(shape));
  }
  // Size-one axes may carry any stride: give them the one a contiguous array would have.
  if (view.rows == 1) view.row_stride = integer ? 1 : view.classes;
  if (view.members == 1) view.member_stride = view.rows * view.row_stride;
  if (view.rows == 0) throw InvalidArgument(name + ": the pool has no rows");
  if (!integer && view.classes == 0) throw InvalidArgument(name + ": rows have no classes");
  if (view.members == 0) throw InvalidArgument(name + ": the pool has no members");
  const Measure chosen = measure ? *measure : default_measure(array);
  if (!integer && shape.size() == 2 && is_committee_measure(chosen))
    throw InvalidArgument(std::string(to_string(chosen)) +
                          " needs a committee: a 3-D [members, rows, classes] array or 2-D integer "
                          "votes; " +
                          name + " is a single model's [rows, classes] predictions");
  if (shape.size() == 3 && !is_committee_measure(chosen))
    throw InvalidArgument(std::string(to_string(chosen)) + " scores a single model, but " + name +
                          " is a committee (3-D); use vote_entropy, consensus_entropy, kl_max, "
                          "bald or variation_ratio");
  return PoolSpec{view, chosen};
}

std::vector<double> costs_from_array(const ArrayView& array, std::string_view name_view) {
  const std::string name(name_view);
  if (array.shape.size() != 1)
    throw InvalidArgument(name + ": costs must be 1-D [N], got shape " + shape_string(array.shape));
  if (array.space != MemorySpace::host)
    throw InvalidArgument(name + ": costs must be in host memory");
  const int64_t n = array.shape[0];
  const int64_t stride = array.strides.empty() ? 1 : array.strides[0];
  if (n > 1 && stride < 0)
    throw InvalidArgument(name + ": negative strides (a reversed view) are not supported");
  std::vector<double> costs(static_cast<std::size_t>(n));
  auto convert = [&](const auto* values) {
    for (int64_t i = 0; i < n; ++i) costs[i] = static_cast<double>(values[i * stride]);
  };
  switch (array.dtype) {
    case DType::f32:
      convert(static_cast<const float*>(array.data));
      break;
    case DType::f64:
      convert(static_cast<const double*>(array.data));
      break;
    case DType::i32:
      convert(static_cast<const int32_t*>(array.data));
      break;
    case DType::i64:
      convert(static_cast<const int64_t*>(array.data));
      break;
    default:
      throw InvalidArgument(name + ": costs must be float32, float64, int32 or int64, got " +
                            std::string(to_string(array.dtype)));
  }
  return costs;
}

void labeled_from_array(const ArrayView& array, SelectOptions& options,
                        std::string_view name_view) {
  const std::string name(name_view);
  const bool integer = is_integer(array.dtype);
  if (integer && array.shape.size() == 1) {
    if (array.space != MemorySpace::host)
      throw InvalidArgument(name + ": labeled row indices must be in host memory");
    const int64_t n = array.shape[0];
    const int64_t stride = array.strides.empty() ? 1 : array.strides[0];
    if (n > 1 && stride < 0)
      throw InvalidArgument(name + ": negative strides (a reversed view) are not supported");
    options.labeled_rows.resize(static_cast<std::size_t>(n));
    auto copy = [&](const auto* rows) {
      for (int64_t i = 0; i < n; ++i) options.labeled_rows[i] = rows[i * stride];
    };
    if (array.dtype == DType::i32)
      copy(static_cast<const int32_t*>(array.data));
    else
      copy(static_cast<const int64_t*>(array.data));
  } else if (!integer && array.shape.size() == 2) {
    options.labeled_embeddings = embeddings_from_array(array, name, "labeled embeddings");
  } else {
    throw InvalidArgument(name +
                          ": labeled rows must be integer row indices [L] or float embeddings "
                          "[L, D], got " +
                          std::string(to_string(array.dtype)) + " shape " +
                          shape_string(array.shape));
  }
}

EmbeddingView embeddings_from_array(const ArrayView& array, std::string_view name_view,
                                    std::string_view what) {
  const std::string name(name_view);
  if (array.shape.size() != 2 || is_integer(array.dtype))
    throw InvalidArgument(
        name + ": " + std::string(what) + " must be a 2-D float array [N, D], got " +
        std::string(to_string(array.dtype)) + " shape " + shape_string(array.shape));
  check_strides(array, false, name);
  EmbeddingView view =
      EmbeddingView::matrix(array.data, array.dtype, array.shape[0], array.shape[1], array.space);
  if (array.shape[0] > 1) view.row_stride = array.strides[0];
  return view;
}

std::size_t parse_memory_size(std::string_view text_view) {
  const std::string text(text_view);
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  const std::string units = "KMGT";
  double scale = 1;
  if (unit.size() == 1 && units.find(unit[0]) != std::string::npos)
    for (size_t i = 0; i <= units.find(unit[0]); ++i) scale *= 1024;
  else if (!unit.empty() && unit != "B")
    used = 0;
  // At least one byte: 0.5 would round to 0, which means "no budget".
  if (used == 0 || !(value * scale >= 1) || value * scale > 1.8e19)
    throw InvalidArgument(
        "cannot read '" + text +
        "' as a memory size (a number of bytes, at least 1, optionally with K, M, "
        "G or T)");
  return static_cast<std::size_t>(value * scale);
}

}  // namespace quarry
