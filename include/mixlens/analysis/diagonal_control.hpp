// Diagonal data control: does the input reach the mixing matrix only through
// diagonal factors, M(x) = diag(g(x)) · M̄ · diag(h(x)) with M̄ fixed?
//
// Then the elementwise ratio R = M(x) / M(x₀) = g(x)/g(x₀) · (h(x)/h(x₀))ᵀ has
// rank one wherever it is defined, whatever M̄ is. Data-controlled mixers
// (attention, S6, SSD) give ratios of high rank.
//
// The ratio is only defined on the support (causal, both entries resolved), so
// the rank is taken over b × b blocks lying entirely inside the lower triangle,
// rows [i0, i0+b), columns [j0, j0+b) with j0 + b − 1 ≤ i0, tiling it from the
// diagonal outwards; blocks with an unresolved entry are skipped. The result is
// the largest numerical rank over the blocks examined.
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "mixlens/analysis/data_dependence.hpp"
#include "mixlens/detail/svd.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

struct ratio_rank_options {
  index_t block = 16;          // side b of the blocks (clipped to L)
  double rank_tol = 1e-8;      // σ_k > rank_tol·σ_1 counts towards the rank
  double support_tol = 1e-10;  // |entry| ≤ support_tol·max|M| is outside the support
};

struct ratio_rank_result {
  index_t rank = 0;           // largest numerical rank of R over the blocks (0: no block)
  double second_singular = 0; // largest σ₂/σ₁ over the blocks: ≈ 1e-16 for rank one
  index_t blocks = 0;         // blocks examined (inside the support)
};

// The numerical rank of M(x) ∘/ M(x₀) on the support; 1 for diagonal data
// control (and for fixed operators, where R ≡ 1).
template <class T, class U>
[[nodiscard]] ratio_rank_result ratio_rank(matrix_view<T> m_x, matrix_view<U> m_x0, ratio_rank_options opt = {}) {
  constexpr std::string_view where = "mixlens::analysis::ratio_rank";
  detail::check_square(where, "m_x0", m_x0.extent(0), m_x0.extent(0), m_x0.extent(1));
  detail::check_same_shape(where, "m_x", m_x0, m_x);
  detail::check_positive(where, "block", opt.block);
  if (!(opt.rank_tol >= 0)) detail::fail(where, "rank_tol", "a tolerance >= 0", opt.rank_tol);
  if (!(opt.support_tol >= 0)) detail::fail(where, "support_tol", "a tolerance >= 0", opt.support_tol);
  const index_t L = m_x0.extent(0), b = std::min(opt.block, L);
  double top_x = 0, top_0 = 0;
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) {
      top_x = std::max(top_x, std::abs(double(m_x(i, j))));
      top_0 = std::max(top_0, std::abs(double(m_x0(i, j))));
    }
  ratio_rank_result out;
  matrix<double> r(b, b);
  for (index_t i0 = b - 1; i0 + b <= L; i0 += b)
    for (index_t j0 = i0 - b + 1; j0 >= 0; j0 -= b) {
      bool resolved = true;
      for (index_t i = 0; i < b && resolved; ++i)
        for (index_t j = 0; j < b; ++j) {
          const double num = m_x(i0 + i, j0 + j), den = m_x0(i0 + i, j0 + j);
          if (!(std::abs(num) > opt.support_tol * top_x && std::abs(den) > opt.support_tol * top_0)) {
            resolved = false;
            break;
          }
          r(i, j) = num / den;
        }
      if (!resolved) continue;
      const auto s = detail::jacobi_svd(r.view()).s;
      ++out.blocks;
      out.rank = std::max(out.rank, detail::rank_of(s, opt.rank_tol));
      if (s.size() > 1 && s[0] > 0) out.second_singular = std::max(out.second_singular, s[1] / s[0]);
    }
  return out;
}

}  // namespace mixlens::analysis
