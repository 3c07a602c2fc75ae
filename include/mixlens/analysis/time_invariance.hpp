// Time invariance: how far a mixing matrix is from the nearest Toeplitz matrix.
#pragma once

#include <cmath>
#include <string_view>
#include <vector>

#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

// ‖M − T(M)‖_F / ‖M‖_F, where T(M) is the Toeplitz matrix nearest to M in the
// Frobenius norm: every diagonal replaced by its mean. 0 exactly for LTI
// operators (S4, DSS, S5 blocks), > 0 once the data or the position shape the
// matrix; 0 for a zero matrix. M is L × L.
template <class T>
[[nodiscard]] double toeplitz_distance(matrix_view<T> m) {
  constexpr std::string_view where = "mixlens::analysis::toeplitz_distance";
  detail::check_square(where, "m", m.extent(0), m.extent(0), m.extent(1));
  const index_t L = m.extent(0);
  // Diagonal d = i − j ∈ (−L, L), stored at d + L − 1.
  std::vector<double> mean(static_cast<std::size_t>(2 * L > 0 ? 2 * L - 1 : 0), 0.0);
  double norm = 0;
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) {
      mean[static_cast<std::size_t>(i - j + L - 1)] += double(m(i, j));
      norm += double(m(i, j)) * double(m(i, j));
    }
  for (index_t d = -(L - 1); d < L; ++d) mean[static_cast<std::size_t>(d + L - 1)] /= double(L - std::abs(d));
  double dist = 0;
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) {
      const double e = double(m(i, j)) - mean[static_cast<std::size_t>(i - j + L - 1)];
      dist += e * e;
    }
  return norm > 0 ? std::sqrt(dist / norm) : 0.0;
}

}  // namespace mixlens::analysis
