// Semiseparable rank: the largest numerical rank of the strictly lower
// off-diagonal blocks M[r+1 : L, 0 : r+1]. A selective SSM with state size N
// (S6 per channel, SSD per head) has semiseparable rank ≤ N: the block factors
// through the N-dimensional state at time r. Linear attention and retention
// give ≤ the key width; softmax attention has no such bound.
#pragma once

#include <algorithm>
#include <string_view>
#include <vector>

#include "mixlens/detail/svd.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

struct semiseparable_options {
  double rank_tol = 1e-10;  // σ_k > rank_tol·σ_1 (of that block) counts
  index_t splits = 7;       // split points r evenly spaced; 0 examines every r
};

struct semiseparable_result {
  index_t rank = 0;   // the largest block rank
  index_t split = 0;  // a split r where it is attained
  std::vector<index_t> splits, ranks;  // every split examined and its rank
};

template <class T>
[[nodiscard]] semiseparable_result semiseparable_rank(matrix_view<T> m, semiseparable_options opt = {}) {
  constexpr std::string_view where = "mixlens::analysis::semiseparable_rank";
  detail::check_square(where, "m", m.extent(0), m.extent(0), m.extent(1));
  if (opt.splits < 0) detail::fail(where, "splits", "a count >= 0", opt.splits);
  if (!(opt.rank_tol >= 0)) detail::fail(where, "rank_tol", "a tolerance >= 0", opt.rank_tol);
  const index_t L = m.extent(0);
  semiseparable_result out;
  if (L < 2) return out;
  if (opt.splits == 0 || opt.splits >= L - 1) {
    for (index_t r = 0; r + 1 < L; ++r) out.splits.push_back(r);
  } else {
    for (index_t k = 1; k <= opt.splits; ++k) {
      const index_t r = std::clamp<index_t>(k * L / (opt.splits + 1) - 1, 0, L - 2);
      if (out.splits.empty() || out.splits.back() != r) out.splits.push_back(r);
    }
  }
  for (index_t r : out.splits) {
    // Rows r+1 … L−1, columns 0 … r.
    matrix<double> copy(L - r - 1, r + 1);
    for (index_t i = 0; i < copy.extent(0); ++i)
      for (index_t j = 0; j < copy.extent(1); ++j) copy(i, j) = double(m(r + 1 + i, j));
    const index_t rank = detail::rank_of(detail::jacobi_svd(copy.view()).s, opt.rank_tol);
    out.ranks.push_back(rank);
    if (rank > out.rank) {
      out.rank = rank;
      out.split = r;
    }
  }
  return out;
}

}  // namespace mixlens::analysis
