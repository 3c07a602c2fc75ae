// Hyena (Poli et al. 2023, "Hyena Hierarchy"), computed as HazyResearch/safari's
// HyenaOperator does in eval mode (dropout = identity, one head, one block,
// inner_factor 1, identity activation, no outer mixing / post-order FFN):
//
//   z = in_proj(u)                                  ((order+1)·D × L)
//   uc = causal depthwise short conv of z           (kernel K, padding K−1, first L kept)
//   x^0 … x^{order−1}, v = channel blocks of uc     (D each)
//   for o = 0 … order−2:  v = v ⊙ x^{order−1−o};  v = k_o * v + b_o ⊙ v
//   y = out_proj(v ⊙ x^0)
//
// with long filters k_o from an implicit MLP over a positional embedding times an
// exponential decay window (HyenaFilter), and b_o the per-channel filter bias.
// Per channel, the map v ↦ v ⊙ x^0 after the loop is
//   M = D_{x^0} (T_{k_{N−2}} + b_{N−2}) D_{x^1} ⋯ (T_{k_0} + b_0) D_{x^{N−1}},   N = order,
// a product of data-controlled diagonal gates and fixed Toeplitz filters: the
// bound `hyena_operator`. The projections are outside it (they mix channels).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/fft.hpp"
#include "mixlens/ops/hyena/filter.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

// ---- bound operator --------------------------------------------------------

// v ↦ M·v for one input, per channel (see the header comment).
template <class T>
struct hyena_operator {
  using value_type = T;

  tensor_view<const T, 3> gates;    // order × channels × L: x^0 … x^{order−1}
  tensor_view<const T, 3> filters;  // (order−1) × channels × L: k_o, applied after gate x^{order−1−o}
  matrix_view<const T> bias;        // (order−1) × channels: b_o (the filter skip)

  hyena_operator() = default;
  hyena_operator(tensor_view<const T, 3> x, tensor_view<const T, 3> k, matrix_view<const T> b)
      : gates(x), filters(k), bias(b) {
    constexpr std::string_view where = "mixlens::hyena_operator";
    if (x.extent(0) < 2) detail::fail(where, "gates", "order >= 2 gates (extent 0)", x.extent(0));
    detail::check_positive(where, "gates (channels)", x.extent(1));
    detail::check_positive(where, "gates (length)", x.extent(2));
    detail::check_equal(where, "filters", "count (extent 0)", x.extent(0) - 1, k.extent(0));
    detail::check_equal(where, "filters", "channels (extent 1)", x.extent(1), k.extent(1));
    detail::check_equal(where, "filters", "length (extent 2)", x.extent(2), k.extent(2));
    detail::check_equal(where, "bias", "count (extent 0)", x.extent(0) - 1, b.extent(0));
    detail::check_equal(where, "bias", "channels (extent 1)", x.extent(1), b.extent(1));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return gates.extent(2); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return gates.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return gates.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t order() const { return gates.extent(0); }

  // Gate i of channel c at time t, and the pointer to filter o of channel c.
  [[nodiscard]] MIXLENS_HD T gate(index_t i, index_t c, index_t t) const { return gates(i, c, t); }
  [[nodiscard]] MIXLENS_HD const T* filter(index_t o, index_t c) const {
    return filters.data_handle() + (o * in_channels() + c) * length();
  }

  template <class F>
  void for_each_view(F&& f) {
    f(gates), f(filters), f(bias);
  }

  // The loop of safari's forward, with FFT convolutions of size ≥ 2L. Subnormal
  // intermediates are flushed to 0, as on every host path (detail/float_mode.hpp).
  void apply(matrix_view<const T> v, matrix_view<T> y) const { apply(v, y, sequence_parallel_scan{.threads = 1}); }

  // The channels (independent: gates and filters are per channel) split over
  // the policy's threads, a contiguous block each with its own FFT plans (as
  // causal_conv_operator's): the same results bit for bit for any count.
  void apply(matrix_view<const T> v, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    constexpr std::string_view where = "mixlens::hyena_operator::apply";
    detail::check_apply_args(where, *this, "x", v, y);
    const index_t C = in_channels(), L = length();
    const index_t used = detail::threads_for(policy.checked_threads(), C * L * (order() - 1) * 64, policy.grain, C);
    matrix<T> current(C, L), conv(C, L);
    detail::parallel_blocks(C, used, [&](index_t first, index_t last) {
      apply_channels(v, y, current.view(), conv.view(), first, last);
    });
  }

  // Order 2: entries in closed form, x^0_t (k_{t−s} + b·[t=s]) x^1_s, O(L²).
  // Higher orders: column s is M·e_s through the factors, each filter an FFT
  // convolution: O(order·L²·log L).
  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::hyena_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    const index_t L = length(), N = order(), c = in;
    for (index_t t = 0; t < L; ++t)
      for (index_t s = 0; s < L; ++s) m(t, s) = T(0);
    if (out != in) return;
    if (N == 2) {
      const T* k = filter(0, c);
      for (index_t t = 0; t < L; ++t)
        for (index_t s = 0; s <= t; ++s)
          m(t, s) = gates(0, c, t) * (k[t - s] + (t == s ? bias(0, c) : T(0))) * gates(1, c, s);
      return;
    }
    std::vector<std::unique_ptr<detail::fft_toeplitz<T>>> factors;  // plans are not movable
    for (index_t o = 0; o + 1 < N; ++o) factors.push_back(std::make_unique<detail::fft_toeplitz<T>>(filter(o, c), L));
    std::vector<T> col(static_cast<std::size_t>(L));
    for (index_t s = 0; s < L; ++s) {
      std::fill(col.begin(), col.end(), T(0));
      col[static_cast<std::size_t>(s)] = T(1);
      for (index_t o = 0; o + 1 < N; ++o) {
        for (index_t t = s; t < L; ++t) col[static_cast<std::size_t>(t)] *= gates(N - 1 - o, c, t);
        factors[static_cast<std::size_t>(o)]->apply(col.data(), col.data(), bias(o, c), s);
      }
      for (index_t t = s; t < L; ++t) m(t, s) = col[static_cast<std::size_t>(t)] * gates(0, c, t);
    }
  }

  // Row t = e_tᵀ·M through the transposed factors, in place in r: the last
  // filter in closed form, e_tᵀ·x^0_t·(T_k + b) = x^0_t·(k[t − s] + b·[s = t]),
  // then per remaining factor r ← (r·(T_k + b)) ⊙ x^{N−1−o}. T_k is lower
  // triangular Toeplitz, so new[s] = Σ_{u ≥ s} r[u]·k[u − s] + b·r[s] needs only
  // old entries u ≥ s: ascending s overwrites nothing still needed. O(t) for
  // order 2, O(order·t²) beyond; no memory beyond r (host and device share it).
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::hyena_operator::row", *this, out, in, t, r));
    const index_t L = length(), N = order(), c = in;
    for (index_t s = 0; s < L; ++s) r[static_cast<std::size_t>(s)] = T(0);
    if (out != in) return;
    const T head = gates(0, c, t);
    const T* k = filter(N - 2, c);
    for (index_t s = 0; s <= t; ++s)
      r[static_cast<std::size_t>(s)] = head * (k[t - s] + (s == t ? bias(N - 2, c) : T(0))) * gates(1, c, s);
    for (index_t o = N - 3; o >= 0; --o) {
      const T* ko = filter(o, c);
      const T b = bias(o, c);
      for (index_t s = 0; s <= t; ++s) {
        T acc = b * r[static_cast<std::size_t>(s)];
        for (index_t u = s; u <= t; ++u) acc += r[static_cast<std::size_t>(u)] * ko[u - s];
        r[static_cast<std::size_t>(s)] = acc * gates(N - 1 - o, c, s);
      }
    }
  }
 private:
  // Channels [first, last) of apply, through the same rows of the scratch
  // matrices `current` and `conv` (C × L).
  void apply_channels(matrix_view<const T> v, matrix_view<T> y, matrix_view<T> current, matrix_view<T> conv,
                      index_t first, index_t last) const {
    const index_t C = in_channels(), L = length(), N = order();
    for (index_t c = first; c < last; ++c)
      for (index_t t = 0; t < L; ++t) current(c, t) = v(c, t);
    const matrix_view<const T> cur(current.data_handle(), C, L);
    for (index_t o = 0; o + 1 < N; ++o) {
      for (index_t c = first; c < last; ++c)
        for (index_t t = 0; t < L; ++t) current(c, t) *= gates(N - 1 - o, c, t);
      detail::fft_causal_convolution(matrix_view<const T>(filter(o, 0), C, L), cur, conv, first, last);
      for (index_t c = first; c < last; ++c)
        for (index_t t = 0; t < L; ++t) current(c, t) = conv(c, t) + bias(o, c) * current(c, t);
    }
    for (index_t c = first; c < last; ++c)
      for (index_t t = 0; t < L; ++t) y(c, t) = current(c, t) * gates(0, c, t);
  }
};

template <class T>
struct operator_traits<hyena_operator<T>> : operator_class<data_control::diagonal, false, false> {
  static constexpr std::string_view name = "Hyena";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<hyena_operator<T>> = true;  // channels over threads
}  // namespace detail

}  // namespace mixlens
