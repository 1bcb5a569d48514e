#include "npy.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "quarry/error.hpp"

namespace quarry::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InvalidInput(path + ": " + what);
}

// The value of `key` in the header dict, as its literal text ("'<f4'", "False", "(3, 4)").
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::string quoted_single = "'" + key + "'", quoted_double = "\"" + key + "\"";
  std::size_t k = header.find(quoted_single);
  std::size_t key_len = quoted_single.size();
  if (k == std::string::npos) {
    k = header.find(quoted_double);
    key_len = quoted_double.size();
  }
  if (k == std::string::npos) fail(path, "not a valid .npy file (header has no " + key + ")");
  std::size_t colon = header.find(':', k + key_len);
  if (colon == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
  std::size_t begin = header.find_first_not_of(" \t", colon + 1);
  if (begin == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
  std::size_t end;
  if (header[begin] == '(' || header[begin] == '[') {
    end = header.find(header[begin] == '(' ? ')' : ']', begin);
    if (end == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
    ++end;
  } else if (header[begin] == '\'' || header[begin] == '"') {
    end = header.find(header[begin], begin + 1);
    if (end == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
    ++end;
  } else {
    end = header.find_first_of(",}", begin);
    if (end == std::string::npos) fail(path, "not a valid .npy file (malformed header)");
  }
  return header.substr(begin, end - begin);
}

DType parse_descr(const std::string& literal, const std::string& path) {
  if (literal.empty() || literal[0] == '[')
    fail(path, "structured arrays are not supported; save a plain numeric array");
  const std::string d = literal.substr(1, literal.size() - 2);
  if (d.size() < 2) fail(path, "unrecognised dtype " + literal);
  const char order = d[0];
  const std::string kind = d.substr(1);
  if (order == '>')
    fail(path, "big-endian data (" + d +
                   ") is not supported; convert with arr.astype(arr.dtype.newbyteorder('<'))");
  if (order != '<' && order != '=' && order != '|') fail(path, "unrecognised dtype " + d);
  if (kind == "f4") return DType::f32;
  if (kind == "f2") return DType::f16;
  if (kind == "i4") return DType::i32;
  if (kind == "i8") return DType::i64;
  if (kind == "f8") fail(path, "float64 is not supported; convert with arr.astype(np.float32)");
  if (kind[0] == 'c') fail(path, "complex data (" + d + ") is not supported");
  if (kind[0] == 'O') fail(path, "object arrays are not supported");
  fail(path, "dtype " + d + " is not supported (use float32, float16, int32 or int64)");
}

std::vector<int64_t> parse_shape(const std::string& literal, const std::string& path) {
  if (literal.size() < 2 || literal.front() != '(')
    fail(path, "not a valid .npy file (malformed shape)");
  std::vector<int64_t> shape;
  const std::string inner = literal.substr(1, literal.size() - 2);
  std::size_t i = 0;
  while (i < inner.size()) {
    while (i < inner.size() && (inner[i] == ' ' || inner[i] == ',')) ++i;
    if (i >= inner.size()) break;
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(inner.substr(i), &used);
    } catch (const std::exception&) {
      fail(path, "not a valid .npy file (malformed shape " + literal + ")");
    }
    if (v < 0) fail(path, "not a valid .npy file (negative dimension)");
    shape.push_back(v);
    i += used;
    while (i < inner.size() && inner[i] == 'L') ++i;  // Python 2 longs
  }
  return shape;
}

}  // namespace

NpyArray NpyArray::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const auto file_bytes = static_cast<std::size_t>(st.st_size);
  if (file_bytes < 10) {
    ::close(fd);
    fail(path, "not a .npy file (too short)");
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    const int e = errno;
    const std::string what = path + ": cannot map: " + std::strerror(e);
    // Address space or memory ran out: a resource failure, not bad input.
    if (e == ENOMEM || e == EAGAIN) throw OutOfMemory(what);
    throw InvalidInput(what);
  }

  NpyArray array;
  array.map_ = map;
  array.map_bytes_ = file_bytes;
  const auto* bytes = static_cast<const unsigned char*>(map);
  if (std::memcmp(bytes, kMagic, 6) != 0) fail(path, "not a .npy file (bad magic bytes)");
  const int major = bytes[6];
  std::size_t header_len, header_start;
  if (major == 1) {
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (file_bytes < 12) fail(path, "truncated .npy header");
    header_len = bytes[8] | (std::size_t{bytes[9]} << 8) | (std::size_t{bytes[10]} << 16) |
                 (std::size_t{bytes[11]} << 24);
    header_start = 12;
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major));
  }
  if (header_start + header_len > file_bytes) fail(path, "truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(bytes + header_start), header_len);

  array.dtype_ = parse_descr(dict_value(header, "descr", path), path);
  const std::string fortran = dict_value(header, "fortran_order", path);
  if (fortran == "True")
    fail(path, "Fortran-order arrays are not supported; save np.ascontiguousarray(arr)");
  if (fortran != "False") fail(path, "not a valid .npy file (fortran_order is " + fortran + ")");
  array.shape_ = parse_shape(dict_value(header, "shape", path), path);

  const std::size_t data_offset = header_start + header_len;
  // The data's size, refusing shapes whose product overflows (a crafted header could otherwise
  // wrap it around to the size of the data present). As NumPy does, the product of the nonzero
  // dimensions must fit too: (0, 2^62, 2^62) is empty, but too large.
  int64_t bytes_if_nonzero = static_cast<int64_t>(dtype_size(array.dtype_));
  bool empty = false;
  for (int64_t d : array.shape_) {
    empty = empty || d == 0;
    if (d != 0 && __builtin_mul_overflow(bytes_if_nonzero, d, &bytes_if_nonzero))
      fail(path, "not a valid .npy file (shape " + array.shape_string() + " is too large)");
  }
  const std::size_t expected = empty ? 0 : static_cast<std::size_t>(bytes_if_nonzero);
  const std::size_t present = file_bytes - data_offset;
  if (present < expected)
    fail(path, "truncated: shape " + array.shape_string() + " needs " + std::to_string(expected) +
                   " bytes of data, the file has " + std::to_string(present));
  if (present > expected)
    fail(path, "has " + std::to_string(present - expected) +
                   " bytes after the array's data; the file is damaged");
  array.data_ = bytes + data_offset;
  return array;
}

NpyArray::NpyArray(NpyArray&& other) noexcept {
  *this = std::move(other);
}

NpyArray& NpyArray::operator=(NpyArray&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, map_bytes_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    data_ = std::exchange(other.data_, nullptr);
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
  }
  return *this;
}

NpyArray::~NpyArray() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

int64_t NpyArray::elements() const {
  // The data's size in bytes fits (checked on open), so the product does unless a dimension is 0.
  if (std::find(shape_.begin(), shape_.end(), 0) != shape_.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::string NpyArray::shape_string() const {
  std::string s = "(";
  for (std::size_t i = 0; i < shape_.size(); ++i) {
    s += std::to_string(shape_[i]);
    if (i + 1 < shape_.size() || shape_.size() == 1) s += shape_.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

void write_file_atomically(const std::string& path, const std::string& contents) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string hidden_name(".");
  hidden_name += target.filename().string();
  hidden_name += ".tmp-XXXXXX";
  std::string tmpl = (dir / hidden_name).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw Error(path + ": cannot create output: " + std::strerror(errno));
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t w = ::write(fd, contents.data() + written, contents.size() - written);
    if (w <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmpl.c_str());
      throw Error(path + ": cannot write output: " + std::strerror(e));
    }
    written += static_cast<std::size_t>(w);
  }
  ::fchmod(fd, 0644);
  if (::close(fd) != 0 || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmpl.c_str());
    throw Error(path + ": cannot write output: " + std::strerror(e));
  }
}

void save_npy(const std::string& path, const void* data, const std::string& descr,
              const std::vector<int64_t>& shape) {
  std::string shape_text = "(";
  int64_t elements = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    shape_text +=
        std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    elements *= shape[i];
  }
  shape_text += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const std::size_t item = descr.back() == '8' ? 8 : (descr.back() == '4' ? 4 : 2);
  std::string file;
  file.reserve(10 + header.size() + elements * item);
  file.append(kMagic, 6);
  file.push_back('\x01');
  file.push_back('\x00');
  file.push_back(static_cast<char>(header.size() & 0xff));
  file.push_back(static_cast<char>(header.size() >> 8));
  file += header;
  file.append(static_cast<const char*>(data), elements * item);
  write_file_atomically(path, file);
}

}  // namespace quarry::io
