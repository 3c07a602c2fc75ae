// S4D: the diagonal structured state space (Gu, Gupta, Goel, Ré 2022) as a fixed
// (data-independent) causal convolution.
//
// Per channel h, N/2 complex states with diagonal A_n (Re A_n < 0), B_n, C_n and
// step Δ_h = exp(log_dt_h); each state's conjugate partner is implied, so the
// true state size is N and the kernel is real:
//   ZOH:       Ā = exp(ΔA),                  B̄ = (exp(ΔA) − 1)/A · B
//   bilinear:  Ā = (1 + ΔA/2)/(1 − ΔA/2),    B̄ = Δ·B/(1 − ΔA/2)
//   K_k = 2·Re Σ_n C_n Ā_n^k B̄_n  (a Vandermonde product),   y = K * u + D·u.
// The mixing matrix is M[i][j] = K[i−j] (+ D on the diagonal): lower-triangular Toeplitz.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/detail/s4_common.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"

namespace mixlens {

struct s4d_kind {
  static constexpr std::string_view name = "S4D";
};

enum class ssm_discretization { zoh, bilinear };

// The diagonal initializations of the S4D paper (n = 0 … N/2 − 1, N the full
// state size):
//   lin:  A_n = −1/2 + iπn
//   inv:  A_n = −1/2 + i·(N/π)·(N/(2n+1) − 1)
//   real: A_n = −(n + 1)
// Imaginary parts are taken positive as in the standalone S4D module of
// state-spaces/s4; its DPLR-based initializer uses the conjugates, which gives
// the same kernels with B and C conjugated.
enum class s4d_init { lin, inv, real };

[[nodiscard]] constexpr std::string_view to_string(s4d_init init) { return detail::enum_name(init, {"S4D-Lin", "S4D-Inv", "S4D-Real"}); }

// The N/2 diagonal entries of A for an initialization (state_size = N, even).
template <class T>
[[nodiscard]] std::vector<complex<T>> s4d_diagonal(s4d_init init, index_t state_size) {
  constexpr std::string_view where = "mixlens::s4d_diagonal";
  detail::check_positive(where, "state_size", state_size);
  if (state_size % 2 != 0) detail::fail(where, "state_size", "an even N (conjugate pairs)", state_size);
  const index_t half = state_size / 2;
  const double N = static_cast<double>(state_size), pi = std::numbers::pi;
  std::vector<complex<T>> a(static_cast<std::size_t>(half));
  for (index_t n = 0; n < half; ++n) {
    const double dn = static_cast<double>(n);
    double re = -0.5, im = 0.0;
    switch (init) {
      case s4d_init::lin: im = pi * dn; break;
      case s4d_init::inv: im = N / pi * (N / (2.0 * dn + 1.0) - 1.0); break;
      case s4d_init::real: re = -(dn + 1.0); break;
    }
    a[static_cast<std::size_t>(n)] = complex<T>(static_cast<T>(re), static_cast<T>(im));
  }
  return a;
}

// One discretized state: Ā, its logarithm (for Vandermonde powers Ā^k = exp(k·log Ā)) and B̄.
struct s4d_discrete_state {
  detail::s4_complex a_bar, log_a_bar, b_bar;
};

// Discretizes one diagonal state, in double precision.
[[nodiscard]] inline s4d_discrete_state s4d_discretize(detail::s4_complex a, detail::s4_complex b, double dt,
                                                       ssm_discretization disc) {
  const detail::s4_complex dta = dt * a;
  s4d_discrete_state s;
  if (disc == ssm_discretization::zoh) {
    s.log_a_bar = dta;
    s.b_bar = detail::complex_expm1(dta) / a * b;
  } else {
    const detail::s4_complex half = 0.5 * dta;
    s.log_a_bar = detail::s4_log1p(half) - detail::s4_log1p(-half);
    s.b_bar = dt * b / (1.0 - half);
  }
  s.a_bar = cuda::std::exp(s.log_a_bar);
  return s;
}

// The unbound S4D layer kernel: owns its parameters (public, as in a module), and
// generates the kernel for any length. Parameters are checked on every use.
template <class T>
class s4d_mixer {
 public:
  using value_type = T;

  matrix<complex<T>> a;    // H × N/2, Re < 0
  matrix<complex<T>> b;    // H × N/2
  matrix<complex<T>> c;    // H × N/2
  std::vector<T> log_dt;   // H: Δ_h = exp(log_dt_h)
  std::vector<T> skip;     // H (the D term) or empty
  ssm_discretization discretization = ssm_discretization::zoh;

  s4d_mixer() = default;
  s4d_mixer(matrix<complex<T>> a_, matrix<complex<T>> b_, matrix<complex<T>> c_, std::vector<T> log_dt_,
            std::vector<T> skip_ = {}, ssm_discretization disc = ssm_discretization::zoh)
      : a(std::move(a_)), b(std::move(b_)), c(std::move(c_)), log_dt(std::move(log_dt_)), skip(std::move(skip_)),
        discretization(disc) {
    validate();
  }

  // An initialized layer as state-spaces/s4 builds one: A from `diagonal` (shared by
  // channels), B = 1, C complex normal (unit variance), log Δ uniform in
  // [log dt_min, log dt_max], D normal.
  static s4d_mixer init(index_t channels, index_t state_size, s4d_init diagonal, std::uint64_t seed,
                        ssm_discretization disc = ssm_discretization::zoh, double dt_min = 1e-3,
                        double dt_max = 1e-1) {
    constexpr std::string_view where = "mixlens::s4d_mixer::init";
    detail::check_positive(where, "channels", channels);
    const auto diag = s4d_diagonal<T>(diagonal, state_size);
    const index_t half = state_size / 2;
    detail::s4_random rng(seed);
    s4d_mixer m;
    m.a = matrix<complex<T>>(channels, half);
    m.b = matrix<complex<T>>(channels, half);
    for (index_t h = 0; h < channels; ++h)
      for (index_t n = 0; n < half; ++n) {
        m.a(h, n) = diag[static_cast<std::size_t>(n)];
        m.b(h, n) = complex<T>(T(1), T(0));
      }
    m.c = rng.complex_normal<T>(channels, half);
    m.log_dt = rng.log_dt<T>(channels, dt_min, dt_max);
    m.skip = rng.normal<T>(channels);
    m.discretization = disc;
    m.validate();
    return m;
  }

  [[nodiscard]] index_t channels() const { return a.extent(0); }
  [[nodiscard]] index_t state_size() const { return 2 * a.extent(1); }  // N, conjugates included

  void validate() const {
    constexpr std::string_view where = "mixlens::s4d_mixer";
    detail::check_positive(where, "a (channels, extent 0)", a.extent(0));
    detail::check_positive(where, "a (states, extent 1)", a.extent(1));
    detail::s4_check_shape<T>(where, "b", channels(), a.extent(1), b.view());
    detail::s4_check_shape<T>(where, "c", channels(), a.extent(1), c.view());
    detail::s4_check_stable<T>(where, "a", a.view());
    detail::s4_check_log_dt(where, log_dt, channels());
    if (!skip.empty()) detail::check_equal(where, "skip", "size", channels(), static_cast<index_t>(skip.size()));
  }

  [[nodiscard]] double dt(index_t h) const { return std::exp(static_cast<double>(log_dt[static_cast<std::size_t>(h)])); }

  [[nodiscard]] s4d_discrete_state discretize(index_t h, index_t n) const {
    return s4d_discretize(detail::to_s4_complex(a(h, n)), detail::to_s4_complex(b(h, n)), dt(h), discretization);
  }

  // K (H × L), computed in double: K_k = 2·Re Σ_n (C_n B̄_n)·exp(k·log Ā_n). Powers
  // are taken exactly every `block` steps and by multiplication in between, which
  // keeps the error at a few ulps while needing one complex exp per block.
  [[nodiscard]] matrix<T> kernel(index_t length) const {
    constexpr std::string_view where = "mixlens::s4d_mixer::kernel";
    validate();
    detail::check_positive(where, "length", length);
    constexpr index_t block = 32;
    const index_t H = channels(), half = a.extent(1), L = length;
    matrix<T> k(H, L);
    std::vector<double> acc(static_cast<std::size_t>(L));
    for (index_t h = 0; h < H; ++h) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (index_t n = 0; n < half; ++n) {
        const auto s = discretize(h, n);
        const detail::s4_complex coef = detail::to_s4_complex(c(h, n)) * s.b_bar;
        for (index_t k0 = 0; k0 < L; k0 += block) {
          // Ā^0 = 1 even for Ā = 0 (log Ā = −inf, a bilinear step with ΔA = −2).
          detail::s4_complex p = k0 == 0 ? coef : coef * cuda::std::exp(static_cast<double>(k0) * s.log_a_bar);
          for (index_t t = k0; t < std::min(L, k0 + block); ++t) {
            acc[static_cast<std::size_t>(t)] += 2.0 * p.real();
            p *= s.a_bar;
          }
        }
      }
      for (index_t t = 0; t < L; ++t) k(h, t) = static_cast<T>(acc[static_cast<std::size_t>(t)]);
    }
    return k;
  }

  // The bound operator for sequences of `length`: the kernel and D, as a causal convolution.
  [[nodiscard]] bound_lti<T, s4d_kind> bind(index_t length) const {
    return make_bound_lti<s4d_kind>(kernel(length), skip, length);
  }

  // Binds to an input (H × L): only its shape matters, the operator is the same for every x.
  [[nodiscard]] bound_lti<T, s4d_kind> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::s4d_mixer::bind";
    detail::check_equal(where, "x", "channels (extent 0)", channels(), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    return bind(x.extent(1));
  }
};

}  // namespace mixlens
