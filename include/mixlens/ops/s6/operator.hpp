// S6, the selective state-space model of Mamba, as a data-controlled linear
// operator, and its hidden attention α (Ali, Zimerman, Wolf 2024, eq. 12).
//
// Per channel d, with control signals Δ (D×L, > 0), B and C (G×N×L, channel d
// reads group d / (D/G)) and A (D×N, Re < 0):
//   h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t u_t,   y_t = ⟨C_t, h_t⟩ (+ D u_t) (· gate_t)
//   α[d][i][j] = Σ_n C_i[n] · exp(A_n Σ_{k=j+1..i} Δ_k) · Δ_j B_j[n]     (j ≤ i)
// For complex A (with complex B, C) the conjugate partner of each state is
// implied and the output is 2·Re⟨C_t, h_t⟩, as in Mamba's reference scan.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/detail/float_mode.hpp"
#include "mixlens/detail/linear.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

template <class T, class State = T>
struct s6_operator {
  static_assert(std::is_floating_point_v<T>, "s6_operator: T must be float or double");
  static_assert(std::is_same_v<State, T> || std::is_same_v<State, complex<T>>,
                "s6_operator: State must be T or mixlens::complex<T>");
  using value_type = T;
  using state_type = State;

  matrix_view<const T> delta;      // (D, L), after softplus
  matrix_view<const State> a;      // (D, N)
  tensor_view<const State, 3> b;   // (G, N, L)
  tensor_view<const State, 3> c;   // (G, N, L)
  vector_view<const T> skip;       // (D) or empty: the D term, y += D·u
  matrix_view<const T> gate;       // (D, L) or empty: y ⊙= gate (Mamba: SiLU(z))

  s6_operator() = default;
  s6_operator(matrix_view<const T> delta_, matrix_view<const State> a_, tensor_view<const State, 3> b_,
              tensor_view<const State, 3> c_, vector_view<const T> skip_ = {}, matrix_view<const T> gate_ = {})
      : delta(delta_), a(a_), b(b_), c(c_), skip(skip_), gate(gate_) {
    check_shapes();
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return delta.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return delta.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return delta.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t state_size() const { return a.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t groups() const { return b.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t group_of(index_t d) const { return d / (in_channels() / groups()); }

  template <class F>
  void for_each_view(F&& f) {
    f(delta), f(a), f(b), f(c), f(skip), f(gate);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  // Δ = 0 (softplus underflows for dt below about −104 in float) is a step
  // without update and Re(A) = 0 (A_log very negative) a state without decay:
  // both are valid. Non-finite values are refused as such; Δ = +inf would give
  // inf · 0 = NaN in one evaluation order and 0 in another.
  void validate() const {
    constexpr std::string_view where = "mixlens::s6_operator";
    const index_t D = in_channels(), L = length(), N = state_size();
    const auto at = [](index_t i, index_t j) {  // (piecewise: GCC 12 warns falsely on a + chain)
      std::string s = "[";
      s += std::to_string(i);
      s += "][";
      s += std::to_string(j);
      return s += "]";
    };
    for (index_t d = 0; d < D; ++d) {
      for (index_t n = 0; n < N; ++n) {
        if (!detail::is_finite(a(d, n))) detail::fail(where, "a", "finite values at " + at(d, n), a(d, n));
        if (!(detail::real_part(a(d, n)) <= T(0)))
          detail::fail(where, "a", "Re(A) <= 0 (no growth) at " + at(d, n), detail::real_part(a(d, n)));
      }
      for (index_t t = 0; t < L; ++t) {
        if (!std::isfinite(delta(d, t))) detail::fail(where, "delta", "finite values at " + at(d, t), delta(d, t));
        if (!(delta(d, t) >= T(0))) detail::fail(where, "delta", "delta >= 0 at " + at(d, t), delta(d, t));
      }
    }
  }

  // y = M·u by the sequential recurrence (the fastest host path), or by any scan
  // policy of scan.hpp run over each (channel, state) sequence. With
  // sequence_parallel_scan the channels (independent sequences) are split over
  // its threads, each running the recurrence: the same results bit for bit.
  // Subnormal states are flushed to 0 on every path.
  template <scan_policy Policy = sequential_scan>
  void apply(matrix_view<const T> u, matrix_view<T> y, Policy policy = {}) const {
    constexpr std::string_view where = "mixlens::s6_operator::apply";
    detail::check_apply_args(where, *this, "u", u, y);
    const index_t D = in_channels(), L = length(), N = state_size();
    if constexpr (std::is_same_v<Policy, sequence_parallel_scan>) {
      const index_t used = detail::threads_for(policy.checked_threads(), D * L * N, policy.grain, D);
      detail::parallel_for(D, used, [&](index_t d) {
        std::vector<State> h(static_cast<std::size_t>(N));
        recurrence(d, u, y, h);
      });
      return;
    }
    // Subnormal states flushed, as in every scan policy (detail/float_mode.hpp).
    const detail::flush_subnormals_guard flush;
    std::vector<State> h(static_cast<std::size_t>(N));
    std::vector<affine<State>> e;
    for (index_t d = 0; d < D; ++d) {
      if constexpr (std::is_same_v<Policy, sequential_scan>) {
        recurrence(d, u, y, h);
      } else {
        const index_t g = group_of(d);
        for (index_t t = 0; t < L; ++t) y(d, t) = T(0);
        e.resize(static_cast<std::size_t>(L));
        for (index_t n = 0; n < N; ++n) {
          for (index_t t = 0; t < L; ++t)
            e[static_cast<std::size_t>(t)] = {detail::exp_scaled(a(d, n), delta(d, t)),
                                              State(delta(d, t) * b(g, n, t) * u(d, t))};
          policy(vector_view<affine<State>>(e));
          for (index_t t = 0; t < L; ++t)
            y(d, t) += detail::output_part(c(g, n, t) * e[static_cast<std::size_t>(t)].b);
        }
        finish_row(d, u, y);
      }
    }
  }

  // The paper's hidden attention α[d] (L×L): no D term, no gate.
  void alpha(index_t d, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::s6_operator::alpha";
    detail::check_channel(where, "d", in_channels(), d);
    detail::check_square(where, "m", length(), m.extent(0), m.extent(1));
    const index_t L = length(), N = state_size(), g = group_of(d);
    // The running products decay into subnormals, which x86 multiplies many times
    // slower (detail/float_mode.hpp): they are flushed to 0 meanwhile.
    const detail::flush_subnormals_guard flush;
    // exp(Δ_i A_n) for every step: the column sweeps below reuse it L times.
    std::vector<State> decay(static_cast<std::size_t>(L * N)), h(static_cast<std::size_t>(N));
    for (index_t i = 0; i < L; ++i)
      for (index_t n = 0; n < N; ++n) decay[static_cast<std::size_t>(i * N + n)] = detail::exp_scaled(a(d, n), delta(d, i));
    for (index_t j = 0; j < L; ++j) {
      for (index_t i = 0; i < j; ++i) m(i, j) = T(0);
      // Column j: the state started by a unit impulse at j, decayed by running
      // products (never exp(S_i)·exp(−S_j), which overflows).
      for (index_t n = 0; n < N; ++n) h[static_cast<std::size_t>(n)] = delta(d, j) * b(g, n, j);
      for (index_t i = j; i < L; ++i) {
        State acc(0);
        for (index_t n = 0; n < N; ++n) {
          auto& hn = h[static_cast<std::size_t>(n)];
          if (i > j) hn *= decay[static_cast<std::size_t>(i * N + n)];
          acc += c(g, n, i) * hn;
        }
        m(i, j) = detail::output_part(acc);
      }
    }
  }

  // Row t of α[d] in O(L·N): per state a backward running product from the
  // diagonal, so rows of very long sequences stay finite (terms underflow to 0
  // gracefully). Needs no memory beyond r: host loops and kernels share it.
  MIXLENS_HD void alpha_row(index_t d, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_channel("mixlens::s6_operator::alpha_row", "d", in_channels(), d),
                       detail::check_row("mixlens::s6_operator::alpha_row", length(), t, static_cast<index_t>(r.size())));
    const index_t N = state_size(), g = group_of(d);
#ifndef __CUDA_ARCH__
    const detail::flush_subnormals_guard flush;  // as in alpha: subnormal running products
#endif
    for (index_t j = 0; j < length(); ++j) r[static_cast<std::size_t>(j)] = T(0);
    for (index_t n = 0; n < N; ++n) {
      const State an = a(d, n);
      State p = c(g, n, t);  // C_t[n]·exp(A_n Σ_{k=j+1..t} Δ_k)
      for (index_t j = t; j >= 0; --j) {
        r[static_cast<std::size_t>(j)] += detail::output_part(p * b(g, n, j));
        p *= detail::exp_scaled(an, delta(d, j));
      }
    }
    for (index_t j = 0; j <= t; ++j) r[static_cast<std::size_t>(j)] *= delta(d, j);
  }

  // The operator's whole block: diag(gate)·(α + diag(D)); α itself when the
  // operator was built without skip and gate.
  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::s6_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    if (out != in) {
      for (index_t t = 0; t < length(); ++t)
        for (index_t s = 0; s < length(); ++s) m(t, s) = T(0);
      return;
    }
    alpha(out, m);
    for (index_t t = 0; t < length(); ++t) {
      if (!skip.empty()) m(t, t) += skip[static_cast<std::size_t>(out)];
      if (!is_empty(gate))
        for (index_t s = 0; s <= t; ++s) m(t, s) *= gate(out, t);
    }
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::s6_operator::row", *this, out, in, t, r));
    if (out != in) {
      for (index_t s = 0; s < length(); ++s) r[static_cast<std::size_t>(s)] = T(0);
      return;
    }
    alpha_row(out, t, r);
    if (!skip.empty()) r[static_cast<std::size_t>(t)] += skip[static_cast<std::size_t>(out)];
    if (!is_empty(gate))
      for (index_t s = 0; s <= t; ++s) r[static_cast<std::size_t>(s)] *= gate(out, t);
  }

 private:
  // Channel d of apply by the fused recurrence over its N states (h: N of
  // scratch), under the caller's flush_subnormals_guard.
  void recurrence(index_t d, matrix_view<const T> u, matrix_view<T> y, std::vector<State>& h) const {
    const index_t L = length(), N = state_size(), g = group_of(d);
    std::fill(h.begin(), h.end(), State(0));
    for (index_t t = 0; t < L; ++t) {
      const T dt = delta(d, t);
      State acc(0);
      for (index_t n = 0; n < N; ++n) {
        auto& hn = h[static_cast<std::size_t>(n)];
        hn = detail::exp_scaled(a(d, n), dt) * hn + dt * b(g, n, t) * u(d, t);
        acc += c(g, n, t) * hn;
      }
      y(d, t) = detail::output_part(acc);
    }
    finish_row(d, u, y);
  }

  void finish_row(index_t d, matrix_view<const T> u, matrix_view<T> y) const {
    for (index_t t = 0; t < length(); ++t) {
      if (!skip.empty()) y(d, t) += skip[static_cast<std::size_t>(d)] * u(d, t);
      if (!is_empty(gate)) y(d, t) *= gate(d, t);
    }
  }

  void check_shapes() const {
    constexpr std::string_view where = "mixlens::s6_operator";
    const index_t D = delta.extent(0), L = delta.extent(1), N = a.extent(1), G = b.extent(0);
    detail::check_positive(where, "delta (channels, extent 0)", D);
    detail::check_positive(where, "delta (length, extent 1)", L);
    detail::check_equal(where, "a", "channels (extent 0)", D, a.extent(0));
    detail::check_positive(where, "a (state size, extent 1)", N);
    detail::check_positive(where, "b (groups, extent 0)", G);
    if (D % G != 0) detail::fail(where, "b", "a group count dividing the " + std::to_string(D) + " channels", G);
    detail::check_equal(where, "b", "state size (extent 1)", N, b.extent(1));
    detail::check_equal(where, "b", "length (extent 2)", L, b.extent(2));
    detail::check_equal(where, "c", "groups (extent 0)", G, c.extent(0));
    detail::check_equal(where, "c", "state size (extent 1)", N, c.extent(1));
    detail::check_equal(where, "c", "length (extent 2)", L, c.extent(2));
    if (!skip.empty()) detail::check_equal(where, "skip", "size", D, static_cast<index_t>(skip.size()));
    if (!is_empty(gate)) {
      detail::check_equal(where, "gate", "channels (extent 0)", D, gate.extent(0));
      detail::check_equal(where, "gate", "length (extent 1)", L, gate.extent(1));
    }
  }

};

template <class T, class State>
struct operator_traits<s6_operator<T, State>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name = "S6";
};

namespace detail {
template <class T, class State>
inline constexpr bool splits_channels<s6_operator<T, State>> = true;  // channels over threads
}  // namespace detail

// Which terms beyond the paper's α a bound S6 operator includes.
struct s6_fold {
  bool skip = false;  // + diag(D)
  bool gate = false;  // diag(SiLU(z)) on the left; needs z
};

// The buffers behind a bound s6_operator.
template <class T, class State>
struct s6_storage {
  matrix<T> delta;
  matrix<State> a;
  tensor<State, 3> b, c;
  std::vector<T> skip;
  matrix<T> gate;
};

template <class T, class State = T>
using bound_s6 = bound<s6_operator<T, State>, s6_storage<T, State>>;

}  // namespace mixlens
