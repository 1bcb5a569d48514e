// The .npy header as NumPy reads it: np.load takes the header dict with ast.literal_eval, so a
// header is a Python literal, not a fixed text. This is a parser of the literals a header can
// hold (strings, integers, booleans, tuples, lists, dicts) that refuses what literal_eval refuses,
// and then NumPy's checks of the dict: exactly the keys descr, fortran_order and shape, shape a
// tuple of integers, fortran_order a bool.

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "npy.hpp"
#include "quarry/error.hpp"

namespace quarry::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void invalid(const std::string& what) {
  throw InvalidInput("not a valid .npy file (" + what + ")");
}

// Header text quoted in a message: control and non-ASCII bytes as \xNN, at most 60 characters, so
// that the message stays one printable line.
std::string printable(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= 60) return out + "...";
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// A Python literal. Only what a header's values can be is kept in detail; the rest (floats,
// complex numbers, bytes, None, sets, ...) is parsed and marked `other`, and refused later.
struct Literal {
  enum class Kind { string, integer, boolean, tuple, list, dict, other };
  Kind kind = Kind::other;
  std::string text;            // a string's value, UTF-8
  int64_t integer = 0;         // an integer's (or a boolean's) value when it fits int64
  bool out_of_range = false;   // an integer outside int64
  bool number = false;         // an int, float or complex constant (may take a sign)
  bool real = false;           // an int or float constant (the left side of a complex a + bj)
  bool imaginary = false;      // an imaginary constant (the right side of a + bj)
  bool signed_ = false;        // carries a unary sign already
  std::vector<Literal> items;  // tuple and list items
  std::vector<Literal> keys, values;  // a dict's entries, in order
  std::string_view source;            // as written, for messages
};

// Recursive descent over the header text, following Python's tokenizer and grammar for the
// literals ast.literal_eval accepts. `latin1`: format versions 1 and 2 are Latin-1 text,
// version 3 is UTF-8 (already validated). `python2`: versions 1 and 2 may come from Python 2;
// when Python cannot parse such a header, NumPy filters it through Python's tokenizer, dropping
// the L of Python 2's long integers (3L) and re-spacing the text, which forgives an indented
// first line and a last line of blanks.
class LiteralParser {
 public:
  LiteralParser(std::string_view text, bool latin1, bool python2)
      : s_(text), latin1_(latin1), python2_(python2) {}

  Literal parse_document() {
    if (s_.find('\0') != std::string_view::npos) fail("a NUL byte");
    // literal_eval strips leading spaces and tabs; the value must then start its line unindented.
    i_ = text_start_ = std::min(s_.find_first_not_of(" \t"), s_.size());
    skip_blank_lines();
    if (column(i_) != 0 && !(python2_ && line_start(i_) == text_start_))
      fail("unexpected indentation");
    Literal value = parse_value();
    skip_blank_lines();
    if (i_ < s_.size()) fail("unexpected text after the dict");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;  // nesting; Python's parser limits it too

  [[noreturn]] void fail(const std::string& what) const {
    invalid("cannot parse header: " + what + " at byte " + std::to_string(i_));
  }
  bool at_end() const { return i_ >= s_.size(); }
  char peek(std::size_t ahead = 0) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : '\0'; }
  static bool is_newline(char c) { return c == '\n' || c == '\r'; }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           static_cast<unsigned char>(c) >= 0x80;
  }
  void skip_newline() { i_ += peek() == '\r' && peek(1) == '\n' ? 2 : 1; }

  // Spaces, tabs, form feeds, comments and backslash continuations between tokens; inside
  // brackets newlines too (implicit line joining).
  void skip_blanks() {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\f') {
        ++i_;
      } else if (c == '#') {
        while (!at_end() && !is_newline(peek())) ++i_;
      } else if (c == '\\' && is_newline(peek(1))) {
        ++i_;
        skip_newline();
        if (at_end()) fail("a line continuation at the end");
      } else if (is_newline(c) && depth_ > 0) {
        skip_newline();
      } else {
        return;
      }
    }
  }
  // Outside the value: blank lines and comments as well. A last line of blanks alone, without
  // a newline, is an indented line to Python, an error.
  void skip_blank_lines() {
    for (bool new_line = false;; new_line = true) {
      skip_blanks();
      if (at_end() && new_line && column(i_) != 0 && blank_since_line_start(i_) &&
          !(python2_ && filter_drops_last_line(line_start(i_))))
        fail("unexpected indentation");
      if (at_end() || !is_newline(peek())) return;
      skip_newline();
    }
  }
  std::size_t line_start(std::size_t pos) const {
    const std::size_t newline = s_.find_last_of("\n\r", pos == 0 ? 0 : pos - 1);
    return pos == 0 || newline == std::string_view::npos ? text_start_
                                                         : std::max(newline + 1, text_start_);
  }
  // Python's indentation column: tabs to multiples of 8, a form feed back to 0.
  std::size_t column(std::size_t pos) const {
    std::size_t col = 0;
    for (std::size_t k = line_start(pos); k < pos; ++k)
      col = s_[k] == '\t' ? (col / 8 + 1) * 8 : s_[k] == '\f' ? 0 : col + 1;
    return col;
  }
  // NumPy's Python 2 filter drops a last line of blanks that follows a '\n' (its tokenizer's
  // only line break) not continued by a backslash.
  bool filter_drops_last_line(std::size_t start) const {
    if (start == 0 || s_[start - 1] != '\n') return false;
    std::size_t k = start - 1;
    if (k > 0 && s_[k - 1] == '\r') --k;
    return k == 0 || s_[k - 1] != '\\';
  }
  bool blank_since_line_start(std::size_t pos) const {
    for (std::size_t k = line_start(pos); k < pos; ++k)
      if (s_[k] != ' ' && s_[k] != '\t' && s_[k] != '\f') return false;
    return true;
  }

  // A value: a primary, signed or not, and a complex constant a + bj or a - bj (a a real number,
  // signed or not, b an unsigned imaginary one), as literal_eval allows.
  Literal parse_value() {
    skip_blanks();
    const std::size_t start = i_;
    Literal value = parse_signed();
    skip_blanks();
    if (value.real && (peek() == '+' || peek() == '-')) {
      ++i_;
      skip_blanks();
      if (!is_digit(peek()) && !(peek() == '.' && is_digit(peek(1))))
        fail("an arithmetic expression");
      if (!parse_number().imaginary) fail("an arithmetic expression");
      value = Literal{};  // a complex number: nothing a header can use
      skip_blanks();
    }
    value.source = s_.substr(start, i_ - start);
    return value;
  }

  // literal_eval takes a sign on a numeric constant only, once: -1, -(1), -1.5j; not --1, -(-1)
  // or -True.
  Literal parse_signed() {
    const char sign = peek();
    if (sign != '+' && sign != '-') return parse_primary();
    ++i_;
    skip_blanks();
    Literal value = parse_primary();
    if (!value.number || value.signed_) fail("a sign on something not a number");
    value.signed_ = true;
    if (sign == '-' && value.kind == Literal::Kind::integer) value.integer = -value.integer;
    return value;
  }

  Literal parse_primary() {
    if (at_end()) fail("a missing value");
    const char c = peek();
    if (c == '(' || c == '[' || c == '{') return parse_container();
    if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return parse_number();
    if (c == '.' && peek(1) == '.' && peek(2) == '.') {
      i_ += 3;  // Ellipsis
      return Literal{};
    }
    if (c == '\'' || c == '"' || is_name_char(c)) return parse_string_or_name();
    fail("an unexpected character '" + printable(std::string_view(&c, 1)) + "'");
  }

  Literal parse_container() {
    const char open = peek();
    const char close = open == '(' ? ')' : open == '[' ? ']' : '}';
    if (++depth_ > kMaxDepth) fail("nesting too deep");
    ++i_;
    skip_blanks();
    Literal result;
    result.kind = open == '('   ? Literal::Kind::tuple
                  : open == '[' ? Literal::Kind::list
                                : Literal::Kind::dict;
    if (peek() == close) {  // (), [], {}
      ++i_;
      --depth_;
      return result;
    }
    Literal first = parse_value();
    skip_blanks();
    if (open == '(' && peek() == ')') {  // (x): just x
      ++i_;
      --depth_;
      return first;
    }
    const bool dict = open == '{' && peek() == ':';
    if (open == '{' && !dict) result.kind = Literal::Kind::other;  // a set
    auto add = [&](Literal item) {
      if (dict) {
        if (peek() != ':') fail("a dict entry without ':'");
        ++i_;
        Literal entry_value = parse_value();
        result.keys.push_back(std::move(item));
        result.values.push_back(std::move(entry_value));
      } else {
        result.items.push_back(std::move(item));
      }
      skip_blanks();
    };
    add(std::move(first));
    for (;;) {
      if (peek() == close) break;
      if (peek() != ',') fail(std::string("a missing ',' or '") + close + "'");
      ++i_;
      skip_blanks();
      if (peek() == close) break;  // a trailing comma
      Literal item = parse_value();
      skip_blanks();
      add(std::move(item));
    }
    ++i_;
    --depth_;
    return result;
  }

  // Python's numeric literals: decimal, 0x, 0o and 0b integers with single underscores between
  // digits, no leading zeros on nonzero decimals; floats; imaginary numbers.
  Literal parse_number() {
    Literal n;
    n.number = true;
    auto digits = [&](auto is_valid, bool required) {  // digit (["_"] digit)*
      const std::size_t begin = i_;
      while (!at_end()) {
        if (is_valid(peek())) {
          ++i_;
        } else if (peek() == '_' && i_ > begin && is_valid(peek(1))) {
          ++i_;
        } else {
          break;
        }
      }
      if (required && i_ == begin) fail("a malformed number");
      return std::string_view(s_.data() + begin, i_ - begin);
    };
    auto decimal = [](char c) { return is_digit(c); };
    bool is_integer = true;
    int base = 10;
    std::string_view int_digits;
    if (peek() == '0' && (peek(1) == 'x' || peek(1) == 'X' || peek(1) == 'o' || peek(1) == 'O' ||
                          peek(1) == 'b' || peek(1) == 'B')) {
      const char b = static_cast<char>(peek(1) | 0x20);
      base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
      i_ += 2;
      if (peek() == '_') ++i_;  // 0x_1f
      int_digits = digits(
          [base](char c) {
            if (base == 16) return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            return c >= '0' && c < static_cast<char>('0' + base);
          },
          true);
    } else {
      int_digits = peek() == '.' ? std::string_view{} : digits(decimal, true);
      if (peek() == '.') {
        is_integer = false;
        ++i_;
        digits(decimal, false);
      }
      if ((peek() == 'e' || peek() == 'E') &&
          (is_digit(peek(1)) || ((peek(1) == '+' || peek(1) == '-') && is_digit(peek(2))))) {
        is_integer = false;
        i_ += is_digit(peek(1)) ? 1 : 2;
        digits(decimal, true);
      }
      if (peek() == 'j' || peek() == 'J') {
        ++i_;
        n.imaginary = true;
        is_integer = false;
      } else if (is_integer) {
        // "0", "00", "0_0" but not "007".
        const bool all_zero = int_digits.find_first_not_of("0_") == std::string_view::npos;
        if (int_digits.size() > 1 && int_digits[0] == '0' && !all_zero)
          fail("a decimal integer with a leading zero");
      }
    }
    if (is_name_char(peek())) {
      // Python 2's long integers (3L): NumPy's header filter drops the L.
      if (python2_ && peek() == 'L' && !is_name_char(peek(1))) {
        ++i_;
      } else {
        fail("a malformed number");
      }
    }
    if (!is_integer) {
      n.real = !n.imaginary;
      return n;
    }
    n.kind = Literal::Kind::integer;
    n.real = true;
    for (char c : int_digits) {
      if (c == '_') continue;
      const int digit = is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
      if (__builtin_mul_overflow(n.integer, int64_t{base}, &n.integer) ||
          __builtin_add_overflow(n.integer, int64_t{digit}, &n.integer)) {
        n.out_of_range = true;  // the value is then never used; kept where a sign can flip it
        n.integer = 0;
        break;
      }
    }
    return n;
  }

  // A name (True, False, None; any other is not a literal), or one or more adjacent string
  // literals, which Python joins.
  Literal parse_string_or_name() {
    std::size_t prefix_end = i_;
    while (prefix_end < s_.size() && is_name_char(s_[prefix_end])) ++prefix_end;
    const std::string_view word = s_.substr(i_, prefix_end - i_);
    const char after = prefix_end < s_.size() ? s_[prefix_end] : '\0';
    if (after != '\'' && after != '"') {
      i_ = prefix_end;
      Literal name;
      if (word == "True" || word == "False") {
        name.kind = Literal::Kind::boolean;
        name.integer = word == "True";
      } else if (word != "None") {
        fail("the name '" + printable(word) + "' (not a literal)");
      }
      return name;
    }
    Literal joined;
    joined.kind = Literal::Kind::string;
    bool first = true, bytes = false;
    for (;;) {
      skip_blanks();
      if (!(peek() == '\'' || peek() == '"' || is_name_char(peek()))) break;
      std::size_t end = i_;
      while (end < s_.size() && is_name_char(s_[end])) ++end;
      if (end >= s_.size() || (s_[end] != '\'' && s_[end] != '"')) break;  // a name: stop
      std::string prefix(s_.substr(i_, end - i_));
      for (char& ch : prefix) ch = static_cast<char>(ch | 0x20);
      const bool raw = prefix.find('r') != std::string::npos;
      const bool is_bytes = prefix.find('b') != std::string::npos;
      const bool valid = prefix.empty() || prefix == "r" || prefix == "u" || prefix == "b" ||
                         prefix == "br" || prefix == "rb" || prefix == "f" || prefix == "fr" ||
                         prefix == "rf";
      if (!valid) fail("a string prefix '" + printable(prefix) + "'");
      if (prefix.find('f') != std::string::npos) fail("an f-string (not a literal)");
      if (!first && is_bytes != bytes) fail("bytes joined with a string");
      bytes = is_bytes;
      first = false;
      i_ = end;
      parse_string_body(raw, joined.text);
    }
    if (bytes) joined.kind = Literal::Kind::other;
    return joined;
  }

  void append_code_point(uint32_t cp, std::string& out) const {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }
  // A character of the source as it is in the string's value: Latin-1 text is re-encoded.
  void append_source_char(char c, std::string& out) const {
    if (latin1_ && static_cast<unsigned char>(c) >= 0x80)
      append_code_point(static_cast<unsigned char>(c), out);
    else
      out += c;
  }
  uint32_t hex_digits(int count) {
    uint32_t v = 0;
    for (int k = 0; k < count; ++k) {
      const char h = peek();
      int d;
      if (is_digit(h))
        d = h - '0';
      else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f')
        d = (h | 0x20) - 'a' + 10;
      else
        fail("a truncated escape sequence");
      v = v * 16 + static_cast<uint32_t>(d);
      ++i_;
    }
    return v;
  }

  void parse_string_body(bool raw, std::string& out) {
    const char quote = peek();
    const bool triple = peek(1) == quote && peek(2) == quote;
    i_ += triple ? 3 : 1;
    for (;;) {
      if (at_end()) fail("an unterminated string");
      const char c = peek();
      if (c == quote && (!triple || (peek(1) == quote && peek(2) == quote))) {
        i_ += triple ? 3 : 1;
        return;
      }
      if (is_newline(c)) {
        if (!triple) fail("a newline in a string");
        skip_newline();
        out += '\n';
        continue;
      }
      if (c != '\\') {
        append_source_char(c, out);
        ++i_;
        continue;
      }
      // An escape. Raw strings keep the backslash (and it still protects a quote).
      const char e = peek(1);
      if (e == '\0' && i_ + 1 >= s_.size()) fail("an unterminated string");
      if (raw) {
        out += '\\';
        ++i_;
        if (is_newline(e)) {
          skip_newline();
          out += '\n';
        } else {
          append_source_char(e, out);
          ++i_;
        }
        continue;
      }
      i_ += 2;
      switch (e) {
        case '\n':
        case '\r':
          if (e == '\r' && peek() == '\n') ++i_;
          break;  // a continuation: nothing
        case '\\':
        case '\'':
        case '"':
          out += e;
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
          append_code_point(hex_digits(2), out);
          break;
        case 'u':
          append_code_point(hex_digits(4), out);
          break;
        case 'U': {
          const uint32_t cp = hex_digits(8);
          if (cp > 0x10ffff) fail("an escape beyond Unicode");
          append_code_point(cp, out);
          break;
        }
        case 'N':
          // \N{name}: the Unicode name database is not worth carrying for headers, which
          // NumPy writes in plain ASCII.
          fail("a \\N{...} escape (not supported)");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && peek() >= '0' && peek() <= '7'; ++k)
              v = v * 8 + static_cast<uint32_t>(peek() - '0'), ++i_;
            append_code_point(v, out);
          } else {  // an unknown escape stays as written
            out += '\\';
            --i_;
          }
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::size_t text_start_ = 0;
  int depth_ = 0;
  bool latin1_, python2_;
};

// Strict UTF-8 (no overlong forms, surrogates or values beyond U+10FFFF), as Python decodes a
// version 3 header; returns the number of code points, or -1.
int64_t utf8_length(std::string_view s) {
  int64_t count = 0;
  for (std::size_t i = 0; i < s.size(); ++count) {
    const auto b = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp, min;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xe0) == 0xc0) {
      extra = 1, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      extra = 2, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      extra = 3, cp = b & 0x07, min = 0x10000;
    } else {
      return -1;
    }
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size()) return -1;
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return -1;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return count;
}

DType parse_descr(const Literal& descr) {
  if (descr.kind == Literal::Kind::list)
    throw InvalidInput("structured arrays are not supported; save a plain numeric array");
  if (descr.kind == Literal::Kind::tuple)
    throw InvalidInput("subarray dtypes (" + printable(descr.source) +
                       ") are not supported; save a plain numeric array");
  if (descr.kind != Literal::Kind::string)
    invalid("descr is not a valid dtype descriptor: " + printable(descr.source));
  const std::string& d = descr.text;
  // The type string NumPy writes ('<f4'): a byte order, then the kind and size. The order may be
  // left out (native, little-endian here).
  const bool has_order = !d.empty() && std::string_view("<>=|").find(d[0]) != std::string::npos;
  const std::string kind = has_order ? d.substr(1) : d;
  if (has_order && d[0] == '>' && kind != "i1" && kind != "u1" && kind != "b1")
    throw InvalidInput("big-endian data (" + printable(d) +
                       ") is not supported; convert with arr.astype(arr.dtype.newbyteorder('<'))");
  if (kind == "f4") return DType::f32;
  if (kind == "f2") return DType::f16;
  if (kind == "i4") return DType::i32;
  if (kind == "i8") return DType::i64;
  // What np.save of a Python list of floats writes: costs, and pools as from scikit-learn's
  // predict_proba; the consumers of each array say which dtypes they take.
  if (kind == "f8") return DType::f64;
  if (!kind.empty() && kind[0] == 'c')
    throw InvalidInput("complex data (" + printable(d) + ") is not supported");
  if (!kind.empty() && kind[0] == 'O') throw InvalidInput("object arrays are not supported");
  throw InvalidInput("dtype " + printable(d) +
                     " is not supported (use float32, float16, float64, int32 or int64)");
}

}  // namespace

NpyHeader parse_npy_header(const unsigned char* bytes, std::size_t size) {
  if (size < 10) throw InvalidInput("not a .npy file (too short)");
  if (std::memcmp(bytes, kMagic, 6) != 0) throw InvalidInput("not a .npy file (bad magic bytes)");
  const int major = bytes[6], minor = bytes[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    throw InvalidInput("unsupported .npy format version " + std::to_string(major) + "." +
                       std::to_string(minor));
  std::size_t header_length, header_start;
  if (major == 1) {
    header_length = bytes[8] | (std::size_t{bytes[9]} << 8);
    header_start = 10;
  } else {
    if (size < 12) invalid("truncated header");
    header_length = bytes[8] | (std::size_t{bytes[9]} << 8) | (std::size_t{bytes[10]} << 16) |
                    (std::size_t{bytes[11]} << 24);
    header_start = 12;
  }
  // Refused before it is read: NumPy's limit counts characters, of which a UTF-8 header (version
  // 3) has at most as many as bytes, and at least a quarter as many.
  if (header_length > (major == 3 ? 4 : 1) * kMaxNpyHeaderLength)
    invalid("the header is " + std::to_string(header_length) + " bytes long; NumPy reads at most " +
            std::to_string(kMaxNpyHeaderLength) + " characters");
  if (size - header_start < header_length) invalid("truncated header");
  const std::string_view text(reinterpret_cast<const char*>(bytes + header_start), header_length);
  if (major == 3) {
    const int64_t characters = utf8_length(text);
    if (characters < 0) invalid("the header is not valid UTF-8");
    if (characters > static_cast<int64_t>(kMaxNpyHeaderLength))
      invalid("the header is " + std::to_string(characters) +
              " characters long; NumPy reads at most " + std::to_string(kMaxNpyHeaderLength));
  }

  const Literal dict = LiteralParser(text, major < 3, major < 3).parse_document();
  if (dict.kind != Literal::Kind::dict) invalid("the header is not a dict");
  // Later entries replace earlier ones with the same key, as in Python.
  std::map<std::string, const Literal*> values;
  bool other_keys = false;
  for (std::size_t e = 0; e < dict.keys.size(); ++e) {
    if (dict.keys[e].kind == Literal::Kind::string)
      values[dict.keys[e].text] = &dict.values[e];
    else
      other_keys = true;
  }
  if (other_keys || values.size() != 3 || !values.count("descr") || !values.count("shape") ||
      !values.count("fortran_order")) {
    std::string keys;
    for (const Literal& key : dict.keys) keys += (keys.empty() ? "" : ", ") + printable(key.source);
    invalid("the header's keys are {" + keys + "}, not 'descr', 'fortran_order' and 'shape'");
  }
  const Literal& shape = *values["shape"];
  const Literal& fortran = *values["fortran_order"];
  NpyHeader header;
  if (shape.kind != Literal::Kind::tuple)
    invalid("shape is not a tuple: " + printable(shape.source));
  for (const Literal& d : shape.items) {
    if (d.kind != Literal::Kind::integer && d.kind != Literal::Kind::boolean)
      invalid("shape " + printable(shape.source) + " is not a tuple of integers");
    if (d.out_of_range || d.integer < 0)
      invalid("shape " + printable(shape.source) +
              (d.integer < 0 && !d.out_of_range ? " has a negative dimension" : " is too large"));
    header.shape.push_back(d.integer);
  }
  if (fortran.kind != Literal::Kind::boolean)
    invalid("fortran_order is not True or False: " + printable(fortran.source));
  if (fortran.integer)
    throw InvalidInput("Fortran-order arrays are not supported; save np.ascontiguousarray(arr)");
  header.dtype = parse_descr(*values["descr"]);

  // The data's size, refusing shapes whose product overflows (a crafted header could otherwise
  // wrap it around to the size of the data present). As NumPy does, the product of the nonzero
  // dimensions must fit too: (0, 2^62, 2^62) is empty, but too large.
  int64_t bytes_if_nonzero = static_cast<int64_t>(dtype_size(header.dtype));
  bool empty = false;
  for (int64_t d : header.shape) {
    empty = empty || d == 0;
    if (d != 0 && __builtin_mul_overflow(bytes_if_nonzero, d, &bytes_if_nonzero))
      invalid("shape " + printable(shape.source) + " is too large");
  }
  header.data_offset = header_start + header_length;
  header.data_bytes = empty ? 0 : static_cast<std::size_t>(bytes_if_nonzero);
  return header;
}

}  // namespace quarry::io
