// The verdict: which operator class the measurements support.
#pragma once

#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

struct classify_thresholds {
  double fixed = 1e-12;         // relative change of M between inputs at or below this: fixed
  index_t diagonal_rank = 1;    // ratio rank at or below this: diagonal data control
};

// fixed (class i) when M does not move with the input; diagonal (class ii) when
// it moves but M(x) ∘/ M(x₀) has rank one; non_diagonal (class iii) otherwise.
// `ratio_blocks` is the number of blocks the ratio test could examine: with
// none the test is inconclusive and a moving M counts as non-diagonal.
[[nodiscard]] constexpr data_control classify(double relative_change, index_t ratio_rank, index_t ratio_blocks,
                                              classify_thresholds th = {}) {
  if (relative_change <= th.fixed) return data_control::none;
  if (ratio_blocks > 0 && ratio_rank <= th.diagonal_rank) return data_control::diagonal;
  return data_control::non_diagonal;
}

}  // namespace mixlens::analysis
