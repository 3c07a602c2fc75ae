// A strict, minimal JSON reader for file headers (safetensors), so that the core
// I/O needs no third-party library. Every value remembers the byte offset where
// it starts, so that a reader can say where a defect lies. Models that read
// config.json use nlohmann-json instead (mixlens/models/).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/error.hpp"

namespace mixlens::io {

struct json_member;

struct json_value {
  enum class kind { null, boolean, number, string, array, object };
  kind type = kind::null;
  std::size_t offset = 0;         // where the value starts in the parsed text
  bool boolean = false;
  bool integral = false;          // a number written without fraction or exponent
  std::int64_t integer = 0;       // valid when integral (and in range)
  double number = 0;
  std::string string;
  std::vector<json_value> items;                              // array
  // Object members in file order. (A struct, not std::pair: a pair needs its
  // members complete, and json_value is not yet; clang rejects it.)
  std::vector<json_member> members;

  [[nodiscard]] bool is(kind k) const { return type == k; }
  // The member named `key`, or nullptr.
  [[nodiscard]] const json_value* find(std::string_view key) const;
};

struct json_member {
  std::string key;
  json_value value;
  std::size_t key_offset = 0;  // where the key starts in the parsed text
};

inline const json_value* json_value::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

[[nodiscard]] constexpr std::string_view to_string(json_value::kind k) {
  switch (k) {
    case json_value::kind::null: return "null";
    case json_value::kind::boolean: return "a boolean";
    case json_value::kind::number: return "a number";
    case json_value::kind::string: return "a string";
    case json_value::kind::array: return "an array";
    case json_value::kind::object: return "an object";
  }
  return "?";
}

// Thrown with the byte offset of the defect (relative to the parsed text).
class json_error : public error {
 public:
  json_error(std::size_t offset, const std::string& what)
      : error("byte " + std::to_string(offset) + ": " + what), offset_(offset), what_(what) {}
  [[nodiscard]] std::size_t offset() const { return offset_; }
  [[nodiscard]] const std::string& reason() const { return what_; }

 private:
  std::size_t offset_;
  std::string what_;
};

namespace detail {

class json_parser {
 public:
  explicit json_parser(std::string_view text) : s_(text) {}

  json_value parse_document() {
    json_value v = parse_value(0);
    skip_space();
    if (pos_ != s_.size()) throw json_error(pos_, "unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int max_depth = 64;  // file headers are shallow; bounds the recursion

  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  [[noreturn]] void fail(const std::string& what) const { throw json_error(pos_, what); }
  char peek() {
    skip_space();
    if (pos_ >= s_.size()) fail("unexpected end of JSON");
    return s_[pos_];
  }
  void expect_word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) fail("invalid literal (expected '" + std::string(w) + "')");
    pos_ += w.size();
  }

  // Sorting, not a scan per key: headers with 10^5 tensors are legitimate, and
  // the pairwise check took seconds on them. Reports the earliest repetition.
  static void check_unique_keys(const std::vector<json_member>& members) {
    std::vector<const json_member*> order;
    order.reserve(members.size());
    for (const auto& m : members) order.push_back(&m);
    std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->key < b->key; });
    const json_member* first = nullptr;
    for (std::size_t i = 1; i < order.size(); ++i)
      if (order[i]->key == order[i - 1]->key && (!first || order[i]->key_offset < first->key_offset)) first = order[i];
    if (first) throw json_error(first->key_offset, "duplicate key '" + first->key + "'");
  }

  json_value parse_value(int depth) {
    if (depth > max_depth) fail("JSON nested too deeply");
    json_value v;
    const char c = peek();
    v.offset = pos_;
    if (c == '{') {
      v.type = json_value::kind::object;
      ++pos_;
      if (peek() == '}') { ++pos_; return v; }
      for (;;) {
        if (peek() != '"') fail("expected a string key");
        const std::size_t key_at = pos_;
        std::string key = parse_string();
        if (peek() != ':') fail("expected ':'");
        ++pos_;
        json_value item = parse_value(depth + 1);
        v.members.push_back({std::move(key), std::move(item), key_at});
        const char n = peek();
        ++pos_;
        if (n == '}') break;
        if (n != ',') { --pos_; fail("expected ',' or '}'"); }
      }
      check_unique_keys(v.members);
    } else if (c == '[') {
      v.type = json_value::kind::array;
      ++pos_;
      if (peek() == ']') { ++pos_; return v; }
      for (;;) {
        v.items.push_back(parse_value(depth + 1));
        const char n = peek();
        ++pos_;
        if (n == ']') break;
        if (n != ',') { --pos_; fail("expected ',' or ']'"); }
      }
    } else if (c == '"') {
      v.type = json_value::kind::string;
      v.string = parse_string();
    } else if (c == 't') {
      expect_word("true");
      v.type = json_value::kind::boolean;
      v.boolean = true;
    } else if (c == 'f') {
      expect_word("false");
      v.type = json_value::kind::boolean;
    } else if (c == 'n') {
      expect_word("null");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number(v);
    } else {
      fail(std::string("unexpected character '") + c + "'");
    }
    return v;
  }

  void parse_number(json_value& v) {
    const std::size_t begin = pos_;
    auto digits = [&] {
      const std::size_t at = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == at) fail("invalid number");
    };
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') ++pos_;
    else digits();
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') { ++pos_; digits(); integral = false; }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      digits();
      integral = false;
    }
    const std::string text(s_.substr(begin, pos_ - begin));
    v.type = json_value::kind::number;
    try {
      v.number = std::stod(text);
    } catch (const std::out_of_range&) {
      throw json_error(begin, "number out of range");
    }
    if (integral) {
      // Exact 64-bit parse; a literal out of range is kept as a non-integral number.
      const bool negative = text[0] == '-';
      std::uint64_t mag = 0;
      bool fits = true;
      for (std::size_t i = negative ? 1 : 0; i < text.size(); ++i) {
        const auto digit = static_cast<std::uint64_t>(text[i] - '0');
        if (mag > (UINT64_MAX - digit) / 10) { fits = false; break; }
        mag = mag * 10 + digit;
      }
      if (fits && mag <= (negative ? std::uint64_t(INT64_MAX) + 1 : std::uint64_t(INT64_MAX))) {
        v.integral = true;
        v.integer = negative ? static_cast<std::int64_t>(0 - mag) : static_cast<std::int64_t>(mag);
      }
    }
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    std::uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<std::uint32_t>(h - 'A' + 10);
      else { --pos_; fail("invalid hex digit in \\u escape"); }
    }
    return cp;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') { ++pos_; return out; }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out.push_back(c); ++pos_; continue; }
      if (++pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace detail

// Parses one JSON document; throws json_error (with the byte offset) on any defect.
[[nodiscard]] inline json_value parse_json(std::string_view text) { return detail::json_parser(text).parse_document(); }

}  // namespace mixlens::io
