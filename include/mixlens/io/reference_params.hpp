// Mixers from the parameters of their reference code, as stored: a safetensors
// file of a PyTorch module's state_dict (or of flattened flax parameters, or
// any tensor_source) loads into the mixlens mixer that computes the module's
// linear part, y = K * u + D·u (or S5's scan). Tensors are read by their names
// in the reference code under an optional prefix; every shape is checked
// before anything is read; options the reference keeps in its config (not in
// the state_dict) are passed in the options structs, under the reference's
// names and string values. A variant that is not modeled is refused with an
// error naming it, never approximated. docs/reference_params.md has the name
// mapping, the transforms and the choices made.
//
//   load_s4d_module       state-spaces/s4 models/s4/s4d.py, S4D (standalone)
//   load_ssm_kernel_diag  state-spaces/s4 FFTConv with SSMKernelDiag (S4D in S4Block)
//   load_ssm_kernel_dplr  state-spaces/s4 FFTConv with SSMKernelDPLR (S4 in S4Block)
//   load_dss_module       the DSS author's standalone DSS (DSSKernel and DSS)
//     ..._bidirectional   the same modules with `bidirectional`: two_sided_mixer per channel
//   load_s5_ssm           lindermanlab/S5 s5/ssm.py, S5SSM (JAX/flax; bidirectional too)
//   load_hyena_operator   HazyResearch/safari src/models/sequence/hyena.py, HyenaOperator
//   load_mamba_mixer      state-spaces/mamba mamba_ssm/modules/mamba_simple.py, Mamba (its selective scan)
//   load_mamba2_mixer     state-spaces/mamba mamba_ssm/modules/mamba2.py, Mamba2 (io/reference_params_mamba2.hpp)
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/io/detail/reference_params.hpp"
#include "mixlens/io/safetensors.hpp"
#include "mixlens/io/tensor_map.hpp"
#include "mixlens/ops/dss.hpp"
#include "mixlens/ops/hyena/mixer.hpp"
#include "mixlens/ops/s4.hpp"
#include "mixlens/ops/s4d.hpp"
#include "mixlens/ops/s5.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens::io {

// ---- state-spaces/s4: standalone S4D ----------------------------------------------
//
// models/s4/s4d.py: D (H), kernel.log_dt (H), kernel.C (H, N/2, 2),
// kernel.log_A_real (H, N/2), kernel.A_imag (H, N/2); A = −exp(log_A_real) +
// i·A_imag, B = 1, ZOH. output_linear.* (the GLU after the activation) is not
// part of the mixer and is not read.
template <class T, tensor_source Source>
[[nodiscard]] s4d_mixer<T> load_s4d_module(const Source& src, std::string prefix = {}) {
  detail::param_reader r(src, "S4D", std::move(prefix));
  const auto c_shape = r.shape("kernel.C", "C as view_as_real (H, N/2, 2)");
  if (c_shape.size() != 3 || c_shape[2] != 2)
    r.fail("tensor '" + r.full("kernel.C") + "' (C as view_as_real (H, N/2, 2)) has shape " +
           detail::shape_text(c_shape) + ", expected (H, N/2, 2)");
  const index_t H = c_shape[0], N = c_shape[1];
  r.expect("kernel.C", {H, N, 2}, "C as view_as_real (H, N/2, 2)");
  r.expect("kernel.log_dt", {H}, "log Δ per channel (H)");
  r.expect("kernel.log_A_real", {H, N}, "log(−Re A) (H, N/2)");
  r.expect("kernel.A_imag", {H, N}, "Im A (H, N/2)");
  r.expect("D", {H}, "the D skip (H)");
  r.refuse_unread("kernel.", "models/s4/s4d.py's S4DKernel stores log_dt, C, log_A_real and A_imag only");

  const auto c = r.read("kernel.C"), log_dt = r.read("kernel.log_dt"), log_re = r.read("kernel.log_A_real"),
             im = r.read("kernel.A_imag"), d = r.read("D");
  s4d_mixer<T> m;
  m.a = matrix<complex<T>>(H, N);
  m.b = matrix<complex<T>>(H, N);
  m.c = matrix<complex<T>>(H, N);
  for (index_t h = 0; h < H; ++h)
    for (index_t n = 0; n < N; ++n) {
      const auto k = static_cast<std::size_t>(h * N + n);
      m.a(h, n) = complex<T>(static_cast<T>(-std::exp(log_re[k])), static_cast<T>(im[k]));
      m.b(h, n) = complex<T>(T(1), T(0));
      m.c(h, n) = complex<T>(static_cast<T>(c[2 * k]), static_cast<T>(c[2 * k + 1]));
    }
  for (double v : log_dt) m.log_dt.push_back(static_cast<T>(v));
  for (double v : d) m.skip.push_back(static_cast<T>(v));
  m.discretization = ssm_discretization::zoh;
  m.validate();
  return m;
}

// ---- state-spaces/s4: FFTConv with SSMKernelDiag ------------------------------------

// The configuration of an FFTConv with an SSMKernelDiag kernel (the S4D kernel of
// S4Block): what the state_dict does not hold. Defaults are the reference's.
struct ssm_kernel_diag_options {
  std::string prefix = {};             // the FFTConv's prefix ("layer." in S4Block): <prefix>D, <prefix>kernel.*
  std::string dt_transform = "exp";    // none, exp, relu, sigmoid, softplus
  std::string real_transform = "exp";  // A = −real_transform(A_real) − i·imag_transform(A_imag)
  std::string imag_transform = "none";
  std::string disc = "zoh";            // zoh, bilinear ("dss" is refused: see docs/reference_params.md)
  bool dt_fast = false;                // Δ = dt_transform(sinh(inv_dt))
  std::optional<double> bandlimit = {};  // C masked where Δ·|Im A|/(2π) ≥ bandlimit/2
  bool is_real = false;                // real A, B, C (no A_imag), as in later versions
  bool force_real = false;             // Im A dropped, as in earlier versions
};

// One s4d_mixer per output channel c of the kernel (FFTConv's `channels`,
// doubled for a GLU activation): FFTConv's output channel c·H + h (or h·C + c
// with swap_channels) is channel h of mixer c, before the activation. Tensors:
// <prefix>D (channels, H); <prefix>kernel.inv_dt (H, 1), or (H, N) when dt_tie
// is off; kernel.A_real and kernel.A_imag (n_ssm, N); kernel.B (1, n_ssm, N, 2);
// kernel.C (channels, H, N, 2) (B and C without the last axis, and no A_imag,
// when is_real). n_ssm divides H; SSM h uses (A, B) row h mod n_ssm. A Δ per
// state is folded into A and B (Δ·A, Δ·B, with log Δ = 0), which gives the
// same Ā and B̄ under ZOH and bilinear. A bidirectional FFTConv (kernel.C with
// twice D's channels) loads with load_ssm_kernel_diag_bidirectional.
namespace detail {
// The mixers of every kernel channel; with `bidirectional` the second half
// (the backward kernels) without a skip.
template <class T, tensor_source Source>
[[nodiscard]] std::vector<s4d_mixer<T>> ssm_kernel_diag_channels(const Source& src, const ssm_kernel_diag_options& o,
                                                                bool bidirectional) {
  param_reader r(src, "SSMKernelDiag", o.prefix);
  const auto dt_t = detail::parse_transform(r, "dt_transform", o.dt_transform);
  const auto re_t = detail::parse_transform(r, "real_transform", o.real_transform);
  const auto im_t = detail::parse_transform(r, "imag_transform", o.imag_transform);
  ssm_discretization disc = ssm_discretization::zoh;
  if (o.disc == "bilinear") disc = ssm_discretization::bilinear;
  else if (o.disc == "dss")
    r.unsupported("disc", "'dss'",
                  "SSMKernelDiag's DSS discretization (a softmax kernel with a 1e-7-bounded reciprocal) is not "
                  "modeled by s4d_mixer; zoh and bilinear are");
  else if (o.disc != "zoh")
    r.unsupported("disc", "'" + o.disc + "'", "expected zoh or bilinear");
  if (o.is_real && o.force_real) r.unsupported("force_real", "with is_real", "set at most one");
  if (o.bandlimit && !std::isfinite(*o.bandlimit)) r.unsupported("bandlimit", std::to_string(*o.bandlimit), "expected a finite value");

  // Shapes, all before any read.
  const std::string complex_axis = o.is_real ? "" : ", 2";
  const auto c_shape = r.shape("kernel.C", "C (channels, H, N" + complex_axis + ")");
  const std::size_t c_rank = o.is_real ? 3 : 4;
  if (c_shape.size() != c_rank || (!o.is_real && c_shape[3] != 2))
    r.fail("tensor '" + r.full("kernel.C") + "' has shape " + detail::shape_text(c_shape) + ", expected (channels, H, N" +
           complex_axis + ")" + (o.is_real ? " (is_real: real C)" : " (view_as_real of complex C; is_real not set)"));
  const index_t C = c_shape[0], H = c_shape[1], N = c_shape[2];
  const auto a_shape = r.shape("kernel.A_real", "the stored real part of A (n_ssm, N)");
  if (a_shape.size() != 2 || a_shape[1] != N || a_shape[0] <= 0 || H % a_shape[0] != 0)
    r.fail("tensor '" + r.full("kernel.A_real") + "' has shape " + detail::shape_text(a_shape) +
           ", expected (n_ssm, " + std::to_string(N) + ") with n_ssm dividing H = " + std::to_string(H));
  const index_t S = a_shape[0];
  const auto dt_shape = r.shape("kernel.inv_dt", "the stored step (H, 1), or (H, N) without dt_tie");
  const bool tied = dt_shape == std::vector<index_t>{H, 1};
  if (!tied && dt_shape != std::vector<index_t>{H, N})
    r.fail("tensor '" + r.full("kernel.inv_dt") + "' has shape " + detail::shape_text(dt_shape) + ", expected " +
           detail::shape_text({H, 1}) + " (dt_tie) or " + detail::shape_text({H, N}) + " (a step per state)");
  r.expect("kernel.inv_dt", dt_shape, "the stored step");
  r.expect("kernel.A_real", {S, N}, "the stored real part of A");
  if (o.is_real) {
    r.refuse("kernel.A_imag", "is_real stores no imaginary part");
    r.expect("kernel.B", {1, S, N}, "B (1, n_ssm, N), real");
  } else {
    r.expect("kernel.A_imag", {S, N}, "the stored imaginary part of A, −Im A under imag_transform");
    r.expect("kernel.B", {1, S, N, 2}, "B as view_as_real (1, n_ssm, N, 2)");
  }
  r.expect("kernel.C", c_shape, "C");
  const index_t D_channels = skip_channels(r, "kernel.C", C, H, bidirectional, "FFTConv",
                                           bidirectional ? "load_ssm_kernel_diag" : "load_ssm_kernel_diag_bidirectional");
  r.refuse_unread("kernel.", "SSMKernelDiag stores inv_dt, A_real, A_imag, B and C; a P is SSMKernelDPLR's (S4), "
                             "read by load_ssm_kernel_dplr");
  if (o.bandlimit && S != 1 && S != H)
    r.unsupported("bandlimit", "with n_ssm = " + std::to_string(S) + " of H = " + std::to_string(H),
                  "the reference's mask broadcasts Δ (H, ·) against A (n_ssm, N), which needs n_ssm 1 or H");

  const auto inv_dt = r.read("kernel.inv_dt"), a_re = r.read("kernel.A_real"), b = r.read("kernel.B"),
             c = r.read("kernel.C"), d = r.read("D");
  const auto a_im = o.is_real ? std::vector<double>{} : r.read("kernel.A_imag");
  using cd = std::complex<double>;
  auto dt_at = [&](index_t h, index_t n) {
    double x = inv_dt[static_cast<std::size_t>(tied ? h : h * N + n)];
    if (o.dt_fast) x = std::sinh(x);
    return detail::apply_transform(dt_t, x);
  };
  auto a_at = [&](index_t s, index_t n) {
    const auto k = static_cast<std::size_t>(s * N + n);
    const double re = -detail::apply_transform(re_t, a_re[k]);
    const double im = (o.is_real || o.force_real) ? 0.0 : -detail::apply_transform(im_t, a_im[k]);
    return cd(re, im);
  };
  auto b_at = [&](index_t s, index_t n) {
    const auto k = static_cast<std::size_t>(s * N + n);
    return o.is_real ? cd(b[k], 0) : cd(b[2 * k], b[2 * k + 1]);
  };
  auto to_t = [](cd z) { return complex<T>(static_cast<T>(z.real()), static_cast<T>(z.imag())); };

  std::vector<s4d_mixer<T>> out;
  for (index_t ch = 0; ch < C; ++ch) {
    s4d_mixer<T> m;
    m.a = matrix<complex<T>>(H, N);
    m.b = matrix<complex<T>>(H, N);
    m.c = matrix<complex<T>>(H, N);
    for (index_t h = 0; h < H; ++h) {
      for (index_t n = 0; n < N; ++n) {
        const index_t s = h % S;  // einops '(v t) n': the H SSMs repeat the n_ssm rows
        const double dt = dt_at(h, n);
        cd a = a_at(s, n), bb = b_at(s, n);
        const auto k = static_cast<std::size_t>((ch * H + h) * N + n);
        cd cc = o.is_real ? cd(c[k], 0) : cd(c[2 * k], c[2 * k + 1]);
        if (o.bandlimit) {
          const double im = std::abs(a_at(S == 1 ? 0 : h, n).imag());
          if (!(dt * im / (2 * std::numbers::pi) < *o.bandlimit * 0.5)) cc = 0;
        }
        if (!tied) a *= dt, bb *= dt;  // Δ per state: Δ' = 1
        m.a(h, n) = to_t(a);
        m.b(h, n) = to_t(bb);
        m.c(h, n) = to_t(cc);
      }
      m.log_dt.push_back(static_cast<T>(tied ? std::log(dt_at(h, 0)) : 0.0));
      if (ch < D_channels) m.skip.push_back(static_cast<T>(d[static_cast<std::size_t>(ch * H + h)]));
    }
    m.discretization = disc;
    m.validate();
    out.push_back(std::move(m));
  }
  return out;
}
}  // namespace detail

template <class T, tensor_source Source>
[[nodiscard]] std::vector<s4d_mixer<T>> load_ssm_kernel_diag(const Source& src,
                                                            const ssm_kernel_diag_options& o = {}) {
  return detail::ssm_kernel_diag_channels<T>(src, o, false);
}

// A bidirectional FFTConv with SSMKernelDiag: one two-sided mixer per channel c
// of D, from kernel channels c (forward, with D) and c + channels (backward,
// flipped, at lags s − t ≥ 1: FFTConv's F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0))).
template <class T, tensor_source Source>
[[nodiscard]] std::vector<two_sided_mixer<s4d_mixer<T>>> load_ssm_kernel_diag_bidirectional(
    const Source& src, const ssm_kernel_diag_options& o = {}) {
  return detail::pair_directions(detail::ssm_kernel_diag_channels<T>(src, o, true));
}

// ---- state-spaces/s4: FFTConv with SSMKernelDPLR ------------------------------------

// The configuration of an FFTConv with an SSMKernelDPLR kernel (S4 in S4Block);
// defaults are the reference's.
struct ssm_kernel_dplr_options {
  std::string prefix = {};             // the FFTConv's prefix ("layer." in S4Block)
  std::string dt_transform = "exp";    // none, exp, relu, sigmoid, softplus
  std::string real_transform = "exp";  // Λ = −real_transform(A_real) − i·imag_transform(A_imag)
  std::string imag_transform = "none";
  bool dt_fast = false;                // Δ = dt_transform(sinh(inv_dt))
  std::optional<double> bandlimit = {};  // refused
  bool is_real = false;                // refused
  bool force_real = false;             // refused
};

// One s4_mixer per kernel channel c, as load_ssm_kernel_diag. Tensors:
// <prefix>D (channels, H); kernel.inv_dt (H, 1); kernel.A_real and kernel.A_imag
// (n_ssm, N/2); kernel.B (1, n_ssm, N/2, 2); kernel.P (rank, n_ssm, N/2, 2);
// kernel.C (channels, H, N/2, 2); kernel.l_kernel (the buffer, a scalar). The
// state matrix is Λ − P P* (Q = P̄ in the reference), bilinear. The stored C is
// C̃ = C(I − Ā^l_kernel) once the kernel has run (l_kernel > 0), and C itself
// while l_kernel = 0; the loader solves (I − Ā^l_kernel)ᵀ C = C̃ on the full
// state (the conjugate half included) in double and gives s4_mixer the C it
// holds, whose kernel at every length equals the reference's at its length. A
// bidirectional FFTConv loads with load_ssm_kernel_dplr_bidirectional.
namespace detail {
template <class T, tensor_source Source>
[[nodiscard]] std::vector<s4_mixer<T>> ssm_kernel_dplr_channels(const Source& src, const ssm_kernel_dplr_options& o,
                                                               bool bidirectional) {
  param_reader r(src, "SSMKernelDPLR", o.prefix);
  const auto dt_t = detail::parse_transform(r, "dt_transform", o.dt_transform);
  const auto re_t = detail::parse_transform(r, "real_transform", o.real_transform);
  const auto im_t = detail::parse_transform(r, "imag_transform", o.imag_transform);
  if (o.bandlimit) r.unsupported("bandlimit", std::to_string(*o.bandlimit), "not modeled for SSMKernelDPLR (masks C̃)");
  if (o.is_real) r.unsupported("is_real", "true", "SSMKernelDPLR's state matrix is complex DPLR");
  if (o.force_real) r.unsupported("force_real", "true", "not modeled for SSMKernelDPLR");

  const auto c_shape = r.shape("kernel.C", "C̃ (channels, H, N/2, 2)");
  if (c_shape.size() != 4 || c_shape[3] != 2)
    r.fail("tensor '" + r.full("kernel.C") + "' has shape " + detail::shape_text(c_shape) +
           ", expected (channels, H, N/2, 2)");
  const index_t C = c_shape[0], H = c_shape[1], N = c_shape[2];
  const auto a_shape = r.shape("kernel.A_real", "the stored real part of Λ (n_ssm, N/2)");
  if (a_shape.size() != 2 || a_shape[1] != N || a_shape[0] <= 0 || H % a_shape[0] != 0)
    r.fail("tensor '" + r.full("kernel.A_real") + "' has shape " + detail::shape_text(a_shape) +
           ", expected (n_ssm, " + std::to_string(N) + ") with n_ssm dividing H = " + std::to_string(H));
  const index_t S = a_shape[0];
  const auto dt_shape = r.shape("kernel.inv_dt", "the stored step (H, 1)");
  if (dt_shape == std::vector<index_t>{H, N} && N != 1)
    r.unsupported("dt_tie", "false (inv_dt " + detail::shape_text(dt_shape) + ")",
                  "SSMKernelDPLR's step per state is not a bilinear discretization of the DPLR matrix; s4_mixer has one Δ per channel");
  r.expect("kernel.inv_dt", {H, 1}, "the stored step");
  r.expect("kernel.A_real", {S, N}, "the stored real part of Λ");
  r.expect("kernel.A_imag", {S, N}, "the stored imaginary part of Λ, −Im Λ under imag_transform");
  r.expect("kernel.B", {1, S, N, 2}, "B as view_as_real (1, n_ssm, N/2, 2)");
  const auto p_shape = r.shape("kernel.P", "P as view_as_real (rank, n_ssm, N/2, 2)");
  if (p_shape.size() != 4 || p_shape[0] <= 0)
    r.fail("tensor '" + r.full("kernel.P") + "' has shape " + detail::shape_text(p_shape) + ", expected (rank, " +
           std::to_string(S) + ", " + std::to_string(N) + ", 2)");
  const index_t R = p_shape[0];
  r.expect("kernel.P", {R, S, N, 2}, "P as view_as_real");
  r.expect("kernel.C", c_shape, "C̃");
  const auto l_shape = r.shape("kernel.l_kernel", "the length C̃ is attuned to (a scalar buffer)");
  if (!(l_shape.empty() || l_shape == std::vector<index_t>{1}))
    r.fail("tensor '" + r.full("kernel.l_kernel") + "' has shape " + detail::shape_text(l_shape) + ", expected a scalar");
  r.expect("kernel.l_kernel", l_shape, "l_kernel");
  const index_t D_channels = skip_channels(r, "kernel.C", C, H, bidirectional, "FFTConv",
                                           bidirectional ? "load_ssm_kernel_dplr" : "load_ssm_kernel_dplr_bidirectional");
  r.refuse_unread("kernel.", "SSMKernelDPLR stores inv_dt, A_real, A_imag, B, P, C and l_kernel");

  const auto inv_dt = r.read("kernel.inv_dt"), a_re = r.read("kernel.A_real"), a_im = r.read("kernel.A_imag"),
             b = r.read("kernel.B"), pp = r.read("kernel.P"), c = r.read("kernel.C"), d = r.read("D");
  const index_t l_kernel = r.read_count("kernel.l_kernel");
  using cd = std::complex<double>;
  auto to_t = [](cd z) { return complex<T>(static_cast<T>(z.real()), static_cast<T>(z.imag())); };
  const std::size_t M = static_cast<std::size_t>(N), F = 2 * M;  // stored and full states

  // Per channel h: Λ, B, P and Δ; and, with l_kernel > 0, the full (I − Ā^l)ᵀ.
  std::vector<std::vector<cd>> lam(H), bb(H), p(H), transfer(H);
  std::vector<double> dt(static_cast<std::size_t>(H));
  for (index_t h = 0; h < H; ++h) {
    const index_t s = h % S;
    double x = inv_dt[static_cast<std::size_t>(h)];
    if (o.dt_fast) x = std::sinh(x);
    dt[h] = detail::apply_transform(dt_t, x);
    for (index_t n = 0; n < N; ++n) {
      const auto k = static_cast<std::size_t>(s * N + n);
      lam[h].emplace_back(-detail::apply_transform(re_t, a_re[k]), -detail::apply_transform(im_t, a_im[k]));
      bb[h].emplace_back(b[2 * k], b[2 * k + 1]);
    }
    for (index_t q = 0; q < R; ++q)
      for (index_t n = 0; n < N; ++n) {
        const auto k = static_cast<std::size_t>((q * S + s) * N + n);
        p[h].emplace_back(pp[2 * k], pp[2 * k + 1]);
      }
    if (l_kernel == 0) continue;
    // A = diag(Λ, Λ̄) − Σ_r p_r p_r* with p_r = [P_r; P̄_r]; Ā = (I − ΔA/2)⁻¹(I + ΔA/2).
    auto full_p = [&](index_t q, std::size_t i) {
      const cd v = p[h][static_cast<std::size_t>(q) * M + i % M];
      return i < M ? v : std::conj(v);
    };
    std::vector<cd> back(F * F), fwd(F * F);
    for (std::size_t i = 0; i < F; ++i)
      for (std::size_t j = 0; j < F; ++j) {
        cd a = i == j ? (i < M ? lam[h][i] : std::conj(lam[h][i - M])) : cd(0);
        for (index_t q = 0; q < R; ++q) a -= full_p(q, i) * std::conj(full_p(q, j));
        back[i * F + j] = (i == j ? 1.0 : 0.0) - dt[h] / 2 * a;
        fwd[i * F + j] = (i == j ? 1.0 : 0.0) + dt[h] / 2 * a;
      }
    if (!detail::solve_in_place(back, fwd, F, F))
      r.fail("channel " + std::to_string(h) + ": I − ΔA/2 is singular (no bilinear discretization)");
    std::vector<cd> power(F * F, cd(0)), base = fwd, tmp(F * F);
    for (std::size_t i = 0; i < F; ++i) power[i * F + i] = 1.0;
    auto mul = [&](const std::vector<cd>& x, const std::vector<cd>& y, std::vector<cd>& out) {
      for (std::size_t i = 0; i < F; ++i)
        for (std::size_t j = 0; j < F; ++j) {
          cd acc = 0;
          for (std::size_t k = 0; k < F; ++k) acc += x[i * F + k] * y[k * F + j];
          out[i * F + j] = acc;
        }
    };
    for (index_t e = l_kernel; e > 0; e >>= 1) {  // Ā^l by squaring
      if (e & 1) mul(power, base, tmp), power.swap(tmp);
      if (e > 1) mul(base, base, tmp), base.swap(tmp);
    }
    transfer[h].resize(F * F);
    for (std::size_t i = 0; i < F; ++i)
      for (std::size_t j = 0; j < F; ++j) transfer[h][i * F + j] = (i == j ? 1.0 : 0.0) - power[j * F + i];
  }

  std::vector<s4_mixer<T>> out;
  for (index_t ch = 0; ch < C; ++ch) {
    matrix<complex<T>> lambda(H, N), bm(H, N), cm(H, N);
    tensor<complex<T>, 3> pm(R, H, N);
    std::vector<T> log_dt, skip;
    for (index_t h = 0; h < H; ++h) {
      std::vector<cd> ct(F);
      for (std::size_t n = 0; n < M; ++n) {
        const auto k = static_cast<std::size_t>((ch * H + h) * N) + n;
        ct[n] = cd(c[2 * k], c[2 * k + 1]);
        ct[n + M] = std::conj(ct[n]);
      }
      if (l_kernel > 0) {
        auto a = transfer[h];
        if (!detail::solve_in_place(a, ct, F, 1))
          r.fail("channel " + std::to_string(h) + ": I − Ā^" + std::to_string(l_kernel) +
                 " is singular, C cannot be recovered from the stored C̃");
      }
      for (index_t n = 0; n < N; ++n) {
        lambda(h, n) = to_t(lam[h][n]);
        bm(h, n) = to_t(bb[h][n]);
        cm(h, n) = to_t(ct[static_cast<std::size_t>(n)]);
        for (index_t q = 0; q < R; ++q) pm(q, h, n) = to_t(p[h][static_cast<std::size_t>(q) * M + n]);
      }
      log_dt.push_back(static_cast<T>(std::log(dt[h])));
      if (ch < D_channels) skip.push_back(static_cast<T>(d[static_cast<std::size_t>(ch * H + h)]));
    }
    out.emplace_back(std::move(lambda), std::move(pm), std::move(bm), std::move(cm), std::move(log_dt), std::move(skip));
  }
  return out;
}
}  // namespace detail

template <class T, tensor_source Source>
[[nodiscard]] std::vector<s4_mixer<T>> load_ssm_kernel_dplr(const Source& src, const ssm_kernel_dplr_options& o = {}) {
  return detail::ssm_kernel_dplr_channels<T>(src, o, false);
}

// A bidirectional FFTConv with SSMKernelDPLR, paired as load_ssm_kernel_diag_bidirectional.
template <class T, tensor_source Source>
[[nodiscard]] std::vector<two_sided_mixer<s4_mixer<T>>> load_ssm_kernel_dplr_bidirectional(
    const Source& src, const ssm_kernel_dplr_options& o = {}) {
  return detail::pair_directions(detail::ssm_kernel_dplr_channels<T>(src, o, true));
}

// ---- DSS: the author's standalone module ---------------------------------------------

// The configuration of a DSS module (DSSKernel inside DSS); defaults are the reference's.
struct dss_module_options {
  std::string prefix = {};           // <prefix>D, <prefix>kernel.*
  std::string version = "softmax";   // softmax, exp, exp-re-im, exp-no-scale, clip, clip-no-scale
  double epsilon = 1e-7;             // the softmax's bounded reciprocal
  double max_real_lambda = 1e-4;     // clip versions: Re Λ clipped to at most this
  bool hyper = false;                // hyper_act set (a multiplicative GLU of two channels): refused
  index_t max_kernel_length = 0;     // a kernel shorter than the input: refused when set
};

// One dss_mixer per kernel channel c (DSS's output channel c·H + h, before the
// activation and output_linear). Tensors: <prefix>D (channels, H);
// kernel.log_dt (H), or (H, 2) with sep_dt_re_im (Re Λ and Im Λ get their own
// step); kernel.W (channels, H, N, 2); Λ shared by the H channels:
// kernel.Lambda (N, 2) (softmax, clip, clip-no-scale), or
// kernel.Lambda_log_neg_re (N) with kernel.Lambda_im (N) (exp, exp-no-scale) or
// kernel.Lambda_log_im (N) (exp-re-im): Λ = −exp(Lambda_log_neg_re) + i·Im. A
// bidirectional DSS (kernel.W with twice D's channels) loads with
// load_dss_module_bidirectional.
namespace detail {
template <class T, tensor_source Source>
[[nodiscard]] std::vector<dss_mixer<T>> dss_module_channels(const Source& src, const dss_module_options& o,
                                                           bool bidirectional) {
  param_reader r(src, "DSS", o.prefix);
  const std::string& v = o.version;
  const bool softmax = v == "softmax", exp_like = v == "exp" || v == "exp-re-im" || v == "exp-no-scale",
             clip = v == "clip" || v == "clip-no-scale";
  if (!softmax && !exp_like && !clip)
    r.unsupported("version", "'" + v + "'", "expected softmax, exp, exp-re-im, exp-no-scale, clip or clip-no-scale");
  if (o.hyper) r.unsupported("hyper_act", "(set)", "the multiplicative modulation of two channel groups is not linear");
  if (o.max_kernel_length > 0)
    r.unsupported("max_kernel_length", std::to_string(o.max_kernel_length), "the mixers bind the full-length kernel");
  if (softmax && (!(o.epsilon >= 0) || !std::isfinite(o.epsilon)))
    r.unsupported("epsilon", std::to_string(o.epsilon), "expected a finite value >= 0");

  const auto w_shape = r.shape("kernel.W", "W as view_as_real (channels, H, N, 2)");
  if (w_shape.size() != 4 || w_shape[3] != 2)
    r.fail("tensor '" + r.full("kernel.W") + "' has shape " + detail::shape_text(w_shape) +
           ", expected (channels, H, N, 2)");
  const index_t C = w_shape[0], H = w_shape[1], N = w_shape[2];
  r.expect("kernel.W", w_shape, "W");
  const auto dt_shape = r.shape("kernel.log_dt", "log Δ (H), or (H, 2) with sep_dt_re_im");
  const bool sep = dt_shape == std::vector<index_t>{H, 2};
  if (!sep && dt_shape != std::vector<index_t>{H})
    r.fail("tensor '" + r.full("kernel.log_dt") + "' has shape " + detail::shape_text(dt_shape) + ", expected " +
           detail::shape_text({H}) + " or " + detail::shape_text({H, 2}) + " (sep_dt_re_im)");
  r.expect("kernel.log_dt", dt_shape, "log Δ");
  const bool im_log = v == "exp-re-im";
  if (exp_like) {
    r.expect("kernel.Lambda_log_neg_re", {N}, "log(−Re Λ) (N)");
    r.expect(im_log ? "kernel.Lambda_log_im" : "kernel.Lambda_im", {N}, im_log ? "log Im Λ (N)" : "Im Λ (N)");
    r.refuse("kernel.Lambda", "version '" + v + "' stores Λ as Lambda_log_neg_re and Lambda_" +
                                  (im_log ? "log_im" : "im") + "; a Lambda (N, 2) belongs to softmax or clip");
  } else {
    r.expect("kernel.Lambda", {N, 2}, "Λ as view_as_real (N, 2)");
  }
  const index_t D_channels = skip_channels(r, "kernel.W", C, H, bidirectional, "DSS",
                                           bidirectional ? "load_dss_module" : "load_dss_module_bidirectional");
  r.refuse_unread("kernel.", "not a tensor of DSSKernel version '" + v + "'");

  const auto w = r.read("kernel.W"), log_dt = r.read("kernel.log_dt"), d = r.read("D");
  std::vector<std::complex<double>> lambda(static_cast<std::size_t>(N));
  if (exp_like) {
    const auto neg = r.read("kernel.Lambda_log_neg_re"), im = r.read(im_log ? "kernel.Lambda_log_im" : "kernel.Lambda_im");
    for (index_t n = 0; n < N; ++n)
      lambda[n] = {-std::exp(neg[n]), im_log ? std::exp(im[n]) : im[n]};
  } else {
    const auto l = r.read("kernel.Lambda");
    for (index_t n = 0; n < N; ++n) lambda[n] = {clip ? std::min(l[2 * n], o.max_real_lambda) : l[2 * n], l[2 * n + 1]};
  }
  if (!softmax && v.find("no-scale") == std::string::npos)
    for (index_t n = 0; n < N; ++n)
      if (std::norm(lambda[n]) < 1e-7)
        r.fail("Λ[" + std::to_string(n) + "] = " + mixlens::detail::format_complex(lambda[n]) +
               ": |Λ|² < 1e-7, where the reference clamps 1/Λ (not modeled)");
  const dss_variant variant = softmax ? dss_variant::softmax
                              : v.find("no-scale") != std::string::npos ? dss_variant::exp_no_scale
                                                                        : dss_variant::exp;
  std::vector<dss_mixer<T>> out;
  for (index_t ch = 0; ch < C; ++ch) {
    dss_parameters<T> p;
    p.lambda = matrix<complex<T>>(H, N);
    p.w = matrix<complex<T>>(H, N);
    for (index_t h = 0; h < H; ++h) {
      for (index_t n = 0; n < N; ++n) {
        p.lambda(h, n) = complex<T>(static_cast<T>(lambda[n].real()), static_cast<T>(lambda[n].imag()));
        const auto k = static_cast<std::size_t>((ch * H + h) * N + n);
        p.w(h, n) = complex<T>(static_cast<T>(w[2 * k]), static_cast<T>(w[2 * k + 1]));
      }
      p.dt.push_back(static_cast<T>(std::exp(log_dt[static_cast<std::size_t>(sep ? 2 * h : h)])));
      if (sep) p.dt_imag.push_back(static_cast<T>(std::exp(log_dt[static_cast<std::size_t>(2 * h + 1)])));
      if (ch < D_channels) p.skip.push_back(static_cast<T>(d[static_cast<std::size_t>(ch * H + h)]));
    }
    p.softmax_epsilon = softmax ? o.epsilon : 0.0;
    out.emplace_back(std::move(p), variant);
  }
  return out;
}
}  // namespace detail

template <class T, tensor_source Source>
[[nodiscard]] std::vector<dss_mixer<T>> load_dss_module(const Source& src, const dss_module_options& o = {}) {
  return detail::dss_module_channels<T>(src, o, false);
}

// A bidirectional DSS: one two-sided mixer per channel c of D, from kernel
// channels c (forward, with D) and c + channels (backward at lags s − t ≥ 1),
// as DSS.forward pads and flips them.
template <class T, tensor_source Source>
[[nodiscard]] std::vector<two_sided_mixer<dss_mixer<T>>> load_dss_module_bidirectional(const Source& src,
                                                                                       const dss_module_options& o = {}) {
  return detail::pair_directions(detail::dss_module_channels<T>(src, o, true));
}

// ---- lindermanlab/S5: S5SSM ---------------------------------------------------------

// The configuration of an S5SSM (flax module fields); defaults are the reference's.
struct s5_ssm_options {
  std::string prefix = {};              // e.g. "encoder/layers_0/seq/" for flattened flax names
  std::string discretization = "zoh";  // zoh, bilinear
  bool conj_sym = true;                 // y = 2·Re(C̃x) (else Re(C̃x))
  bool clip_eigs = false;               // Re Λ clipped to at most −1e-4
  double step_rescale = 1.0;            // Δ = step_rescale·exp(log_step)
  // Called with a message for each loaded state with Re Λ ≥ 0 (clip_eigs off: a
  // growing state, computed as stored on the finite length); empty: std::cerr.
  std::function<void(const std::string&)> warning = {};
};

// The S5 mixer of an S5SSM's parameters: Lambda_re (P), Lambda_im (P),
// B (P, H, 2) = B̃, C (H, P, 2) = C̃, D (H), log_step (P, 1) (P, the stored
// states, is half the state size under conj_sym). step_rescale is folded into
// log_step (log_step + log step_rescale). A bidirectional S5SSM (read from the
// shapes) stores C1 and C2 (H, P, 2) instead of C, or, with C_init
// complex_normal, C (H, 2P, 2): the forward scan's C̃ and the reverse scan's
// C̃← (s5_mixer's c_backward).
template <class T, tensor_source Source>
[[nodiscard]] s5_mixer<T> load_s5_ssm(const Source& src, const s5_ssm_options& o = {}) {
  detail::param_reader r(src, "S5SSM", o.prefix);
  s5_discretization disc = s5_discretization::zoh;
  if (o.discretization == "bilinear") disc = s5_discretization::bilinear;
  else if (o.discretization != "zoh") r.unsupported("discretization", "'" + o.discretization + "'", "expected zoh or bilinear");
  if (!(o.step_rescale > 0) || !std::isfinite(o.step_rescale))
    r.unsupported("step_rescale", std::to_string(o.step_rescale), "expected a finite value > 0");
  const auto l_shape = r.shape("Lambda_re", "Re Λ (P)");
  if (l_shape.size() != 1) r.fail("tensor '" + r.full("Lambda_re") + "' has shape " + detail::shape_text(l_shape) + ", expected (P,)");
  const index_t P = l_shape[0];
  const auto b_shape = r.shape("B", "B̃ as (P, H, 2)");
  if (b_shape.size() != 3 || b_shape[0] != P || b_shape[2] != 2)
    r.fail("tensor '" + r.full("B") + "' (B̃) has shape " + detail::shape_text(b_shape) + ", expected (" +
           std::to_string(P) + ", H, 2)");
  const index_t H = b_shape[1];
  r.expect("Lambda_re", {P}, "Re Λ");
  r.expect("Lambda_im", {P}, "Im Λ");
  r.expect("B", {P, H, 2}, "B̃");
  // C1 and C2, or one C of P (forward) or 2P (bidirectional) columns.
  const bool split = r.has("C1") || r.has("C2");
  bool bidirectional = split;
  if (split) {
    r.refuse("C", "C1 and C2 (a bidirectional S5SSM) replace C");
    r.expect("C1", {H, P, 2}, "the forward scan's C̃ (H, P, 2)");
    r.expect("C2", {H, P, 2}, "the reverse scan's C̃ (H, P, 2)");
  } else {
    bidirectional = r.shape("C", "C̃ as (H, P, 2), or (H, 2P, 2) bidirectional") == std::vector<index_t>{H, 2 * P, 2};
    r.expect("C", {H, bidirectional ? 2 * P : P, 2}, "C̃ (H, P, 2), or (H, 2P, 2) bidirectional");
  }
  r.expect("D", {H}, "the D feedthrough (H)");
  const auto s_shape = r.shape("log_step", "log Δ (P, 1)");
  r.expect("log_step", s_shape == std::vector<index_t>{P} ? s_shape : std::vector<index_t>{P, 1}, "log Δ (P, 1)");

  const auto re = r.read("Lambda_re"), im = r.read("Lambda_im"), b = r.read("B"), d = r.read("D"),
             log_step = r.read("log_step");
  // C̃ then C̃← as (H, 2P) complex values, row-major: C of 2P columns as stored,
  // C1 and C2 side by side.
  std::vector<double> c;
  if (!split) c = r.read("C");
  else {
    const auto c1 = r.read("C1"), c2 = r.read("C2");
    for (index_t h = 0; h < H; ++h)
      for (const auto* part : {&c1, &c2})
        c.insert(c.end(), part->begin() + 2 * h * P, part->begin() + 2 * (h + 1) * P);
  }
  const index_t c_cols = bidirectional ? 2 * P : P;
  std::vector<complex<T>> lambda(static_cast<std::size_t>(P));
  std::vector<T> steps(static_cast<std::size_t>(P));
  const double shift = std::log(o.step_rescale);
  for (index_t p = 0; p < P; ++p) {
    const double lr = o.clip_eigs ? std::min(re[p], -1e-4) : re[p];
    lambda[p] = complex<T>(static_cast<T>(lr), static_cast<T>(im[p]));
    steps[p] = static_cast<T>(log_step[p] + shift);
  }
  matrix<complex<T>> bt(P, H), ct(H, P), cb = bidirectional ? matrix<complex<T>>(H, P) : matrix<complex<T>>{};
  for (index_t k = 0; k < P * H; ++k) bt.data()[k] = complex<T>(static_cast<T>(b[2 * k]), static_cast<T>(b[2 * k + 1]));
  for (index_t h = 0; h < H; ++h)
    for (index_t q = 0; q < c_cols; ++q) {
      const auto k = static_cast<std::size_t>(h * c_cols + q);
      (q < P ? ct(h, q) : cb(h, q - P)) = complex<T>(static_cast<T>(c[2 * k]), static_cast<T>(c[2 * k + 1]));
    }
  std::vector<T> skip;
  for (double x : d) skip.push_back(static_cast<T>(x));
  // A trained S5SSM without clip_eigs may hold Re Λ ≥ 0: the reference computes it
  // (a growing state on a finite length), so does the mixer, with a warning.
  bool growth = false;
  for (index_t p = 0; p < P; ++p) {
    if (!(re[p] < 0) && !o.clip_eigs) {
      if (re[p] == 0 && im[p] == 0)
        r.fail("tensors '" + r.full("Lambda_re") + "' and '" + r.full("Lambda_im") + "' hold Λ[" + std::to_string(p) +
               "] = 0, where the reference's discretization divides by Λ (expected Λ != 0)");
      growth = true;
      const std::string msg = r.context() + ": warning: '" + r.full("Lambda_re") + "'[" + std::to_string(p) + "] = " +
                              std::to_string(re[p]) + " >= 0 without clip_eigs: a growing state, computed as stored";
      if (o.warning) o.warning(msg);
      else std::cerr << "mixlens: " << msg << '\n';
    }
  }
  return s5_mixer<T>(std::move(lambda), std::move(bt), std::move(ct), std::move(steps), std::move(skip), disc, o.conj_sym,
                     growth, std::move(cb));
}

// ---- HazyResearch/safari: HyenaOperator ------------------------------------------------

// The configuration of a HyenaOperator (with its HyenaFilter and
// ExponentialModulation) that the state_dict does not hold; defaults are the
// reference's. d_model, order, l_max, filter_order, emb_dim, num_inner_mlps and
// short_filter_order are read from the shapes.
struct hyena_operator_options {
  std::string prefix = {};             // <prefix>in_proj.weight, <prefix>filter_fn.*
  std::string filter_cls = "hyena-filter";
  index_t num_heads = 1;               // refused unless 1 (MultiHeadHyenaOperator's layout)
  index_t num_blocks = 1;              // refused unless 1
  index_t inner_factor = 1;            // refused unless 1 (also detected from out_proj.weight)
  bool outer_mixing = false;           // refused
  bool post_order_ffn = false;         // refused (also detected from a stored ord_proj_w)
  std::string activation = "id";       // id, identity, linear (or empty: None); others refused
  bool normalized = false;             // HyenaFilter `normalized`: L1 over channels, before the window
  bool bias = true;                    // HyenaFilter `bias`: use filter_fn.bias (else 0·bias)
  bool modulate = true;                // ExponentialModulation `modulate`
  double shift = 0.0;                  // ExponentialModulation `shift`: window exp(−t·|δ|) + shift
};

// The hyena_mixer of a HyenaOperator's state_dict (eval mode: dropout off).
// Tensors, with D = d_model, W = (order+1)·D, DF = D·(order−1), F = filter_order,
// E = emb_dim: in_proj.weight (W, D), in_proj.bias (W), short_filter.weight
// (W, 1, K), short_filter.bias (W), filter_fn.pos_emb.z (1, l_max, E),
// filter_fn.pos_emb.t (1, l_max, 1), filter_fn.implicit_filter.{2i}.weight
// (F, E) then (F, F) with .bias (F) for i = 0 … num_inner_mlps, the Sin's
// filter_fn.implicit_filter.{2i+1}.freq (1, F), filter_fn.implicit_filter.{2n+2}.weight
// (DF, F) (no bias), filter_fn.modulation.deltas (1, 1, DF), filter_fn.bias (DF),
// out_proj.weight (D, D), out_proj.bias (D). HyenaFilter shares one Sin module
// among its activations: the state_dict repeats its freq under every index, and
// a file saved with safetensors' save_model keeps only some of them; every one
// stored must be the same (one Sin), at least one must be.
template <class T, tensor_source Source>
[[nodiscard]] hyena_mixer<T> load_hyena_operator(const Source& src, const hyena_operator_options& o = {}) {
  detail::param_reader r(src, "HyenaOperator", o.prefix);
  if (o.filter_cls != "hyena-filter")
    r.unsupported("filter_cls", "'" + o.filter_cls + "'", "only safari's HyenaFilter ('hyena-filter') is modeled");
  if (o.num_heads != 1)
    r.unsupported("num_heads", std::to_string(o.num_heads), "hyena_mixer has one head (filters of d_model channels)");
  if (o.num_blocks != 1)
    r.unsupported("num_blocks", std::to_string(o.num_blocks), "hyena_mixer convolves over the whole sequence");
  if (o.inner_factor != 1)
    r.unsupported("inner_factor", std::to_string(o.inner_factor), "hyena_mixer's width is d_model");
  if (o.outer_mixing)
    r.unsupported("outer_mixing", "true", "the outer product of v and the gates is not modeled by hyena_mixer");
  if (o.post_order_ffn || r.has("ord_proj_w"))
    r.unsupported("post_order_ffn", o.post_order_ffn ? "true" : "(ord_proj_w stored)",
                  "the dense head mixing between steps of the recurrence is not modeled by hyena_mixer");
  if (!(o.activation.empty() || o.activation == "id" || o.activation == "identity" || o.activation == "linear"))
    r.unsupported("activation", "'" + o.activation + "'",
                  "hyena_mixer ends in out_proj without an activation (id, identity or linear)");
  if (!std::isfinite(o.shift)) r.unsupported("shift", std::to_string(o.shift), "expected a finite value");

  // Shapes, all before any read.
  const auto in_shape = r.shape("in_proj.weight", "in_proj ((order+1)·d_model, d_model)");
  if (in_shape.size() != 2 || in_shape[1] <= 0 || in_shape[0] % in_shape[1] != 0 || in_shape[0] / in_shape[1] < 3)
    r.fail("tensor '" + r.full("in_proj.weight") + "' has shape " + detail::shape_text(in_shape) +
           ", expected ((order+1)·d_model, d_model) with order >= 2");
  const index_t D = in_shape[1], W = in_shape[0], N = W / D - 1, DF = D * (N - 1);
  const auto out_shape = r.shape("out_proj.weight", "out_proj (d_model, d_model·inner_factor)");
  if (out_shape.size() == 2 && out_shape[0] == D && out_shape[1] != D && out_shape[1] % D == 0)
    r.unsupported("inner_factor", std::to_string(out_shape[1] / D) + " (out_proj.weight " + detail::shape_text(out_shape) + ")",
                  "hyena_mixer's width is d_model");
  r.expect("in_proj.weight", {W, D}, "in_proj");
  r.expect("in_proj.bias", {W}, "in_proj bias");
  r.expect("out_proj.weight", {D, D}, "out_proj");
  r.expect("out_proj.bias", {D}, "out_proj bias");
  const auto sf_shape = r.shape("short_filter.weight", "the depthwise short conv (W, 1, K)");
  if (sf_shape.size() != 3 || sf_shape[0] != W || sf_shape[1] != 1 || sf_shape[2] <= 0)
    r.fail("tensor '" + r.full("short_filter.weight") + "' has shape " + detail::shape_text(sf_shape) + ", expected (" +
           std::to_string(W) + ", 1, K)");
  const index_t K = sf_shape[2];
  r.expect("short_filter.weight", sf_shape, "the depthwise short conv");
  r.expect("short_filter.bias", {W}, "the short conv bias");
  const auto z_shape = r.shape("filter_fn.pos_emb.z", "the positional embedding (1, l_max, emb_dim)");
  if (z_shape.size() != 3 || z_shape[0] != 1 || z_shape[1] <= 0 || z_shape[2] < 3 || z_shape[2] % 2 == 0)
    r.fail("tensor '" + r.full("filter_fn.pos_emb.z") + "' has shape " + detail::shape_text(z_shape) +
           ", expected (1, l_max, emb_dim) with emb_dim odd and >= 3");
  const index_t Lmax = z_shape[1], E = z_shape[2];
  r.expect("filter_fn.pos_emb.z", z_shape, "the positional embedding");
  r.expect("filter_fn.pos_emb.t", {1, Lmax, 1}, "the normalized time (1, l_max, 1)");
  const std::string mlp = "filter_fn.implicit_filter.";
  index_t layers = 0;  // Linear layers, the last one the output layer
  while (r.has(mlp + std::to_string(2 * layers) + ".weight")) ++layers;
  if (layers < 2)
    r.fail("expected tensors '" + r.full(mlp) + "0.weight' … (the implicit filter's Linear layers at even indices), found " +
           std::to_string(layers));
  const auto f_shape = r.shape(mlp + "0.weight", "the first Linear (filter_order, emb_dim)");
  if (f_shape.size() != 2 || f_shape[1] != E || f_shape[0] <= 0)
    r.fail("tensor '" + r.full(mlp + "0.weight") + "' has shape " + detail::shape_text(f_shape) + ", expected (filter_order, " +
           std::to_string(E) + ")");
  const index_t F = f_shape[0], inner = layers - 2;
  const auto last_shape = r.shape(mlp + std::to_string(2 * layers - 2) + ".weight", "the output Linear");
  if (last_shape.size() == 2 && last_shape[1] == F && last_shape[0] != DF && last_shape[0] > 0 && DF % last_shape[0] == 0)
    r.unsupported("num_heads", std::to_string(DF / last_shape[0]) + " (the implicit filter has " +
                                   std::to_string(last_shape[0]) + " channels for d_model = " + std::to_string(D) + ")",
                  "hyena_mixer has one head (filters of d_model channels)");
  std::vector<std::string> freqs;
  for (index_t i = 0; i <= inner; ++i) {
    const std::string lin = mlp + std::to_string(2 * i);
    r.expect(lin + ".weight", {F, i == 0 ? E : F}, "a hidden Linear of the implicit filter");
    r.expect(lin + ".bias", {F}, "a hidden Linear's bias");
    const std::string freq = mlp + std::to_string(2 * i + 1) + ".freq";
    if (r.has(freq)) {
      r.expect(freq, {1, F}, "the Sin frequency (1, filter_order)");
      freqs.push_back(freq);
    }
  }
  if (freqs.empty())
    r.fail("missing tensor '" + r.full(mlp + "1.freq") + "' (the Sin frequency (1, filter_order); no Sin's freq is stored)");
  const std::string out_lin = mlp + std::to_string(2 * layers - 2);
  r.expect(out_lin + ".weight", {DF, F}, "the output Linear of the implicit filter (d_model·(order−1), filter_order)");
  r.refuse(out_lin + ".bias", "HyenaFilter's output Linear has no bias");
  r.expect("filter_fn.modulation.deltas", {1, 1, DF}, "the decay rates (1, 1, d_model·(order−1))");
  r.expect("filter_fn.bias", {DF}, "the filter bias (d_model·(order−1))");
  r.refuse_unread("filter_fn.", "not a tensor of safari's HyenaFilter");

  hyena_config cfg;
  cfg.d_model = D, cfg.l_max = Lmax, cfg.order = N, cfg.filter_order = F, cfg.emb_dim = E;
  cfg.num_inner_mlps = inner, cfg.short_filter_order = K, cfg.filter_bias = o.bias;
  cfg.normalization = o.normalized ? hyena_normalization::before_window : hyena_normalization::none;
  cfg.modulate = o.modulate, cfg.shift = o.shift;
  hyena_mixer<T> m(cfg);
  auto& w = m.weights();
  auto vec = [&](std::string_view name) {
    std::vector<T> out;
    for (double x : r.read(name)) out.push_back(static_cast<T>(x));
    return out;
  };
  auto mat = [&](std::string_view name, index_t rows, index_t cols) {
    const auto v = r.read(name);
    matrix<T> out(rows, cols);
    for (index_t k = 0; k < rows * cols; ++k) out.data()[k] = static_cast<T>(v[static_cast<std::size_t>(k)]);
    return out;
  };
  const auto freq0 = r.read(freqs[0]);
  for (std::size_t f = 1; f < freqs.size(); ++f)
    if (r.read(freqs[f]) != freq0)
      r.fail("tensor '" + r.full(freqs[f]) + "' differs from '" + r.full(freqs[0]) +
             "': distinct Sin modules per layer are not modeled (HyenaFilter shares one; so does hyena_mixer)");
  w.in_proj_weight = mat("in_proj.weight", W, D);
  w.in_proj_bias = vec("in_proj.bias");
  w.short_filter_weight = mat("short_filter.weight", W, K);
  w.short_filter_bias = vec("short_filter.bias");
  w.pos_z = mat("filter_fn.pos_emb.z", Lmax, E);
  w.pos_t = vec("filter_fn.pos_emb.t");
  w.mlp_weight.clear(), w.mlp_bias.clear();
  for (index_t i = 0; i <= inner; ++i) {
    const std::string lin = mlp + std::to_string(2 * i);
    w.mlp_weight.push_back(mat(lin + ".weight", F, i == 0 ? E : F));
    w.mlp_bias.push_back(vec(lin + ".bias"));
  }
  w.sin_freq = vec(freqs[0]);
  w.mlp_out_weight = mat(out_lin + ".weight", DF, F);
  w.deltas = vec("filter_fn.modulation.deltas");
  w.filter_bias = vec("filter_fn.bias");
  w.out_proj_weight = mat("out_proj.weight", D, D);
  w.out_proj_bias = vec("out_proj.bias");
  (void)m.filter(1);  // validates every shape
  return m;
}

// ---- state-spaces/mamba: Mamba (mamba_simple.py) -----------------------------------------

// The configuration of a Mamba layer's selective scan that the state_dict does not hold.
// Defaults are state-spaces/mamba's Mamba.
struct mamba_mixer_options {
  std::string prefix = {};      // <prefix>x_proj.weight, … ("backbone.layers.0.mixer." in a model)
  bool b_c_dt_rms = false;      // Falcon-Mamba: weightless RMSNorms of δ, B and C (FalconMambaConfig)
  double mixer_rms_eps = 1e-6;  // their ε (FalconMambaConfig.mixer_rms_eps)
  double rms_norm_eps = 1e-6;   // the ε of stored (weighted) norms: JambaConfig.rms_norm_eps
  bool delta_softplus = true;   // selective_scan_fn's delta_softplus
  bool is_variable_B = true;    // false: B is the stored <prefix>B (D_inner, N), x_proj yields no B
  bool is_variable_C = true;    // false: C is the stored <prefix>C (D_inner, N), x_proj yields no C
};

// The s6_mixer of a Mamba layer's selective scan: selective_scan_fn(x, dt, A, B,
// C, D, z, delta_bias = dt_proj.bias, delta_softplus = True) on the conv's output
// x, with x_proj.weight (R + 2N, D_inner), dt_proj.weight (D_inner, R),
// dt_proj.bias (D_inner), A_log (D_inner, N) (A = −exp(A_log)) and D (D_inner),
// one D per channel. The gate z is the bind's (s6_fold{.skip = true, .gate = true}
// adds D and SiLU(z)); in_proj, conv1d and out_proj mix or precede it and are not
// read (models::load_mamba loads the whole model). Read when stored or set:
// x_proj.bias (R + 2N); Jamba's weighted RMSNorms dt_layernorm.weight (R),
// b_layernorm.weight and c_layernorm.weight (N) (or B_layernorm / C_layernorm),
// ε = rms_norm_eps; Falcon-Mamba's weightless norms (b_c_dt_rms, ε =
// mixer_rms_eps); Δ without softplus; a time-invariant B or C, stored as
// <prefix>B / <prefix>C (D_inner, N), x_proj then R + N (or R) rows.
template <class T, tensor_source Source>
[[nodiscard]] s6_mixer<T> load_mamba_mixer(const Source& src, const mamba_mixer_options& o = {}) {
  detail::param_reader r(src, "Mamba", o.prefix);
  if (r.has("dt_bias") || (r.has("A_log") && r.shape("A_log", "A_log").size() == 1))
    r.unsupported("layer", "Mamba-2 (A_log per head, dt_bias stored)",
                  "mamba2.py's scalar-A heads are an SSD layer: load it with io::load_mamba2_mixer");
  if (!(o.mixer_rms_eps >= 0)) r.unsupported("mixer_rms_eps", std::to_string(o.mixer_rms_eps), "expected >= 0");
  if (!(o.rms_norm_eps >= 0)) r.unsupported("rms_norm_eps", std::to_string(o.rms_norm_eps), "expected >= 0");

  const auto a_shape = r.shape("A_log", "log(−A) (D_inner, N)");
  if (a_shape.size() != 2 || a_shape[0] <= 0 || a_shape[1] <= 0)
    r.fail("tensor '" + r.full("A_log") + "' has shape " + detail::shape_text(a_shape) + ", expected (D_inner, N)");
  const index_t D = a_shape[0], N = a_shape[1];
  const auto dt_shape = r.shape("dt_proj.weight", "dt_proj (D_inner, dt_rank)");
  if (dt_shape.size() != 2 || dt_shape[0] != D || dt_shape[1] <= 0)
    r.fail("tensor '" + r.full("dt_proj.weight") + "' has shape " + detail::shape_text(dt_shape) + ", expected (" +
           std::to_string(D) + ", dt_rank)");
  const index_t R = dt_shape[1];
  const index_t rows = R + (o.is_variable_B ? N : 0) + (o.is_variable_C ? N : 0);
  r.expect("A_log", {D, N}, "log(−A)");
  r.expect("dt_proj.weight", {D, R}, "dt_proj");
  r.expect("dt_proj.bias", {D}, "dt_proj bias, the delta_bias (D_inner)");
  r.expect("x_proj.weight", {rows, D},
           o.is_variable_B && o.is_variable_C ? "x_proj (dt_rank + 2·d_state, D_inner)"
                                              : "x_proj (dt_rank + d_state per varying B, C; D_inner)");
  const bool x_bias = r.has("x_proj.bias");
  if (x_bias) r.expect("x_proj.bias", {rows}, "x_proj bias");
  r.expect("D", {D}, "the D skip, one per channel (D_inner)");
  if (o.is_variable_B) r.refuse("B", "a time-invariant B, but is_variable_B is set (B from x_proj)");
  else r.expect("B", {D, N}, "the time-invariant B (D_inner, d_state), is_variable_B off");
  if (o.is_variable_C) r.refuse("C", "a time-invariant C, but is_variable_C is set (C from x_proj)");
  else r.expect("C", {D, N}, "the time-invariant C (D_inner, d_state), is_variable_C off");

  // Weighted norms, as stored (Jamba); either spelling of B's and C's.
  struct norm_name {
    const char* what;
    std::vector<std::string> names;
    index_t size;
    bool variable;
  };
  const norm_name norms[] = {{"dt", {"dt_layernorm.weight"}, R, true},
                             {"B", {"b_layernorm.weight", "B_layernorm.weight"}, N, o.is_variable_B},
                             {"C", {"c_layernorm.weight", "C_layernorm.weight"}, N, o.is_variable_C}};
  std::string stored_norm[3];
  for (int k = 0; k < 3; ++k)
    for (const auto& name : norms[k].names)
      if (r.has(name)) {
        if (!stored_norm[k].empty())
          r.fail("tensors '" + r.full(stored_norm[k]) + "' and '" + r.full(name) + "' are both stored: one norm of " +
                 norms[k].what + " expected");
        if (o.b_c_dt_rms)
          r.unsupported("b_c_dt_rms", "true with the weighted RMSNorm '" + r.full(name) + "' stored",
                        "Falcon-Mamba's norms have no weight, Jamba's have one: set at most one");
        if (!norms[k].variable)
          r.unsupported(std::string("is_variable_") + norms[k].what, "false with the RMSNorm '" + r.full(name) + "' stored",
                        "a norm of a time-invariant matrix is not a reference layout");
        r.expect(name, {norms[k].size}, std::string("the RMSNorm weight of ") + norms[k].what);
        stored_norm[k] = name;
      }

  auto mat = [&](std::string_view name, index_t rows_, index_t cols) {
    const auto v = r.read(name);
    matrix<T> out(rows_, cols);
    for (index_t k = 0; k < rows_ * cols; ++k) out.data()[k] = static_cast<T>(v[static_cast<std::size_t>(k)]);
    return out;
  };
  auto vec = [&](std::string_view name) {
    std::vector<T> out;
    for (double x : r.read(name)) out.push_back(static_cast<T>(x));
    return out;
  };
  s6_mixer<T> m;
  m.x_proj = mat("x_proj.weight", rows, D);
  if (x_bias) m.x_proj_bias = vec("x_proj.bias");
  m.dt_proj = mat("dt_proj.weight", D, R);
  m.dt_bias = vec("dt_proj.bias");
  m.a_log = mat("A_log", D, N);
  m.skip = vec("D");
  if (!o.is_variable_B) m.b_fixed = mat("B", D, N);
  if (!o.is_variable_C) m.c_fixed = mat("C", D, N);
  m.delta_softplus = o.delta_softplus;
  s6_rms_norm<T>* targets[] = {&m.dt_norm, &m.b_norm, &m.c_norm};
  if (o.b_c_dt_rms) {
    for (int k = 0; k < 3; ++k) targets[k]->enabled = norms[k].variable;
    m.norm_eps = o.mixer_rms_eps;
  } else {
    for (int k = 0; k < 3; ++k)
      if (!stored_norm[k].empty()) targets[k]->enabled = true, targets[k]->weight = vec(stored_norm[k]);
    m.norm_eps = o.rms_norm_eps;
  }
  return m;
}

// ---- from a file --------------------------------------------------------------------

// The same loaders on a safetensors file (a state_dict saved with
// safetensors.torch.save_file, or flattened flax parameters).
template <class T>
[[nodiscard]] s4d_mixer<T> load_s4d_module(const std::filesystem::path& file, std::string prefix = {}) {
  return load_s4d_module<T>(safetensors_file(file), std::move(prefix));
}
template <class T>
[[nodiscard]] std::vector<s4d_mixer<T>> load_ssm_kernel_diag(const std::filesystem::path& file,
                                                            const ssm_kernel_diag_options& o = {}) {
  return load_ssm_kernel_diag<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] std::vector<two_sided_mixer<s4d_mixer<T>>> load_ssm_kernel_diag_bidirectional(
    const std::filesystem::path& file, const ssm_kernel_diag_options& o = {}) {
  return load_ssm_kernel_diag_bidirectional<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] std::vector<two_sided_mixer<s4_mixer<T>>> load_ssm_kernel_dplr_bidirectional(
    const std::filesystem::path& file, const ssm_kernel_dplr_options& o = {}) {
  return load_ssm_kernel_dplr_bidirectional<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] std::vector<two_sided_mixer<dss_mixer<T>>> load_dss_module_bidirectional(
    const std::filesystem::path& file, const dss_module_options& o = {}) {
  return load_dss_module_bidirectional<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] std::vector<s4_mixer<T>> load_ssm_kernel_dplr(const std::filesystem::path& file,
                                                           const ssm_kernel_dplr_options& o = {}) {
  return load_ssm_kernel_dplr<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] std::vector<dss_mixer<T>> load_dss_module(const std::filesystem::path& file,
                                                       const dss_module_options& o = {}) {
  return load_dss_module<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] s5_mixer<T> load_s5_ssm(const std::filesystem::path& file, const s5_ssm_options& o = {}) {
  return load_s5_ssm<T>(safetensors_file(file), o);
}

template <class T>
[[nodiscard]] hyena_mixer<T> load_hyena_operator(const std::filesystem::path& file, const hyena_operator_options& o = {}) {
  return load_hyena_operator<T>(safetensors_file(file), o);
}
template <class T>
[[nodiscard]] s6_mixer<T> load_mamba_mixer(const std::filesystem::path& file, const mamba_mixer_options& o = {}) {
  return load_mamba_mixer<T>(safetensors_file(file), o);
}

}  // namespace mixlens::io
