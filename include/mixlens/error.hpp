// mixlens::error and the argument checks every operator uses.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

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

}  // namespace detail
}  // namespace mixlens
