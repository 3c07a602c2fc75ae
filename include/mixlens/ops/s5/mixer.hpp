// The s5 mixer: parameters, init and bind (the view is ops/s5/operator.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/hippo.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/s5/operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

// ---- the unbound mixer ----------------------------------------------------------

template <class T>
class s5_mixer {
 public:
  using value_type = T;

  // Continuous-time parameters: lambda (P), b_tilde (P × H), c_tilde (H × P),
  // log_step (P), skip (H, or empty for none). P counts stored states.
  // allow_growth admits Re Λ ≥ 0 (a trained checkpoint's unstable state, which
  // S5 trains without clip_eigs): bound to a finite length, the operator then
  // checks only that Λ̄^L stays in range (s5_operator::allow_growth).
  // c_backward (H × P, or empty) makes the mixer bidirectional: the reverse
  // scan's output matrix C̃← (the reference's C2, or C's second P columns).
  s5_mixer(std::vector<complex<T>> lambda, matrix<complex<T>> b_tilde, matrix<complex<T>> c_tilde,
           std::vector<T> log_step, std::vector<T> skip, s5_discretization discretization = s5_discretization::zoh,
           bool conj_sym = true, bool allow_growth = false, matrix<complex<T>> c_backward = {})
      : lambda_(std::move(lambda)),
        b_tilde_(std::move(b_tilde)),
        c_tilde_(std::move(c_tilde)),
        log_step_(std::move(log_step)),
        skip_(std::move(skip)),
        discretization_(discretization),
        conj_sym_(conj_sym),
        allow_growth_(allow_growth),
        c_backward_(std::move(c_backward)) {
    constexpr std::string_view where = "mixlens::s5_mixer";
    const index_t P = static_cast<index_t>(lambda_.size());
    detail::check_positive(where, "lambda (states)", P);
    detail::check_equal(where, "b_tilde", "states (extent 0)", P, b_tilde_.extent(0));
    const index_t H = b_tilde_.extent(1);
    detail::check_positive(where, "b_tilde (channels, extent 1)", H);
    detail::check_equal(where, "c_tilde", "channels (extent 0)", H, c_tilde_.extent(0));
    detail::check_equal(where, "c_tilde", "states (extent 1)", P, c_tilde_.extent(1));
    detail::check_equal(where, "log_step", "size", P, static_cast<index_t>(log_step_.size()));
    if (!skip_.empty()) detail::check_equal(where, "skip", "size", H, static_cast<index_t>(skip_.size()));
    if (c_backward_.size() > 0) {
      detail::check_equal(where, "c_backward", "channels (extent 0)", H, c_backward_.extent(0));
      detail::check_equal(where, "c_backward", "states (extent 1)", P, c_backward_.extent(1));
    }
    for (index_t p = 0; p < P; ++p) {
      const complex<T> l = lambda_[static_cast<std::size_t>(p)];
      if (!(l.real() < T(0)) && !(allow_growth_ && std::isfinite(double(l.real()))))
        detail::fail(where, "lambda[" + std::to_string(p) + "]",
                     allow_growth_ ? "a finite real part" : "Re < 0 (a stable state; allow_growth admits Re >= 0)",
                     "Re = " + std::to_string(l.real()));
      if (!std::isfinite(double(l.imag())))
        detail::fail(where, "lambda[" + std::to_string(p) + "]", "a finite imaginary part", l.imag());
      if (!std::isfinite(double(log_step_[static_cast<std::size_t>(p)])))
        detail::fail(where, "log_step[" + std::to_string(p) + "]", "a finite value", log_step_[static_cast<std::size_t>(p)]);
    }
  }

  // S5's initialization for H channels (see s5_init). Λ: J copies of the HiPPO-N
  // eigenvalues of size N = state_size / J (under conjugate symmetry the N/2 with
  // negative imaginary part); V the matching eigenvectors, block diagonal.
  // Draws, in this order, from one detail::splitmix64(seed): B (P_full × H, truncated normal, std
  // 1/sqrt(P_full)), then B̃ = V⁻¹B; C (see s5_c_init), then C̃ = C·V; D ~ N(0, 1);
  // log_step ~ U[log dt_min, log dt_max].
  [[nodiscard]] static s5_mixer init(index_t channels, const s5_init& options = {}) {
    constexpr std::string_view where = "mixlens::s5_mixer::init";
    detail::check_positive(where, "channels", channels);
    detail::check_positive(where, "options.state_size", options.state_size);
    detail::check_positive(where, "options.blocks", options.blocks);
    if (options.state_size % options.blocks != 0)
      detail::fail(where, "options.blocks", "a divisor of state_size " + std::to_string(options.state_size), options.blocks);
    const index_t n = options.state_size / options.blocks;  // block size
    if (options.conj_sym && n % 2 != 0)
      detail::fail(where, "options.state_size", "an even block size (state_size / blocks) with conj_sym", n);
    if (!(options.dt_min > 0)) detail::fail(where, "options.dt_min", "a positive value", options.dt_min);
    if (!(options.dt_max >= options.dt_min))
      detail::fail(where, "options.dt_max", ">= dt_min " + std::to_string(options.dt_min), options.dt_max);

    const index_t H = channels, P_full = options.state_size, J = options.blocks;
    const index_t keep = options.conj_sym ? n / 2 : n;  // states kept per block
    const index_t P = keep * J;
    const detail::hippo_n_eigen eig = detail::hippo_n_eigendecomposition(n);
    // V (P_full × P) is block diagonal with blocks v(:, :keep); V⁻¹ := V* (P × P_full).
    auto v_entry = [&](index_t row, index_t col) -> complex<double> {
      const index_t block = col / keep;
      if (row / n != block) return 0;
      return eig.v(row % n, col % keep);
    };

    detail::splitmix64 gen(options.seed);
    std::vector<complex<T>> lambda(static_cast<std::size_t>(P));
    for (index_t p = 0; p < P; ++p) {
      const complex<double> l = eig.lambda[static_cast<std::size_t>(p % keep)];
      lambda[static_cast<std::size_t>(p)] = {static_cast<T>(l.real()), static_cast<T>(l.imag())};
    }

    matrix<double> b(P_full, H);
    for (index_t k = 0; k < b.size(); ++k) b.data()[k] = gen.truncated_normal(1 / std::sqrt(double(P_full)));
    matrix<complex<T>> b_tilde(P, H);
    for (index_t p = 0; p < P; ++p)
      for (index_t h = 0; h < H; ++h) {
        complex<double> s = 0;
        for (index_t k = 0; k < P_full; ++k) s += cuda::std::conj(v_entry(k, p)) * b(k, h);
        b_tilde(p, h) = {static_cast<T>(s.real()), static_cast<T>(s.imag())};
      }

    matrix<complex<T>> c_tilde(H, P);
    if (options.c_init == s5_c_init::complex_normal) {
      for (index_t k = 0; k < c_tilde.size(); ++k) {
        const double re = std::sqrt(0.5) * gen.normal();
        const double im = std::sqrt(0.5) * gen.normal();
        c_tilde.data()[k] = {static_cast<T>(re), static_cast<T>(im)};
      }
    } else {
      const double stddev = options.c_init == s5_c_init::lecun_normal ? 1 / std::sqrt(double(P_full * H))
                                                                   : 1 / std::sqrt(double(P_full));
      matrix<complex<double>> c(H, P_full);
      for (index_t k = 0; k < c.size(); ++k) {
        const double re = gen.truncated_normal(stddev);
        const double im = gen.truncated_normal(stddev);
        c.data()[k] = {re, im};
      }
      for (index_t h = 0; h < H; ++h)
        for (index_t p = 0; p < P; ++p) {
          complex<double> s = 0;
          for (index_t k = 0; k < P_full; ++k) s += c(h, k) * v_entry(k, p);
          c_tilde(h, p) = {static_cast<T>(s.real()), static_cast<T>(s.imag())};
        }
    }

    std::vector<T> skip(static_cast<std::size_t>(H));
    for (auto& d : skip) d = static_cast<T>(gen.normal());
    std::vector<T> log_step(static_cast<std::size_t>(P));
    const double lo = std::log(options.dt_min), hi = std::log(options.dt_max);
    for (auto& s : log_step) s = static_cast<T>(lo + (hi - lo) * gen.uniform());

    return s5_mixer(std::move(lambda), std::move(b_tilde), std::move(c_tilde), std::move(log_step), std::move(skip),
                    options.discretization, options.conj_sym);
  }

  [[nodiscard]] index_t channels() const { return b_tilde_.extent(1); }
  [[nodiscard]] index_t states() const { return static_cast<index_t>(lambda_.size()); }
  [[nodiscard]] const std::vector<complex<T>>& lambda() const { return lambda_; }
  [[nodiscard]] const matrix<complex<T>>& b_tilde() const { return b_tilde_; }
  [[nodiscard]] const matrix<complex<T>>& c_tilde() const { return c_tilde_; }
  [[nodiscard]] const matrix<complex<T>>& c_backward() const { return c_backward_; }
  [[nodiscard]] bool bidirectional() const { return c_backward_.size() > 0; }
  [[nodiscard]] const std::vector<T>& log_step() const { return log_step_; }
  [[nodiscard]] const std::vector<T>& skip() const { return skip_; }
  [[nodiscard]] s5_discretization discretization() const { return discretization_; }
  [[nodiscard]] bool conj_sym() const { return conj_sym_; }
  [[nodiscard]] bool allow_growth() const { return allow_growth_; }

  // The bound operator for sequences of `length`: discretizes (in double).
  [[nodiscard]] bound_s5<T> bind(index_t length) const {
    detail::check_positive("mixlens::s5_mixer::bind", "length", length);
    const index_t P = states(), H = channels();
    s5_storage<T> s{std::vector<complex<T>>(static_cast<std::size_t>(P)), matrix<complex<T>>(P, H), c_tilde_, skip_,
                    c_backward_};
    for (index_t p = 0; p < P; ++p) {
      const complex<double> l = detail::widen(lambda_[static_cast<std::size_t>(p)]);
      const double step = std::exp(double(log_step_[static_cast<std::size_t>(p)]));
      complex<double> a, g;  // Λ̄_p and the factor taking B̃ row p to B̄ row p
      if (discretization_ == s5_discretization::zoh) {
        a = cuda::std::exp(l * step);
        g = (a - 1.0) / l;
      } else {
        const complex<double> inv = 1.0 / (1.0 - l * (step / 2));
        a = inv * (1.0 + l * (step / 2));
        g = inv * step;
      }
      s.lambda_bar[static_cast<std::size_t>(p)] = {static_cast<T>(a.real()), static_cast<T>(a.imag())};
      for (index_t h = 0; h < H; ++h) {
        const complex<double> bb = g * detail::widen(b_tilde_(p, h));
        s.b_bar(p, h) = {static_cast<T>(bb.real()), static_cast<T>(bb.imag())};
      }
    }
    const bool cs = conj_sym_, grow = allow_growth_;
    bound_s5<T> op(std::move(s), [length, cs, grow](const s5_storage<T>& st) {
      s5_operator<T> v(vector_view<const complex<T>>(st.lambda_bar.data(), st.lambda_bar.size()), st.b_bar.view(),
                       st.c_tilde.view(), vector_view<const T>(st.skip.data(), st.skip.size()), length, cs,
                       st.c_backward.view());
      v.allow_growth = grow;
      return v;
    });
    op->validate();
    return op;
  }

  // Time-invariant: the input fixes only the length (and must have H channels).
  [[nodiscard]] bound_s5<T> bind(matrix_view<const T> x) const {
    detail::check_equal("mixlens::s5_mixer::bind", "x", "channels (extent 0)", channels(), x.extent(0));
    return bind(x.extent(1));
  }

 private:
  std::vector<complex<T>> lambda_;
  matrix<complex<T>> b_tilde_;
  matrix<complex<T>> c_tilde_;
  std::vector<T> log_step_;
  std::vector<T> skip_;
  s5_discretization discretization_;
  bool conj_sym_;
  bool allow_growth_ = false;
  matrix<complex<T>> c_backward_;
};

}  // namespace mixlens
