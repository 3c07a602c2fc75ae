// A small singular value decomposition for the analysis instruments: one-sided
// Jacobi (Hestenes 1958) in double precision.
//
// The columns of a working copy W of A (m × n, n ≤ m after transposing if
// needed) are rotated in pairs until every pair is orthogonal to working
// precision; then W = U·Σ and the rotations accumulate V, so A = U Σ Vᵀ.
// Each rotation zeroes ⟨w_p, w_q⟩ with the Rutishauser formulas (stable for
// nearly equal norms). One-sided Jacobi computes small singular values to high
// relative accuracy, which the numerical-rank tests rely on.
// Cost: O(sweeps · m · n²), sweeps ≈ 6–10 for double; fine for the blocks the
// instruments examine (a few hundred rows), not meant for large matrices.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string_view>
#include <vector>

#include "mixlens/linear_operator.hpp"

namespace mixlens::detail {

struct svd_result {
  std::vector<double> s;  // min(m, n) singular values, descending
  matrix<double> u;       // m × k (k = min(m, n)), empty unless vectors were requested
  matrix<double> v;       // n × k, empty unless vectors were requested
};

// A = U·diag(s)·Vᵀ of an m × n matrix. `tol` is the orthogonality threshold
// |⟨w_p, w_q⟩| ≤ tol·‖w_p‖‖w_q‖ at which a pair counts as converged.
template <class T>
[[nodiscard]] svd_result jacobi_svd(matrix_view<T> a, bool vectors = false, double tol = 1e-15,
                                    int max_sweeps = 80) {
  const index_t rows = a.extent(0), cols = a.extent(1);
  const bool transposed = cols > rows;  // work on the side with fewer columns
  const index_t m = transposed ? cols : rows, n = transposed ? rows : cols;
  svd_result out;
  if (m == 0 || n == 0) return out;
  // Column-major working copy: column c is w[c·m … c·m + m).
  std::vector<double> w(static_cast<std::size_t>(m * n)), vr(vectors ? static_cast<std::size_t>(n * n) : 0);
  for (index_t c = 0; c < n; ++c)
    for (index_t r = 0; r < m; ++r)
      w[static_cast<std::size_t>(c * m + r)] = transposed ? double(a(c, r)) : double(a(r, c));
  for (index_t c = 0; vectors && c < n; ++c) vr[static_cast<std::size_t>(c * n + c)] = 1;

  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    bool rotated = false;
    for (index_t p = 0; p + 1 < n; ++p)
      for (index_t q = p + 1; q < n; ++q) {
        double* wp = &w[static_cast<std::size_t>(p * m)];
        double* wq = &w[static_cast<std::size_t>(q * m)];
        double alpha = 0, beta = 0, gamma = 0;
        for (index_t r = 0; r < m; ++r) {
          alpha += wp[r] * wp[r];
          beta += wq[r] * wq[r];
          gamma += wp[r] * wq[r];
        }
        if (gamma == 0 || std::abs(gamma) <= tol * std::sqrt(alpha * beta)) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2 * gamma);
        const double t = std::copysign(1.0, zeta) / (std::abs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), s = c * t;
        for (index_t r = 0; r < m; ++r) {
          const double x = wp[r], y = wq[r];
          wp[r] = c * x - s * y;
          wq[r] = s * x + c * y;
        }
        for (index_t r = 0; vectors && r < n; ++r) {
          double& x = vr[static_cast<std::size_t>(p * n + r)];
          double& y = vr[static_cast<std::size_t>(q * n + r)];
          const double xo = x;
          x = c * xo - s * y;
          y = s * xo + c * y;
        }
      }
    if (!rotated) break;
  }

  std::vector<double> norm(static_cast<std::size_t>(n));
  for (index_t c = 0; c < n; ++c) {
    double s2 = 0;
    for (index_t r = 0; r < m; ++r) s2 += w[static_cast<std::size_t>(c * m + r)] * w[static_cast<std::size_t>(c * m + r)];
    norm[static_cast<std::size_t>(c)] = std::sqrt(s2);
  }
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](index_t x, index_t y) { return norm[static_cast<std::size_t>(x)] > norm[static_cast<std::size_t>(y)]; });
  for (index_t k = 0; k < n; ++k) out.s.push_back(norm[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])]);
  if (!vectors) return out;

  // Left vectors: normalized columns of W (zero for zero singular values); right: V.
  matrix<double> left(m, n), right(n, n);
  for (index_t k = 0; k < n; ++k) {
    const index_t c = order[static_cast<std::size_t>(k)];
    const double sc = norm[static_cast<std::size_t>(c)];
    for (index_t r = 0; r < m; ++r) left(r, k) = sc > 0 ? w[static_cast<std::size_t>(c * m + r)] / sc : 0.0;
    for (index_t r = 0; r < n; ++r) right(r, k) = vr[static_cast<std::size_t>(c * n + r)];
  }
  // For Aᵀ = U'ΣV'ᵀ, A = V'ΣU'ᵀ: swap the roles.
  out.u = transposed ? std::move(right) : std::move(left);
  out.v = transposed ? std::move(left) : std::move(right);
  return out;
}

// Number of singular values above rel_tol·σ_max (0 for a zero matrix).
[[nodiscard]] inline index_t rank_of(const std::vector<double>& s, double rel_tol) {
  if (s.empty() || !(s.front() > 0)) return 0;
  return static_cast<index_t>(std::count_if(s.begin(), s.end(), [&](double x) { return x > rel_tol * s.front(); }));
}

}  // namespace mixlens::detail
