// Numerical rank of a dense matrix, the common measure behind the semiseparable
// and diagonal-control instruments.
#pragma once

#include <string_view>

#include "mixlens/detail/svd.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

// The number of singular values σ_k > rel_tol·σ_1 (one-sided Jacobi SVD in
// double; 0 for an empty or zero matrix).
template <class T>
[[nodiscard]] index_t numerical_rank(matrix_view<T> m, double rel_tol = 1e-10) {
  if (!(rel_tol >= 0)) detail::fail("mixlens::analysis::numerical_rank", "rel_tol", "a tolerance >= 0", rel_tol);
  return detail::rank_of(detail::jacobi_svd(m).s, rel_tol);
}

// The singular values, descending.
template <class T>
[[nodiscard]] std::vector<double> singular_values(matrix_view<T> m) {
  return detail::jacobi_svd(m).s;
}

}  // namespace mixlens::analysis
