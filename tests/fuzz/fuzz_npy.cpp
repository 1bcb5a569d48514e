// libFuzzer target for the .npy header parser: any bytes must give a header that agrees with
// itself or an InvalidInput, never a crash, a hang, another exception or an out-of-bounds read
// (the target is built with AddressSanitizer and UndefinedBehaviorSanitizer). How to build and
// run it: docs/testing.md; scripts/fuzz.sh.

#include <cstddef>
#include <cstdint>

#include "npy.hpp"
#include "quarry/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  quarry::io::NpyHeader header;
  try {
    header = quarry::io::parse_npy_header(data, size);
  } catch (const quarry::InvalidInput&) {
    return 0;  // refused, with a message
  }
  // Accepted: the header lies within the input, and the data's size is the shape's product
  // times the item size (0 for an empty shape), without overflow.
  if (header.data_offset < 10 || header.data_offset > size) __builtin_trap();
  int64_t bytes = static_cast<int64_t>(quarry::dtype_size(header.dtype));
  bool empty = false;
  for (int64_t d : header.shape) {
    if (d < 0) __builtin_trap();
    empty = empty || d == 0;
    if (d != 0 && __builtin_mul_overflow(bytes, d, &bytes)) __builtin_trap();
  }
  if (header.data_bytes != (empty ? 0 : static_cast<std::size_t>(bytes))) __builtin_trap();
  return 0;
}
