// The loops behind the host scan policies of scan.hpp, generic over the element
// type and its associative (not necessarily commutative) operation `op`, where
// op(x, y) applies x first. None of them sets the floating-point mode: the
// policies do (float_mode.hpp).
#pragma once

#include <algorithm>

#include "mixlens/config.hpp"

namespace mixlens::detail {

// e[t] = e[t−1] ∘ e[t], left to right: the reference recurrence.
//
// Each step waits for the one before (a multiply and an add of latency), so the
// core cannot run far enough ahead to keep many cache misses in flight: past the
// last-level cache a plain loop fell to about half its in-cache speed (float,
// 2^24 steps: 285 against 660 M steps/s on the development machine). One software
// prefetch per cache line, 4 KiB ahead, keeps it at its in-cache speed. The
// arithmetic is the plain loop's, operation for operation.
template <class E, class Op>
void sequential_inclusive_scan(E* e, index_t n, Op op) {
  if (n < 2) return;
  constexpr index_t per_line = std::max<index_t>(1, index_t(64) / index_t(sizeof(E)));
  constexpr index_t ahead = std::max<index_t>(1, index_t(4096) / index_t(sizeof(E)));
  E prev = e[0];
  index_t t = 1;
  for (; t + per_line <= n; t += per_line) {
#if defined(__GNUC__) || defined(__clang__)
    if (t + ahead < n) __builtin_prefetch(e + t + ahead, 1, 3);
#endif
    for (index_t k = t; k < t + per_line; ++k) e[k] = prev = op(prev, e[k]);
  }
  for (; t < n; ++t) e[t] = prev = op(prev, e[t]);
}

}  // namespace mixlens::detail
