// HiPPO-N, the normal part of HiPPO-LegS, and its eigendecomposition: the
// spectrum behind the initializations of S5 (Λ and its eigenbasis), DSS (the
// frequencies ω of Λ = −½ + iω) and S4's normal-plus-low-rank form.
//
// HiPPO-LegS is A(n,k) = −sqrt((2n+1)(2k+1)) for n > k, −(n+1) for n = k, 0 above.
// Adding p·pᵀ with p(n) = sqrt(n + 1/2) makes it normal:
//   S = A + p·pᵀ = −½·I + K,   K(n,k) = −sign(n−k)·sqrt((2n+1)(2k+1))/2,
// with K real skew-symmetric. So every eigenvalue of S is −½ + i·μ where μ is an
// eigenvalue of the Hermitian matrix −i·K, and S and −i·K share a unitary
// eigenbasis V.
//
// The Hermitian problem is reduced to a real symmetric tridiagonal one, all in
// real double arithmetic (no external LAPACK):
//   1. Householder reflections give K = Q·T·Qᵀ, Q orthogonal, T skew-symmetric
//      tridiagonal with sub-diagonal t_k (a reflection keeps skew-symmetry).
//   2. With D = diag((−i)^k), D*·(−i·T)·D = R is real symmetric tridiagonal with
//      zero diagonal and off-diagonal t_k.
//   3. Implicit QR with Wilkinson shifts gives R = W·diag(μ)·Wᵀ.
// Then −i·K = (Q·D·W)·diag(μ)·(Q·D·W)*, so V = Q·D·W. Each stage is backward
// stable: residual and loss of unitarity are O(n·ε) relative to ‖S‖. The ±μ
// symmetry of R is imposed exactly on W (see hippo_n_eigendecomposition), which
// makes the two halves of V exact conjugates. O(n³) once: 0.2 s at n = 512.
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

// K = Q·T·Qᵀ for a real skew-symmetric k (overwritten). Returns the sub-diagonal
// t (n − 1 entries, T(j+1, j) = t_j) and fills q.
inline std::vector<double> skew_tridiagonalize(matrix<double>& k, matrix<double>& q) {
  const index_t n = k.extent(0);
  std::vector<double> t(static_cast<std::size_t>(std::max<index_t>(n - 1, 0)));
  std::vector<double> beta(static_cast<std::size_t>(std::max<index_t>(n, 1)), 0.0), p(static_cast<std::size_t>(n)), u(static_cast<std::size_t>(n));
  // Step j maps column j below the sub-diagonal onto e_{j+1} with the reflection
  // P = I − β·u·uᵀ (u stored in k(j+1.., j)). For skew A, uᵀ·A·u = 0, so
  // P·A·P = A + u·pᵀ − p·uᵀ with p = β·A·u: a rank-2 skew update.
  for (index_t j = 0; j + 2 < n; ++j) {
    double norm2 = 0;
    for (index_t r = j + 1; r < n; ++r) norm2 += k(r, j) * k(r, j);
    const double x0 = k(j + 1, j);
    if (norm2 - x0 * x0 <= 0) {  // already tridiagonal in this column
      t[static_cast<std::size_t>(j)] = x0;
      continue;
    }
    const double alpha = x0 > 0 ? -std::sqrt(norm2) : std::sqrt(norm2);  // no cancellation in u_0
    k(j + 1, j) = x0 - alpha;                                               // u = x − α·e_1
    const double b = 1 / (norm2 - alpha * x0);                              // 2 / uᵀu
    beta[static_cast<std::size_t>(j)] = b;
    t[static_cast<std::size_t>(j)] = alpha;
    for (index_t r = j + 1; r < n; ++r) u[static_cast<std::size_t>(r)] = k(r, j);  // contiguous copy
    for (index_t r = j + 1; r < n; ++r) {
      double s = 0;
      for (index_t c = j + 1; c < n; ++c) s += k(r, c) * u[static_cast<std::size_t>(c)];
      p[static_cast<std::size_t>(r)] = b * s;
    }
    for (index_t r = j + 1; r < n; ++r) {
      const double ur = u[static_cast<std::size_t>(r)], pr = p[static_cast<std::size_t>(r)];
      for (index_t c = j + 1; c < n; ++c) k(r, c) += ur * p[static_cast<std::size_t>(c)] - pr * u[static_cast<std::size_t>(c)];
    }
  }
  if (n >= 2) t[static_cast<std::size_t>(n - 2)] = k(n - 1, n - 2);

  // Q = P_0·P_1·…, applied right to left: P_j only touches rows and columns > j.
  q = matrix<double>(n, n);
  for (index_t r = 0; r < n; ++r) q(r, r) = 1;
  for (index_t j = n - 3; j >= 0; --j) {
    const double b = beta[static_cast<std::size_t>(j)];
    if (b == 0) continue;
    std::fill(p.begin(), p.end(), 0.0);  // p = β·uᵀ·Q
    for (index_t r = j + 1; r < n; ++r) {
      const double ur = b * k(r, j);
      for (index_t c = j + 1; c < n; ++c) p[static_cast<std::size_t>(c)] += ur * q(r, c);
    }
    for (index_t r = j + 1; r < n; ++r) {
      const double ur = k(r, j);
      for (index_t c = j + 1; c < n; ++c) q(r, c) -= ur * p[static_cast<std::size_t>(c)];
    }
  }
  return t;
}

// Eigenvalues of the real symmetric tridiagonal matrix (diagonal d, off-diagonal
// e) by implicit QR with Wilkinson shifts; on return d holds them (unsorted) and
// row j of wt the unit eigenvector of d[j] (wt = Wᵀ, so rotations touch two
// contiguous rows).
inline void symmetric_tridiagonal_qr(std::vector<double>& d, std::vector<double> e, matrix<double>& wt) {
  constexpr const char* where = "mixlens::detail::symmetric_tridiagonal_qr";
  const index_t n = static_cast<index_t>(d.size());
  wt = matrix<double>(n, n);
  for (index_t r = 0; r < n; ++r) wt(r, r) = 1;
  double scale = 0;  // ‖T‖_∞: off-diagonals below ε·‖T‖ are negligible
  for (index_t j = 0; j < n; ++j) {
    double row = std::abs(d[static_cast<std::size_t>(j)]);
    if (j > 0) row += std::abs(e[static_cast<std::size_t>(j - 1)]);
    if (j + 1 < n) row += std::abs(e[static_cast<std::size_t>(j)]);
    scale = std::max(scale, row);
  }
  const double tol = 0x1p-52 * scale;
  auto rotate_rows = [&](index_t a, double c, double s) {  // rows a, a+1 ← [c s; −s c]·rows
    double* x = &wt(a, 0);
    double* y = &wt(a + 1, 0);
    for (index_t m = 0; m < n; ++m) {
      const double xm = x[m], ym = y[m];
      x[m] = c * xm + s * ym;
      y[m] = c * ym - s * xm;
    }
  };
  index_t iterations = 0;
  for (index_t hi = n - 1; hi > 0;) {
    if (std::abs(e[static_cast<std::size_t>(hi - 1)]) <= tol) {  // d[hi] has converged
      e[static_cast<std::size_t>(hi - 1)] = 0;
      --hi;
      continue;
    }
    if (++iterations > 30 * n) fail(where, "T", "convergence of the QR iteration", "none after 30·n steps");
    index_t lo = hi - 1;  // the unreduced block d[lo..hi]
    while (lo > 0 && std::abs(e[static_cast<std::size_t>(lo - 1)]) > tol) --lo;
    // Wilkinson shift: the eigenvalue of the trailing 2×2 block nearer d[hi].
    const double dh = d[static_cast<std::size_t>(hi)], eh = e[static_cast<std::size_t>(hi - 1)];
    const double delta = (d[static_cast<std::size_t>(hi - 1)] - dh) / 2;
    const double shift = dh - eh * eh / (delta + std::copysign(std::hypot(delta, eh), delta));
    // Chase the bulge from the first column of T − shift·I down the block. Each
    // rotation J in the plane (m, m+1) maps T ← J·T·Jᵀ and W ← W·Jᵀ.
    double x = d[static_cast<std::size_t>(lo)] - shift, z = e[static_cast<std::size_t>(lo)];
    for (index_t m = lo; m < hi; ++m) {
      const double r = std::hypot(x, z);
      const double c = r == 0 ? 1.0 : x / r, s = r == 0 ? 0.0 : z / r;  // J·(x, z)ᵀ = (r, 0)ᵀ
      if (m > lo) e[static_cast<std::size_t>(m - 1)] = r;
      const double dm = d[static_cast<std::size_t>(m)], dn = d[static_cast<std::size_t>(m + 1)];
      const double em = e[static_cast<std::size_t>(m)];
      d[static_cast<std::size_t>(m)] = c * c * dm + 2 * c * s * em + s * s * dn;
      d[static_cast<std::size_t>(m + 1)] = s * s * dm - 2 * c * s * em + c * c * dn;
      e[static_cast<std::size_t>(m)] = c * s * (dn - dm) + (c * c - s * s) * em;
      rotate_rows(m, c, s);
      if (m + 1 < hi) {  // the rotation pushes the bulge to (m+2, m)
        x = e[static_cast<std::size_t>(m)];
        z = s * e[static_cast<std::size_t>(m + 1)];
        e[static_cast<std::size_t>(m + 1)] *= c;
      }
    }
  }
}

// S = V·diag(Λ)·V* for S = hippo_n(n): Λ = −½ + i·μ with μ ascending, V unitary.
// The spectrum is exactly symmetric, μ_{n−1−j} = −μ_j, with V(:, n−1−j) =
// conj(V(:, j)) (S is real): the first half has negative imaginary parts and the
// second half holds their conjugates, in reverse order.
struct hippo_n_eigen {
  std::vector<complex<double>> lambda;
  matrix<complex<double>> v;
};

inline hippo_n_eigen hippo_n_eigendecomposition(index_t n) {
  check_positive("mixlens::detail::hippo_n_eigendecomposition", "n", n);
  matrix<double> k = hippo_n(n), q;
  for (index_t r = 0; r < n; ++r) k(r, r) = 0;  // K = S + ½·I
  const std::vector<double> t = skew_tridiagonalize(k, q);
  std::vector<double> mu(static_cast<std::size_t>(n), 0.0);
  matrix<double> wt;
  symmetric_tridiagonal_qr(mu, t, wt);

  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](index_t a, index_t b) { return mu[static_cast<std::size_t>(a)] < mu[static_cast<std::size_t>(b)]; });
  hippo_n_eigen out{std::vector<complex<double>>(static_cast<std::size_t>(n)), matrix<complex<double>>(n, n)};
  for (index_t j = 0; j < n / 2; ++j) {  // symmetrize the ±μ pairs
    const double m = (mu[static_cast<std::size_t>(order[static_cast<std::size_t>(n - 1 - j)])] -
                      mu[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])]) / 2;
    out.lambda[static_cast<std::size_t>(j)] = {-0.5, -m};
    out.lambda[static_cast<std::size_t>(n - 1 - j)] = {-0.5, m};
  }
  if (n % 2 != 0) out.lambda[static_cast<std::size_t>(n / 2)] = {-0.5, 0.0};  // K is singular for odd n

  // The structure behind the pairs: R has zero diagonal, so P·R·P = −R with
  // P = diag((−1)^m), and w ↦ P·w maps the eigenvector of μ to that of −μ; it is
  // also what makes V(:, n−1−j) = conj(V(:, j)) below. Split w_j = (x_j, y_j) into
  // its even and odd entries: the full set {w_j, P·w_j} (plus the null vector for
  // odd n, which lives on the even entries) is orthonormal iff the columns √2·x_j
  // (and the null vector) and √2·y_j are each orthonormal. The QR iteration makes
  // W orthogonal, not P·W_half ⊥ W_half: eigenvectors of the close pairs ±μ (gap
  // 2|μ|, down to O(1) while ‖K‖ ~ n²/3) carry forward errors ~ε·‖K‖/|μ|. So
  // impose the structure and restore orthonormality with Newton–Schulz steps
  // X ← X·(3·I − XᵀX)/2 (the nearest orthonormal basis; the correction is of the
  // size of those forward errors, so residuals stay at rounding level).
  const index_t half = n / 2, first = n - half;  // first: even entries, and columns computed
  std::vector<std::vector<double>> xs(static_cast<std::size_t>(first), std::vector<double>(static_cast<std::size_t>(first)));
  std::vector<std::vector<double>> ys(static_cast<std::size_t>(half), std::vector<double>(static_cast<std::size_t>(half)));
  for (index_t j = 0; j < first; ++j) {
    const double* w = &wt(order[static_cast<std::size_t>(j)], 0);
    const double f = j < half ? std::sqrt(2.0) : 1.0;
    for (index_t a = 0; a < first; ++a) xs[static_cast<std::size_t>(j)][static_cast<std::size_t>(a)] = f * w[2 * a];
    if (j < half)
      for (index_t a = 0; a < half; ++a) ys[static_cast<std::size_t>(j)][static_cast<std::size_t>(a)] = f * w[2 * a + 1];
  }
  auto orthonormalize = [](std::vector<std::vector<double>>& cols) {
    const std::size_t c = cols.size();
    if (c == 0) return;
    const std::size_t len = cols[0].size();
    std::vector<double> g(c * c);
    for (int step = 0; step < 4; ++step) {
      double dev = 0;
      for (std::size_t a = 0; a < c; ++a)
        for (std::size_t b = a; b < c; ++b) {
          double sum = 0;
          for (std::size_t m = 0; m < len; ++m) sum += cols[a][m] * cols[b][m];
          g[a * c + b] = g[b * c + a] = sum;
          dev = std::max(dev, std::abs(sum - (a == b ? 1.0 : 0.0)));
        }
      if (dev <= 1e-15) return;
      std::vector<std::vector<double>> next(c, std::vector<double>(len, 0.0));
      for (std::size_t a = 0; a < c; ++a)
        for (std::size_t b = 0; b < c; ++b) {
          const double coef = ((a == b ? 3.0 : 0.0) - g[b * c + a]) / 2;  // (3·I − G)(b, a) / 2
          for (std::size_t m = 0; m < len; ++m) next[a][m] += coef * cols[b][m];
        }
      cols = std::move(next);
    }
  };
  orthonormalize(xs);
  orthonormalize(ys);

  // V(:, j) = Q·D·w_j with D(m) = (−i)^m = (−1)^{m/2} for even m, −i·(−1)^{(m−1)/2} for odd m:
  // even m feed the real part, odd m the imaginary part.
  std::vector<double> dw(static_cast<std::size_t>(n));
  for (index_t j = 0; j < first; ++j) {
    const double f = j < half ? std::sqrt(0.5) : 1.0;
    for (index_t m = 0; m < n; ++m) {
      const double w = m % 2 == 0 ? xs[static_cast<std::size_t>(j)][static_cast<std::size_t>(m / 2)]
                                  : (j < half ? -ys[static_cast<std::size_t>(j)][static_cast<std::size_t>(m / 2)] : 0.0);
      dw[static_cast<std::size_t>(m)] = (m % 4 < 2 ? f : -f) * w;
    }
    for (index_t r = 0; r < n; ++r) {
      const double* qr = &q(r, 0);
      double re = 0, im = 0;
      index_t m = 0;
      for (; m + 1 < n; m += 2) {
        re += qr[m] * dw[static_cast<std::size_t>(m)];
        im += qr[m + 1] * dw[static_cast<std::size_t>(m + 1)];
      }
      if (m < n) re += qr[m] * dw[static_cast<std::size_t>(m)];
      out.v(r, j) = {re, im};
    }
  }
  for (index_t j = 0; j < half; ++j)
    for (index_t r = 0; r < n; ++r) out.v(r, n - 1 - j) = cuda::std::conj(out.v(r, j));
  return out;
}

}  // namespace mixlens::detail
