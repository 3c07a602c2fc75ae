// The gradients of one logit with respect to the activations of a Mamba or
// Falcon-Mamba language model (not its weights), written once against a
// backend like the forward pass (models/mamba_forward.hpp).
//
// The target is logits[P][T] (gradient_target; by default the last position
// and the argmax of its row). Differentiated with respect to: the embedding
// output, every block's input (the residual stream entering layer k), and per
// layer the scan input u, Δ, B, C (as the scan reads them: after Falcon-Mamba's
// norms) and the scan output before the gate, S6(u) + D·u. Every quantity is
// the total derivative: ∂u includes the path through x_proj, the block input
// the residual path and the mixer's.
//
// Memory: the forward pass keeps only the residual stream entering each layer
// and the final norm ((layers + 1)·L·H values); the reverse sweep recomputes
// one layer's signals from its input, then runs through it backwards — about
// two forward passes and one backward, with one layer's buffers at a time.
// Per-layer gradients are kept only where gradient_options asks for them; the
// observer sees every layer's gradients (and its forward signals) as views
// valid during the call.
// docs/attribution.md has the equations.
// Needs nlohmann-json (through mamba_forward.hpp).
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/error.hpp"
#include "mixlens/models/lm_model.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba_model.hpp"
#include "mixlens/ops/s6/backward.hpp"

namespace mixlens::models {

// The logit differentiated: logits[position][token]; a negative position is
// the last one, a negative token the argmax of the position's row.
struct gradient_target {
  index_t position = -1;
  index_t token = -1;
};

// How the backward pass propagates: the exact gradient, or MambaLRP's rules
// (Jafari et al., NeurIPS 2024), under which Gradient × Input conserves the
// target: SiLU with σ detached, the SSM with Ā, B̄, C detached (only u carries
// relevance: ∂Δ, ∂B, ∂C are zero), the gate y = s ⊙ SiLU(z) split half and
// half, RMSNorm with its denominator detached.
enum class propagation { gradient, lrp };

namespace detail {

// Refuses a target outside the sequence (L) or the vocabulary (V).
inline void check_target(std::string_view where, gradient_target target, index_t L, index_t V) {
  if (target.position >= L)
    mixlens::detail::fail(where, "target.position",
                          "a position below the length " + std::to_string(L) + " (or < 0: the last)", target.position);
  if (target.token >= V)
    mixlens::detail::fail(where, "target.token",
                          "a token below the vocabulary size " + std::to_string(V) + " (or < 0: the argmax)", target.token);
}

// The target token: `token`, or for a negative one the argmax of the logits
// row of position `pos` (which must then be finite).
template <class T>
[[nodiscard]] index_t resolve_target_token(std::string_view where, std::span<const T> row, index_t pos, index_t token) {
  if (token >= 0) return token;
  index_t tok = 0;
  for (index_t v = 0; v < static_cast<index_t>(row.size()); ++v) {
    const T x = row[static_cast<std::size_t>(v)];
    if (!std::isfinite(x))
      mixlens::detail::fail(where, "logits",
                            "finite values in the row of position " + std::to_string(pos) + " (for the argmax)",
                            std::to_string(x) + " at token " + std::to_string(v));
    if (x > row[static_cast<std::size_t>(tok)]) tok = v;
  }
  return tok;
}

}  // namespace detail

// Which gradients mamba_gradients returns (the observer sees all of them).
struct gradient_options {
  propagation rule = propagation::gradient;
  bool embedding = true;  // ∂/∂ embedding output (L × H)
  bool residual = false;  // per layer, ∂/∂ block input (L × H)
  bool u = false;         // per layer (D × L)
  bool delta = false;     // per layer (D × L)
  bool b = false, c = false;  // per layer (N × L)
  bool ssm_out = false;   // per layer, ∂/∂ (S6(u) + D·u) before the gate (D × L)
};

// One layer's gradients as views into the backward pass's buffers (backend
// memory), in the layouts of the forward signals: residual time-major (L × H)
// like the stream, the mixer's channel-major.
template <class T>
struct mamba_layer_gradients {
  using value_type = T;
  index_t layer = 0;
  matrix_view<const T> residual;      // ∂/∂ the residual stream entering the layer (L × H)
  matrix_view<const T> x, z;          // ∂/∂ the halves of in_proj's output (D × L)
  matrix_view<const T> u;             // ∂/∂ u (D × L), both paths (x_proj and the scan)
  matrix_view<const T> delta;         // ∂/∂ Δ (D × L)
  tensor_view<const T, 3> b, c;       // ∂/∂ B, C (1 × N × L)
  matrix_view<const T> ssm_out;       // ∂/∂ (S6(u) + D·u) (D × L)
  matrix_view<const T> out_proj_in;   // ∂/∂ y = (S6(u) + D·u) ⊙ SiLU(z) (D × L)
};

// What mamba_gradients returns: the resolved target and its value, and the
// requested gradients in backend arrays (empty when not requested).
template <class Array>
struct mamba_layer_gradient_arrays {
  Array residual, u, delta, b, c, ssm_out;
};

template <class Array>
struct mamba_gradients_result {
  gradient_target target;  // position and token resolved
  double value = 0;        // logits[position][token]
  Array embedding;
  std::vector<mamba_layer_gradient_arrays<Array>> layers;  // one per layer when any per-layer option is set
};

namespace detail {

// The backward pass's buffers, reused layer after layer.
template <class Array>
struct mamba_backward_buffers {
  Array dh, dhn, dxz, dy, dssm, du, dp, ddelta, ddt, dproj, dproj_raw, proj_raw;
};

// Records the residual stream at block_input and final_norm_input.
template <class Backend, class Array>
struct residual_recorder {
  const Backend* be;
  std::vector<Array>* stream;
  template <class T>
  void operator()(mamba_point p, index_t, T* data, index_t rows, index_t cols) const {
    if (p != mamba_point::block_input && p != mamba_point::final_norm_input) return;
    stream->push_back(be->alloc(rows * cols));
    be->copy(data, rows * cols, stream->back().data());
  }
};

template <class Backend>
[[nodiscard]] auto alloc_mamba_backward(const Backend& be, const mamba_config& cfg, index_t L) {
  using array = typename Backend::template array<typename Backend::value_type>;
  const index_t H = cfg.hidden_size, D = cfg.intermediate_size, P = cfg.time_step_rank + 2 * cfg.state_size;
  return mamba_backward_buffers<array>{be.alloc(L * H), be.alloc(L * H), be.alloc(2 * D * L), be.alloc(D * L),
                                       be.alloc(D * L), be.alloc(D * L), be.alloc(D * L), be.alloc(D * L),
                                       be.alloc(D * L), be.alloc(P * L), be.alloc(P * L),
                                       be.alloc(cfg.bc_dt_norm ? P * L : 0)};
}

// The backward pass through one selective branch (mamba_branch, signals `s`):
// from ∂y (g.dy, the out_proj input's gradient) to ∂xz (g.dxz, [∂x; ∂z]),
// through the gate, the scan, dt_proj, x_proj (and Falcon-Mamba's norms) and
// conv + SiLU, with g.du, g.ddelta, g.dproj ([·; ∂B; ∂C]) and g.dssm left
// holding those gradients. Shared by the Mamba layers and both branches of a
// Vision Mamba block.
template <class Backend, class T, class Array>
void mamba_branch_backward(const Backend& be, const mamba_config& cfg, const mamba_layer_weights<T>& w,
                           const mamba_layer_signals<T>& s, index_t L, mamba_backward_buffers<Array>& g, bool lrp) {
  const index_t D = cfg.intermediate_size, N = cfg.state_size, R = cfg.time_step_rank, P = R + 2 * N;
  // The gate: ∂(S6 + D·u) = ∂y ⊙ SiLU(z). LRP halves what reaches both factors
  // of the gate (∂y is restored below).
  if (lrp) be.scale(g.dy.data(), T(0.5), D * L);  // ∂y / 2 (exact: a power of two)
  be.copy(g.dy.data(), D * L, g.dssm.data());
  be.multiply(g.dssm.data(), s.gate.data_handle(), D * L);
  // The scan: ∂u (scan path), ∂Δ, ∂B, ∂C into [·; ∂B; ∂C] of dproj, ∂gate into the z half of dxz.
  T* dz = g.dxz.data() + D * L;
  if constexpr (requires { be.s6_backward(s.ssm(), s.u.data_handle(), g.dy.data(), s6_gradient_views<T>{}); })
    be.s6_backward(s.ssm(s6_fold{.skip = true, .gate = true}), s.u.data_handle(), g.dy.data(),
                   s6_gradient_views<T>{matrix_view<T>(g.du.data(), D, L), matrix_view<T>(g.ddelta.data(), D, L),
                                        tensor_view<T, 3>(g.dproj.data() + R * L, 1, N, L),
                                        tensor_view<T, 3>(g.dproj.data() + (R + N) * L, 1, N, L), {},
                                        matrix_view<T>(dz, D, L)});
  be.silu_backward(s.z.data_handle(), dz, D * L, lrp);  // ∂z
  if (lrp) {  // Ā, B̄, C detached: nothing flows through Δ, B, C
    be.scale(g.dy.data(), T(2), D * L);  // ∂y again
    be.fill_zero(g.ddelta.data(), D * L);
    be.fill_zero(g.dproj.data(), P * L);
  } else {
    // Δ = softplus(dt_proj·δ + bias): ∂δ = W_dtᵀ·(∂Δ ⊙ σ(·)).
    be.copy(g.ddelta.data(), D * L, g.ddt.data());
    be.softplus_backward(s.delta.data_handle(), g.ddt.data(), D * L);
    be.gemm(true, false, R, L, D, w.dt_proj.data_handle(), g.ddt.data(), T(0), g.dproj.data());
    // Falcon-Mamba's norms of δ, B, C, at the raw x_proj output (recomputed).
    be.copy(g.dproj.data(), P * L, g.dproj_raw.data());
    if (cfg.bc_dt_norm) {
      be.gemm(false, false, P, L, D, w.x_proj.data_handle(), s.u.data_handle(), T(0), g.proj_raw.data());
      be.group_rms_norm_backward(g.proj_raw.data(), R, L, R, cfg.mixer_rms_eps, g.dproj_raw.data());
      be.group_rms_norm_backward(g.proj_raw.data() + R * L, 2 * N, L, N, cfg.mixer_rms_eps, g.dproj_raw.data() + R * L);
    }
    // x_proj: ∂u += W_xᵀ·∂[δ; B; C].
    be.gemm(true, false, D, L, P, w.x_proj.data_handle(), g.dproj_raw.data(), T(1), g.du.data());
  }
  // conv + SiLU into the x half of dxz.
  be.copy(g.du.data(), D * L, g.dp.data());
  be.conv_silu_backward(s.conv, s.u.data_handle(), s.activation.data_handle(), g.dp.data(), g.dxz.data(), lrp);
}

// The branch's gradients in g as views (residual left empty).
template <class Array>
[[nodiscard]] auto branch_gradient_views(const mamba_config& cfg, index_t layer, index_t L,
                                         const mamba_backward_buffers<Array>& g) {
  using T = std::remove_cvref_t<decltype(*g.dy.data())>;
  const index_t D = cfg.intermediate_size, N = cfg.state_size, R = cfg.time_step_rank;
  const auto signal = [L](const T* p, index_t rows) { return matrix_view<const T>(p, rows, L); };
  mamba_layer_gradients<T> lg;
  lg.layer = layer;
  lg.x = signal(g.dxz.data(), D), lg.z = signal(g.dxz.data() + D * L, D), lg.u = signal(g.du.data(), D);
  lg.delta = signal(g.ddelta.data(), D);
  lg.b = tensor_view<const T, 3>(g.dproj.data() + R * L, 1, N, L);
  lg.c = tensor_view<const T, 3>(g.dproj.data() + (R + N) * L, 1, N, L);
  lg.ssm_out = signal(g.dssm.data(), D), lg.out_proj_in = signal(g.dy.data(), D);
  return lg;
}

// Copies of the branch gradients in g that `options` asks for into `out`.
template <class Backend, class Array>
void keep_branch_gradients(const Backend& be, const mamba_config& cfg, index_t L, const gradient_options& options,
                           const mamba_backward_buffers<Array>& g, mamba_layer_gradient_arrays<Array>& out) {
  const index_t D = cfg.intermediate_size, N = cfg.state_size, R = cfg.time_step_rank;
  const auto keep = [&](bool wanted, Array& to, const auto* from, index_t n) {
    if (!wanted) return;
    to = be.alloc(n);
    be.copy(from, n, to.data());
  };
  keep(options.u, out.u, g.du.data(), D * L);
  keep(options.delta, out.delta, g.ddelta.data(), D * L);
  keep(options.b, out.b, g.dproj.data() + R * L, N * L);
  keep(options.c, out.c, g.dproj.data() + (R + N) * L, N * L);
  keep(options.ssm_out, out.ssm_out, g.dssm.data(), D * L);
}

}  // namespace detail

// The gradients of logits[target] with respect to the activations, in the
// backend's memory. `observe(const mamba_layer_signals<T>&, const
// mamba_layer_gradients<T>&)` is called once per layer, from the last layer to
// the first, with the layer's recomputed forward signals and its gradients.
template <class Backend, class T, class Observer>
[[nodiscard]] auto mamba_gradients(const Backend& be, const mamba_weights<T>& m, std::span<const index_t> tokens,
                                   gradient_target target, const gradient_options& options, Observer&& observe) {
  constexpr bool has_scan_backward =
      requires(const Backend& b, const s6_operator<T>& op, const T* p, const s6_gradient_views<T>& g) {
        b.s6_backward(op, p, p, g);
      };
  static_assert(has_scan_backward, "mamba_gradients: this backend has no s6_backward (the selective-scan backward), "
                                   "so the gradients cannot be computed on it");
  constexpr std::string_view where = "mixlens::models::mamba_gradients";
  using array = typename Backend::template array<T>;
  check_tokens(m.vocab_size(), tokens);
  const mamba_config& cfg = m.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, D = cfg.intermediate_size,
                V = m.vocab_size(), layers = m.num_layers();
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

  // Reverse: lm_head (∂hn_f is row `tok` of the output embedding at `pos`), the final norm.
  auto g = detail::alloc_mamba_backward(be, cfg, L);
  be.fill_zero(g.dhn.data(), L * H);
  be.axpy(g.dhn.data() + pos * H, m.output_embedding.data_handle() + tok * H, T(1), H);
  const bool lrp = options.rule == propagation::lrp;
  be.rms_norm_backward(stream.back().data(), L, H, m.norm_f, cfg.norm_eps, g.dhn.data(), g.dh.data(), false, lrp);

  auto hn = be.alloc(H * L), xz = be.alloc(2 * D * L);
  auto branch = alloc_mamba_branch(be, cfg, L);
  const bool per_layer = options.residual || options.u || options.delta || options.b || options.c || options.ssm_out;
  if (per_layer) result.layers.resize(static_cast<std::size_t>(layers));
  const auto keep = [&](bool wanted, array& to, const T* from, index_t n) {
    if (!wanted) return;
    to = be.alloc(n);
    be.copy(from, n, to.data());
  };

  for (index_t k = layers - 1; k >= 0; --k) {
    const mamba_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    const T* h = stream[static_cast<std::size_t>(k)].data();
    // The layer's forward signals again, from its input.
    be.rms_norm(h, L, H, w.norm, cfg.norm_eps, hn.data());
    be.gemm(false, true, 2 * D, L, H, w.in_proj.data_handle(), hn.data(), T(0), xz.data());
    if (!w.in_proj_bias.empty()) be.add_row_bias(xz.data(), w.in_proj_bias, 2 * D, L);
    const mamba_layer_signals<T> s = mamba_branch(be, cfg, w, k, xz.data(), L, branch);

    // out_proj: ∂y = W_outᵀ·∂hᵀ; the selective branch back to the x and z halves of ∂xz.
    be.gemm(true, true, D, L, H, w.out_proj.data_handle(), g.dh.data(), T(0), g.dy.data());
    detail::mamba_branch_backward(be, cfg, w, s, L, g, lrp);
    // in_proj: ∂hn = ∂xzᵀ·W_in; the block's norm; the residual path already in dh.
    be.gemm(true, false, L, H, 2 * D, g.dxz.data(), w.in_proj.data_handle(), T(0), g.dhn.data());
    be.rms_norm_backward(h, L, H, w.norm, cfg.norm_eps, g.dhn.data(), g.dh.data(), true, lrp);

    mamba_layer_gradients<T> lg = detail::branch_gradient_views(cfg, k, L, g);
    lg.residual = matrix_view<const T>(g.dh.data(), L, H);
    observe(s, lg);
    if (per_layer) {
      auto& out = result.layers[static_cast<std::size_t>(k)];
      keep(options.residual, out.residual, g.dh.data(), L * H);
      detail::keep_branch_gradients(be, cfg, L, options, g, out);
    }
  }
  keep(options.embedding, result.embedding, g.dh.data(), L * H);
  be.synchronize();
  return result;
}

template <class Backend, class T>
[[nodiscard]] auto mamba_gradients(const Backend& be, const mamba_weights<T>& m, std::span<const index_t> tokens,
                                   gradient_target target = {}, const gradient_options& options = {}) {
  return mamba_gradients(be, m, tokens, target, options, [](const auto&, const auto&) {});
}

// On the host, for a loaded model: the gradients in std::vector.
template <class T>
[[nodiscard]] mamba_gradients_result<std::vector<T>> mamba_gradients(const mamba_model<T>& m, std::span<const index_t> tokens,
                                                                     gradient_target target = {},
                                                                     const gradient_options& options = {}) {
  const auto weights = host_weights(m);
  return mamba_gradients(host_backend<T>{}, weights.view(), tokens, target, options);
}

}  // namespace mixlens::models
