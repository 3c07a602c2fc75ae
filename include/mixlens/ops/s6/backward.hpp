// The backward pass of the selective scan with respect to its inputs: given
// ∂y, the gradients of a scalar with respect to u, Δ, B, C, the skip D and the
// gate of an s6_operator (real states).
//
// Per channel d (group g = d / (D/G)), with a_t = exp(Δ_t A) and, in the
// forward pass, h_t = a_t ⊙ h_{t−1} + Δ_t B_t u_t, s_t = ⟨C_t, h_t⟩ + D u_t,
// y_t = s_t · gate_t:
//   ∂gate_t = ∂y_t · s_t,                 ∂s_t = ∂y_t · gate_t
//   ∂h_t    = C_t ∂s_t + a_{t+1} ⊙ ∂h_{t+1}          (reverse scan, ∂h_L = 0)
//   ∂C_t   += ∂s_t h_t                    ∂B_t += Δ_t u_t ∂h_t
//   ∂u_t    = D ∂s_t + Δ_t ⟨B_t, ∂h_t⟩
//   ∂Δ_t    = ⟨∂h_t, B_t u_t + A ⊙ a_t ⊙ h_{t−1}⟩
//   ∂D     += Σ_t ∂s_t u_t
// ∂B and ∂C sum over the channels of a group. The forward states of one
// channel are recomputed before its reverse sweep: L·N values of scratch,
// independent of the channel count.
#pragma once

#include <algorithm>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/detail/float_mode.hpp"
#include "mixlens/detail/linear.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/error.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/s6/operator.hpp"

namespace mixlens {

// Where s6_backward writes: du, ddelta (D × L), db, dc (G × N × L) always;
// dskip (D) and dgate (D × L) when not empty (and the operator has the term).
template <class T>
struct s6_gradient_views {
  matrix_view<T> du, ddelta;
  tensor_view<T, 3> db, dc;
  vector_view<T> dskip;
  matrix_view<T> dgate;
};

// The same, owned (s6_backward's return value); dskip and dgate are empty
// when the operator has no skip or no gate.
template <class T>
struct s6_gradients {
  matrix<T> du, ddelta;
  tensor<T, 3> db, dc;
  std::vector<T> dskip;
  matrix<T> dgate;

  [[nodiscard]] s6_gradient_views<T> view() {
    return {du.view(), ddelta.view(), db.view(), dc.view(), vector_view<T>(dskip.data(), static_cast<index_t>(dskip.size())),
            dgate.view()};
  }
};

namespace detail {

template <class T, class M>
void check_signal_shape(std::string_view where, std::string_view argument, index_t rows, index_t cols, const M& m) {
  check_equal(where, argument, "rows (extent 0)", rows, static_cast<index_t>(m.extent(0)));
  check_equal(where, argument, "columns (extent 1)", cols, static_cast<index_t>(m.extent(1)));
}

template <class T, class V>
void check_groups_shape(std::string_view where, std::string_view argument, const s6_operator<T>& op, const V& v) {
  check_equal(where, argument, "groups (extent 0)", op.groups(), static_cast<index_t>(v.extent(0)));
  check_equal(where, argument, "state size (extent 1)", op.state_size(), static_cast<index_t>(v.extent(1)));
  check_equal(where, argument, "length (extent 2)", op.length(), static_cast<index_t>(v.extent(2)));
}

}  // namespace detail

// The gradients of ⟨∂y, op(u)⟩ with respect to the operator's inputs, written
// into `g` (overwritten, not accumulated). u and dy are (D × L).
template <class T>
void s6_backward(const s6_operator<T>& op, std::type_identity_t<matrix_view<const T>> u,
                 std::type_identity_t<matrix_view<const T>> dy, const std::type_identity_t<s6_gradient_views<T>>& g) {
  constexpr std::string_view where = "mixlens::s6_backward";
  const index_t D = op.in_channels(), L = op.length(), N = op.state_size(), G = op.groups();
  detail::check_signal_shape<T>(where, "u", D, L, u);
  detail::check_signal_shape<T>(where, "dy", D, L, dy);
  detail::check_signal_shape<T>(where, "du", D, L, g.du);
  detail::check_signal_shape<T>(where, "ddelta", D, L, g.ddelta);
  detail::check_groups_shape(where, "db", op, g.db);
  detail::check_groups_shape(where, "dc", op, g.dc);
  const bool has_skip = !op.skip.empty(), has_gate = !is_empty(op.gate);
  const bool want_skip = has_skip && !g.dskip.empty(), want_gate = has_gate && !is_empty(g.dgate);
  if (want_skip) detail::check_equal(where, "dskip", "size", D, static_cast<index_t>(g.dskip.size()));
  if (want_gate) detail::check_signal_shape<T>(where, "dgate", D, L, g.dgate);
  const index_t states = detail::checked_product(where, "length × state size", L, N);

  std::fill_n(g.db.data_handle(), G * N * L, T(0));
  std::fill_n(g.dc.data_handle(), G * N * L, T(0));
  // The reverse sweep multiplies decays ≤ 1 into ∂h: subnormals flushed, as in the forward scans.
  const detail::flush_subnormals_guard flush;
  std::vector<T> h(static_cast<std::size_t>(states)), s(static_cast<std::size_t>(L)), dh(static_cast<std::size_t>(N));
  for (index_t d = 0; d < D; ++d) {
    const index_t grp = op.group_of(d);
    const T skip = has_skip ? op.skip[static_cast<std::size_t>(d)] : T(0);
    // Forward: every state h_t (t-major) and the ungated output s_t.
    for (index_t t = 0; t < L; ++t) {
      const T dt = op.delta(d, t);
      T acc = 0;
      for (index_t n = 0; n < N; ++n) {
        const T prev = t > 0 ? h[static_cast<std::size_t>((t - 1) * N + n)] : T(0);
        const T cur = detail::exp_scaled(op.a(d, n), dt) * prev + dt * op.b(grp, n, t) * u(d, t);
        h[static_cast<std::size_t>(t * N + n)] = cur;
        acc += op.c(grp, n, t) * cur;
      }
      s[static_cast<std::size_t>(t)] = acc + skip * u(d, t);
    }
    // Reverse: dh holds ∂h_t once C_t ∂s_t is added, then a_t ⊙ ∂h_t for step t − 1.
    std::fill(dh.begin(), dh.end(), T(0));
    T dskip = 0;
    for (index_t t = L - 1; t >= 0; --t) {
      const T dt = op.delta(d, t), ut = u(d, t);
      const T ds = has_gate ? dy(d, t) * op.gate(d, t) : dy(d, t);
      if (want_gate) g.dgate(d, t) = dy(d, t) * s[static_cast<std::size_t>(t)];
      dskip += ds * ut;
      T du = skip * ds, ddelta = 0;
      for (index_t n = 0; n < N; ++n) {
        const T an = op.a(d, n), bn = op.b(grp, n, t), cur = h[static_cast<std::size_t>(t * N + n)];
        const T prev = t > 0 ? h[static_cast<std::size_t>((t - 1) * N + n)] : T(0);
        const T decay = detail::exp_scaled(an, dt);
        T& dhn = dh[static_cast<std::size_t>(n)];
        g.dc(grp, n, t) += ds * cur;
        dhn += op.c(grp, n, t) * ds;
        du += dt * bn * dhn;
        g.db(grp, n, t) += dt * ut * dhn;
        ddelta += dhn * (bn * ut + an * decay * prev);
        dhn *= decay;
      }
      g.du(d, t) = du;
      g.ddelta(d, t) = ddelta;
    }
    if (want_skip) g.dskip[static_cast<std::size_t>(d)] = dskip;
  }
}

// The same, allocating the gradients.
template <class T>
[[nodiscard]] s6_gradients<T> s6_backward(const s6_operator<T>& op, std::type_identity_t<matrix_view<const T>> u,
                                          std::type_identity_t<matrix_view<const T>> dy) {
  const index_t D = op.in_channels(), L = op.length(), N = op.state_size(), G = op.groups();
  // Shapes first: nothing is allocated for arguments that do not fit.
  detail::check_signal_shape<T>("mixlens::s6_backward", "u", D, L, u);
  detail::check_signal_shape<T>("mixlens::s6_backward", "dy", D, L, dy);
  s6_gradients<T> g{matrix<T>(D, L), matrix<T>(D, L), tensor<T, 3>(G, N, L), tensor<T, 3>(G, N, L),
                    std::vector<T>(op.skip.empty() ? 0 : static_cast<std::size_t>(D)),
                    is_empty(op.gate) ? matrix<T>() : matrix<T>(D, L)};
  s6_backward(op, u, dy, g.view());
  return g;
}

}  // namespace mixlens
