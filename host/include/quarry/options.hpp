#pragma once
// The options schema: one description of every selection option — its name in Python, its flag on
// the command line, its key in a partial result's JSON, its C++ field, type, range and default,
// and what it applies to. The command line's flags and help, the Python keywords' checks and the
// partial JSON's checks are built from it (docs/cli.md, docs/python.md).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quarry/measures.hpp"

namespace quarry {

/// What an option holds.
enum class OptionType {
  integer,  ///< a whole number in [min, max] (the C++ field's range)
  number,   ///< a floating-point number (its range is checked where it is used)
  flag,     ///< true or false
  text,     ///< one of a few names
  array,    ///< an array (in Python) or a .npy file (on the command line)
};
/// "integer", "number", "flag", "text", "array".
std::string_view to_string(OptionType type);

/// One option.
struct OptionInfo {
  std::string_view name;       ///< the Python keyword, e.g. "kmeans_iters"
  std::string_view cli_flag;   ///< e.g. "--kmeans-iters"; empty when the command line has none
  std::string_view json_key;   ///< in a partial's JSON, e.g. "kmeans_iterations"; empty: not kept
  std::string_view cpp_field;  ///< e.g. "SelectOptions::kmeans.iterations"
  OptionType type;
  /// integer: the inclusive range (max as unsigned, for 64-bit seeds).
  int64_t min;
  uint64_t max;
  std::string_view default_value;  ///< as the command line shows it; empty: none
  std::string_view applies_to;     ///< which measures or strategies read it
  std::string_view help;           ///< one line, the command line's help
};

/// Every option, in the order the command line lists them.
const std::vector<OptionInfo>& option_schema();
/// The option named `name` (its Python keyword, command-line flag or JSON key). Throws
/// InvalidArgument for an unknown name.
const OptionInfo& option_info(std::string_view name);

/// "kmeans_iters must be an integer from 1 to 2147483647, got 2147483648": the message for an
/// integer outside an option's range, or not an integer (`got` as the user wrote it). `spelling`
/// is how the user named the option (its flag, keyword or JSON key).
std::string integer_range_message(const OptionInfo& option, std::string_view spelling,
                                  std::string_view got);
/// Checks that `value` is in the option's range; throws InvalidArgument naming `spelling` and the
/// range otherwise.
void check_integer_option(const OptionInfo& option, std::string_view spelling, int64_t value);
/// The same for values above INT64_MAX (seeds).
void check_unsigned_option(const OptionInfo& option, std::string_view spelling, uint64_t value);

/// Throws InvalidArgument when an option is given that `measure` does not take (alpha, threshold;
/// table columns of quarry::measures()). `prefix` starts the option's name as the user wrote it:
/// "--" on the command line, "" in Python.
void check_measure_options(Measure measure, bool alpha, bool threshold, std::string_view prefix);

}  // namespace quarry
