// The loops behind the host scan policies of scan.hpp, generic over the element
// type and its associative (not necessarily commutative) operation `op`, where
// op(x, y) applies x first. None of them sets the floating-point mode: the
// policies do (float_mode.hpp), once per thread.
#pragma once

#include <algorithm>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/float_mode.hpp"
#include "mixlens/detail/parallel.hpp"

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

// Start of chunk c of `chunks` balanced chunks of [0, n) (sizes differ by ≤ 1).
[[nodiscard]] constexpr index_t chunk_begin(index_t n, index_t chunks, index_t c) {
  return (n / chunks) * c + std::min(c, n % chunks);
}

// The inclusive scan over time on `chunks` threads, one chunk each: every thread
// scans its chunk locally; one thread scans the chunk totals (the carries), a
// short sequential pass; then every chunk but the first composes its carry-in
// (the total of all chunks before it) into each of its elements. With one chunk
// this is sequential_inclusive_scan, bit for bit. Worksharing loops over chunk
// indices (never thread ids), so a smaller team than asked for (nested regions)
// still computes every chunk in order.
template <class E, class Op>
void time_parallel_inclusive_scan(E* e, index_t n, index_t chunks, Op op) {
  chunks = std::clamp<index_t>(chunks, 1, std::max<index_t>(1, n));
  if (!has_openmp || chunks == 1) {
    const flush_subnormals_guard guard;
    sequential_inclusive_scan(e, n, op);
    return;
  }
  std::vector<E> carry(static_cast<std::size_t>(chunks));
  first_exception failure;
  MIXLENS_OMP(parallel num_threads(static_cast<int>(chunks)))
  {
    const flush_subnormals_guard guard;  // MXCSR is per thread: each sets and restores its own
    MIXLENS_OMP(for schedule(static))
    for (index_t c = 0; c < chunks; ++c) {
      failure.run([&] {
        const index_t begin = chunk_begin(n, chunks, c), end = chunk_begin(n, chunks, c + 1);
        sequential_inclusive_scan(e + begin, end - begin, op);
        carry[static_cast<std::size_t>(c)] = e[end - 1];
      });
    }
    MIXLENS_OMP(single)
    failure.run([&] { sequential_inclusive_scan(carry.data(), chunks, op); });
    MIXLENS_OMP(for schedule(static))
    for (index_t c = 1; c < chunks; ++c) {
      failure.run([&] {
        const E before = carry[static_cast<std::size_t>(c - 1)];
        const index_t begin = chunk_begin(n, chunks, c), end = chunk_begin(n, chunks, c + 1);
        for (index_t t = begin; t < end; ++t) e[t] = op(before, e[t]);
      });
    }
  }
  failure.rethrow();
}

}  // namespace mixlens::detail
