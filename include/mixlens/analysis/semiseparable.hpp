// Semiseparable rank: the largest numerical rank of the strictly lower
// off-diagonal blocks M[r+1 : L, 0 : r+1]. A selective SSM with state size N
// (S6 per channel, SSD per head) has semiseparable rank ≤ N: the block factors
// through the N-dimensional state at time r. Linear attention and retention
// give ≤ the key width; softmax attention has no such bound.
//
// For long sequences `max_block` limits each examined block to its corner next
// to the diagonal (rows r+1 … r+b, columns r+1−b … r): a sub-block's rank is at
// most the block's, so a bound ≤ N is still tested, while a full-rank operator
// reports b. That keeps the SVDs at b × b instead of (L/2) × (L/2).
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
  index_t max_block = 0;    // side limit b of an examined block; 0: the whole block
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
  if (opt.max_block < 0) detail::fail(where, "max_block", "a size >= 0", opt.max_block);
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
    // Rows r+1 … L−1, columns 0 … r (or their corner at the diagonal).
    const index_t rows = opt.max_block > 0 ? std::min(L - r - 1, opt.max_block) : L - r - 1;
    const index_t cols = opt.max_block > 0 ? std::min(r + 1, opt.max_block) : r + 1;
    matrix<double> copy(rows, cols);
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) copy(i, j) = double(m(r + 1 + i, r + 1 - cols + j));
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
