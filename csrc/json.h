// json: a strict RFC 8259 cursor over a byte buffer, for the readers of the evaluator's JSON files
// (csrc/eval_json.cpp, csrc/eval_annotation.cpp). It validates as it goes (UTF-8 in strings, the number grammar,
// nesting) and never builds a document tree: the readers walk the one schema they know and skip the rest, so a
// file of millions of boxes costs no allocation per box. Python's json module also reads NaN / Infinity /
// -Infinity; the cursor tokenises them as non-finite numbers so that a reader can name the field that holds one.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace uasan::json {

// A syntax error at a byte offset; the bindings turn it into "not valid JSON (line L, column C: problem)".
struct SyntaxError : std::invalid_argument {
  int64_t offset;
  SyntaxError(const std::string& problem, int64_t at) : std::invalid_argument(problem), offset(at) {}
};

// Line and column (1-based, column in bytes) of a byte offset, as Python's JSONDecodeError counts them.
inline void line_col(const char* data, int64_t offset, int64_t& line, int64_t& col) {
  line = 1;
  int64_t start = 0;
  for (int64_t i = 0; i < offset; ++i) {
    if (data[i] == '\n') {
      ++line;
      start = i + 1;
    }
  }
  col = offset - start + 1;
}

// key == word, with the length known at compile time (so the compare is inlined, unlike string_view's memcmp call).
template <size_t N>
inline bool is(std::string_view key, const char (&word)[N]) {
  return key.size() == N - 1 && std::memcmp(key.data(), word, N - 1) == 0;
}

struct Number {
  const char* begin;
  const char* end;
  bool integer;   // no fraction, no exponent
  int nonfinite;  // 0, or 1 NaN, 2 Infinity, 3 -Infinity

  double to_double() const {
    if (nonfinite) {
      return nonfinite == 1 ? std::numeric_limits<double>::quiet_NaN()
                            : (nonfinite == 2 ? 1.0 : -1.0) * std::numeric_limits<double>::infinity();
    }
    double v = 0.0;
    const auto r = std::from_chars(begin, end, v);  // correctly rounded, as Python's float()
    if (integer && v == 0.0) return 0.0;  // json.load reads -0 as the int 0
    if (r.ec == std::errc::result_out_of_range) {
      // from_chars leaves v unset; Python gives +-inf for huge values and +-0.0 for tiny ones
      bool tiny = false;
      for (const char* q = begin; q != end; ++q) {
        if (*q == 'e' || *q == 'E') tiny = q[1] == '-';
      }
      v = tiny ? 0.0 : std::numeric_limits<double>::infinity();
      if (*begin == '-') v = -v;
    }
    return v;
  }
  // An integer value that fits int64: integer tokens, and float tokens with an integral value (30.0).
  bool to_int64(int64_t& out) const {
    if (nonfinite) return false;
    if (integer) return std::from_chars(begin, end, out).ec == std::errc();
    const double v = to_double();
    if (!(v >= -9.2e18 && v <= 9.2e18) || v != std::floor(v)) return false;
    out = static_cast<int64_t>(v);
    return true;
  }
  std::string_view text() const { return {begin, static_cast<size_t>(end - begin)}; }
};

class Cursor {
 public:
  Cursor(const char* data, int64_t size) : begin_(data), p_(data), end_(data + size) {}

  int64_t offset() const { return p_ - begin_; }
  const char* data() const { return begin_; }
  const char* pos() const { return p_; }
  void seek(int64_t offset) { p_ = begin_ + offset; }

  [[noreturn]] void fail(const std::string& problem) const { throw SyntaxError(problem, offset()); }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  // The next significant byte, or 0 at the end of the buffer.
  char peek() {
    ws();
    return p_ < end_ ? *p_ : '\0';
  }
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c, const char* what) {
    if (!consume(c)) {
      fail(p_ < end_ ? std::string("expected ") + what : std::string("unexpected end of data, expected ") + what);
    }
  }
  void finish() {
    if (peek() != '\0') fail("extra data after the document");
  }

  // What the next value is, for messages: "an object", "a list", "a string", "a number", "true", ...
  const char* kind() {
    switch (peek()) {
      case '{': return "an object";
      case '[': return "a list";
      case '"': return "a string";
      case 't': return "true";
      case 'f': return "false";
      case 'n': return "null";
      case 'N': case 'I': return "a non-finite number";
      case '\0': return "nothing";
      default: return "a number";
    }
  }

  // A string (the cursor is at its opening quote), decoded to UTF-8 into out (nullptr: validate and skip).
  void string(std::string* out) {
    expect('"', "'\"'");
    if (out) out->clear();
    while (true) {
      const char* run = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\' && static_cast<unsigned char>(*p_) >= 0x20 &&
             static_cast<unsigned char>(*p_) < 0x80) {
        ++p_;
      }
      if (out) out->append(run, p_);
      if (p_ >= end_) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return;
      }
      if (c < 0x20) fail("invalid control character in a string");
      if (c == '\\') {
        escape(out);
      } else {
        utf8(out);
      }
    }
  }

  // Validates a number token (JSON grammar, or NaN / Infinity / -Infinity) and returns it.
  Number number() {
    ws();
    const char* b = p_;
    Number n{b, b, true, 0};
    if (p_ < end_ && (*p_ == 'N' || *p_ == 'I' || (*p_ == '-' && p_ + 1 < end_ && p_[1] == 'I'))) {
      if (literal("NaN")) return n.nonfinite = 1, n.end = p_, n;
      if (literal("Infinity")) return n.nonfinite = 2, n.end = p_, n;
      if (literal("-Infinity")) return n.nonfinite = 3, n.end = p_, n;
      fail("expecting value");
    }
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ < end_ && *p_ == '0') {
      ++p_;
    } else if (p_ < end_ && *p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && is_digit(*p_)) ++p_;
    } else {
      p_ = b;
      fail("expecting value");
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!(p_ < end_ && is_digit(*p_))) fail("expected a digit after the decimal point");
      while (p_ < end_ && is_digit(*p_)) ++p_;
      n.integer = false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!(p_ < end_ && is_digit(*p_))) fail("expected a digit in the exponent");
      while (p_ < end_ && is_digit(*p_)) ++p_;
      n.integer = false;
    }
    n.end = p_;
    return n;
  }
  // number().to_double() with a fast path: a plain decimal of at most 15 significant digits and 22 fraction digits
  // is mantissa / 10^k, both exact in float64, so the one IEEE division is correctly rounded (Clinger's fast path;
  // the value from_chars and Python's float() give). Anything else goes through number().
  double fast_double() {
    ws();
    const char* q = p_;
    const bool neg = q < end_ && *q == '-';
    q += neg;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    const char* d0 = q;
    while (q < end_ && is_digit(*q)) m = m * 10 + (*q++ - '0');
    digits = static_cast<int>(q - d0);
    const bool lead_zero = digits > 1 && *d0 == '0';
    if (q < end_ && *q == '.') {
      const char* f0 = ++q;
      while (q < end_ && is_digit(*q)) m = m * 10 + (*q++ - '0');
      frac = static_cast<int>(q - f0);
    }
    const bool simple = digits > 0 && !lead_zero && (frac > 0 || q[-1] != '.') && digits + frac <= 15 &&
                        !(q < end_ && (*q == 'e' || *q == 'E'));
    if (!simple) return number().to_double();
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    p_ = q;
    const double v = static_cast<double>(m) / pow10[frac];
    return neg && frac ? -v : (neg && m ? -v : v);  // the integer -0 is Python's int 0, so +0.0
  }
  // Fast path of the box loops: a list of exactly four plain numbers "[n, n, n, n]" (whitespace allowed), validated
  // with the JSON number grammar. Returns false with the cursor unmoved for anything else (a non-finite literal,
  // another length, a syntax error), which the caller then reads with the general functions for the message.
  bool box4() {
    const char* q = p_;
    auto skip_ws = [&] {
      while (q < end_ && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) ++q;
    };
    skip_ws();
    if (q >= end_ || *q != '[') return false;
    ++q;
    for (int c = 0; c < 4; ++c) {
      skip_ws();
      if (q < end_ && *q == '-') ++q;
      if (q >= end_ || !is_digit(*q)) return false;
      if (*q == '0') {
        ++q;
      } else {
        while (q < end_ && is_digit(*q)) ++q;
      }
      if (q < end_ && *q == '.') {
        ++q;
        if (q >= end_ || !is_digit(*q)) return false;
        while (q < end_ && is_digit(*q)) ++q;
      }
      if (q < end_ && (*q == 'e' || *q == 'E')) {
        ++q;
        if (q < end_ && (*q == '+' || *q == '-')) ++q;
        if (q >= end_ || !is_digit(*q)) return false;
        while (q < end_ && is_digit(*q)) ++q;
      }
      skip_ws();
      if (q >= end_ || *q != (c < 3 ? ',' : ']')) return false;
      ++q;
    }
    p_ = q;
    return true;
  }
  bool at_number() {
    const char c = peek();
    return c == '-' || is_digit(c) || c == 'N' || c == 'I';
  }

  // Skips any value, validating it.
  void skip(int depth = 0) {
    if (depth > 512) fail("nesting too deep");
    const char c = peek();
    if (c == '{') {
      ++p_;
      if (consume('}')) return;
      do {
        if (peek() != '"') fail("expecting property name enclosed in double quotes");
        string(nullptr);
        expect(':', "':' delimiter");
        skip(depth + 1);
      } while (consume(','));
      expect('}', "',' delimiter or '}'");
    } else if (c == '[') {
      ++p_;
      if (consume(']')) return;
      do {
        skip(depth + 1);
      } while (consume(','));
      expect(']', "',' delimiter or ']'");
    } else if (c == '"') {
      string(nullptr);
    } else if (c == 't' || c == 'f' || c == 'n') {
      if (!(literal("true") || literal("false") || literal("null"))) fail("expecting value");
    } else {
      number();
    }
  }

  // Iteration: `cur.expect('{', "'{'"); for (bool first = true; cur.next_key(key, first);) { value }`, and
  // `cur.expect('[', "'['"); for (bool first = true; cur.next_item(first);) { value }`.
  // key views the buffer (or, for a key with escapes, a scratch string): valid until the next next_key call.
  bool next_key(std::string_view& key, bool& first) {
    if (first) {
      first = false;
      if (consume('}')) return false;
    } else if (!consume(',')) {
      expect('}', "',' delimiter or '}'");
      return false;
    }
    if (peek() != '"') fail("expecting property name enclosed in double quotes");
    const char* q = p_ + 1;
    while (q < end_ && *q != '"' && *q != '\\' && static_cast<unsigned char>(*q) >= 0x20 &&
           static_cast<unsigned char>(*q) < 0x80) {
      ++q;
    }
    if (q < end_ && *q == '"') {  // plain ASCII: no copy
      key = std::string_view(p_ + 1, static_cast<size_t>(q - p_ - 1));
      p_ = q + 1;
    } else {
      string(&scratch_);
      key = scratch_;
    }
    expect(':', "':' delimiter");
    return true;
  }
  bool next_item(bool& first) {
    if (first) {
      first = false;
      return !consume(']');
    }
    if (consume(',')) return true;
    expect(']', "',' delimiter or ']'");
    return false;
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  template <size_t N>
  bool literal(const char (&word)[N]) {
    constexpr size_t n = N - 1;
    if (static_cast<size_t>(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  unsigned hex4() {
    if (end_ - p_ < 4) fail("invalid \\uXXXX escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char c = *p_;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("invalid \\uXXXX escape");
    }
    return v;
  }

  void escape(std::string* out) {
    ++p_;  // backslash
    if (p_ >= end_) fail("unterminated string");
    const char c = *p_++;
    char plain = 0;
    switch (c) {
      case '"': plain = '"'; break;
      case '\\': plain = '\\'; break;
      case '/': plain = '/'; break;
      case 'b': plain = '\b'; break;
      case 'f': plain = '\f'; break;
      case 'n': plain = '\n'; break;
      case 'r': plain = '\r'; break;
      case 't': plain = '\t'; break;
      case 'u': break;
      default: --p_; fail("invalid \\escape");
    }
    if (plain) {
      if (out) out->push_back(plain);
      return;
    }
    unsigned cp = hex4();
    if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate must be followed by a low one
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("lone surrogate in a \\u escape (not supported)");
      p_ += 2;
      const unsigned lo = hex4();
      if (lo < 0xDC00 || lo >= 0xE000) fail("lone surrogate in a \\u escape (not supported)");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp < 0xE000) {
      fail("lone surrogate in a \\u escape (not supported)");
    }
    if (!out) return;
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // One multi-byte UTF-8 sequence (the file must be UTF-8 text, as json.load reads it).
  void utf8(std::string* out) {
    const unsigned char c = static_cast<unsigned char>(*p_);
    int n;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07, min = 0x10000;
    else fail("invalid UTF-8 byte in a string");
    if (end_ - p_ <= n) fail("invalid UTF-8 byte in a string");
    for (int i = 1; i <= n; ++i) {
      const unsigned char d = static_cast<unsigned char>(p_[i]);
      if ((d & 0xC0) != 0x80) fail("invalid UTF-8 byte in a string");
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) fail("invalid UTF-8 sequence in a string");
    if (out) out->append(p_, p_ + n + 1);
    p_ += n + 1;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  std::string scratch_;
};

}  // namespace uasan::json
