// The gradients of one logit with respect to the activations of a Mamba-2
// language model (not its weights), written once against a backend like the
// forward pass (models/mamba2_forward.hpp), in the style of
// models/mamba_backward.hpp (whose gradient_target, gradient_options,
// propagation and result types it shares).
//
// Differentiated with respect to: the embedding output, every block's input
// (the residual stream entering layer k), and per layer the SSD input u (the
// x channels after the conv and SiLU, H·P × L), Δ per head (heads × L, after
// the time-step clamp), B and C (G × N × L, after the conv and SiLU) and the
// SSD output SSD(u) + D·u before the gated RMSNorm (H·P × L). Every quantity
// is the total derivative.
//
// The SSD scan's backward is the selective scan's (be.s6_backward): head h's
// scalar-decay SSD over its P channels is an S6 whose channels carry the head's
// Δ (broadcast over the P channels) and A[c][n] = a_h for every state n, with
// the S6 groups of B and C equal to the SSD groups (channel c = h·P + p is in
// S6 group c / (H·P / G) = h / (H / G), the SSD group of its head). Then
// ∂Δ_h = Σ_{p} ∂Δ[h·P + p] and s6_backward's ∂B, ∂C (summed over a group's
// channels) are the SSD's. The states do not interact in the recurrence, so the
// backward runs over slices of at most ssd_backward_state_slice states (the
// device kernel's limit) and adds up their ∂u and ∂Δ.
//
// Under propagation::lrp (MambaLRP's rules, docs/attribution.md): SiLU with σ
// detached (the conv output, the gated norm's z, the MLP part's z0), the SSD
// with Δ, B, C detached (only u carries relevance), the multiplicative gates
// split half and half (the gated norm's s ⊙ SiLU(z) and the MLP part's
// SiLU(z0) ⊙ x0), the RMSNorm denominators detached, the gated RMSNorm's
// included: y = (s ⊙ g) · w · r(s ⊙ g) with r a constant, so
// ∂s = ½ ∂y ⊙ w r g and ∂g = ½ ∂y ⊙ w r s.
//
// Memory and time as mamba_gradients: the residual stream of every layer is
// kept, each layer's signals are recomputed from its input in the reverse sweep.
// Needs nlohmann-json (through mamba2_forward.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/error.hpp"
#include "mixlens/models/mamba2_forward.hpp"
#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/ops/s6/backward.hpp"

namespace mixlens::models {

// The most states one s6_backward call of the SSD's backward covers (the
// device kernel's limit); larger state sizes run in slices.
inline constexpr index_t ssd_backward_state_slice = 32;

// One Mamba-2 layer's gradients as views into the backward pass's buffers
// (backend memory), in the layouts of the forward signals (mamba2_layer_signals).
template <class T>
struct mamba2_layer_gradients {
  using value_type = T;
  index_t layer = 0;
  matrix_view<const T> residual;     // ∂/∂ the residual stream entering the layer (L × H)
  matrix_view<const T> z;            // ∂/∂ z, the gated norm's gate input (H·P × L)
  matrix_view<const T> u;            // ∂/∂ u, the SSD input (H·P × L)
  matrix_view<const T> delta;        // ∂/∂ Δ (heads × L)
  tensor_view<const T, 3> b, c;      // ∂/∂ B, C (G × N × L)
  matrix_view<const T> ssm_out;      // ∂/∂ (SSD(u) + D·u), the gated norm's input (H·P × L)
  matrix_view<const T> out_proj_in;  // ∂/∂ out_proj's input [SiLU(z0) ⊙ x0; y] (d_mlp + H·P × L)
};

namespace detail {

// The backward pass's buffers, reused layer after layer.
template <class Array>
struct mamba2_backward_buffers {
  Array dh, dhn, dzx, dout, gate, v, dv, dssm, dconv, dp, delta_full, ddelta_full, ddelta;
  Array expand, a_channel, skip_channel, a_full;            // the S6 view of the SSD
  Array b_slice, c_slice, du_slice, ddelta_slice, db_slice, dc_slice;  // state slices (N > slice)
};

}  // namespace detail

// The gradients of logits[target] with respect to the activations, in the
// backend's memory. `observe(const mamba2_layer_signals<T>&, const
// mamba2_layer_gradients<T>&)` is called once per layer, from the last layer
// to the first, with the layer's recomputed forward signals and its gradients.
template <class Backend, class T, class Observer>
[[nodiscard]] auto mamba2_gradients(const Backend& be, const mamba2_weights<T>& m, std::span<const index_t> tokens,
                                    gradient_target target, const gradient_options& options, Observer&& observe) {
  constexpr bool has_scan_backward =
      requires(const Backend& b, const s6_operator<T>& op, const T* p, const s6_gradient_views<T>& g) {
        b.s6_backward(op, p, p, g);
      };
  static_assert(has_scan_backward, "mamba2_gradients: this backend has no s6_backward (the selective-scan backward), "
                                   "so the gradients cannot be computed on it");
  constexpr std::string_view where = "mixlens::models::mamba2_gradients";
  using array = typename Backend::template array<T>;
  check_tokens(m.vocab_size(), tokens);
  const mamba2_config& cfg = m.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, S = cfg.ssm_channels(),
                X = cfg.conv_channels(), Hd = cfg.num_heads, P = cfg.head_dim, G = cfg.n_groups, N = cfg.state_size,
                M = cfg.d_mlp, I = cfg.intermediate_size(), rows = cfg.in_proj_rows(), V = m.vocab_size(),
                layers = m.num_layers();
  const index_t z_at = 2 * M, xbc_at = z_at + S, dt_at = xbc_at + X;  // in_proj rows [z0, x0 | z | x, B, C | dt]
  const index_t slice = std::min(N, ssd_backward_state_slice);
  const bool sliced = slice < N;
  detail::check_target(where, target, L, V);
  const index_t pos = target.position < 0 ? L - 1 : target.position;

  // Forward: the logits, and the residual stream entering every layer and the final norm.
  std::vector<array> stream;
  const auto logits =
      mamba_forward(be, m, tokens, [](const auto&) {}, detail::residual_recorder<Backend, array>{&be, &stream});
  be.synchronize();
  const auto row = be.download(logits.data() + pos * V, V);
  const index_t tok = detail::resolve_target_token(where, std::span<const T>(row), pos, target.token);
  mamba_gradients_result<array> result;
  result.target = {pos, tok};
  result.value = double(row[static_cast<std::size_t>(tok)]);

  // E (S × heads): E[c][h] = 1 where channel c is in head h; E·Δ broadcasts a
  // head's Δ over its channels and Eᵀ sums them (both exact).
  std::vector<T> expand(static_cast<std::size_t>(S * Hd), T(0));
  for (index_t c = 0; c < S; ++c) expand[static_cast<std::size_t>(c * Hd + c / P)] = T(1);
  const index_t GS = G * slice * L;
  detail::mamba2_backward_buffers<array> g{
      be.alloc(L * H),     be.alloc(L * H),     be.alloc(rows * L),  be.alloc(I * L),
      be.alloc(S * L),     be.alloc(S * L),     be.alloc(S * L),     be.alloc(S * L),
      be.alloc(X * L),     be.alloc(X * L),     be.alloc(S * L),     be.alloc(S * L),
      be.alloc(Hd * L),    be.upload(std::span<const T>(expand)),    be.alloc(S),
      be.alloc(S),         be.alloc(S * slice), be.alloc(sliced ? GS : 0),
      be.alloc(sliced ? GS : 0), be.alloc(sliced ? S * L : 0), be.alloc(sliced ? S * L : 0),
      be.alloc(sliced ? GS : 0), be.alloc(sliced ? GS : 0)};

  // Reverse: lm_head (∂hn_f is row `tok` of the output embedding at `pos`), the final norm.
  be.fill_zero(g.dhn.data(), L * H);
  be.axpy(g.dhn.data() + pos * H, m.output_embedding.data_handle() + tok * H, T(1), H);
  const bool lrp = options.rule == propagation::lrp;
  be.rms_norm_backward(stream.back().data(), L, H, m.norm_f, cfg.norm_eps, g.dhn.data(), g.dh.data(), false, lrp);

  auto hn = be.alloc(H * L), scratch = be.alloc(H * L);
  mamba2_mixer_buffers<Backend, T> buf(be, cfg, L);
  const bool per_layer = options.residual || options.u || options.delta || options.b || options.c || options.ssm_out;
  if (per_layer) result.layers.resize(static_cast<std::size_t>(layers));
  const auto keep = [&](bool wanted, array& to, const T* from, index_t n) {
    if (!wanted) return;
    to = be.alloc(n);
    be.copy(from, n, to.data());
  };
  const auto signal = [L](const T* p, index_t count) { return matrix_view<const T>(p, count, L); };
  T *const dz = g.dzx.data() + z_at * L, *const du = g.dconv.data(), *const db = g.dconv.data() + S * L,
           *const dc = g.dconv.data() + (S + G * N) * L;

  for (index_t k = layers - 1; k >= 0; --k) {
    const mamba2_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    const T* h = stream[static_cast<std::size_t>(k)].data();
    // The layer's forward signals again, from its input (its output goes to scratch).
    be.rms_norm(h, L, H, w.norm, cfg.norm_eps, hn.data());
    be.copy(h, L * H, scratch.data());
    const mamba2_layer_signals<T> s = mamba2_mixer_forward(be, cfg, w, hn.data(), L, buf, scratch.data(), k);
    const T* zx = buf.zx.data();

    // out_proj: ∂[o_mlp; y] = W_outᵀ·∂hᵀ. LRP halves what reaches both factors
    // of both gates (∂out is restored below).
    be.gemm(true, true, I, L, H, w.out_proj.data_handle(), g.dh.data(), T(0), g.dout.data());
    if (lrp) be.scale(g.dout.data(), T(0.5), I * L);  // exact: a power of two
    if (M > 0) {  // o_mlp = SiLU(z0) ⊙ x0: ∂x0 = ∂o ⊙ SiLU(z0), ∂z0 = ∂o ⊙ x0 ⊙ SiLU'(z0)
      T *dz0 = g.dzx.data(), *dx0 = g.dzx.data() + M * L;
      be.silu(zx, dx0, M * L);
      be.multiply(dx0, g.dout.data(), M * L);
      be.copy(g.dout.data(), M * L, dz0);
      be.multiply(dz0, zx + M * L, M * L);
      be.silu_backward(zx, dz0, M * L, lrp);
    }
    // The gated RMSNorm y = v ⊙ w · r(v), v = s ⊙ SiLU(z): ∂v through the norm
    // (r detached under LRP), then ∂s = ∂v ⊙ SiLU(z), ∂z = ∂v ⊙ s ⊙ SiLU'(z).
    const T* dy = g.dout.data() + M * L;
    be.silu(s.z.data_handle(), g.gate.data(), S * L);
    be.copy(s.ssm_out.data_handle(), S * L, g.v.data());
    be.multiply(g.v.data(), g.gate.data(), S * L);
    be.scale_rows(dy, w.norm_weight, g.dv.data(), S, L);  // ∂v before the norm: ∂y ⊙ w
    be.group_rms_norm_backward(g.v.data(), S, L, cfg.norm_group_size, cfg.norm_eps, g.dv.data(), lrp);
    be.copy(g.dv.data(), S * L, g.dssm.data());
    be.multiply(g.dssm.data(), g.gate.data(), S * L);
    be.copy(g.dv.data(), S * L, dz);
    be.multiply(dz, s.ssm_out.data_handle(), S * L);
    be.silu_backward(s.z.data_handle(), dz, S * L, lrp);
    if (lrp) be.scale(g.dout.data(), T(2), I * L);  // ∂out again

    // The SSD as an S6 over the H·P channels: Δ and A of each channel its head's, D likewise.
    be.gemm(false, false, S, L, Hd, g.expand.data(), s.delta.data_handle(), T(0), g.delta_full.data());
    be.gemm(false, false, S, 1, Hd, g.expand.data(), w.a.data(), T(0), g.a_channel.data());
    be.gemm(false, false, S, 1, Hd, g.expand.data(), w.skip.data(), T(0), g.skip_channel.data());
    const auto a_full = [&](index_t n) {  // (S × n): every state of channel c decays by its head's a
      be.fill(g.a_full.data(), S * n, T(1));
      be.scale_rows(g.a_full.data(), vector_view<const T>(g.a_channel.data(), static_cast<std::size_t>(S)),
                    g.a_full.data(), S, n);
      return matrix_view<const T>(g.a_full.data(), S, n);
    };
    const matrix_view<const T> delta_full(g.delta_full.data(), S, L);
    const vector_view<const T> skip_channel(g.skip_channel.data(), static_cast<std::size_t>(S));
    if constexpr (has_scan_backward) {  // (only the static_assert above reports a missing one)
      if (!sliced) {
        be.s6_backward(s6_operator<T>(delta_full, a_full(N), s.b, s.c, skip_channel), s.u.data_handle(), g.dssm.data(),
                       s6_gradient_views<T>{matrix_view<T>(du, S, L), matrix_view<T>(g.ddelta_full.data(), S, L),
                                            tensor_view<T, 3>(db, G, N, L), tensor_view<T, 3>(dc, G, N, L), {}, {}});
      } else {
        for (index_t n0 = 0; n0 < N; n0 += slice) {
          const index_t n = std::min(slice, N - n0);
          for (index_t q = 0; q < G; ++q) {  // B, C of states [n0, n0 + n) of every group, contiguous
            be.copy(s.b.data_handle() + (q * N + n0) * L, n * L, g.b_slice.data() + q * n * L);
            be.copy(s.c.data_handle() + (q * N + n0) * L, n * L, g.c_slice.data() + q * n * L);
          }
          const bool first = n0 == 0;
          be.s6_backward(
              s6_operator<T>(delta_full, a_full(n),
                             tensor_view<const T, 3>(g.b_slice.data(), G, n, L),
                             tensor_view<const T, 3>(g.c_slice.data(), G, n, L),
                             first ? skip_channel : vector_view<const T>{}),
              s.u.data_handle(), g.dssm.data(),
              s6_gradient_views<T>{matrix_view<T>(first ? du : g.du_slice.data(), S, L),
                                   matrix_view<T>(first ? g.ddelta_full.data() : g.ddelta_slice.data(), S, L),
                                   tensor_view<T, 3>(g.db_slice.data(), G, n, L),
                                   tensor_view<T, 3>(g.dc_slice.data(), G, n, L), {}, {}});
          if (!first) {
            be.axpy(du, g.du_slice.data(), T(1), S * L);
            be.axpy(g.ddelta_full.data(), g.ddelta_slice.data(), T(1), S * L);
          }
          for (index_t q = 0; q < G; ++q) {
            be.copy(g.db_slice.data() + q * n * L, n * L, db + (q * N + n0) * L);
            be.copy(g.dc_slice.data() + q * n * L, n * L, dc + (q * N + n0) * L);
          }
        }
      }
    }
    T* ddt = g.dzx.data() + dt_at * L;
    if (lrp) {  // Δ, B, C detached: nothing flows through them
      be.fill_zero(g.ddelta.data(), Hd * L);
      be.fill_zero(db, 2 * G * N * L);
      be.fill_zero(ddt, Hd * L);
    } else {
      // ∂Δ_h = Σ over the head's channels; Δ = clamp(softplus(dt + dt_bias)).
      be.gemm(true, false, Hd, L, S, g.expand.data(), g.ddelta_full.data(), T(0), g.ddelta.data());
      be.copy(g.ddelta.data(), Hd * L, ddt);
      be.softplus_backward(s.delta.data_handle(), ddt, Hd * L, static_cast<T>(cfg.dt_min), static_cast<T>(cfg.dt_max));
    }
    // conv + SiLU over x, B, C into the xBC rows of dzx.
    be.copy(g.dconv.data(), X * L, g.dp.data());
    const causal_conv_operator<T, mamba_conv_kind> conv(w.conv_taps, {}, L);
    be.conv_silu_backward(conv, buf.u.data(), buf.sigma.data(), g.dp.data(), g.dzx.data() + xbc_at * L, lrp);
    // in_proj: ∂hn = ∂zxᵀ·W_in; the block's norm; the residual path already in dh.
    be.gemm(true, false, L, H, rows, g.dzx.data(), w.in_proj.data_handle(), T(0), g.dhn.data());
    be.rms_norm_backward(h, L, H, w.norm, cfg.norm_eps, g.dhn.data(), g.dh.data(), true, lrp);

    mamba2_layer_gradients<T> lg;
    lg.layer = k;
    lg.residual = matrix_view<const T>(g.dh.data(), L, H);
    lg.z = signal(dz, S), lg.u = signal(du, S), lg.delta = signal(g.ddelta.data(), Hd);
    lg.b = tensor_view<const T, 3>(db, G, N, L);
    lg.c = tensor_view<const T, 3>(dc, G, N, L);
    lg.ssm_out = signal(g.dssm.data(), S), lg.out_proj_in = signal(g.dout.data(), I);
    observe(s, lg);
    if (per_layer) {
      auto& out = result.layers[static_cast<std::size_t>(k)];
      keep(options.residual, out.residual, g.dh.data(), L * H);
      keep(options.u, out.u, du, S * L);
      keep(options.delta, out.delta, g.ddelta.data(), Hd * L);
      keep(options.b, out.b, db, G * N * L);
      keep(options.c, out.c, dc, G * N * L);
      keep(options.ssm_out, out.ssm_out, g.dssm.data(), S * L);
    }
  }
  keep(options.embedding, result.embedding, g.dh.data(), L * H);
  be.synchronize();
  return result;
}

template <class Backend, class T>
[[nodiscard]] auto mamba2_gradients(const Backend& be, const mamba2_weights<T>& m, std::span<const index_t> tokens,
                                    gradient_target target = {}, const gradient_options& options = {}) {
  return mamba2_gradients(be, m, tokens, target, options, [](const auto&, const auto&) {});
}

// On the host, for a loaded model: the gradients in std::vector.
template <class T>
[[nodiscard]] mamba_gradients_result<std::vector<T>> mamba2_gradients(const mamba2_model<T>& m,
                                                                      std::span<const index_t> tokens,
                                                                      gradient_target target = {},
                                                                      const gradient_options& options = {}) {
  const auto weights = host_weights(m);
  return mamba2_gradients(host_backend<T>{}, weights.view(), tokens, target, options);
}

// The same under the name the Mamba-1 gradients have, so that code written for
// both families calls one function (as mamba_forward serves both).
template <class Backend, class T, class Observer>
[[nodiscard]] auto mamba_gradients(const Backend& be, const mamba2_weights<T>& m, std::span<const index_t> tokens,
                                   gradient_target target, const gradient_options& options, Observer&& observe) {
  return mamba2_gradients(be, m, tokens, target, options, std::forward<Observer>(observe));
}
template <class Backend, class T>
[[nodiscard]] auto mamba_gradients(const Backend& be, const mamba2_weights<T>& m, std::span<const index_t> tokens,
                                   gradient_target target = {}, const gradient_options& options = {}) {
  return mamba2_gradients(be, m, tokens, target, options);
}
template <class T>
[[nodiscard]] mamba_gradients_result<std::vector<T>> mamba_gradients(const mamba2_model<T>& m,
                                                                     std::span<const index_t> tokens,
                                                                     gradient_target target = {},
                                                                     const gradient_options& options = {}) {
  return mamba2_gradients(m, tokens, target, options);
}

}  // namespace mixlens::models
