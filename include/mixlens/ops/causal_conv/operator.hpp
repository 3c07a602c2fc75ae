// A depthwise causal convolution y(c, t) = Σ_s K(c, t−s)·x(c, s) + D(c)·x(c, t):
// the bound form of every single-input single-output LTI mixer (S4, S4D, DSS) and
// of short convolutions. Its mixing matrix is lower-triangular Toeplitz.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "mixlens/detail/fft.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

// `Kind` names the mixer the kernel came from (a tag with a `name`), so that each
// LTI mixer keeps its own identity in operator_traits.
template <class T, class Kind>
struct causal_conv_operator {
  using value_type = T;

  matrix_view<const T> kernel;  // channels × taps (zero beyond; taps beyond L never reach an output)
  vector_view<const T> skip;    // D, one per channel, or empty
  index_t sequence_length = 0;

  // Below this many taps a direct convolution beats the FFT.
  static constexpr index_t direct_taps = 64;

  causal_conv_operator() = default;
  causal_conv_operator(matrix_view<const T> k, vector_view<const T> d, index_t length)
      : kernel(k), skip(d), sequence_length(length) {
    constexpr std::string_view where = "mixlens::causal_conv_operator";
    detail::check_positive(where, "length", length);
    detail::check_positive(where, "kernel (channels)", k.extent(0));
    detail::check_positive(where, "kernel (taps)", k.extent(1));
    if (!d.empty()) detail::check_equal(where, "skip", "size", k.extent(0), static_cast<index_t>(d.size()));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return sequence_length; }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return kernel.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return kernel.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t taps() const { return kernel.extent(1); }

  template <class F>
  void for_each_view(F&& f) {
    f(kernel), f(skip);
  }

  void apply(matrix_view<const T> x, matrix_view<T> y) const { apply(x, y, sequence_parallel_scan{.threads = 1}); }

  // The channels (independent convolutions) split over the policy's threads:
  // the same results bit for bit for any count.
  void apply(matrix_view<const T> x, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    constexpr std::string_view where = "mixlens::causal_conv_operator::apply";
    detail::check_apply_args(where, *this, "x", x, y);
    const index_t C = in_channels(), L = length(), taps = kernel.extent(1);
    const bool direct = taps <= direct_taps || taps > L;
    const index_t used = detail::threads_for(policy.checked_threads(), C * L * (direct ? std::min(taps, L) : 64),
                                             policy.grain, C);
    if (direct) {
      detail::parallel_for(C, used, [&](index_t c) {
        for (index_t t = 0; t < L; ++t) {
          T acc = 0;
          for (index_t k = 0; k < std::min(taps, t + 1); ++k) acc += kernel(c, k) * x(c, t - k);
          y(c, t) = acc;
        }
      });
    } else {
      detail::parallel_fft_causal_convolution(kernel, x, y, used);
    }
    if (!skip.empty())
      for (index_t c = 0; c < C; ++c)
        for (index_t t = 0; t < L; ++t) y(c, t) += skip[static_cast<std::size_t>(c)] * x(c, t);
  }

  [[nodiscard]] MIXLENS_HD T entry(index_t c, index_t t, index_t s) const {
    const index_t lag = t - s;
    T v = (lag >= 0 && lag < kernel.extent(1)) ? kernel(c, lag) : T(0);
    if (lag == 0 && !skip.empty()) v += skip[static_cast<std::size_t>(c)];
    return v;
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::causal_conv_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    for (index_t t = 0; t < length(); ++t)
      for (index_t s = 0; s < length(); ++s) m(t, s) = out == in ? entry(out, t, s) : T(0);
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::causal_conv_operator::row", *this, out, in, t, r));
    for (index_t s = 0; s < length(); ++s) r[static_cast<std::size_t>(s)] = out == in ? entry(out, t, s) : T(0);
  }
};

template <class T, class Kind>
struct operator_traits<causal_conv_operator<T, Kind>> : operator_class<data_control::none, true, false> {
  static constexpr std::string_view name = Kind::name;
};

namespace detail {
template <class T, class Kind>
inline constexpr bool splits_channels<causal_conv_operator<T, Kind>> = true;  // channels over threads
}  // namespace detail

// Tag for a plain convolution with user-given taps.
struct short_conv_kind {
  static constexpr std::string_view name = "causal depthwise conv";
};

// Storage for LTI mixers' bound operators: the generated kernel and the skip.
template <class T>
struct lti_storage {
  matrix<T> kernel;
  std::vector<T> skip;
};

// Bound LTI operator: owns its kernel, hands out the convolution view.
template <class T, class Kind>
using bound_lti = bound<causal_conv_operator<T, Kind>, lti_storage<T>>;

template <class Kind, class T>
[[nodiscard]] bound_lti<T, Kind> make_bound_lti(matrix<T> kernel, std::vector<T> skip, index_t length) {
  return bound_lti<T, Kind>(lti_storage<T>{std::move(kernel), std::move(skip)}, [length](const lti_storage<T>& s) {
    return causal_conv_operator<T, Kind>(s.kernel.view(), vector_view<const T>(s.skip.data(), s.skip.size()), length);
  });
}

}  // namespace mixlens
