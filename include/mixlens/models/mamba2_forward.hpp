// The Mamba-2 forward pass, written once against a backend (mixlens/backend.hpp
// on the host, mixlens/gpu/backend.cuh on the device), as transformers'
// Mamba2ForCausalLM and state-spaces' Mamba2 compute it:
//
//   embedding → [RMSNorm → in_proj → (z0, x0 | z | xBC | dt)
//                → causal conv + bias over xBC → SiLU → (x = u, B, C per group)
//                → Δ = clamp(softplus(dt + dt_bias), time_step_limit)
//                → SSD per head (ops/ssd.hpp) + D·u
//                → gated RMSNorm with z → [SiLU(z0) ⊙ x0 ; ·] → out_proj → + residual] × layers
//   → RMSNorm → lm_head
//
// The gated RMSNorm, at a given input, is a diagonal: y = gate ⊙ (SSD(u) + D·u)
// with gate[c][t] = SiLU(z)·w_c / rms of its group at t. The layer's signals
// (mamba2_layer_signals) carry that diagonal, so that the per-head hidden
// attention α_h = L_h ∘ (C Bᵀ)·diag(Δ_h), D, the gate, the activation factor and
// the conv compose into the unified form of the block exactly as for Mamba
// (models/mamba_forward.hpp: unified_operator, check_reconstruction).
// Needs nlohmann-json (through mamba2_config.hpp).
#pragma once

#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/models/mamba2_config.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/ssd.hpp"

namespace mixlens::models {

// ---- weights as views --------------------------------------------------------------

template <class T>
struct mamba2_layer_weights {
  vector_view<const T> norm;           // (H)
  matrix_view<const T> in_proj;        // (in_proj_rows × H)
  vector_view<const T> in_proj_bias;   // (in_proj_rows) or empty
  matrix_view<const T> conv_taps;      // (conv channels × K), tap by lag: PyTorch's weight reversed
  vector_view<const T> conv_bias;      // (conv channels) or empty
  vector_view<const T> dt_bias;        // (heads)
  vector_view<const T> a;              // (heads): A = −exp(A_log)
  vector_view<const T> skip;           // (heads): D
  vector_view<const T> norm_weight;    // (H·P): the gated RMSNorm's weight
  matrix_view<const T> out_proj;       // (H × d_mlp + H·P)
  vector_view<const T> out_proj_bias;  // (H) or empty

  template <class F>
  void for_each_view(F&& f) {
    f(norm), f(in_proj), f(in_proj_bias), f(conv_taps), f(conv_bias), f(dt_bias), f(a), f(skip), f(norm_weight),
        f(out_proj), f(out_proj_bias);
  }
};

template <class T>
using mamba2_weights = lm_weights<T, mamba2_config, mamba2_layer_weights<T>>;

// ---- one layer's signals ------------------------------------------------------------

// Channel-major views of one layer's internal signals over its SSM channels
// (H·P × L, channel c in head c / P), wherever the backend computed them. The
// names follow mamba_layer_signals, so that the unified form and the self-test
// are shared.
template <class T>
struct mamba2_layer_signals {
  using value_type = T;
  index_t layer = 0;
  index_t head_dim = 0, chunk = 0;
  matrix_view<const T> x, z;         // in_proj's x rows (before the conv) and the gate input z
  matrix_view<const T> u;            // SSD input: SiLU(conv1d(x) + bias)
  matrix_view<const T> activation;   // σ(conv1d(x) + bias): SiLU(p) = p·σ(p)
  matrix_view<const T> delta;        // (H × L): Δ, clamped to the time-step limit
  vector_view<const T> a;            // (H): A = −exp(A_log)
  tensor_view<const T, 3> b, c;      // (G × N × L), after the conv and SiLU
  vector_view<const T> skip;         // (H): D
  matrix_view<const T> ssm_out;      // SSD(u) + D·u: the gated norm's input
  matrix_view<const T> gate;         // the gated norm as a diagonal at this input: y = gate ⊙ ssm_out
  matrix_view<const T> y;            // the norm's output (the SSM part of out_proj's input)
  vector_view<const T> conv_bias;    // (H·P) the x channels' conv bias, or empty
  causal_conv_operator<T, mamba_conv_kind> conv;  // the conv of the x channels, without the bias

  [[nodiscard]] index_t channels() const { return u.extent(0); }
  [[nodiscard]] index_t length() const { return u.extent(1); }
  [[nodiscard]] index_t heads() const { return delta.extent(0); }

  template <class F>
  void for_each_view(F&& f) {
    f(x), f(z), f(u), f(activation), f(delta), f(a), f(b), f(c), f(skip), f(ssm_out), f(gate), f(y), f(conv_bias),
        f(conv);
  }

  // The paper's hidden attention per head: α_h = L_h ∘ (C Bᵀ)·diag(Δ_h), one
  // L × L matrix per head (channel h of this operator is head h), no D, no gate.
  [[nodiscard]] ssd_operator<T> ssm() const { return ssd_operator<T>(delta, a, b, c, 1, {}, chunk); }

  // The per-channel operator (every channel of a head mixed by its head's
  // matrix), with D and / or the gate folded: with both, apply(u) = y.
  [[nodiscard]] ssd_operator<T> ssm(s6_fold fold) const {
    return ssd_operator<T>(delta, a, b, c, head_dim, fold.skip ? skip : vector_view<const T>{}, chunk,
                           fold.gate ? gate : matrix_view<const T>{});
  }
};

// The unified form of a Mamba-2 block (unified_operator's result).
template <class T>
using mamba2_block_operator = mamba_block_operator<T, T, ssd_operator<T>>;

// ---- one mixer ----------------------------------------------------------------------

// The buffers of one Mamba-2 mixer at length L, in the backend's memory; the
// layer's signals are views into them.
template <class Backend, class T>
struct mamba2_mixer_buffers {
  using buffer = decltype(std::declval<const Backend&>().alloc(index_t{}));
  buffer zx, u, sigma, ssm_out, gate, out_in;
  mamba2_mixer_buffers(const Backend& be, const mamba2_config& cfg, index_t L)
      : zx(be.alloc(cfg.in_proj_rows() * L)), u(be.alloc(cfg.conv_channels() * L)),
        sigma(be.alloc(cfg.conv_channels() * L)), ssm_out(be.alloc(cfg.ssm_channels() * L)),
        gate(be.alloc(cfg.ssm_channels() * L)), out_in(be.alloc(cfg.intermediate_size() * L)) {}
};

// The Mamba-2 mixer after its in_proj, on the projection already in buf.zx
// (in_proj_rows × L: [z0, x0 | z | x, B, C | dt], in_proj's bias included):
// conv, SiLU, Δ, SSD + D·u, the gated norm and the gated MLP, up to out_proj's
// input buf.out_in. Returns the mixer's signals, views into `buf` (valid until
// its next use). mixlens.hf starts here from the projection a transformers
// model computed. `inject(point, layer, data, rows, cols)` (optional, as in
// mamba_branch) may change a signal in place before the rest of the mixer reads
// it: u (the x channels, H·P × L), b and c (G·N × L), delta (heads × L) and
// ssm_out (H·P × L, the gated norm's input); models/mamba2_backward.hpp's checks
// perturb there.
template <class Backend, class T, class Inject = no_injection>
mamba2_layer_signals<T> mamba2_mixer_from_projection(const Backend& be, const mamba2_config& cfg,
                                                     const mamba2_layer_weights<T>& w, index_t L,
                                                     mamba2_mixer_buffers<Backend, T>& buf, index_t layer = 0,
                                                     Inject&& inject = {}) {
  constexpr bool injecting = !std::is_same_v<std::remove_cvref_t<Inject>, no_injection>;
  const index_t S = cfg.ssm_channels(), X = cfg.conv_channels(), Hd = cfg.num_heads, G = cfg.n_groups,
                N = cfg.state_size, M = cfg.d_mlp;
  // in_proj row offsets: [z0, x0 | z | x, B, C | dt]
  const index_t z_at = 2 * M, xbc_at = z_at + S, dt_at = xbc_at + X;
  auto &zx = buf.zx, &u = buf.u, &sigma = buf.sigma, &ssm_out = buf.ssm_out, &gate = buf.gate, &out_in = buf.out_in;
  const auto signal = [L](const auto& buffer, index_t count, index_t offset = 0) {
    return matrix_view<const T>(buffer.data() + offset * L, count, L);
  };
  const causal_conv_operator<T, mamba_conv_kind> conv(w.conv_taps, {}, L);
  be.conv_silu(conv, w.conv_bias, zx.data() + xbc_at * L, u.data(), sigma.data());
  T* delta = zx.data() + dt_at * L;  // Δ in place of the dt rows
  be.softplus_bias(delta, w.dt_bias, Hd, L, static_cast<T>(cfg.dt_min), static_cast<T>(cfg.dt_max));
  if constexpr (injecting) {
    inject(mamba_point::u, layer, u.data(), S, L);
    inject(mamba_point::b, layer, u.data() + S * L, G * N, L);
    inject(mamba_point::c, layer, u.data() + (S + G * N) * L, G * N, L);
    inject(mamba_point::delta, layer, delta, Hd, L);
  }

  mamba2_layer_signals<T> s;
  s.layer = layer;
  s.head_dim = cfg.head_dim, s.chunk = cfg.chunk_size;
  s.x = signal(zx, S, xbc_at), s.z = signal(zx, S, z_at), s.u = signal(u, S), s.activation = signal(sigma, S);
  s.delta = matrix_view<const T>(delta, Hd, L), s.a = w.a, s.skip = w.skip;
  s.b = tensor_view<const T, 3>(u.data() + S * L, G, N, L);
  s.c = tensor_view<const T, 3>(u.data() + (S + G * N) * L, G, N, L);
  s.ssm_out = signal(ssm_out, S), s.gate = signal(gate, S), s.y = signal(out_in, S, M);
  s.conv_bias = w.conv_bias.empty() ? vector_view<const T>{} : vector_view<const T>(w.conv_bias.data(), static_cast<std::size_t>(S));
  s.conv = causal_conv_operator<T, mamba_conv_kind>(matrix_view<const T>(w.conv_taps.data_handle(), S, w.conv_taps.extent(1)), {}, L);
  if constexpr (Backend::on_host) s.ssm(s6_fold{.skip = true}).validate();  // Δ > 0, A < 0

  be.apply(s.ssm(s6_fold{.skip = true}), u.data(), ssm_out.data());
  if constexpr (injecting) inject(mamba_point::ssm_out, layer, ssm_out.data(), S, L);
  be.gated_rms_norm(ssm_out.data(), zx.data() + z_at * L, S, L, cfg.norm_group_size, w.norm_weight, cfg.norm_eps,
                    out_in.data() + M * L, gate.data());
  if (M > 0) {  // the gated MLP: SiLU(z0) ⊙ x0 in out_proj's first columns
    be.silu(zx.data(), out_in.data(), M * L);
    be.multiply(out_in.data(), zx.data() + M * L, M * L);
  }
  return s;
}

// One Mamba-2 mixer (state-spaces Mamba2.forward, transformers' Mamba2Mixer) on
// the normed hidden states hn (L × H, time-major): h (L × H) += out_proj(…).
// Returns the mixer's signals, views into `buf` (valid until its next use);
// `inject` as in mamba2_mixer_from_projection.
template <class Backend, class T, class Inject = no_injection>
mamba2_layer_signals<T> mamba2_mixer_forward(const Backend& be, const mamba2_config& cfg,
                                             const mamba2_layer_weights<T>& w, const T* hn, index_t L,
                                             mamba2_mixer_buffers<Backend, T>& buf, T* h, index_t layer = 0,
                                             Inject&& inject = {}) {
  const index_t H = cfg.hidden_size, rows = cfg.in_proj_rows(), width = cfg.intermediate_size();
  be.gemm(false, true, rows, L, H, w.in_proj.data_handle(), hn, T(0), buf.zx.data());  // zx = W_in·hnᵀ
  if (!w.in_proj_bias.empty()) be.add_row_bias(buf.zx.data(), w.in_proj_bias, rows, L);
  const mamba2_layer_signals<T> s = mamba2_mixer_from_projection(be, cfg, w, L, buf, layer, inject);
  be.gemm(true, true, L, H, width, buf.out_in.data(), w.out_proj.data_handle(), T(1), h);  // h += out_inᵀ·W_outᵀ
  if (!w.out_proj_bias.empty()) be.add_column_bias(h, w.out_proj_bias, L, H);
  return s;
}

// ---- the forward pass --------------------------------------------------------------

// Runs the language model on `tokens` and returns the logits (L × V, row-major)
// in the backend's memory. `observe(const mamba2_layer_signals<T>&)` is called
// after each layer; the buffers are reused by the next one. `inject`
// (optional) is called at every mamba_point, as in mamba2_mixer_forward.
template <class Backend, class T, class Observer, class Inject = no_injection>
[[nodiscard]] auto mamba_forward(const Backend& be, const mamba2_weights<T>& m, std::span<const index_t> tokens,
                                 Observer&& observe, Inject&& inject = {}) {
  constexpr bool injecting = !std::is_same_v<std::remove_cvref_t<Inject>, no_injection>;
  check_tokens(m.vocab_size(), tokens);
  const mamba2_config& cfg = m.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, V = m.vocab_size();
  const auto tok = be.upload(tokens);
  auto h = be.alloc(H * L), hn = be.alloc(H * L), logits = be.alloc(L * V);
  mamba2_mixer_buffers<Backend, T> buf(be, cfg, L);

  be.embed(tok, m.embedding, h.data());
  for (index_t k = 0; k < m.num_layers(); ++k) {
    const mamba2_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    if constexpr (injecting) inject(mamba_point::block_input, k, h.data(), L, H);
    be.rms_norm(h.data(), L, H, w.norm, cfg.norm_eps, hn.data());
    const mamba2_layer_signals<T> s = mamba2_mixer_forward(be, cfg, w, hn.data(), L, buf, h.data(), k, inject);
    observe(s);
  }
  if constexpr (injecting) inject(mamba_point::final_norm_input, m.num_layers(), h.data(), L, H);
  be.rms_norm(h.data(), L, H, m.norm_f, cfg.norm_eps, hn.data());
  be.gemm(false, true, L, V, H, hn.data(), m.output_embedding.data_handle(), T(0), logits.data());  // hn·Eᵀ
  be.synchronize();
  return logits;
}

}  // namespace mixlens::models
