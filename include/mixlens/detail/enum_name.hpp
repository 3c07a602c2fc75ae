// The printed name of an enumerator, from the list of names in declaration
// order: one line per enum instead of a switch, "?" for a value outside it.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string_view>

namespace mixlens::detail {

template <class Enum>
[[nodiscard]] constexpr std::string_view enum_name(Enum value, std::initializer_list<std::string_view> names) {
  const auto i = static_cast<std::size_t>(value);
  return i < names.size() ? names.begin()[i] : std::string_view("?");
}

}  // namespace mixlens::detail
