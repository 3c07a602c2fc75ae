// HiPPO-LegS and its normal-plus-low-rank (NPLR) form, for S4's initialization.
//
// LegS (Gu et al. 2020), in the normalization S4 uses:
//   A_nk = −√((2n+1)(2k+1))  (n > k),   −(n+1)  (n = k),   0  (n < k);   b_n = √(2n+1).
// With p_n = √(n + 1/2), A + p pᵀ = −I/2 + S where S is real skew-symmetric
// (S_nk = −½√((2n+1)(2k+1))·sign(n − k)). S = V diag(iω) V* with V unitary, so
//   A = V (Λ − P P*) V*,   Λ = −1/2 + iω,   P = V* p,   B = V* b.
// The eigenvalues of a real matrix come in conjugate pairs with conjugate
// eigenvectors; S4 keeps the half with ω < 0 (sorted ascending) and implies the rest.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "mixlens/detail/s4_common.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// The LegS transition matrix (N × N) and input vector, as above.
inline matrix<double> legs_matrix(index_t N) {
  matrix<double> a(N, N);
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k <= n; ++k)
      a(n, k) = n == k ? -double(n + 1) : -std::sqrt(double(2 * n + 1) * double(2 * k + 1));
  return a;
}

// Eigen-decomposition of a Hermitian matrix by cyclic Jacobi rotations:
// h = V diag(w) V*, eigenvalues ascending. Jacobi is slow
// (O(N³) per sweep) but simple and accurate to a few ulps, and N is small here.
struct hermitian_eigen_result {
  std::vector<double> values;
  matrix<s4_complex> vectors;  // columns
};

inline hermitian_eigen_result hermitian_eigen(const matrix<s4_complex>& h_in) {
  const index_t N = h_in.extent(0);
  const auto n2 = static_cast<std::size_t>(N * N);
  // Split real/imaginary storage and row-only sweeps (h stays Hermitian, so its
  // columns are the conjugated rows; V is kept transposed): plain, contiguous real
  // arithmetic.
  std::vector<double> hr(n2), hi(n2), vr(n2, 0.0), vi(n2, 0.0);
  double total = 0;
  for (std::size_t i = 0; i < n2; ++i) {
    hr[i] = h_in.data()[i].real();
    hi[i] = h_in.data()[i].imag();
    total += hr[i] * hr[i] + hi[i] * hi[i];
  }
  auto at = [N](index_t i, index_t j) { return static_cast<std::size_t>(i * N + j); };
  for (index_t i = 0; i < N; ++i) vr[at(i, i)] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (index_t p = 0; p < N; ++p)
      for (index_t q = p + 1; q < N; ++q) off += hr[at(p, q)] * hr[at(p, q)] + hi[at(p, q)] * hi[at(p, q)];
    if (off <= 1e-32 * total || off == 0.0) break;
    for (index_t p = 0; p < N; ++p)
      for (index_t q = p + 1; q < N; ++q) {
        const double mag = std::hypot(hr[at(p, q)], hi[at(p, q)]);
        if (mag == 0.0) continue;
        // J = diag(1, e) · [[c, s], [−s, c]] in the (p, q) plane, e = e^{−iφ} for
        // h_pq = |h_pq| e^{iφ}: the phase makes the pivot real, the rotation zeroes it.
        // h ← J* h J, V ← V J.
        const double er = hr[at(p, q)] / mag, ei = -hi[at(p, q)] / mag;
        const double a = hr[at(p, p)], d = hr[at(q, q)];
        const double tau = (d - a) / (2.0 * mag);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(1.0 + tau * tau));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = t * c;
        for (index_t k = 0; k < N; ++k) {  // rows p, q of J* h: [c, −s·ē; s, c·ē]
          const double pr = hr[at(p, k)], pi = hi[at(p, k)], qr = hr[at(q, k)], qi = hi[at(q, k)];
          const double qer = qr * er + qi * ei, qei = qi * er - qr * ei;  // ē·h_qk
          hr[at(p, k)] = c * pr - s * qer;
          hi[at(p, k)] = c * pi - s * qei;
          hr[at(q, k)] = s * pr + c * qer;
          hi[at(q, k)] = s * pi + c * qei;
        }
        for (index_t k = 0; k < N; ++k) {  // columns p, q: Hermitian symmetry
          hr[at(k, p)] = hr[at(p, k)];
          hi[at(k, p)] = -hi[at(p, k)];
          hr[at(k, q)] = hr[at(q, k)];
          hi[at(k, q)] = -hi[at(q, k)];
        }
        hr[at(p, p)] = c * c * a - 2.0 * c * s * mag + s * s * d;
        hr[at(q, q)] = s * s * a + 2.0 * c * s * mag + c * c * d;
        hr[at(p, q)] = hi[at(p, q)] = hr[at(q, p)] = hi[at(q, p)] = 0.0;
        hi[at(p, p)] = hi[at(q, q)] = 0.0;
        for (index_t k = 0; k < N; ++k) {  // V J, on the rows of Vᵀ: [c, −s·e; s, c·e]
          const double pr = vr[at(p, k)], pi = vi[at(p, k)], qr = vr[at(q, k)], qi = vi[at(q, k)];
          const double qer = qr * er - qi * ei, qei = qr * ei + qi * er;  // e·v_kq
          vr[at(p, k)] = c * pr - s * qer;
          vi[at(p, k)] = c * pi - s * qei;
          vr[at(q, k)] = s * pr + c * qer;
          vi[at(q, k)] = s * pi + c * qei;
        }
      }
  }
  std::vector<index_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) { return hr[at(x, x)] < hr[at(y, y)]; });
  hermitian_eigen_result r{std::vector<double>(static_cast<std::size_t>(N)), matrix<s4_complex>(N, N)};
  for (index_t j = 0; j < N; ++j) {
    const index_t src = order[static_cast<std::size_t>(j)];
    r.values[static_cast<std::size_t>(j)] = hr[at(src, src)];
    for (index_t i = 0; i < N; ++i) r.vectors(i, j) = s4_complex(vr[at(src, i)], vi[at(src, i)]);
  }
  return r;
}

// The NPLR form of LegS with N/2 stored states (N even).
struct legs_nplr_result {
  std::vector<s4_complex> lambda;  // N/2: −1/2 + iω, ω < 0 ascending
  std::vector<s4_complex> p;       // N/2: V* p (rank 1)
  std::vector<s4_complex> b;       // N/2: V* b
  matrix<s4_complex> v;            // N × N/2: the kept eigenvectors
};

inline legs_nplr_result legs_nplr(index_t N) {
  constexpr std::string_view where = "mixlens::detail::legs_nplr";
  check_positive(where, "state_size", N);
  if (N % 2 != 0) fail(where, "state_size", "an even N (conjugate pairs)", N);
  // −i·S is Hermitian; its eigenvalues are the ω of S = V diag(iω) V*.
  matrix<s4_complex> h(N, N);
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k < N; ++k)
      if (n != k) {
        const double s = (n > k ? -0.5 : 0.5) * std::sqrt(double(2 * n + 1) * double(2 * k + 1));
        h(n, k) = s4_complex(0.0, -s);
      }
  auto eig = hermitian_eigen(h);
  const index_t half = N / 2;
  legs_nplr_result r{std::vector<s4_complex>(static_cast<std::size_t>(half)),
                     std::vector<s4_complex>(static_cast<std::size_t>(half)),
                     std::vector<s4_complex>(static_cast<std::size_t>(half)), matrix<s4_complex>(N, half)};
  for (index_t j = 0; j < half; ++j) {
    r.lambda[static_cast<std::size_t>(j)] = s4_complex(-0.5, eig.values[static_cast<std::size_t>(j)]);
    s4_complex pj = 0.0, bj = 0.0;
    for (index_t i = 0; i < N; ++i) {
      const s4_complex vij = eig.vectors(i, j);
      r.v(i, j) = vij;
      pj += cuda::std::conj(vij) * std::sqrt(double(i) + 0.5);
      bj += cuda::std::conj(vij) * std::sqrt(double(2 * i + 1));
    }
    r.p[static_cast<std::size_t>(j)] = pj;
    r.b[static_cast<std::size_t>(j)] = bj;
  }
  return r;
}

}  // namespace mixlens::detail
