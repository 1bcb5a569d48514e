#pragma once
// Errors thrown by quarry. Every exception derives from quarry::Error.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace quarry {

/// Base of every exception quarry throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The call was malformed: bad k, shapes that do not match, an unknown measure, an unsupported
/// dtype, options out of range. Nothing was computed.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// The data itself is invalid (non-finite values, negative probabilities, rows not summing to 1,
/// votes below -1, a truncated file). `row()` is the first offending pool row, or -1 when the
/// problem is not tied to a row. `input()` names the input the row is of: "pool", "embeddings",
/// "features", "lengths", "costs", "labeled"; empty when the error names none.
class InvalidInput : public Error {
 public:
  explicit InvalidInput(const std::string& what, int64_t row = -1, std::string input = {})
      : Error(what), row_(row), input_(std::move(input)) {}
  int64_t row() const noexcept { return row_; }
  const std::string& input() const noexcept { return input_; }

 private:
  int64_t row_;
  std::string input_;
};

/// A backend was asked for that this build or this machine does not have (CUDA in a CPU-only
/// build, or on a machine without a usable GPU).
class BackendUnavailable : public Error {
 public:
  using Error::Error;
};

/// A CUDA runtime or library call failed.
class CudaError : public Error {
 public:
  using Error::Error;
};

/// Memory ran out: device memory, host memory (std::bad_alloc inside quarry, an input file that
/// cannot be mapped), or the request does not fit the memory budget.
class OutOfMemory : public CudaError {
 public:
  using CudaError::CudaError;
};

/// The call was stopped by the calling thread's InterruptCheck (Ctrl-C in Python): nothing of it
/// remains.
class Interrupted : public Error {
 public:
  using Error::Error;
};

}  // namespace quarry
