// The gss mixer: parameters, init and bind (the view is ops/gss/operator.hpp).
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
#include "mixlens/ops/gss/operator.hpp"

namespace mixlens {

// The gate and value projections of a GSS layer (biases may be empty: zero).
template <class T>
struct gss_parameters {
  matrix<T> w_gate;          // channels × in_channels
  std::vector<T> b_gate;     // channels, or empty
  matrix<T> w_value;         // channels × in_channels
  std::vector<T> b_value;    // channels, or empty
};

namespace detail::gss_impl {

// Exact (erf) GELU, evaluated in double.
[[nodiscard]] inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752440)); }

// GELU(W x + b) for x (in × L), W (out × in).
template <class T>
matrix<T> gelu_projection(const matrix<T>& w, const std::vector<T>& b, matrix_view<const T> x) {
  const index_t out = w.extent(0), in = w.extent(1), L = x.extent(1);
  matrix<T> y(out, L);
  std::vector<double> acc(static_cast<std::size_t>(L));
  for (index_t o = 0; o < out; ++o) {
    const double bias = b.empty() ? 0.0 : double(b[static_cast<std::size_t>(o)]);
    std::fill(acc.begin(), acc.end(), bias);
    for (index_t i = 0; i < in; ++i) {
      const double wi = double(w(o, i));
      for (index_t t = 0; t < L; ++t) acc[static_cast<std::size_t>(t)] += wi * double(x(i, t));
    }
    for (index_t t = 0; t < L; ++t) y(o, t) = static_cast<T>(gelu(acc[static_cast<std::size_t>(t)]));
  }
  return y;
}

}  // namespace detail::gss_impl

// Unbound GSS mixer: the gate and value projections plus a fixed DSS mixer.
template <class T>
class gss_mixer {
 public:
  using value_type = T;

  // A randomly initialized mixer (defined below): projections ~ N(0, 1/in_channels),
  // no biases, in front of a DSS mixer initialized with `o`.
  [[nodiscard]] static gss_mixer init(index_t in_channels, index_t channels, index_t state_size,
                                      dss_variant variant = dss_variant::exp, const dss_init_options& o = {});

  gss_mixer(gss_parameters<T> p, dss_mixer<T> dss) : p_(std::move(p)), dss_(std::move(dss)) {
    constexpr std::string_view where = "mixlens::gss_mixer";
    const index_t C = dss_.channels();
    detail::check_equal(where, "w_gate", "rows (= DSS channels)", C, p_.w_gate.extent(0));
    detail::check_positive(where, "w_gate (in_channels, extent 1)", p_.w_gate.extent(1));
    detail::check_equal(where, "w_value", "rows (= DSS channels)", C, p_.w_value.extent(0));
    detail::check_equal(where, "w_value", "columns (= in_channels)", p_.w_gate.extent(1), p_.w_value.extent(1));
    if (!p_.b_gate.empty()) detail::check_equal(where, "b_gate", "size", C, static_cast<index_t>(p_.b_gate.size()));
    if (!p_.b_value.empty()) detail::check_equal(where, "b_value", "size", C, static_cast<index_t>(p_.b_value.size()));
  }

  [[nodiscard]] index_t in_channels() const { return p_.w_gate.extent(1); }
  [[nodiscard]] index_t channels() const { return dss_.channels(); }
  [[nodiscard]] const gss_parameters<T>& parameters() const { return p_; }
  [[nodiscard]] const dss_mixer<T>& dss() const { return dss_; }

  // g(x) = GELU(W_g x + b_g): the diagonal of the data-controlled gate.
  [[nodiscard]] matrix<T> gate(matrix_view<const T> x) const {
    check_input("mixlens::gss_mixer::gate", x);
    return detail::gss_impl::gelu_projection(p_.w_gate, p_.b_gate, x);
  }

  // v(x) = GELU(W_v x + b_v): the signal the bound operator mixes.
  [[nodiscard]] matrix<T> value(matrix_view<const T> x) const {
    check_input("mixlens::gss_mixer::value", x);
    return detail::gss_impl::gelu_projection(p_.w_value, p_.b_value, x);
  }

  // M(x) = diag(g(x))·(T_K + D), owning the gate and the kernel.
  [[nodiscard]] bound_gss<T> bind(matrix_view<const T> x) const {
    check_input("mixlens::gss_mixer::bind", x);
    const index_t L = x.extent(1);
    gss_storage<T> s{gate(x), dss_.kernel(L), dss_.parameters().skip};
    return bound_gss<T>(std::move(s), [L](const gss_storage<T>& st) {
      causal_conv_operator<T, dss_kind> conv(st.kernel.view(), vector_view<const T>(st.skip.data(), st.skip.size()), L);
      return gss_operator<T>(st.gate.view(), conv);
    });
  }

  // The layer's mixing part y = g(x) ⊙ DSS(v(x)) (channels × L).
  [[nodiscard]] matrix<T> forward(matrix_view<const T> x) const {
    const auto op = bind(x);
    const auto v = value(x);
    matrix<T> y(channels(), x.extent(1));
    op->apply(v.view(), y.view());
    return y;
  }

 private:
  void check_input(std::string_view where, matrix_view<const T> x) const {
    detail::check_equal(where, "x", "channels (extent 0)", in_channels(), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
  }

  gss_parameters<T> p_;
  dss_mixer<T> dss_;
};

// A randomly initialized GSS mixer: projections ~ N(0, 1/in_channels) (no
// biases, as in the paper) in front of a DSS mixer initialized with `o`.
template <class T>
gss_mixer<T> gss_mixer<T>::init(index_t in_channels, index_t channels, index_t state_size, dss_variant variant,
                                const dss_init_options& o) {
  constexpr std::string_view where = "mixlens::gss_mixer::init";
  detail::check_positive(where, "in_channels", in_channels);
  detail::check_positive(where, "channels", channels);
  detail::splitmix64 gen(o.seed ^ 0x9e3779b97f4a7c15ULL);
  const double stddev = 1.0 / std::sqrt(double(in_channels));
  gss_parameters<T> p{matrix<T>(channels, in_channels), {}, matrix<T>(channels, in_channels), {}};
  for (index_t i = 0; i < p.w_gate.size(); ++i) p.w_gate.data()[i] = static_cast<T>(gen.normal(0.0, stddev));
  for (index_t i = 0; i < p.w_value.size(); ++i) p.w_value.data()[i] = static_cast<T>(gen.normal(0.0, stddev));
  return gss_mixer<T>(std::move(p), dss_mixer<T>::init(channels, state_size, variant, o));
}

}  // namespace mixlens
