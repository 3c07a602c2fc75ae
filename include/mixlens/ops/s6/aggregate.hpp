// The channel aggregate of an S6 operator's blocks on the host, straight from
// Δ, A, B and C, never holding more than one row tile of one channel:
//   acc (L × L, double) += Σ_d f(M_d),  M_d = diag(gate_d)·(α_d + diag(skip_d)),
// f the identity, |·| or max(·, 0), and minmax {min, max, NaN count} over every
// entry of the blocks, the zeros above the diagonal included — what
// materializing every block and reducing it gives, in O(L²) memory.
//
// A tile left of the diagonal is a rank-N product with every exponent ≤ 0 (as
// in the GPU kernel, gpu/detail/alpha_kernels.cuh), S the cumulative sum of Δ
// in double (see s6_aggregate_channel); the diagonal tile is summed directly.
// Channels are split over threads, each with its own accumulator.
// s6_range_channels is the same pass for the range alone (raw attention's
// min / max without the tensor): no accumulator, one row tile per thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include "mixlens/detail/math.hpp"
#include "mixlens/detail/parallel.hpp"
#include "mixlens/ops/s6/operator.hpp"

namespace mixlens {

namespace detail {

inline constexpr index_t s6_aggregate_tile = 64;

// reduce(e0, row, count, zeros) for every row i of channel d's block, row tile
// by row tile: row = its entries j ≤ i (e0 = i·L), zeros whether zeros follow
// (rows[(i − i0)·L + j] holds the tile's values). Left of the diagonal tile,
// column tile J (last column e) of row tile I (first row r) is
//   Σ_n (C_i[n] e^{A_n(S_i − S_r)}) · e^{A_n(S_r − S_e)} · (Δ_j B_j[n] e^{A_n(S_e − S_j)}),
// every exponent ≤ 0, the last factor formed once per channel (bhat) and the
// middle one once per tile pair (mid): 2·N exps per position and N per pair,
// and the products summed in registers, 16 columns at a time. The diagonal
// tile decays every open column by e^{A_n Δ_i} row by row (as alpha() does),
// vectorized over the columns; h holds those columns ([n][j − i0]).
template <class T, class State, class Reduce>
void s6_aggregate_channel(const s6_operator<T, State>& op, index_t d, std::vector<double>& sums,
                          std::vector<State>& ahat, std::vector<State>& bhat, std::vector<State>& mid,
                          std::vector<State>& h, std::vector<T>& rows, Reduce&& reduce) {
  const index_t L = op.length(), N = op.state_size(), g = op.group_of(d), Tt = s6_aggregate_tile;
  constexpr index_t W = 16;  // columns summed in registers at once; divides Tt
  sums.resize(static_cast<std::size_t>(L));
  double s = 0;
  for (index_t t = 0; t < L; ++t) sums[static_cast<std::size_t>(t)] = s += double(op.delta(d, t));
  const auto gap = [&](index_t from, index_t to) {  // S_to − S_from as T
    return static_cast<T>(sums[static_cast<std::size_t>(to)] - sums[static_cast<std::size_t>(from)]);
  };
  const T skip = op.skip.empty() ? T(0) : op.skip[static_cast<std::size_t>(d)];
  const bool gated = !is_empty(op.gate);
  bhat.resize(static_cast<std::size_t>(N * L));
  for (index_t n = 0; n < N; ++n)
    for (index_t j = 0; j < L; ++j) {
      const index_t e = std::min(L, (j / Tt + 1) * Tt) - 1;
      bhat[static_cast<std::size_t>(n * L + j)] = op.delta(d, j) * op.b(g, n, j) * exp_scaled(op.a(d, n), gap(j, e));
    }
  ahat.resize(static_cast<std::size_t>(Tt * N));
  mid.resize(static_cast<std::size_t>(N));
  h.resize(static_cast<std::size_t>(N * Tt + Tt));
  State* open = h.data();                   // [n][j − i0]: the diagonal tile's columns
  State* diag = h.data() + N * Tt;          // one row of the diagonal tile
  for (index_t i0 = 0; i0 < L; i0 += Tt) {
    const index_t i1 = std::min(L, i0 + Tt), rows_here = i1 - i0;
    rows.assign(static_cast<std::size_t>(rows_here * L), T(0));
    for (index_t i = i0; i < i1 && i0 > 0; ++i)
      for (index_t n = 0; n < N; ++n)
        ahat[static_cast<std::size_t>((i - i0) * N + n)] = op.c(g, n, i) * exp_scaled(op.a(d, n), gap(i0, i));
    for (index_t j0 = 0; j0 < i0; j0 += Tt) {  // full column tiles left of the diagonal
      for (index_t n = 0; n < N; ++n) mid[static_cast<std::size_t>(n)] = exp_scaled(op.a(d, n), gap(j0 + Tt - 1, i0));
      for (index_t i = 0; i < rows_here; ++i) {
        const State* a = ahat.data() + i * N;
        for (index_t q0 = j0; q0 < j0 + Tt; q0 += W) {
          State acc[W] = {};
          for (index_t n = 0; n < N; ++n) {
            const State w = a[n] * mid[static_cast<std::size_t>(n)];
            const State* b = bhat.data() + n * L + q0;
            for (index_t q = 0; q < W; ++q) acc[q] += w * b[q];
          }
          T* row = rows.data() + i * L + q0;
          for (index_t q = 0; q < W; ++q) row[q] = output_part(acc[q]);
        }
      }
    }
    for (index_t i = i0; i < i1; ++i) {
      const index_t k = i - i0;
      std::fill(diag, diag + k + 1, State(0));
      for (index_t n = 0; n < N; ++n) {
        State* col = open + n * Tt;
        const State decay = exp_scaled(op.a(d, n), op.delta(d, i)), c = op.c(g, n, i);
        col[k] = op.delta(d, i) * op.b(g, n, i);  // column i opens undecayed
        for (index_t j = 0; j < k; ++j) {
          col[j] *= decay;
          diag[j] += c * col[j];
        }
        diag[k] += c * col[k];
      }
      T* row = rows.data() + k * L;
      for (index_t j = 0; j <= k; ++j) row[i0 + j] = output_part(diag[j]);
      row[i] += skip;
      if (gated) {
        const T gi = op.gate(d, i);
        for (index_t j = 0; j <= i; ++j) row[j] *= gi;
      }
      reduce(i * L, row, i + 1, i + 1 < L);  // the zeros right of the diagonal
    }
  }
}

// acc[e0 + j] += f(row[j]) for j < count, the range and NaN count of the
// values (and of 0 when `zeros`): f per reduction R (0 identity, 1 |·|, 2 max(·, 0);
// −1: the range alone, acc unused).
template <int R, class T>
struct block_reduction {
  double* acc;
  T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity(), nans = T(0);

  void operator()(index_t e0, const T* row, index_t count, bool zeros) {
    double* a = R >= 0 ? acc + e0 : nullptr;
    T l = lo, h = hi, nan_count = 0;
    for (index_t j = 0; j < count; ++j) {
      const T v = row[j];
      nan_count += v != v ? T(1) : T(0);
      l = v < l ? v : l;  // a NaN compares false: left out of the range
      h = v > h ? v : h;
      const double x = v;
      if constexpr (R == 0) a[j] += x;
      else if constexpr (R == 1) a[j] += std::abs(x);
      else if constexpr (R == 2) a[j] += x > 0 ? x : 0.0 * x;  // 0·NaN keeps the NaN
    }
    if (zeros) l = std::min(l, T(0)), h = std::max(h, T(0));
    lo = l, hi = h, nans += nan_count;
  }
};

// Channels split over threads, each with its own accumulator (none for R = −1),
// summed into acc and their ranges merged into minmax (when not null) at the end.
template <int R, class T, class State>
void s6_reduce_channels(const s6_operator<T, State>& op, double* acc, T* minmax, int threads, std::string_view where) {
  const index_t D = op.in_channels(), L = op.length(), LL = L * L;
  const index_t parts = threads_for(resolve_threads(where, threads), D * LL, 1 << 16, D);
  std::vector<std::vector<double>> accs(static_cast<std::size_t>(parts));
  std::vector<T> ranges(static_cast<std::size_t>(3 * parts));
  parallel_for(parts, parts, [&](index_t k) {
    auto& part_acc = accs[static_cast<std::size_t>(k)];
    if constexpr (R >= 0) part_acc.assign(static_cast<std::size_t>(LL), 0.0);
    block_reduction<R, T> reduce{part_acc.data()};
    std::vector<double> sums;
    std::vector<State> ahat, bhat, mid, h;
    std::vector<T> rows;
    for (index_t d = D * k / parts; d < D * (k + 1) / parts; ++d)
      s6_aggregate_channel(op, d, sums, ahat, bhat, mid, h, rows, reduce);
    T* range = ranges.data() + 3 * k;
    range[0] = reduce.lo, range[1] = reduce.hi, range[2] = reduce.nans;
  });
  for (index_t k = 0; k < parts; ++k) {
    if constexpr (R >= 0) {
      const auto& part_acc = accs[static_cast<std::size_t>(k)];
      for (index_t e = 0; e < LL; ++e) acc[e] += part_acc[static_cast<std::size_t>(e)];
    }
    if (minmax) {
      const T* range = ranges.data() + 3 * k;
      minmax[0] = std::min(minmax[0], range[0]);
      minmax[1] = std::max(minmax[1], range[1]);
      minmax[2] += range[2];
    }
  }
}

}  // namespace detail

// The aggregate above; threads 0: every core (OpenMP), 1: the calling thread.
template <class T, class State>
void s6_aggregate_channels(const s6_operator<T, State>& op, channel_reduction r, double* acc, T* minmax,
                           int threads = 0) {
  constexpr std::string_view where = "mixlens::s6_aggregate_channels";
  switch (r) {
    case channel_reduction::mean: detail::s6_reduce_channels<0>(op, acc, minmax, threads, where); break;
    case channel_reduction::abs_mean: detail::s6_reduce_channels<1>(op, acc, minmax, threads, where); break;
    case channel_reduction::relu_mean: detail::s6_reduce_channels<2>(op, acc, minmax, threads, where); break;
  }
}

// minmax (3 values, reset by the caller) merges {min, max, NaN count} of every
// entry of the operator's blocks, the zeros above the diagonal included: the
// range raw attention normalizes by, in the time of the aggregate (O(D·L²·N))
// but with no L × L accumulator — one row tile of one channel per thread.
template <class T, class State>
void s6_range_channels(const s6_operator<T, State>& op, T* minmax, int threads = 0) {
  detail::s6_reduce_channels<-1>(op, nullptr, minmax, threads, "mixlens::s6_range_channels");
}

}  // namespace mixlens
