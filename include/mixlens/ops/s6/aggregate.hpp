// The channel aggregate of an S6 operator's blocks on the host, straight from
// Δ, A, B and C, never holding more than one row tile of one channel:
//   acc (L × L, double) += Σ_d f(M_d),  M_d = diag(gate_d)·(α_d + diag(skip_d)),
// f the identity, |·| or max(·, 0), and minmax {min, max, NaN count} over every
// entry of the blocks, the zeros above the diagonal included — what
// materializing every block and reducing it gives, in O(L²) memory.
//
// A row tile I (rows i0 … i0 + T − 1) left of its diagonal is one rank-N product
// with every exponent ≤ 0 (as in the GPU kernel, gpu/detail/alpha_kernels.cuh):
//   α[i][j] = Σ_n (C_i[n]·e^{A_n(S_i − S_{i0})}) · (Δ_j B_j[n]·e^{A_n(S_{i0} − S_j)}),  j < i0,
// S the cumulative sum of Δ in double; the diagonal tile is summed directly.
// Channels are split over threads, each with its own accumulator.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mixlens/detail/math.hpp"
#include "mixlens/detail/parallel.hpp"
#include "mixlens/ops/s6/operator.hpp"

namespace mixlens {

namespace detail {

inline constexpr index_t s6_aggregate_tile = 64;

// reduce(e, value) for every entry e = i·L + j of channel d's block, row tile by
// row tile (rows[(i − i0)·L + j] holds the tile's α).
template <class T, class State, class Reduce>
void s6_aggregate_channel(const s6_operator<T, State>& op, index_t d, std::vector<double>& sums,
                          std::vector<State>& ahat, std::vector<State>& bhat, std::vector<T>& rows, Reduce&& reduce) {
  const index_t L = op.length(), N = op.state_size(), g = op.group_of(d), Tt = s6_aggregate_tile;
  sums.resize(static_cast<std::size_t>(L));
  double s = 0;
  for (index_t t = 0; t < L; ++t) sums[static_cast<std::size_t>(t)] = s += double(op.delta(d, t));
  const T skip = op.skip.empty() ? T(0) : op.skip[static_cast<std::size_t>(d)];
  const bool gated = !is_empty(op.gate);
  for (index_t i0 = 0; i0 < L; i0 += Tt) {
    const index_t i1 = std::min(L, i0 + Tt), rows_here = i1 - i0;
    const double s0 = sums[static_cast<std::size_t>(i0)];
    rows.assign(static_cast<std::size_t>(rows_here * L), T(0));
    // Left of the tile: â (rows × N) · b̂ (N × i0), the j loop contiguous.
    if (i0 > 0) {
      ahat.resize(static_cast<std::size_t>(rows_here * N));
      bhat.resize(static_cast<std::size_t>(N * i0));
      for (index_t i = i0; i < i1; ++i)
        for (index_t n = 0; n < N; ++n)
          ahat[static_cast<std::size_t>((i - i0) * N + n)] =
              op.c(g, n, i) * exp_scaled(op.a(d, n), static_cast<T>(sums[static_cast<std::size_t>(i)] - s0));
      for (index_t n = 0; n < N; ++n)
        for (index_t j = 0; j < i0; ++j)
          bhat[static_cast<std::size_t>(n * i0 + j)] =
              op.delta(d, j) * op.b(g, n, j) * exp_scaled(op.a(d, n), static_cast<T>(s0 - sums[static_cast<std::size_t>(j)]));
      for (index_t i = 0; i < rows_here; ++i) {
        T* row = rows.data() + i * L;
        if constexpr (std::is_same_v<State, T>) {
          for (index_t n = 0; n < N; ++n) {
            const T w = ahat[static_cast<std::size_t>(i * N + n)];
            const T* b = bhat.data() + n * i0;
            for (index_t j = 0; j < i0; ++j) row[j] += w * b[j];
          }
        } else {
          for (index_t j = 0; j < i0; ++j) {
            State acc(0);
            for (index_t n = 0; n < N; ++n)
              acc += ahat[static_cast<std::size_t>(i * N + n)] * bhat[static_cast<std::size_t>(n * i0 + j)];
            row[j] = output_part(acc);
          }
        }
      }
    }
    // The diagonal tile: column j's impulse decayed row by row (as alpha()).
    std::vector<State> h(static_cast<std::size_t>(N));
    for (index_t j = i0; j < i1; ++j) {
      for (index_t n = 0; n < N; ++n) h[static_cast<std::size_t>(n)] = op.delta(d, j) * op.b(g, n, j);
      for (index_t i = j; i < i1; ++i) {
        State acc(0);
        for (index_t n = 0; n < N; ++n) {
          auto& hn = h[static_cast<std::size_t>(n)];
          if (i > j) hn *= exp_scaled(op.a(d, n), op.delta(d, i));
          acc += op.c(g, n, i) * hn;
        }
        rows[static_cast<std::size_t>((i - i0) * L + j)] = output_part(acc);
      }
    }
    for (index_t i = i0; i < i1; ++i) {
      T* row = rows.data() + (i - i0) * L;
      row[i] += skip;
      const T gi = gated ? op.gate(d, i) : T(1);
      for (index_t j = 0; j < L; ++j) reduce(i * L + j, j <= i ? row[j] * gi : T(0));
    }
  }
}

}  // namespace detail

// The aggregate above; threads 0: every core (OpenMP), 1: the calling thread.
template <class T, class State>
void s6_aggregate_channels(const s6_operator<T, State>& op, channel_reduction r, double* acc, T* minmax,
                           int threads = 0) {
  const index_t D = op.in_channels(), L = op.length(), LL = L * L;
  const index_t parts = detail::threads_for(detail::resolve_threads("mixlens::s6_aggregate_channels", threads),
                                            D * LL, 1 << 16, D);
  struct part {
    std::vector<double> acc;
    T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity(), nans = T(0);
  };
  std::vector<part> out(static_cast<std::size_t>(parts));
  detail::parallel_for(parts, parts, [&](index_t k) {
    part& p = out[static_cast<std::size_t>(k)];
    p.acc.assign(static_cast<std::size_t>(LL), 0.0);
    std::vector<double> sums;
    std::vector<State> ahat, bhat;
    std::vector<T> rows;
    const auto reduce = [&](index_t e, T v) {
      if (std::isnan(v)) p.nans += T(1);
      else p.lo = std::min(p.lo, v), p.hi = std::max(p.hi, v);
      const double x = v;
      p.acc[static_cast<std::size_t>(e)] +=
          r == channel_reduction::mean ? x : r == channel_reduction::abs_mean ? std::abs(x) : (x > 0 ? x : 0.0 * x);
    };
    for (index_t d = D * k / parts; d < D * (k + 1) / parts; ++d)
      detail::s6_aggregate_channel(op, d, sums, ahat, bhat, rows, reduce);
  });
  for (const part& p : out) {
    for (index_t e = 0; e < LL; ++e) acc[e] += p.acc[static_cast<std::size_t>(e)];
    if (minmax) {
      minmax[0] = std::min(minmax[0], p.lo);
      minmax[1] = std::max(minmax[1], p.hi);
      minmax[2] += p.nans;
    }
  }
}

}  // namespace mixlens
