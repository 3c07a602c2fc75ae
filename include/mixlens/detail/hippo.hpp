// HiPPO-N, the normal part of HiPPO-LegS, and its eigendecomposition: the
// spectrum behind the initializations of S5 (Λ and its eigenbasis), DSS (the
// frequencies ω of Λ = −½ + iω) and S4's normal-plus-low-rank form.
//
// HiPPO-LegS is A(n,k) = −sqrt((2n+1)(2k+1)) for n > k, −(n+1) for n = k, 0 above.
// Adding p·pᵀ with p(n) = sqrt(n + 1/2) makes it normal:
//   S = A + p·pᵀ = −½·I + K,   K(n,k) = −sign(n−k)·sqrt((2n+1)(2k+1))/2,
// with K real skew-symmetric. So every eigenvalue of S is −½ + i·μ where μ is an
// eigenvalue of the Hermitian matrix −i·K, and S and −i·K share a unitary
// eigenbasis V. The Hermitian problem is solved by cyclic complex Jacobi rotations
// (small N, accurate to rounding, no external LAPACK); everything is in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// The real N×N matrix S = HiPPO-LegS + p·pᵀ.
inline matrix<double> hippo_n(index_t n) {
  check_positive("mixlens::detail::hippo_n", "n", n);
  matrix<double> s(n, n);
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < n; ++c) {
      const double g = std::sqrt(double(2 * r + 1) * double(2 * c + 1)) / 2;
      s(r, c) = r == c ? -0.5 : (r > c ? -g : g);
    }
  return s;
}

// Eigenvalues (ascending) and orthonormal eigenvectors (columns of v) of the
// Hermitian matrix a, by cyclic Jacobi: each rotation first makes a(p,q) real by
// a phase on index q, then zeroes it with a real plane rotation. Quadratic
// convergence once the off-diagonal part is small: about ten O(n³) sweeps,
// milliseconds for S5's usual block sizes (≤ 64), seconds at n = 256.
struct hermitian_eigensystem {
  std::vector<double> values;
  matrix<complex<double>> vectors;
};

inline hermitian_eigensystem hermitian_jacobi(matrix<complex<double>> a) {
  constexpr const char* where = "mixlens::detail::hermitian_jacobi";
  const index_t n = a.extent(0);
  check_positive(where, "a (rows)", n);
  check_equal(where, "a", "columns", n, a.extent(1));
  matrix<complex<double>> v(n, n);
  for (index_t k = 0; k < n; ++k) v(k, k) = 1;

  double total = 0;
  for (index_t i = 0; i < a.size(); ++i) total += cuda::std::norm(a.data()[i]);
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (index_t p = 0; p < n; ++p)
      for (index_t q = p + 1; q < n; ++q) off += cuda::std::norm(a(p, q));
    if (off <= 1e-32 * total) break;
    for (index_t p = 0; p < n; ++p)
      for (index_t q = p + 1; q < n; ++q) {
        const double r = cuda::std::abs(a(p, q));
        if (r == 0) continue;
        const complex<double> phase = a(p, q) / r;  // a(p,q) = r·phase
        for (index_t k = 0; k < n; ++k) {
          a(k, q) *= cuda::std::conj(phase);
          v(k, q) *= cuda::std::conj(phase);
        }
        for (index_t k = 0; k < n; ++k) a(q, k) *= phase;
        // Now a(p,q) = a(q,p) = r: a real symmetric 2×2 pivot.
        const double theta = (a(q, q).real() - a(p, p).real()) / (2 * r);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (index_t k = 0; k < n; ++k) {  // a ← a·R, v ← v·R
          const complex<double> ap = a(k, p), aq = a(k, q), vp = v(k, p), vq = v(k, q);
          a(k, p) = c * ap - s * aq;
          a(k, q) = s * ap + c * aq;
          v(k, p) = c * vp - s * vq;
          v(k, q) = s * vp + c * vq;
        }
        for (index_t k = 0; k < n; ++k) {  // a ← Rᵀ·a
          const complex<double> ap = a(p, k), aq = a(q, k);
          a(p, k) = c * ap - s * aq;
          a(q, k) = s * ap + c * aq;
        }
        a(p, q) = a(q, p) = 0;
      }
  }

  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) { return a(x, x).real() < a(y, y).real(); });
  hermitian_eigensystem out{std::vector<double>(static_cast<std::size_t>(n)), matrix<complex<double>>(n, n)};
  for (index_t j = 0; j < n; ++j) {
    const index_t from = order[static_cast<std::size_t>(j)];
    out.values[static_cast<std::size_t>(j)] = a(from, from).real();
    for (index_t k = 0; k < n; ++k) out.vectors(k, j) = v(k, from);
  }
  return out;
}

// S = V·diag(Λ)·V* for S = hippo_n(n): Λ = −½ + i·μ with μ ascending (so the
// first half has negative imaginary parts and, for even n, the second half holds
// their conjugates), V unitary.
struct hippo_n_eigen {
  std::vector<complex<double>> lambda;
  matrix<complex<double>> v;
};

inline hippo_n_eigen hippo_n_eigendecomposition(index_t n) {
  const matrix<double> s = hippo_n(n);
  matrix<complex<double>> h(n, n);  // −i·K, K = S + ½·I
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < n; ++c) h(r, c) = complex<double>(0, r == c ? 0.0 : -s(r, c));
  hermitian_eigensystem e = hermitian_jacobi(std::move(h));
  hippo_n_eigen out{std::vector<complex<double>>(static_cast<std::size_t>(n)), std::move(e.vectors)};
  for (index_t j = 0; j < n; ++j) out.lambda[static_cast<std::size_t>(j)] = {-0.5, e.values[static_cast<std::size_t>(j)]};
  return out;
}

}  // namespace mixlens::detail
