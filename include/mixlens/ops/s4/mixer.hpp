// S4 (Gu, Goel, Ré 2022): a structured state space with a diagonal-plus-low-rank
// (DPLR) state matrix, as a fixed causal convolution.
//
// Per channel h, N/2 stored states; the conjugate half is implied, so the true
// state is x = [x; x̄] of size N with
//   A = diag(Λ, Λ̄) − [P; P̄][Q; Q̄]*   (rank r),   B = [B; B̄],   C = [C, C̄],
// Re Λ < 0, and the bilinear discretization of step Δ_h = exp(log_dt_h):
//   Ā = (I − ΔA/2)⁻¹(I + ΔA/2),   B̄ = Δ·(I − ΔA/2)⁻¹B,   K_k = C Ā^k B̄  (real).
// Kernel by the S4 algorithm: with C̃ = C(I − Ā^L), the truncated generating
// function Σ_{k<L} K_k ζ^k = C̃ (I − Āζ)⁻¹ B̄ is evaluated at the L-th roots of
// unity, where it equals the DFT of K, then inverted by FFT. At ζ,
//   C̃ (I − Āζ)⁻¹ B̄ = Δ·C̃ (αI − βA)⁻¹ B,   α = 1 − ζ,  β = Δ(1 + ζ)/2,
// and αI − βA = D + βPQ* with D diagonal: Cauchy sums Σ_n x_n y_n/(α − βλ_n) and a
// Woodbury correction. (S4 writes this as 2/(1+ζ)·(z − ΔΛ)⁻¹ with z = 2(1−ζ)/(1+ζ);
// the α, β form is the same and stays finite at ζ = −1.)
// The mixing matrix is M[i][j] = K[i−j] (+ D on the diagonal): lower-triangular Toeplitz.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/fft.hpp"
#include "mixlens/detail/s4_common.hpp"
#include "mixlens/ops/s4/hippo.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"

namespace mixlens {

struct s4_kind {
  static constexpr std::string_view name = "S4";
};

namespace detail {

inline double s4_magnitude(double x) { return std::abs(x); }
inline double s4_magnitude(s4_complex x) { return cuda::std::abs(x); }

// Solves m·x = rhs in place (m is n × n, row-major, destroyed), Gaussian
// elimination with partial pivoting; n is the low rank (1 or 2 in practice).
template <class S>
void s4_small_solve(std::vector<S>& m, std::vector<S>& rhs, index_t n) {
  auto at = [&](index_t i, index_t j) -> S& { return m[static_cast<std::size_t>(i * n + j)]; };
  for (index_t col = 0; col < n; ++col) {
    index_t piv = col;
    for (index_t i = col + 1; i < n; ++i)
      if (s4_magnitude(at(i, col)) > s4_magnitude(at(piv, col))) piv = i;
    if (piv != col) {
      for (index_t j = 0; j < n; ++j) std::swap(at(col, j), at(piv, j));
      std::swap(rhs[static_cast<std::size_t>(col)], rhs[static_cast<std::size_t>(piv)]);
    }
    for (index_t i = col + 1; i < n; ++i) {
      const S f = at(i, col) / at(col, col);
      for (index_t j = col; j < n; ++j) at(i, j) -= f * at(col, j);
      rhs[static_cast<std::size_t>(i)] -= f * rhs[static_cast<std::size_t>(col)];
    }
  }
  for (index_t i = n - 1; i >= 0; --i) {
    S acc = rhs[static_cast<std::size_t>(i)];
    for (index_t j = i + 1; j < n; ++j) acc -= at(i, j) * rhs[static_cast<std::size_t>(j)];
    rhs[static_cast<std::size_t>(i)] = acc / at(i, i);
  }
}


// One channel's DPLR system in double precision, half-state storage.
struct s4_channel {
  index_t half = 0, rank = 0;
  double dt = 0;
  std::vector<s4_complex> lambda, b, c;  // half
  std::vector<s4_complex> p, q;          // rank × half

  [[nodiscard]] s4_complex p_at(index_t r, index_t n) const { return p[static_cast<std::size_t>(r * half + n)]; }
  [[nodiscard]] s4_complex q_at(index_t r, index_t n) const { return q[static_cast<std::size_t>(r * half + n)]; }

  // C Ā^L as a row vector (half storage), by L steps c ← c (I − ΔA/2)⁻¹(I + ΔA/2),
  // each O(N·r) through Woodbury on the DPLR structure.
  [[nodiscard]] std::vector<s4_complex> c_times_a_bar_power(index_t L) const {
    const auto H = static_cast<std::size_t>(half);
    std::vector<s4_complex> de(H), cur = c, w(H);
    for (std::size_t n = 0; n < H; ++n) de[n] = 1.0 - 0.5 * dt * lambda[n];
    // I + Q* D⁻¹ (Δ/2) P over the full state: real, since the halves are conjugate.
    std::vector<double> gram(static_cast<std::size_t>(rank * rank));
    for (index_t i = 0; i < rank; ++i)
      for (index_t j = 0; j < rank; ++j) {
        s4_complex acc = 0.0;
        for (index_t n = 0; n < half; ++n) acc += cuda::std::conj(q_at(i, n)) * p_at(j, n) / de[static_cast<std::size_t>(n)];
        gram[static_cast<std::size_t>(i * rank + j)] = (i == j ? 1.0 : 0.0) + dt * acc.real();
      }
    std::vector<double> t(static_cast<std::size_t>(rank)), g(static_cast<std::size_t>(rank)), m;
    for (index_t step = 0; step < L; ++step) {
      for (std::size_t n = 0; n < H; ++n) w[n] = cur[n] / de[n];
      // t solves t (I + M) = w (Δ/2) P, i.e. (I + M)ᵀ tᵀ = (…)ᵀ.
      for (index_t j = 0; j < rank; ++j) {
        s4_complex acc = 0.0;
        for (index_t n = 0; n < half; ++n) acc += w[static_cast<std::size_t>(n)] * p_at(j, n);
        t[static_cast<std::size_t>(j)] = dt * acc.real();
      }
      m.assign(static_cast<std::size_t>(rank * rank), 0.0);
      for (index_t i = 0; i < rank; ++i)
        for (index_t j = 0; j < rank; ++j)
          m[static_cast<std::size_t>(i * rank + j)] = gram[static_cast<std::size_t>(j * rank + i)];
      s4_small_solve(m, t, rank);
      // u = w − t Q* D⁻¹, then c' = u (I + ΔA/2) = u (I + ΔΛ/2) − (Δ/2)(u P) Q*.
      for (index_t n = 0; n < half; ++n) {
        s4_complex corr = 0.0;
        for (index_t i = 0; i < rank; ++i) corr += t[static_cast<std::size_t>(i)] * cuda::std::conj(q_at(i, n));
        w[static_cast<std::size_t>(n)] -= corr / de[static_cast<std::size_t>(n)];
      }
      for (index_t j = 0; j < rank; ++j) {
        s4_complex acc = 0.0;
        for (index_t n = 0; n < half; ++n) acc += w[static_cast<std::size_t>(n)] * p_at(j, n);
        g[static_cast<std::size_t>(j)] = 2.0 * acc.real();
      }
      for (index_t n = 0; n < half; ++n) {
        s4_complex corr = 0.0;
        for (index_t j = 0; j < rank; ++j) corr += g[static_cast<std::size_t>(j)] * cuda::std::conj(q_at(j, n));
        cur[static_cast<std::size_t>(n)] =
            w[static_cast<std::size_t>(n)] * (1.0 + 0.5 * dt * lambda[static_cast<std::size_t>(n)]) - 0.5 * dt * corr;
      }
    }
    return cur;
  }

  // K_0 … K_{L−1}.
  void kernel(index_t L, double* out) const {
    const auto H = static_cast<std::size_t>(half);
    const auto R = static_cast<std::size_t>(rank);
    // C̃ = C (I − Ā^L)
    std::vector<s4_complex> ct = c_times_a_bar_power(L);
    for (std::size_t n = 0; n < H; ++n) ct[n] = c[n] - ct[n];
    // Row factors x (C̃, then Q̄_i) and column factors y (B, then P_j) of the Cauchy sums.
    std::vector<s4_complex> xs((R + 1) * H), ys((R + 1) * H);
    for (std::size_t n = 0; n < H; ++n) {
      xs[n] = ct[n];
      ys[n] = b[n];
      for (std::size_t r = 0; r < R; ++r) {
        xs[(r + 1) * H + n] = cuda::std::conj(q[r * H + n]);
        ys[(r + 1) * H + n] = p[r * H + n];
      }
    }
    std::vector<s4_complex> freq(static_cast<std::size_t>(L));
    std::vector<s4_complex> k((R + 1) * (R + 1)), inv(H), inv_conj(H), m, rhs;
    const double two_pi = 2.0 * std::numbers::pi;
    for (index_t j = 0; 2 * j <= L; ++j) {
      s4_complex zeta;
      if (j == 0) zeta = 1.0;
      else if (2 * j == L) zeta = -1.0;
      else {
        const double th = two_pi * static_cast<double>(j) / static_cast<double>(L);
        zeta = s4_complex(std::cos(th), -std::sin(th));
      }
      const s4_complex alpha = 1.0 - zeta, beta = 0.5 * dt * (1.0 + zeta);
      for (std::size_t n = 0; n < H; ++n) {
        inv[n] = 1.0 / (alpha - beta * lambda[n]);
        inv_conj[n] = 1.0 / (alpha - beta * cuda::std::conj(lambda[n]));
      }
      // k(x, y) = Σ over the full state = Σ_n x y/(α − βλ) + conj(x y)/(α − βλ̄).
      for (std::size_t a = 0; a <= R; ++a)
        for (std::size_t bb = 0; bb <= R; ++bb) {
          s4_complex acc = 0.0;
          for (std::size_t n = 0; n < H; ++n) {
            const s4_complex xy = xs[a * H + n] * ys[bb * H + n];
            acc += xy * inv[n] + cuda::std::conj(xy) * inv_conj[n];
          }
          k[a * (R + 1) + bb] = acc;
        }
      // C̃ (D + βPQ*)⁻¹ B = k00 − β k01 (I + β k11)⁻¹ k10.
      s4_complex value = k[0];
      if (beta != s4_complex(0.0)) {
        m.assign(R * R, 0.0);
        rhs.assign(R, 0.0);
        for (std::size_t i = 0; i < R; ++i) {
          rhs[i] = k[(i + 1) * (R + 1)];
          for (std::size_t jj = 0; jj < R; ++jj)
            m[i * R + jj] = (i == jj ? 1.0 : 0.0) + beta * k[(i + 1) * (R + 1) + (jj + 1)];
        }
        s4_small_solve(m, rhs, rank);
        s4_complex corr = 0.0;
        for (std::size_t jj = 0; jj < R; ++jj) corr += k[jj + 1] * rhs[jj];
        value -= beta * corr;
      }
      freq[static_cast<std::size_t>(j)] = dt * value;
      if (j > 0 && 2 * j != L) freq[static_cast<std::size_t>(L - j)] = cuda::std::conj(dt * value);
    }
    dft<double>(vector_view<s4_complex>(freq.data(), freq.size()), +1);
    for (index_t t = 0; t < L; ++t) out[t] = freq[static_cast<std::size_t>(t)].real() / static_cast<double>(L);
  }
};

}  // namespace detail

// The unbound S4 layer kernel: owns its parameters (public, as in a module).
template <class T>
class s4_mixer {
 public:
  using value_type = T;

  matrix<complex<T>> lambda;  // H × N/2: diagonal part Λ, Re < 0
  tensor<complex<T>, 3> p;    // r × H × N/2: low-rank factor P
  tensor<complex<T>, 3> q;    // r × H × N/2: low-rank factor Q (S4 ties Q = P)
  matrix<complex<T>> b;       // H × N/2
  matrix<complex<T>> c;       // H × N/2: the output vector C (not S4's C̃)
  std::vector<T> log_dt;      // H: Δ_h = exp(log_dt_h)
  std::vector<T> skip;        // H (the D term) or empty

  s4_mixer() = default;
  s4_mixer(matrix<complex<T>> lambda_, tensor<complex<T>, 3> p_, tensor<complex<T>, 3> q_, matrix<complex<T>> b_,
           matrix<complex<T>> c_, std::vector<T> log_dt_, std::vector<T> skip_ = {})
      : lambda(std::move(lambda_)), p(std::move(p_)), q(std::move(q_)), b(std::move(b_)), c(std::move(c_)),
        log_dt(std::move(log_dt_)), skip(std::move(skip_)) {
    validate();
  }
  // Q = P, as S4 parametrizes it (A = Λ − P P*).
  s4_mixer(matrix<complex<T>> lambda_, tensor<complex<T>, 3> p_, matrix<complex<T>> b_, matrix<complex<T>> c_,
           std::vector<T> log_dt_, std::vector<T> skip_ = {})
      : s4_mixer(std::move(lambda_), p_, p_, std::move(b_), std::move(c_), std::move(log_dt_), std::move(skip_)) {}

  // S4's default layer: HiPPO-LegS in NPLR form (Λ, P, B shared by the channels;
  // P padded with zero rows beyond rank 1), C complex normal, log Δ uniform in
  // [log dt_min, log dt_max], D normal. Im B is clipped to ±b_clip, as
  // state-spaces/s4's nplr(…, B_clip=2.0) does by default (std::nullopt keeps
  // the exact V*b; the clipped B is no longer LegS's, which the reference accepts
  // for stability). The eigenvectors match the reference's (LAPACK eigh) up to a
  // sign per state, under which the clip is symmetric: (Λ, P, B) are the
  // reference's up to that sign, an equivalent state basis.
  static s4_mixer init(index_t channels, index_t state_size, std::uint64_t seed, index_t rank = 1,
                            double dt_min = 1e-3, double dt_max = 1e-1, std::optional<double> b_clip = 2.0) {
    constexpr std::string_view where = "mixlens::s4_mixer::init";
    detail::check_positive(where, "channels", channels);
    detail::check_positive(where, "rank", rank);
    if (b_clip && !(*b_clip >= 0)) detail::fail(where, "b_clip", "a bound >= 0 (or std::nullopt: no clip)", *b_clip);
    const auto nplr = detail::legs_nplr(state_size);
    const index_t half = state_size / 2;
    auto cast = [](detail::s4_complex z) { return complex<T>(static_cast<T>(z.real()), static_cast<T>(z.imag())); };
    s4_mixer m;
    m.lambda = matrix<complex<T>>(channels, half);
    m.b = matrix<complex<T>>(channels, half);
    m.p = tensor<complex<T>, 3>(rank, channels, half);
    for (index_t h = 0; h < channels; ++h)
      for (index_t n = 0; n < half; ++n) {
        const auto i = static_cast<std::size_t>(n);
        m.lambda(h, n) = cast(nplr.lambda[i]);
        auto b = nplr.b[i];
        if (b_clip) b = detail::s4_complex(b.real(), std::clamp(b.imag(), -*b_clip, *b_clip));
        m.b(h, n) = cast(b);
        m.p(0, h, n) = cast(nplr.p[i]);
      }
    m.q = m.p;
    detail::s4_random rng(seed);
    m.c = rng.complex_normal<T>(channels, half);
    m.log_dt = rng.log_dt<T>(channels, dt_min, dt_max);
    m.skip = rng.normal<T>(channels);
    m.validate();
    return m;
  }

  [[nodiscard]] index_t channels() const { return lambda.extent(0); }
  [[nodiscard]] index_t state_size() const { return 2 * lambda.extent(1); }  // N, conjugates included
  [[nodiscard]] index_t rank() const { return p.extent(0); }

  void validate() const {
    constexpr std::string_view where = "mixlens::s4_mixer";
    detail::check_positive(where, "lambda (channels, extent 0)", lambda.extent(0));
    detail::check_positive(where, "lambda (states, extent 1)", lambda.extent(1));
    const index_t H = channels(), half = lambda.extent(1);
    detail::s4_check_shape<T>(where, "b", H, half, b.view());
    detail::s4_check_shape<T>(where, "c", H, half, c.view());
    detail::check_positive(where, "p (rank, extent 0)", p.extent(0));
    detail::check_equal(where, "p", "channels (extent 1)", H, p.extent(1));
    detail::check_equal(where, "p", "states (extent 2)", half, p.extent(2));
    detail::check_equal(where, "q", "rank (extent 0)", p.extent(0), q.extent(0));
    detail::check_equal(where, "q", "channels (extent 1)", H, q.extent(1));
    detail::check_equal(where, "q", "states (extent 2)", half, q.extent(2));
    detail::s4_check_stable<T>(where, "lambda", lambda.view());
    detail::s4_check_log_dt(where, log_dt, H);
    if (!skip.empty()) detail::check_equal(where, "skip", "size", H, static_cast<index_t>(skip.size()));
  }

  [[nodiscard]] double dt(index_t h) const { return std::exp(static_cast<double>(log_dt[static_cast<std::size_t>(h)])); }

  // K (H × L), computed in double by the S4 algorithm.
  [[nodiscard]] matrix<T> kernel(index_t length) const {
    constexpr std::string_view where = "mixlens::s4_mixer::kernel";
    validate();
    detail::check_positive(where, "length", length);
    const index_t H = channels(), L = length;
    matrix<T> k(H, L);
    std::vector<double> out(static_cast<std::size_t>(L));
    for (index_t h = 0; h < H; ++h) {
      const auto ch = channel(h);
      ch.kernel(L, out.data());
      for (index_t t = 0; t < L; ++t) k(h, t) = static_cast<T>(out[static_cast<std::size_t>(t)]);
    }
    return k;
  }

  [[nodiscard]] bound_lti<T, s4_kind> bind(index_t length) const {
    return make_bound_lti<s4_kind>(kernel(length), skip, length);
  }

  // Binds to an input (H × L): only its shape matters, the operator is the same for every x.
  [[nodiscard]] bound_lti<T, s4_kind> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::s4_mixer::bind";
    detail::check_equal(where, "x", "channels (extent 0)", channels(), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    return bind(x.extent(1));
  }

 private:
  [[nodiscard]] detail::s4_channel channel(index_t h) const {
    detail::s4_channel ch;
    ch.half = lambda.extent(1);
    ch.rank = rank();
    ch.dt = dt(h);
    for (index_t n = 0; n < ch.half; ++n) {
      ch.lambda.push_back(detail::to_s4_complex(lambda(h, n)));
      ch.b.push_back(detail::to_s4_complex(b(h, n)));
      ch.c.push_back(detail::to_s4_complex(c(h, n)));
    }
    for (index_t r = 0; r < ch.rank; ++r)
      for (index_t n = 0; n < ch.half; ++n) {
        ch.p.push_back(detail::to_s4_complex(p(r, h, n)));
        ch.q.push_back(detail::to_s4_complex(q(r, h, n)));
      }
    return ch;
  }
};

}  // namespace mixlens
