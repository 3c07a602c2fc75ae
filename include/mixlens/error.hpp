// mixlens::error and the argument checks every operator uses.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
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

// The first NaN or infinity of `data` (C order, extents `shape`) as
// "NaN at [3][17]", or "" when every value is finite. Checks need it because
// NaN compares false with everything: std::max and min / max scans drop it, so
// a tolerance built on them passes on NaN.
template <class T>
[[nodiscard]] std::string find_non_finite(const T* data, std::initializer_list<std::int64_t> shape) {
  std::int64_t n = 1;
  for (std::int64_t e : shape) n *= e;
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
