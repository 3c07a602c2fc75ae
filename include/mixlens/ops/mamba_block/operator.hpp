// The unified implicit-attention form of a whole Mamba mixer block (Zimerman,
// Ali, Wolf, ICLR 2025): from the in_proj output x (D × L) to the gated output,
//   y = diag(g)·(α + diag(D))·diag(σ(c + bias))·M_conv · x  +  offset,
// with c = conv1d(x) before its bias, g = SiLU(z), and σ(c + bias) the factor
// that turns the SiLU into a diagonal matrix: SiLU(p) = p·σ(p). The conv bias
// makes the block affine; `offset` is that constant part, so that
// apply(x) + offset reproduces the block exactly. The selective SSM is S6 by
// default; Ssm = ssd_operator<T> (with D and Mamba-2's gated norm folded in as
// its skip and gate) gives the Mamba-2 block from the conv's x channels.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>
#include <type_traits>

#include "mixlens/backend.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens {

struct mamba_conv_kind {
  static constexpr std::string_view name = "Mamba conv1d";
};

template <class T, class State = T, class Ssm = s6_operator<T, State>>
struct mamba_block_operator {
  using value_type = T;

  Ssm ssm;                                      // with D and the gate folded in
  causal_conv_operator<T, mamba_conv_kind> conv;  // taps by lag, without the bias
  matrix_view<const T> activation;              // (D, L): σ(c + bias)
  matrix_view<const T> offset;                  // (D, L): the conv bias's contribution (or empty)

  [[nodiscard]] MIXLENS_HD index_t length() const { return ssm.length(); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return ssm.in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return ssm.out_channels(); }

  template <class F>
  void for_each_view(F&& f) {
    f(ssm), f(conv), f(activation), f(offset);
  }

  // Host-side value checks (those of the S6 part).
  void validate() const { ssm.validate(); }

  // The linear part: conv, activation factor, SSM (+D, gate). Add `offset` for
  // the block's output.
  void apply(matrix_view<const T> x, matrix_view<T> y) const {
    constexpr std::string_view where = "mixlens::mamba_block_operator::apply";
    detail::check_apply_args(where, *this, "x", x, y);
    matrix<T> v(in_channels(), length());
    conv.apply(x, v.view());
    for (index_t d = 0; d < in_channels(); ++d)
      for (index_t t = 0; t < length(); ++t) v(d, t) *= activation(d, t);
    ssm.apply(v.view(), y);
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::mamba_block_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    ssm.materialize(out, in, m);
    if (out != in) return;
    for (index_t t = 0; t < length(); ++t)
      fold_conv(in, t, vector_view<T>(&m(t, 0), static_cast<std::size_t>(length())));
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::mamba_block_operator::row", *this, out, in, t, r));
    ssm.row(out, in, t, r);
    if (out == in) fold_conv(in, t, r);
  }

  // Row t of (S6 row)·diag(σ)·M_conv, in place: entry s collects the taps
  // reaching s, which lie at s and after it, so an ascending sweep reads only
  // entries it has not overwritten yet.
  MIXLENS_HD void fold_conv(index_t d, index_t t, vector_view<T> r) const {
    const index_t taps = conv.taps();
    for (index_t s = 0; s < length(); ++s) {
      T acc = 0;
      for (index_t lag = 0; lag < taps && s + lag <= t; ++lag)
        acc += r[static_cast<std::size_t>(s + lag)] * activation(d, s + lag) * conv.kernel(d, lag);
      r[static_cast<std::size_t>(s)] = acc;
    }
  }
};

template <class T, class State, class Ssm>
struct operator_traits<mamba_block_operator<T, State, Ssm>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name =
      std::is_same_v<Ssm, s6_operator<T, State>> ? "Mamba block (unified form)" : "Mamba-2 block (unified form)";
};

template <class T, class State>
struct mamba_block_storage {
  bound_s6<T, State> ssm;
  matrix<T> kernel, activation, offset;
};

template <class T, class State = T>
using bound_mamba_block = bound<mamba_block_operator<T, State>, mamba_block_storage<T, State>>;

}  // namespace mixlens
