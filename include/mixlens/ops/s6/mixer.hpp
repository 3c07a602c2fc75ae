// The s6 mixer: parameters, init and bind (the view is ops/s6/operator.hpp).
#pragma once

#include <cmath>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/gemm.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/s6/operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

// Mamba's selective SSM with its projections: Δ, B, C are computed from the input
// u (D × L) as in Mamba's reference code,
//   [δ; B; C] = x_proj·u_t,  Δ = softplus(dt_proj·δ + dt_bias),  A = −exp(A_log) (+ i·A_imag).
// For complex State, x_proj yields 2N values for B and 2N for C, read as
// (real, imaginary) pairs per state.
//
// Options of the reference kernels and their relatives, all off by default (the
// default path is unchanged by them): a bias of x_proj; RMSNorms of δ, B and C
// at every step, with a weight (Jamba) or without (Falcon-Mamba); Δ without the
// softplus (selective_scan_fn's delta_softplus = False); a time-invariant B or C,
// one (channels × N) matrix, as selective_scan_fn accepts B or C of shape (D, N),
// x_proj then yielding only the varying ones. The operator holds B and C as
// (groups × N × L) with shared groups: a time-invariant B or C is broadcast into
// (channels × N × L), and the other one with it (a copy per channel).
template <class T>
struct s6_rms_norm {
  bool enabled = false;
  std::vector<T> weight;  // empty: weight 1 (Falcon-Mamba's weightless norm)
};

template <class T, class State = T>
class s6_mixer {
 public:
  using value_type = T;
  using state_type = State;
  static constexpr bool is_complex = !std::is_same_v<State, T>;
  static constexpr index_t parts = is_complex ? 2 : 1;  // reals per B or C entry

  // Mamba's initialization: A_log = log(1..N) (S4D-Real; S4D-Lin imaginary parts
  // π·n for complex), x_proj ~ U(±1/√D), dt_proj.weight ~ U(±dt_rank^−½),
  // dt_bias = softplus⁻¹(dt) with dt log-uniform in [dt_min, dt_max], D = 1.
  static s6_mixer init(index_t channels, index_t state_size, index_t dt_rank, std::uint64_t seed,
                             double dt_min = 1e-3, double dt_max = 1e-1) {
    constexpr std::string_view where = "mixlens::s6_mixer::init";
    detail::check_positive(where, "channels", channels);
    detail::check_positive(where, "state_size", state_size);
    detail::check_positive(where, "dt_rank", dt_rank);
    s6_mixer m;
    m.x_proj = matrix<T>(dt_rank + 2 * parts * state_size, channels);
    m.dt_proj = matrix<T>(channels, dt_rank);
    m.dt_bias.assign(static_cast<std::size_t>(channels), T(0));
    m.a_log = matrix<T>(channels, state_size);
    m.a_imag = matrix<T>(is_complex ? channels : 0, is_complex ? state_size : 0);
    m.skip.assign(static_cast<std::size_t>(channels), T(1));
    detail::uniform_fill(m.x_proj, seed, 1.0 / std::sqrt(double(channels)));
    detail::uniform_fill(m.dt_proj, seed + 1, 1.0 / std::sqrt(double(dt_rank)));
    detail::splitmix64 rng(seed + 2);
    for (auto& bias : m.dt_bias) {
      const double dt = rng.log_uniform(dt_min, dt_max);
      bias = static_cast<T>(dt + std::log(-std::expm1(-dt)));  // softplus⁻¹(dt)
    }
    for (index_t d = 0; d < channels; ++d)
      for (index_t n = 0; n < state_size; ++n) {
        m.a_log(d, n) = is_complex ? static_cast<T>(std::log(0.5)) : static_cast<T>(std::log(double(n + 1)));
        if constexpr (is_complex) m.a_imag(d, n) = static_cast<T>(M_PI * double(n));
      }
    return m;
  }

  [[nodiscard]] index_t channels() const { return a_log.extent(0); }
  [[nodiscard]] index_t state_size() const { return a_log.extent(1); }
  [[nodiscard]] index_t dt_rank() const { return dt_proj.extent(1); }

  // The control signals for the input u (D × L), as Mamba computes them:
  // [δ; B; C] = x_proj·u_t, Δ = softplus(dt_proj·δ + dt_bias), A = −exp(A_log) (+ i·A_imag).
  [[nodiscard]] s6_storage<T, State> controls(matrix_view<const T> u) const {
    constexpr std::string_view where = "mixlens::s6_mixer::controls";
    validate();
    detail::check_equal(where, "u", "channels (extent 0)", channels(), u.extent(0));
    detail::check_positive(where, "u (length, extent 1)", u.extent(1));
    const index_t D = channels(), N = state_size(), R = dt_rank(), L = u.extent(1), P = x_proj.extent(0);
    const bool b_var = (b_fixed.size() == 0), c_var = (c_fixed.size() == 0);
    const index_t b_at = R, c_at = R + (b_var ? parts * N : 0);  // columns of B and C in a projected row
    // The projections run on time-major rows: contiguous dot products.
    matrix<T> rows(L, D), proj(L, P), dt(L, D);
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) rows(t, d) = u(d, t);
    detail::linear(rows.data(), D, L, x_proj, x_proj_bias, proj.data());
    if (dt_norm.enabled || b_norm.enabled || c_norm.enabled)
      for (index_t t = 0; t < L; ++t) {
        if (dt_norm.enabled) rms_normalize(&proj(t, 0), R, dt_norm.weight);
        if (b_norm.enabled && b_var) rms_normalize(&proj(t, b_at), N, b_norm.weight);
        if (c_norm.enabled && c_var) rms_normalize(&proj(t, c_at), N, c_norm.weight);
      }
    detail::linear(proj.data(), P, L, dt_proj, dt_bias, dt.data());  // reads the first R = dt_rank columns
    // A time-invariant B or C gives a B and C per channel (G = D); otherwise one group.
    const index_t G = (b_var && c_var) ? 1 : D;
    s6_storage<T, State> s{matrix<T>(D, L), matrix<State>(D, N), tensor<State, 3>(G, N, L), tensor<State, 3>(G, N, L),
                           {}, {}};
    for (index_t t = 0; t < L; ++t) {
      for (index_t d = 0; d < D; ++d) s.delta(d, t) = delta_softplus ? detail::softplus(dt(t, d)) : dt(t, d);
      for (index_t g = 0; g < G; ++g)
        for (index_t n = 0; n < N; ++n) {
          s.b(g, n, t) = b_var ? entry(&proj(t, 0), b_at + parts * n) : b_fixed(g, n);
          s.c(g, n, t) = c_var ? entry(&proj(t, 0), c_at + parts * n) : c_fixed(g, n);
        }
    }
    for (index_t d = 0; d < D; ++d)
      for (index_t n = 0; n < N; ++n) {
        const T re = -std::exp(a_log(d, n));
        if constexpr (is_complex) s.a(d, n) = State(re, a_imag(d, n));
        else s.a(d, n) = re;
      }
    return s;
  }

  // Binds to the input u: the paper's α by default; `fold` adds D and the gate.
  [[nodiscard]] bound_s6<T, State> bind(matrix_view<const T> u, s6_fold fold = {},
                                        matrix_view<const T> z = {}) const {
    constexpr std::string_view where = "mixlens::s6_mixer::bind";
    s6_storage<T, State> s = controls(u);
    const index_t D = channels(), L = u.extent(1);
    if (fold.skip) s.skip = skip;
    if (fold.gate) {
      if (is_empty(z)) detail::fail(where, "z", "a (channels × length) gate input when fold.gate is set", "none");
      detail::check_signal(where, "z", D, L, z.extent(0), z.extent(1));
      s.gate = matrix<T>(D, L);
      for (index_t d = 0; d < D; ++d)
        for (index_t t = 0; t < L; ++t) s.gate(d, t) = detail::silu(z(d, t));
    }
    bound_s6<T, State> op(std::move(s), [](const s6_storage<T, State>& st) {
      return s6_operator<T, State>(st.delta.view(), st.a.view(), st.b.view(), st.c.view(),
                                   vector_view<const T>(st.skip.data(), st.skip.size()), st.gate.view());
    });
    op->validate();
    return op;
  }

  matrix<T> x_proj;         // (dt_rank + parts·N per varying B, C) × D
  matrix<T> dt_proj;        // D × dt_rank
  std::vector<T> dt_bias;   // D
  matrix<T> a_log;          // D × N: A = −exp(A_log)
  matrix<T> a_imag;         // D × N for complex State, else empty
  std::vector<T> skip;      // D
  // The options (see above); defaults: Mamba's.
  std::vector<T> x_proj_bias;          // x_proj's rows, or empty (no bias)
  s6_rms_norm<T> dt_norm, b_norm, c_norm;  // RMSNorms of δ (dt_rank), B and C (N), real State only
  double norm_eps = 1e-6;              // their ε: rsqrt(mean(x²) + ε)
  bool delta_softplus = true;          // Δ = softplus(dt_proj·δ + dt_bias), else without the softplus
  matrix<State> b_fixed, c_fixed;      // D × N time-invariant B / C, or empty (from x_proj)

 private:
  // Entry k of one projected row: a real, or a (real, imaginary) pair.
  [[nodiscard]] static State entry(const T* row, index_t k) {
    if constexpr (is_complex) return State(row[k], row[k + 1]);
    else return row[k];
  }

  // x[0..n) := x / sqrt(mean(x²) + ε) · weight, accumulated in double (as the
  // references compute the norm in float32 or wider).
  void rms_normalize(T* x, index_t n, const std::vector<T>& weight) const {
    double ss = 0;
    for (index_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
    const double r = 1.0 / std::sqrt(ss / double(n) + norm_eps);
    for (index_t i = 0; i < n; ++i)
      x[i] = static_cast<T>(double(x[i]) * r * (weight.empty() ? 1.0 : double(weight[static_cast<std::size_t>(i)])));
  }

  void validate() const {
    constexpr std::string_view where = "mixlens::s6_mixer";
    const index_t D = channels(), N = state_size(), R = dt_rank();
    detail::check_positive(where, "a_log (channels)", D);
    detail::check_positive(where, "a_log (state size)", N);
    detail::check_positive(where, "dt_proj (dt_rank)", R);
    const index_t varying = ((b_fixed.size() == 0) ? 1 : 0) + ((c_fixed.size() == 0) ? 1 : 0);
    detail::check_equal(where, "x_proj", "rows (dt_rank + parts·N per varying B, C)", R + varying * parts * N,
                        x_proj.extent(0));
    if (!x_proj_bias.empty())
      detail::check_equal(where, "x_proj_bias", "size (x_proj rows)", x_proj.extent(0),
                          static_cast<index_t>(x_proj_bias.size()));
    for (const auto* f : {&b_fixed, &c_fixed})
      if (f->size() != 0) {
        const char* name = f == &b_fixed ? "b_fixed" : "c_fixed";
        detail::check_equal(where, name, "rows (channels)", D, f->extent(0));
        detail::check_equal(where, name, "columns (state size)", N, f->extent(1));
      }
    const std::pair<const s6_rms_norm<T>*, index_t> norms[] = {{&dt_norm, R}, {&b_norm, N}, {&c_norm, N}};
    for (const auto& [norm, size] : norms) {
      if (!norm->enabled) continue;
      const char* name = norm == &dt_norm ? "dt_norm" : norm == &b_norm ? "b_norm" : "c_norm";
      if (is_complex) detail::fail(where, name, "off for complex State (an RMSNorm of real δ, B, C)", "enabled");
      if (!norm->weight.empty())
        detail::check_equal(where, name, "weight size", size, static_cast<index_t>(norm->weight.size()));
    }
    if (!(norm_eps >= 0)) detail::fail(where, "norm_eps", ">= 0", norm_eps);
    if (b_norm.enabled && b_fixed.size() != 0) detail::fail(where, "b_norm", "off with a time-invariant B (b_fixed)", "enabled");
    if (c_norm.enabled && c_fixed.size() != 0) detail::fail(where, "c_norm", "off with a time-invariant C (c_fixed)", "enabled");
    detail::check_equal(where, "x_proj", "columns", D, x_proj.extent(1));
    detail::check_equal(where, "dt_proj", "rows", D, dt_proj.extent(0));
    detail::check_equal(where, "dt_bias", "size", D, static_cast<index_t>(dt_bias.size()));
    detail::check_equal(where, "skip", "size", D, static_cast<index_t>(skip.size()));
    if constexpr (is_complex) {
      detail::check_equal(where, "a_imag", "rows", D, a_imag.extent(0));
      detail::check_equal(where, "a_imag", "columns", N, a_imag.extent(1));
    }
  }
};

}  // namespace mixlens
