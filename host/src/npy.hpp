#pragma once
// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0). Inputs are
// memory-mapped, so a pool larger than RAM is read from the page cache as it is used.

#include <cstdint>
#include <string>
#include <vector>

#include "quarry/types.hpp"

namespace quarry::io {

/// A read-only, memory-mapped .npy array. Movable, not copyable; unmaps on destruction.
class NpyArray {
 public:
  /// Opens and checks `path`. Throws InvalidInput for a missing or unreadable file, a file that is
  /// not .npy, a truncated file, Fortran order, or a dtype quarry cannot read (it accepts
  /// little-endian f4, f2, i4 and i8).
  static NpyArray open(const std::string& path);

  NpyArray(NpyArray&& other) noexcept;
  NpyArray& operator=(NpyArray&& other) noexcept;
  NpyArray(const NpyArray&) = delete;
  NpyArray& operator=(const NpyArray&) = delete;
  ~NpyArray();

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const void* data() const { return data_; }
  int64_t elements() const;
  /// "(3, 4)" as NumPy prints it.
  std::string shape_string() const;

 private:
  NpyArray() = default;
  void* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  const void* data_ = nullptr;
  DType dtype_ = DType::f32;
  std::vector<int64_t> shape_;
};

/// Writes a C-order array to `path` as .npy version 1.0. The file appears complete or not at all:
/// it is written beside `path` under a temporary name and renamed into place.
/// `descr` is the NumPy type string: "<f4", "<i8", ...
void save_npy(const std::string& path, const void* data, const std::string& descr,
              const std::vector<int64_t>& shape);

/// Writes `contents` to `path` with the same all-or-nothing guarantee.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace quarry::io
