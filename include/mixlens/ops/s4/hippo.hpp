// HiPPO-LegS and its normal-plus-low-rank (NPLR) form, for S4's initialization.
//
// LegS (Gu et al. 2020), in the normalization S4 uses:
//   A_nk = −√((2n+1)(2k+1))  (n > k),   −(n+1)  (n = k),   0  (n < k);   b_n = √(2n+1).
// With p_n = √(n + 1/2), A + p pᵀ = −I/2 + S where S is real skew-symmetric
// (S_nk = −½√((2n+1)(2k+1))·sign(n − k)). S = V diag(iω) V* with V unitary, so
//   A = V (Λ − P P*) V*,   Λ = −1/2 + iω,   P = V* p,   B = V* b.
// The eigenvalues of a real matrix come in conjugate pairs with conjugate
// eigenvectors; S4 keeps the half with ω < 0 (sorted ascending) and implies the rest.
// The eigendecomposition is the shared one of detail/hippo.hpp.
#pragma once

#include <cmath>
#include <vector>

#include "mixlens/detail/hippo.hpp"
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
  auto eig = hippo_n_eigendecomposition(N);  // Λ = −1/2 + iω, ω ascending
  const index_t half = N / 2;
  legs_nplr_result r{std::vector<s4_complex>(static_cast<std::size_t>(half)),
                     std::vector<s4_complex>(static_cast<std::size_t>(half)),
                     std::vector<s4_complex>(static_cast<std::size_t>(half)), matrix<s4_complex>(N, half)};
  for (index_t j = 0; j < half; ++j) {
    r.lambda[static_cast<std::size_t>(j)] = eig.lambda[static_cast<std::size_t>(j)];
    s4_complex pj = 0.0, bj = 0.0;
    for (index_t i = 0; i < N; ++i) {
      const s4_complex vij = eig.v(i, j);
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
