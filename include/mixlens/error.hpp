// mixlens::error and the argument checks every operator uses.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mixlens {

// Thrown for invalid shapes, parameters and files. The message names the
// argument (or file), the expected and the actual value.
class error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

template <class Expected, class Actual>
[[noreturn]] void fail(std::string_view where, std::string_view argument, const Expected& expected,
                       const Actual& actual) {
  std::ostringstream os;
  os << where << ": argument '" << argument << "': expected " << expected << ", got " << actual;
  throw error(os.str());
}

// Throws unless `actual == expected`; `what` describes the checked quantity.
template <class T>
void check_equal(std::string_view where, std::string_view argument, std::string_view what,
                 const T& expected, const T& actual) {
  if (!(expected == actual)) {
    std::ostringstream e, a;
    e << what << " = " << expected;
    a << what << " = " << actual;
    fail(where, argument, e.str(), a.str());
  }
}

template <class T>
void check_positive(std::string_view where, std::string_view argument, const T& actual) {
  if (!(actual > T(0))) fail(where, argument, "a positive value", actual);
}

// ---- sizes: every product of extents goes through these, so that a size read
// from a file or a config cannot wrap around and allocate too little.

// a · b for non-negative a and b, or nullopt when it exceeds int64.
[[nodiscard]] constexpr std::optional<std::int64_t> product(std::int64_t a, std::int64_t b) {
  if (a < 0 || b < 0 || (b != 0 && a > INT64_MAX / b)) return std::nullopt;
  return a * b;
}

// The element count of `extents`, or nullopt when an extent is negative or the
// product of the non-zero ones exceeds int64 (so that every stride fits too).
template <class Range>
[[nodiscard]] constexpr std::optional<std::int64_t> element_count(const Range& extents) {
  std::int64_t nonzero = 1;
  bool empty = false;
  for (const auto e : extents) {
    if (e < 0) return std::nullopt;
    if (e == 0) empty = true;
    else if (const auto p = product(nonzero, static_cast<std::int64_t>(e))) nonzero = *p;
    else return std::nullopt;
  }
  return empty ? 0 : nonzero;
}

// a · b, or an error naming the argument when it exceeds int64.
[[nodiscard]] inline std::int64_t checked_product(std::string_view where, std::string_view argument, std::int64_t a,
                                                  std::int64_t b) {
  if (const auto p = product(a, b)) return *p;
  std::ostringstream os;
  os << a << " x " << b;
  fail(where, argument, "non-negative sizes whose product fits in 64 bits", os.str());
}

// The element count of `extents`, or an error naming the argument.
template <class Range>
[[nodiscard]] std::int64_t checked_element_count(std::string_view where, std::string_view argument,
                                                 const Range& extents) {
  if (const auto n = element_count(extents)) return *n;
  std::ostringstream os;
  os << '(';
  for (const auto e : extents) os << e << ',';
  os << ')';
  fail(where, argument, "non-negative extents whose product fits in 64 bits", os.str());
}

// The first NaN or infinity of `data` (C order, extents `shape`) as
// "NaN at [3][17]", or "" when every value is finite. Checks need it because
// NaN compares false with everything: std::max and min / max scans drop it, so
// a tolerance built on them passes on NaN.
template <class T>
[[nodiscard]] std::string find_non_finite(const T* data, std::initializer_list<std::int64_t> shape) {
  const std::int64_t n = checked_element_count("mixlens::detail::find_non_finite", "shape", shape);
  for (std::int64_t i = 0; i < n; ++i) {
    const T v = data[i];
    if (std::isfinite(v)) continue;
    std::vector<std::int64_t> index(shape.size());
    std::int64_t rest = i;
    for (std::size_t r = shape.size(); r-- > 0;) {
      const std::int64_t e = shape.begin()[r];
      index[r] = rest % e;
      rest /= e;
    }
    std::ostringstream os;
    os << (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") << " at ";
    for (std::int64_t k : index) os << '[' << k << ']';
    return os.str();
  }
  return {};
}

// Throws unless every value of `data` (C order, extents `shape`) is finite.
template <class T>
void check_finite(std::string_view where, std::string_view argument, const T* data,
                  std::initializer_list<std::int64_t> shape) {
  if (const std::string at = find_non_finite(data, shape); !at.empty()) fail(where, argument, "finite values", at);
}

}  // namespace detail
}  // namespace mixlens
