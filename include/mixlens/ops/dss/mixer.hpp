// DSS: diagonal state spaces (Gupta, Gu, Berant 2022, "Diagonal State Spaces are
// as Effective as Structured State Spaces"). Per channel: complex diagonal
// Λ ∈ C^N, complex W ∈ C^N, step Δ > 0 and skip D. The convolution kernel has
// one of two parametrizations (μ_i = Λ_i Δ):
//
//   DSS-exp:          K_k = Re Σ_i W_i · (e^{μ_i} − 1)/Λ_i · e^{μ_i k}          (Re Λ < 0)
//   DSS-exp-no-scale: K_k = Re Σ_i W_i · e^{μ_i k}                              (Re Λ < 0)
//   DSS-softmax:      K_k = Re Σ_i W_i / Λ_i · e^{μ_i k} / Σ_{r<L} e^{μ_i r}    (any Λ ≠ 0)
//
// DSS-exp is the ZOH-discretized SSM with B = 1 and C = W; the reference's
// "exp-no-scale" version drops the (e^{μ} − 1)/Λ factor. DSS-softmax
// normalizes each state over the L positions, so its kernel depends on L (it is
// not a prefix of a longer kernel) and stays bounded for Re Λ > 0. The
// reference computes the softmax's 1/(Λ·Σ) as the bounded reciprocal
// conj(x)/(|x|² + ε) of x = Λ·(e^{νL} − 1), with the normalizer's
// (e^{ν} − 1) as a separate factor (ν = ±μ, Re ν ≤ 0); a positive
// dss_parameters::softmax_epsilon reproduces it (0, the default, divides
// exactly). The real part is taken without a factor 2 (W absorbs it). The bound
// operator is a lower-triangular Toeplitz convolution (causal_conv_operator).
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <numbers>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/detail/hippo.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"

namespace mixlens {

// Which kernel parametrization a DSS mixer uses.
enum class dss_variant { exp, softmax, exp_no_scale };

[[nodiscard]] constexpr std::string_view to_string(dss_variant v) {
  return detail::enum_name(v, {"DSS-exp", "DSS-softmax", "DSS-exp-no-scale"});
}

// Initializations of Λ.
enum class dss_init {
  skew_hippo,  // DSS: Λ_n = −1/2 + iω_n, ±iω_n the eigenvalues of the skew part of HiPPO-LegS (size 2N)
  s4d_lin,     // S4D-Lin alternative: Λ_n = −1/2 + iπn
};

struct dss_kind {
  static constexpr std::string_view name = "DSS";
};

// Parameters of a DSS mixer with `channels` channels and state size N.
template <class T>
struct dss_parameters {
  matrix<complex<T>> lambda;  // channels × N: Λ
  matrix<complex<T>> w;       // channels × N: W (C·B of the SSM, merged)
  std::vector<T> dt;          // channels: Δ > 0 (exp of the reference's log_dt)
  std::vector<T> dt_imag;     // channels: separate step for Im Λ (the reference's sep_dt_re_im), or empty
  std::vector<T> skip;        // channels: D, or empty
  double softmax_epsilon = 0;  // DSS-softmax: ε of the bounded reciprocal conj(x)/(|x|² + ε); 0: exact 1/x
};

// ω_0 ≥ … ≥ ω_{N−1} > 0: the normal part of the size-2N HiPPO-LegS matrix,
// −½·I + K with K real skew-symmetric (detail/hippo.hpp), has the eigenvalues
// −½ ± iω_n; DSS's initialization Λ_n = −½ + iω_n keeps the half with positive
// imaginary part.
[[nodiscard]] inline std::vector<double> skew_hippo_frequencies(index_t n) {
  detail::check_positive("mixlens::skew_hippo_frequencies", "n", n);
  const auto spectrum = detail::hippo_n_eigendecomposition(2 * n).lambda;  // imaginary parts ascending
  std::vector<double> omega(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    // ±ω pairs: average the two magnitudes to keep the result exactly symmetric.
    const double hi = spectrum[static_cast<std::size_t>(2 * n - 1 - i)].imag(), lo = spectrum[static_cast<std::size_t>(i)].imag();
    omega[static_cast<std::size_t>(i)] = (hi - lo) / 2;
  }
  return omega;
}

// Initialization options (defaults as in the DSS reference).
struct dss_init_options {
  dss_init lambda_init = dss_init::skew_hippo;
  double dt_min = 1e-3;  // Δ log-uniform in [dt_min, dt_max]
  double dt_max = 1e-1;
  bool skip = true;      // D ~ N(0, 1), else no skip
  std::uint64_t seed = 0;
};

// Unbound DSS mixer: owns the parameters, generates kernels, binds to a length.
template <class T>
class dss_mixer {
 public:
  using value_type = T;
  using kind = dss_kind;

  dss_mixer(dss_parameters<T> p, dss_variant variant) : p_(std::move(p)), variant_(variant) { validate(); }

  // A randomly initialized mixer (defined below): Λ shared by all channels,
  // W ~ CN(0, 2), log-uniform Δ per channel.
  [[nodiscard]] static dss_mixer init(index_t channels, index_t state_size, dss_variant variant,
                                      const dss_init_options& o = {});

  [[nodiscard]] index_t channels() const { return p_.lambda.extent(0); }
  [[nodiscard]] index_t state_size() const { return p_.lambda.extent(1); }
  [[nodiscard]] dss_variant variant() const { return variant_; }
  [[nodiscard]] const dss_parameters<T>& parameters() const { return p_; }

  // μ = Λ·Δ for channel c, state n (real and imaginary steps may differ).
  [[nodiscard]] std::complex<double> step_lambda(index_t c, index_t n) const {
    const auto l = lambda(c, n);
    const double dr = double(p_.dt[static_cast<std::size_t>(c)]);
    const double di = p_.dt_imag.empty() ? dr : double(p_.dt_imag[static_cast<std::size_t>(c)]);
    return {l.real() * dr, l.imag() * di};
  }

  // The kernel K (channels × length), without the skip. Computed in double:
  // each term e^{μk} is evaluated directly (no powers, no running products).
  [[nodiscard]] matrix<T> kernel(index_t length) const {
    detail::check_positive("mixlens::dss_mixer::kernel", "length", length);
    using cd = std::complex<double>;
    const index_t C = channels(), N = state_size(), L = length;
    matrix<T> k(C, L);
    std::vector<double> acc(static_cast<std::size_t>(L));
    for (index_t c = 0; c < C; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (index_t n = 0; n < N; ++n) {
        const cd mu = step_lambda(c, n), l = lambda(c, n), w = to_cd(p_.w(c, n));
        cd coeff;
        index_t shift = 0;  // exponent offset: e^{μ(k − shift)} stays ≤ 1 in modulus
        if (variant_ == dss_variant::exp) {
          coeff = w * detail::complex_expm1(mu) / l;
        } else if (variant_ == dss_variant::exp_no_scale) {
          coeff = w;
        } else if (p_.softmax_epsilon > 0) {
          // The reference's form: W·(e^{ν} − 1)·conj(x)/(|x|² + ε) with x = Λ·(e^{νL} − 1).
          const bool grows = mu.real() > 0;
          shift = grows ? L - 1 : 0;
          const cd nu = grows ? -mu : mu;
          const cd x = l * detail::complex_expm1(nu * double(L));
          coeff = w * detail::complex_expm1(nu) * std::conj(x) / (std::norm(x) + p_.softmax_epsilon);
        } else {
          // Σ_{r<L} e^{μ(r − shift)} = (e^{νL} − 1)/(e^{ν} − 1) with ν = ±μ, Re ν ≤ 0.
          const bool grows = mu.real() > 0;
          shift = grows ? L - 1 : 0;
          const cd nu = grows ? -mu : mu;
          const cd den = detail::complex_expm1(nu);
          const cd sum = den == cd(0) ? cd(double(L)) : detail::complex_expm1(nu * double(L)) / den;
          if (!(std::abs(sum) > 0) || !std::isfinite(std::abs(sum)))
            detail::fail("mixlens::dss_mixer::kernel", "lambda", "a non-vanishing softmax normalizer Σ_r e^{ΛΔr}",
                         "0 at channel " + std::to_string(c) + ", state " + std::to_string(n));
          coeff = w / (l * sum);
        }
        for (index_t t = 0; t < L; ++t) {
          const double re = mu.real() * double(t - shift), im = mu.imag() * double(t - shift);
          // Re(coeff · e^{re + i·im})
          acc[static_cast<std::size_t>(t)] += std::exp(re) * (coeff.real() * std::cos(im) - coeff.imag() * std::sin(im));
        }
      }
      for (index_t t = 0; t < L; ++t) k(c, t) = static_cast<T>(acc[static_cast<std::size_t>(t)]);
    }
    return k;
  }

  // The bound operator at a length: a Toeplitz convolution owning its kernel.
  [[nodiscard]] bound_lti<T, dss_kind> bind(index_t length) const {
    detail::check_positive("mixlens::dss_mixer::bind", "length", length);
    return make_bound_lti<dss_kind>(kernel(length), p_.skip, length);
  }

  // LTI: only the input's shape matters.
  [[nodiscard]] bound_lti<T, dss_kind> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::dss_mixer::bind";
    detail::check_equal(where, "x", "channels (extent 0)", channels(), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    return bind(x.extent(1));
  }

 private:
  static std::complex<double> to_cd(complex<T> z) { return {double(z.real()), double(z.imag())}; }
  [[nodiscard]] std::complex<double> lambda(index_t c, index_t n) const { return to_cd(p_.lambda(c, n)); }

  void validate() const {
    constexpr std::string_view where = "mixlens::dss_mixer";
    detail::check_positive(where, "lambda (channels, extent 0)", p_.lambda.extent(0));
    detail::check_positive(where, "lambda (state size, extent 1)", p_.lambda.extent(1));
    detail::check_equal(where, "w", "rows", p_.lambda.extent(0), p_.w.extent(0));
    detail::check_equal(where, "w", "columns", p_.lambda.extent(1), p_.w.extent(1));
    const index_t C = channels();
    detail::check_equal(where, "dt", "size", C, static_cast<index_t>(p_.dt.size()));
    for (T d : p_.dt) detail::check_positive(where, "dt", d);
    if (!p_.dt_imag.empty()) {
      detail::check_equal(where, "dt_imag", "size", C, static_cast<index_t>(p_.dt_imag.size()));
      for (T d : p_.dt_imag) detail::check_positive(where, "dt_imag", d);
    }
    if (!p_.skip.empty()) detail::check_equal(where, "skip", "size", C, static_cast<index_t>(p_.skip.size()));
    if (!(p_.softmax_epsilon >= 0) || !std::isfinite(p_.softmax_epsilon))
      detail::fail(where, "softmax_epsilon", "a finite value >= 0", p_.softmax_epsilon);
    for (index_t c = 0; c < C; ++c)
      for (index_t n = 0; n < state_size(); ++n) {
        const auto l = lambda(c, n);
        if (l == std::complex<double>(0)) detail::fail(where, "lambda", "Λ != 0 (the kernel divides by Λ)", "0");
        if (variant_ != dss_variant::softmax && !(l.real() < 0))
          detail::fail(where, "lambda", "Re Λ < 0 for the " + std::string(to_string(variant_)) + " kernel",
                       detail::format_complex(l));
      }
  }

  dss_parameters<T> p_;
  dss_variant variant_;
};


// A randomly initialized DSS mixer: Λ shared by all channels, W ~ CN(0, 2)
// (real and imaginary parts N(0, 1)), log-uniform Δ per channel.
template <class T>
dss_mixer<T> dss_mixer<T>::init(index_t channels, index_t state_size, dss_variant variant, const dss_init_options& o) {
  constexpr std::string_view where = "mixlens::dss_mixer::init";
  detail::check_positive(where, "channels", channels);
  detail::check_positive(where, "state_size", state_size);
  detail::check_positive(where, "dt_min", o.dt_min);
  if (!(o.dt_max >= o.dt_min)) detail::fail(where, "dt_max", ">= dt_min " + std::to_string(o.dt_min), o.dt_max);
  detail::splitmix64 gen(o.seed);
  std::vector<double> omega;
  if (o.lambda_init == dss_init::skew_hippo) omega = skew_hippo_frequencies(state_size);
  dss_parameters<T> p;
  p.lambda = matrix<complex<T>>(channels, state_size);
  p.w = matrix<complex<T>>(channels, state_size);
  for (index_t c = 0; c < channels; ++c)
    for (index_t n = 0; n < state_size; ++n) {
      const double im = o.lambda_init == dss_init::skew_hippo ? omega[static_cast<std::size_t>(n)] : std::numbers::pi * double(n);
      p.lambda(c, n) = complex<T>(T(-0.5), static_cast<T>(im));
      const double wr = gen.normal(), wi = gen.normal();
      p.w(c, n) = complex<T>(static_cast<T>(wr), static_cast<T>(wi));
    }
  for (index_t c = 0; c < channels; ++c) p.dt.push_back(static_cast<T>(gen.log_uniform(o.dt_min, o.dt_max)));
  if (o.skip)
    for (index_t c = 0; c < channels; ++c) p.skip.push_back(static_cast<T>(gen.normal()));
  return dss_mixer<T>(std::move(p), variant);
}

}  // namespace mixlens
