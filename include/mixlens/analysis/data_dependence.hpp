// Data dependence: how much a mixing matrix moves when the input moves.
// (Like every instrument, these take views of float or double matrices, const
// or not: pass `m.view()` of a mixlens::matrix.)
#pragma once

#include <cmath>
#include <string_view>

#include "mixlens/linear_operator.hpp"

namespace mixlens::detail {
template <class T, class U>
void check_same_shape(std::string_view where, std::string_view argument, matrix_view<T> ref, matrix_view<U> m) {
  check_equal(where, argument, "rows", ref.extent(0), m.extent(0));
  check_equal(where, argument, "columns", ref.extent(1), m.extent(1));
}

template <class T, class U>
double frobenius_distance(matrix_view<T> a, matrix_view<U> b) {
  double s = 0;
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t j = 0; j < a.extent(1); ++j) {
      const double e = double(a(i, j)) - double(b(i, j));
      s += e * e;
    }
  return std::sqrt(s);
}

template <class T>
double frobenius_norm(matrix_view<T> a) {
  double s = 0;
  for (index_t i = 0; i < a.extent(0); ++i)
    for (index_t j = 0; j < a.extent(1); ++j) s += double(a(i, j)) * double(a(i, j));
  return std::sqrt(s);
}
}  // namespace mixlens::detail

namespace mixlens::analysis {

// ‖M(x) − M(x₀)‖_F / ‖M(x₀)‖_F for the same operator bound to two inputs:
// 0 for fixed operators (class i), > 0 for data-controlled ones. A zero M(x₀)
// gives the absolute distance.
template <class T, class U>
[[nodiscard]] double relative_change(matrix_view<T> m_x, matrix_view<U> m_x0) {
  detail::check_same_shape("mixlens::analysis::relative_change", "m_x", m_x0, m_x);
  const double d = detail::frobenius_distance(m_x, m_x0), n = detail::frobenius_norm(m_x0);
  return n > 0 ? d / n : d;
}

// First-order sensitivity ‖∂M/∂x[δ]‖_F / ‖M(x)‖_F by the central difference
// (M(x + εδ) − M(x − εδ)) / 2ε. The caller picks the direction δ (the
// experiment uses ‖δ‖_F = ‖x‖_F, so the number is a relative-to-relative
// derivative). Error O(ε²).
template <class T, class U, class V>
[[nodiscard]] double sensitivity(matrix_view<T> m_plus, matrix_view<U> m_minus, matrix_view<V> m_x, double eps) {
  constexpr std::string_view where = "mixlens::analysis::sensitivity";
  detail::check_same_shape(where, "m_plus", m_x, m_plus);
  detail::check_same_shape(where, "m_minus", m_x, m_minus);
  detail::check_positive(where, "eps", eps);
  const double d = detail::frobenius_distance(m_plus, m_minus) / (2 * eps), n = detail::frobenius_norm(m_x);
  return n > 0 ? d / n : d;
}

}  // namespace mixlens::analysis
