#pragma once
// Writing well-formed and deliberately broken .npy files for the tests.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace quarry::test {

/// Writes magic + version + header (padded to 64 bytes) + payload, as NumPy would, but with any
/// header text and version the test wants.
inline void write_npy_raw(const std::string& path, int major, const std::string& dict,
                          const void* payload, size_t payload_bytes) {
  const size_t len_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  const size_t unpadded = 6 + 2 + len_bytes + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY", 6);
  out.put(static_cast<char>(major));
  out.put(0);
  for (size_t i = 0; i < len_bytes; ++i)
    out.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  out << header;
  out.write(static_cast<const char*>(payload), static_cast<std::streamsize>(payload_bytes));
}

inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
  return s + ")";
}

template <typename T>
void write_npy(const std::string& path, const std::vector<T>& data, const std::string& descr,
               const std::vector<int64_t>& shape, int major = 1, bool fortran = false) {
  write_npy_raw(path, major,
                "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                    ", 'shape': " + shape_text(shape) + ", }",
                data.data(), data.size() * sizeof(T));
}

}  // namespace quarry::test
