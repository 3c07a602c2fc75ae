// GSS: gated state spaces (Mehta, Gupta, Cutkosky, Neyshabur 2022, "Long Range
// Language Modeling via Gated State Spaces"), the class-(ii) operator: a
// data-controlled diagonal gate in front of a fixed DSS Toeplitz mixer.
//
// The layer computes, from its (normalized) input x (in_channels × L),
//   gate  g = GELU(W_g x + b_g)    (channels × L)
//   value v = GELU(W_v x + b_v)    (channels × L)
//   y     = g ⊙ DSS(v)             (the mixing part modelled here)
// then projects y and adds the residual. The bound operator is the linear map
// the gate leaves on the value signal: v ↦ g ⊙ (K ∗ v + D·v), i.e. per channel
//   M(x) = diag(g(x)) · (T_K + D·I)
// with T_K the lower-triangular Toeplitz matrix of the DSS kernel. It acts on the
// signal passed to apply (normally v(x); `forward` does the whole mixing part).
//
// Simplification against the paper's layer: there the DSS runs at a reduced
// width H and a dense H → F projection sits between the DSS output and the
// F-wide gate; here the gate has the DSS's width and that projection is the
// identity, so channels do not mix. (With that projection P the operator would
// be diag(g)·(P ⊗ I)·T_K, which mixes channels; it is not modelled here.)
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/dss.hpp"

namespace mixlens {

// Bound GSS operator: y = g ⊙ (T_K + D) v, one channel at a time.
template <class T>
struct gss_operator {
  using value_type = T;

  matrix_view<const T> gate;                // g: channels × L
  causal_conv_operator<T, dss_kind> mixer;  // the fixed DSS convolution (kernel and skip)

  gss_operator() = default;
  gss_operator(matrix_view<const T> g, causal_conv_operator<T, dss_kind> m) : gate(g), mixer(m) {
    constexpr std::string_view where = "mixlens::gss_operator";
    detail::check_signal(where, "gate", m.in_channels(), m.length(), g.extent(0), g.extent(1));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return mixer.length(); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return mixer.in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return mixer.out_channels(); }

  template <class F>
  void for_each_view(F&& f) {
    f(gate), f(mixer);
  }

  // Fast path: FFT (or direct) convolution, then the gate.
  void apply(matrix_view<const T> v, matrix_view<T> y) const {
    constexpr std::string_view where = "mixlens::gss_operator::apply";
    detail::check_apply_args(where, *this, "v", v, y);
    mixer.apply(v, y);
    for (index_t c = 0; c < out_channels(); ++c)
      for (index_t t = 0; t < length(); ++t) y(c, t) *= gate(c, t);
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::gss_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    for (index_t t = 0; t < length(); ++t)
      for (index_t s = 0; s < length(); ++s) m(t, s) = out == in ? gate(out, t) * mixer.entry(out, t, s) : T(0);
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::gss_operator::row", *this, out, in, t, r));
    const T g = out == in ? gate(out, t) : T(0);
    for (index_t s = 0; s < length(); ++s)
      r[static_cast<std::size_t>(s)] = out == in ? g * mixer.entry(out, t, s) : T(0);
  }
};

template <class T>
struct operator_traits<gss_operator<T>> : operator_class<data_control::diagonal, false, false> {
  static constexpr std::string_view name = "GSS";
};

// What a bound GSS operator owns: the gate computed from x and the DSS kernel.
template <class T>
struct gss_storage {
  matrix<T> gate;
  matrix<T> kernel;
  std::vector<T> skip;
};

template <class T>
using bound_gss = bound<gss_operator<T>, gss_storage<T>>;

}  // namespace mixlens
