#include "quarry/array.hpp"

#include <cctype>
#include <string>

#include "quarry/error.hpp"

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
                         int64_t classes, std::string_view name_view) {
  const std::string name(name_view);
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
