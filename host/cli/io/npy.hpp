#pragma once
// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0). Inputs are
// memory-mapped, so a pool larger than RAM is read from the page cache as it is used.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quarry/types.hpp"

namespace quarry::io {

/// What a .npy file's header says.
struct NpyHeader {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::size_t data_offset = 0;  ///< where the data starts in the file
  std::size_t data_bytes = 0;   ///< the data's size: the shape's product times the item size
};

/// NumPy's default `max_header_size`: np.load refuses longer headers, and so does quarry, before
/// reading them.
inline constexpr std::size_t kMaxNpyHeaderLength = 10000;

/// Parses the start of a .npy file (format versions 1.0, 2.0 and 3.0) as np.load does: magic,
/// version, header length, and the header, a Python dict literal with exactly the keys descr,
/// fortran_order and shape. `bytes` holds the file's first `size` bytes (the header must be
/// among them). Throws InvalidInput, with a message that does not name the file, for what NumPy
/// refuses and for what quarry cannot read (Fortran order; dtypes other than little-endian f4, f2,
/// i4, i8 and f8).
NpyHeader parse_npy_header(const unsigned char* bytes, std::size_t size);

/// "(3, 4)", "(12,)", "()": a shape as NumPy prints it.
std::string shape_text(const std::vector<int64_t>& shape);

/// How NpyArray::open reads a file.
struct NpyRead {
  /// Read the data into memory instead of mapping it. A mapped file that shrinks while it is read
  /// raises SIGBUS, which the command line reports (signals.hpp) but a host process such as
  /// Python cannot; read, the same file gives InvalidInput ("truncated while it was being read").
  bool into_memory = false;
};

/// A read-only .npy array: memory-mapped, or copied to aligned memory when the file's data is
/// not aligned to its element size (or NpyRead::into_memory asks). Movable, not copyable.
class NpyArray {
 public:
  /// Opens and checks `path`. Throws InvalidInput for a missing or unreadable file, one that is
  /// not a regular file (a FIFO is refused without waiting for a writer), not .npy, truncated or
  /// with trailing bytes, or whose header parse_npy_header() refuses; OutOfMemory when it cannot
  /// be mapped (or read into memory) for lack of memory.
  static NpyArray open(const std::string& path, NpyRead how = {});

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
  std::unique_ptr<std::byte[]> copy_;  // the data, when it is not aligned in the file
  const void* data_ = nullptr;
  DType dtype_ = DType::f32;
  std::vector<int64_t> shape_;
};

/// Writes a C-order array to `path` as .npy version 1.0. The file appears complete or not at all:
/// it is written beside `path` under a temporary name and renamed into place (a signal that ends
/// the process meanwhile removes it: see signals.hpp). A new file's mode is 0666 less the umask;
/// a file replaced keeps its mode.
/// `descr` is the NumPy type string: "<f4", "<i8", ...
void save_npy(const std::string& path, const void* data, const std::string& descr,
              const std::vector<int64_t>& shape);

/// Writes `contents` to `path` with the same all-or-nothing guarantee.
void write_file_atomically(const std::string& path, const std::string& contents);

}  // namespace quarry::io
