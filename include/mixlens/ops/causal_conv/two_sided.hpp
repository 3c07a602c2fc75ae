// The bidirectional form of a single-input single-output LTI mixer: a depthwise
// two-sided convolution
//   y(c, t) = Σ_{s ≤ t} K→(c, t − s)·x(c, s) + Σ_{s ≥ t} K←(c, s − t)·x(c, s) + D(c)·x(c, t),
// the forward kernel over the past and the backward kernel over the future.
// Its mixing matrix is a full Toeplitz matrix. This is what state-spaces/s4's
// FFTConv and the DSS author's DSS compute with `bidirectional`: the kernel's
// second half of channels, flipped, becomes K← with its tap 0 at s − t = 1
// (two_sided_mixer below builds it from two causal mixers).
#pragma once

#include <algorithm>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv/operator.hpp"

namespace mixlens {

template <class T, class Kind>
struct two_sided_conv_operator {
  using value_type = T;

  causal_conv_operator<T, Kind> forward;   // K→ by lag t − s ≥ 0, with D
  causal_conv_operator<T, Kind> backward;  // K← by lag s − t ≥ 0: a causal convolution in reversed time

  two_sided_conv_operator() = default;
  two_sided_conv_operator(causal_conv_operator<T, Kind> f, causal_conv_operator<T, Kind> b) : forward(f), backward(b) {
    constexpr std::string_view where = "mixlens::two_sided_conv_operator";
    detail::check_equal(where, "backward", "channels", f.in_channels(), b.in_channels());
    detail::check_equal(where, "backward", "length", f.length(), b.length());
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return forward.length(); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return forward.in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return forward.out_channels(); }
  [[nodiscard]] MIXLENS_HD constexpr bool causal() const { return false; }

  template <class F>
  void for_each_view(F&& f) {
    f(forward), f(backward);
  }

  // The forward convolution, plus the backward one applied to the reversed
  // signal and reversed back (each by its own FFT or direct path).
  void apply(matrix_view<const T> x, matrix_view<T> y) const { apply(x, y, sequence_parallel_scan{.threads = 1}); }

  // Both halves with their channels split over the policy's threads
  // (causal_conv_operator::apply): the same results bit for bit for any count.
  void apply(matrix_view<const T> x, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    detail::check_apply_args("mixlens::two_sided_conv_operator::apply", *this, "x", x, y);
    forward.apply(x, y, policy);
    const index_t C = in_channels(), L = length();
    matrix<T> reversed(C, L), out(C, L);
    for (index_t c = 0; c < C; ++c)
      for (index_t t = 0; t < L; ++t) reversed(c, t) = x(c, L - 1 - t);
    backward.apply(reversed.view(), out.view(), policy);
    for (index_t c = 0; c < C; ++c)
      for (index_t t = 0; t < L; ++t) y(c, t) += out(c, L - 1 - t);
  }

  [[nodiscard]] MIXLENS_HD T entry(index_t c, index_t t, index_t s) const {
    const index_t last = length() - 1;
    return forward.entry(c, t, s) + backward.entry(c, last - t, last - s);
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    detail::check_materialize_args("mixlens::two_sided_conv_operator::materialize", *this, out, in, m);
    for (index_t t = 0; t < length(); ++t)
      for (index_t s = 0; s < length(); ++s) m(t, s) = out == in ? entry(out, t, s) : T(0);
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::two_sided_conv_operator::row", *this, out, in, t, r));
    for (index_t s = 0; s < length(); ++s) r[static_cast<std::size_t>(s)] = out == in ? entry(out, t, s) : T(0);
  }
};

template <class T, class Kind>
struct operator_traits<two_sided_conv_operator<T, Kind>> : operator_class<data_control::none, true, false> {
  static constexpr std::string_view name = Kind::name;
};

namespace detail {
template <class T, class Kind>
inline constexpr bool splits_channels<two_sided_conv_operator<T, Kind>> = true;  // both halves' channels over threads
}  // namespace detail

// What a bound two-sided convolution owns: both kernels and the skip.
template <class T>
struct two_sided_storage {
  lti_storage<T> forward, backward;
};

template <class T, class Kind>
using bound_two_sided = bound<two_sided_conv_operator<T, Kind>, two_sided_storage<T>>;

namespace detail {
template <class View>
struct conv_kind;
template <class T, class Kind>
struct conv_kind<causal_conv_operator<T, Kind>> {
  using type = Kind;
};
}  // namespace detail

// A bidirectional LTI mixer from two causal ones of the same kind (S4D, S4,
// DSS): `forward` gives K→ and D; `backward`'s kernel k becomes K←(m) =
// k(m − backward_lag), zero below backward_lag. FFTConv and DSS put their
// flipped second kernel at lags s − t ≥ 1 (backward_lag 1): the diagonal is
// the forward kernel's and D's alone. The backward mixer's own skip, if any,
// adds to the diagonal.
template <class Mixer>
struct two_sided_mixer {
  using value_type = typename Mixer::value_type;

  Mixer forward, backward;
  index_t backward_lag = 1;

  template <class X>
  [[nodiscard]] auto bind(X x) const {
    constexpr std::string_view where = "mixlens::two_sided_mixer::bind";
    if (backward_lag < 0) detail::fail(where, "backward_lag", "a lag >= 0", backward_lag);
    auto f = forward.bind(x);
    auto b = backward.bind(x);
    using T = value_type;
    using Kind = typename detail::conv_kind<typename decltype(f)::view_type>::type;
    const index_t L = f->length();
    detail::check_equal(where, "backward (channels)", "channels of forward", f->in_channels(), b->in_channels());
    two_sided_storage<T> s{lti_storage<T>{f.storage().kernel, f.storage().skip}, lti_storage<T>{{}, b.storage().skip}};
    const auto& k = b.storage().kernel;
    const index_t taps = std::min<index_t>(L, k.extent(1) + backward_lag);
    s.backward.kernel = matrix<T>(k.extent(0), std::max<index_t>(taps, 1));
    for (index_t c = 0; c < k.extent(0); ++c)
      for (index_t m = backward_lag; m < taps; ++m) s.backward.kernel(c, m) = k(c, m - backward_lag);
    return bound_two_sided<T, Kind>(std::move(s), [L](const two_sided_storage<T>& st) {
      auto view = [L](const lti_storage<T>& part) {
        return causal_conv_operator<T, Kind>(part.kernel.view(),
                                             vector_view<const T>(part.skip.data(), part.skip.size()), L);
      };
      return two_sided_conv_operator<T, Kind>(view(st.forward), view(st.backward));
    });
  }
};

}  // namespace mixlens
