// The Mamba forward pass and everything computed from its layer signals,
// written once against a backend (mixlens/backend.hpp on the host,
// mixlens/gpu/backend.cuh on the device):
//
//   embedding → [RMSNorm → in_proj → (x, z) → causal conv + bias → SiLU = u
//                → x_proj → (δ, B, C) [→ RMSNorm of δ, B, C: Falcon-Mamba]
//                → Δ = softplus(dt_proj·δ + bias)
//                → selective scan + D·u → ⊙ SiLU(z) → out_proj → + residual] × layers
//   → RMSNorm → lm_head
//
// The weights are a view (mamba_weights) over host or device memory; every
// layer's signals are views into the backend's buffers (mamba_layer_signals),
// valid during the observer call (owned_copy keeps them). From the signals: the layer's S6 operator
// (the paper's α), the unified operator of the whole block, their matrices for
// a range of channels, and the reconstruction self-test.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/detail/rebase.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/lm_model.hpp"
#include "mixlens/models/mamba_config.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens::models {

// ---- weights as views --------------------------------------------------------------

template <class T>
struct mamba_layer_weights {
  vector_view<const T> norm;           // (H)
  matrix_view<const T> in_proj;        // (2D × H)
  vector_view<const T> in_proj_bias;   // (2D) or empty
  matrix_view<const T> conv_taps;      // (D × K), tap by lag: PyTorch's weight reversed
  vector_view<const T> conv_bias;      // (D) or empty
  matrix_view<const T> x_proj;         // (R + 2N × D)
  matrix_view<const T> dt_proj;        // (D × R)
  vector_view<const T> dt_bias;        // (D)
  matrix_view<const T> a;              // (D × N): A = −exp(A_log)
  vector_view<const T> skip;           // (D)
  matrix_view<const T> out_proj;       // (H × D)
  vector_view<const T> out_proj_bias;  // (H) or empty

  template <class F>
  void for_each_view(F&& f) {
    f(norm), f(in_proj), f(in_proj_bias), f(conv_taps), f(conv_bias), f(x_proj), f(dt_proj), f(dt_bias), f(a), f(skip),
        f(out_proj), f(out_proj_bias);
  }
};

template <class T>
using mamba_weights = lm_weights<T, mamba_config, mamba_layer_weights<T>>;

// ---- one layer's signals ------------------------------------------------------------

// Channel-major (D × L) views of one layer's internal signals, wherever the
// backend computed them. Together with the layer's weights they determine its
// hidden attention.
template <class T>
struct mamba_layer_signals {
  using value_type = T;
  index_t layer = 0;
  matrix_view<const T> x, z;         // the two halves of in_proj's output
  matrix_view<const T> u;            // SSM input: SiLU(conv1d(x) + bias)
  matrix_view<const T> activation;   // σ(conv1d(x) + bias): SiLU(p) = p·σ(p)
  matrix_view<const T> delta;        // Δ = softplus(dt_proj·δ + dt_bias)
  matrix_view<const T> a;            // (D × N)
  tensor_view<const T, 3> b, c;      // (1 × N × L)
  matrix_view<const T> gate;         // SiLU(z)
  matrix_view<const T> y;            // (S6(u) + D·u) ⊙ SiLU(z): the out_proj input
  vector_view<const T> skip;         // D
  vector_view<const T> conv_bias;    // (D) or empty
  causal_conv_operator<T, mamba_conv_kind> conv;  // the conv without its bias

  [[nodiscard]] index_t channels() const { return u.extent(0); }
  [[nodiscard]] index_t length() const { return u.extent(1); }

  template <class F>
  void for_each_view(F&& f) {
    f(x), f(z), f(u), f(activation), f(delta), f(a), f(b), f(c), f(gate), f(y), f(skip), f(conv_bias), f(conv);
  }

  // The layer's S6 operator: the paper's α by default; with `fold`, + diag(D)
  // and the gate, so that apply(u) = y.
  [[nodiscard]] s6_operator<T> ssm(s6_fold fold = {}) const {
    return s6_operator<T>(delta, a, b, c, fold.skip ? skip : vector_view<const T>{},
                          fold.gate ? gate : matrix_view<const T>{});
  }
};

// ---- injection points -------------------------------------------------------------

// Where a forward pass hands a signal to its injector (mamba_forward with an
// `inject` argument), each as (rows × cols) in the backend's memory:
enum class mamba_point {
  block_input,       // the residual stream entering layer k (L × H; k = 0: the embedding output)
  u,                 // SiLU(conv1d(x) + bias), the scan input (D × L)
  b,                 // B as the scan reads it, after Falcon-Mamba's norm (N × L)
  c,                 // C, likewise (N × L)
  delta,             // Δ = softplus(dt_proj·δ + bias) (D × L)
  ssm_out,           // S6(u) + D·u, before ⊙ SiLU(z) (D × L)
  final_norm_input,  // the residual stream entering the final RMSNorm (L × H; layer = the layer count)
};

[[nodiscard]] constexpr std::string_view to_string(mamba_point p) {
  constexpr std::string_view names[] = {"block_input", "u", "b", "c", "delta", "ssm_out", "final_norm_input"};
  return names[static_cast<int>(p)];
}

// The injector of a plain forward pass: none is called.
struct no_injection {};

// ---- one selective branch ------------------------------------------------------------

// The buffers of one branch (channel-major, backend memory), reused layer after
// layer: u, σ, [δ; B; C], Δ, SiLU(z) and the branch output y.
template <class Array>
struct mamba_branch_buffers {
  Array u, sigma, proj, delta, gate, y;
};

template <class Backend>
[[nodiscard]] auto alloc_mamba_branch(const Backend& be, const mamba_config& cfg, index_t L) {
  const index_t D = cfg.intermediate_size, P = cfg.time_step_rank + 2 * cfg.state_size;
  using array = typename Backend::template array<typename Backend::value_type>;
  return mamba_branch_buffers<array>{be.alloc(D * L), be.alloc(D * L), be.alloc(P * L),
                                     be.alloc(D * L), be.alloc(D * L), be.alloc(D * L)};
}

// The selective part of a Mamba layer on the in_proj output xz ([x; z], 2D × L,
// backend memory): causal conv + bias → SiLU = u → x_proj → (δ, B, C) [→ RMSNorm
// of δ, B, C: Falcon-Mamba] → Δ = softplus(dt_proj·δ + bias) → scan + D·u →
// ⊙ SiLU(z) = y, with the branch's own conv, x_proj, dt_proj, A and D from `w`
// (its norm, in_proj and out_proj are not read). Returns the signals, views into
// xz and `b`. Vision Mamba runs it twice per layer, forward and on the flipped xz.
//
// `inject(point, layer, data, rows, cols)` (see mamba_point) may change a signal
// in place before the rest of the pass reads it: finite-difference checks of
// the gradients (models/mamba_backward.hpp) perturb the model there. With an
// injector the gate is applied after the ssm_out point rather than inside the
// scan (the same operations on the host).
template <class Backend, class T, class Buffers, class Inject = no_injection>
[[nodiscard]] mamba_layer_signals<T> mamba_branch(const Backend& be, const mamba_config& cfg,
                                                  const mamba_layer_weights<T>& w, index_t layer, const T* xz,
                                                  index_t L, Buffers& b, Inject&& inject = {}) {
  constexpr bool injecting = !std::is_same_v<std::remove_cvref_t<Inject>, no_injection>;
  const index_t D = cfg.intermediate_size, N = cfg.state_size, R = cfg.time_step_rank, P = R + 2 * N;
  const auto signal = [L](const T* p, index_t rows) { return matrix_view<const T>(p, rows, L); };
  const causal_conv_operator<T, mamba_conv_kind> conv(w.conv_taps, {}, L);
  be.conv_silu(conv, w.conv_bias, xz, b.u.data(), b.sigma.data());
  if constexpr (injecting) inject(mamba_point::u, layer, b.u.data(), D, L);
  be.gemm(false, false, P, L, D, w.x_proj.data_handle(), b.u.data(), T(0), b.proj.data());  // [δ; B; C] = W_x·u
  if (cfg.bc_dt_norm) {  // Falcon-Mamba: δ, B and C RMS-normalized (no weight) at every position
    be.gated_rms_norm(b.proj.data(), nullptr, R, L, R, {}, cfg.mixer_rms_eps, b.proj.data(), nullptr);
    be.gated_rms_norm(b.proj.data() + R * L, nullptr, 2 * N, L, N, {}, cfg.mixer_rms_eps, b.proj.data() + R * L, nullptr);
  }
  if constexpr (injecting) {
    inject(mamba_point::b, layer, b.proj.data() + R * L, N, L);
    inject(mamba_point::c, layer, b.proj.data() + (R + N) * L, N, L);
  }
  be.gemm(false, false, D, L, R, w.dt_proj.data_handle(), b.proj.data(), T(0), b.delta.data());
  be.softplus_bias(b.delta.data(), w.dt_bias, D, L);
  if constexpr (injecting) inject(mamba_point::delta, layer, b.delta.data(), D, L);
  be.silu(xz + D * L, b.gate.data(), D * L);

  mamba_layer_signals<T> s;
  s.layer = layer;
  s.x = signal(xz, D), s.z = signal(xz + D * L, D), s.u = signal(b.u.data(), D), s.activation = signal(b.sigma.data(), D);
  s.delta = signal(b.delta.data(), D), s.a = w.a, s.gate = signal(b.gate.data(), D), s.y = signal(b.y.data(), D);
  s.b = tensor_view<const T, 3>(b.proj.data() + R * L, 1, N, L);
  s.c = tensor_view<const T, 3>(b.proj.data() + (R + N) * L, 1, N, L);
  s.skip = w.skip, s.conv_bias = w.conv_bias, s.conv = conv;
  if constexpr (Backend::on_host) s.ssm().validate();  // finite, Δ ≥ 0, Re A ≤ 0

  if constexpr (injecting) {
    be.apply(s.ssm(s6_fold{.skip = true}), b.u.data(), b.y.data());
    inject(mamba_point::ssm_out, layer, b.y.data(), D, L);
    be.multiply(b.y.data(), b.gate.data(), D * L);
  } else {
    be.apply(s.ssm(s6_fold{.skip = true, .gate = true}), b.u.data(), b.y.data());
  }
  return s;
}

// ---- the forward pass --------------------------------------------------------------

// Runs the language model on `tokens` and returns the logits (L × V, row-major)
// in the backend's memory. `observe(const mamba_layer_signals<T>&)` is called
// after each layer; the buffers are reused by the next one. `inject` (optional)
// is called at every mamba_point, as in mamba_branch.
template <class Backend, class T, class Observer, class Inject = no_injection>
[[nodiscard]] auto mamba_forward(const Backend& be, const mamba_weights<T>& m, std::span<const index_t> tokens,
                                 Observer&& observe, Inject&& inject = {}) {
  constexpr bool injecting = !std::is_same_v<std::remove_cvref_t<Inject>, no_injection>;
  check_tokens(m.vocab_size(), tokens);
  const mamba_config& cfg = m.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, D = cfg.intermediate_size,
                V = m.vocab_size();
  const auto tok = be.upload(tokens);
  auto h = be.alloc(H * L), hn = be.alloc(H * L), xz = be.alloc(2 * D * L), logits = be.alloc(L * V);
  auto branch = alloc_mamba_branch(be, cfg, L);

  // The residual stream h and its norm are time-major (L × H): the norm reduces
  // contiguous rows; every signal of the mixer is channel-major (D × L).
  be.embed(tok, m.embedding, h.data());
  for (index_t k = 0; k < m.num_layers(); ++k) {
    const mamba_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    if constexpr (injecting) inject(mamba_point::block_input, k, h.data(), L, H);
    be.rms_norm(h.data(), L, H, w.norm, cfg.norm_eps, hn.data());
    be.gemm(false, true, 2 * D, L, H, w.in_proj.data_handle(), hn.data(), T(0), xz.data());  // xz = W_in·hnᵀ
    if (!w.in_proj_bias.empty()) be.add_row_bias(xz.data(), w.in_proj_bias, 2 * D, L);
    const mamba_layer_signals<T> s = mamba_branch(be, cfg, w, k, xz.data(), L, branch, inject);
    be.gemm(true, true, L, H, D, branch.y.data(), w.out_proj.data_handle(), T(1), h.data());  // h += yᵀ·W_outᵀ
    if (!w.out_proj_bias.empty()) be.add_column_bias(h.data(), w.out_proj_bias, L, H);
    observe(s);
  }
  if constexpr (injecting) inject(mamba_point::final_norm_input, m.num_layers(), h.data(), L, H);
  be.rms_norm(h.data(), L, H, m.norm_f, cfg.norm_eps, hn.data());
  be.gemm(false, true, L, V, H, hn.data(), m.output_embedding.data_handle(), T(0), logits.data());  // hn·Eᵀ
  be.synchronize();
  return logits;
}

// ---- attention from the signals --------------------------------------------------------

enum class attention_form { paper, unified };

[[nodiscard]] constexpr std::string_view to_string(attention_form f) {
  return f == attention_form::paper ? "paper" : "unified";
}

// The layer as the unified operator (conv, activation factor, D and gate folded
// in; mixlens/ops/mamba_block.hpp). Its offset — the conv bias's contribution,
// the SSM (+D, gate) applied to σ ⊙ bias — costs a scan over the layer, and
// only the reconstruction needs it: maps and rows pass {.offset = false} and get
// an operator whose ->offset is empty. Written for the signals of every family:
// `s` has the conv (without its bias) and conv_bias, the activation σ and
// ssm(fold) (mamba_layer_signals, mamba2_layer_signals).
struct unified_options {
  bool offset = true;
  bool skip = true;  // D in the matrices (false: without it, as the unified form's authors' code forms them)
};

template <class T, class Array>
struct mamba_unified_storage {
  Array offset;
};

template <class Backend, class Signals>
[[nodiscard]] auto unified_operator(const Backend& be, const Signals& s, const unified_options& options = {}) {
  using T = typename Signals::value_type;
  using array = typename Backend::template array<T>;
  using ssm_t = decltype(s.ssm(s6_fold{}));
  using op_t = mamba_block_operator<T, T, ssm_t>;
  const index_t D = s.channels(), L = s.length();
  const ssm_t ssm = s.ssm(s6_fold{.skip = options.skip, .gate = true});
  const index_t rows = options.offset ? D : 0, cols = options.offset ? L : 0;
  mamba_unified_storage<T, array> st{be.alloc(rows * cols)};
  if (options.offset && s.conv_bias.empty()) {
    be.fill(st.offset.data(), D * L, T(0));
  } else if (options.offset) {
    auto bias_input = be.alloc(D * L);
    be.scale_rows(s.activation.data_handle(), s.conv_bias, bias_input.data(), D, L);
    be.apply(ssm, bias_input.data(), st.offset.data());
  }  // bias_input is freed in stream order (host: after the call), so no wait here
  return bound<op_t, mamba_unified_storage<T, array>>(std::move(st), [&](const auto& stored) {
    return op_t{ssm, s.conv, s.activation, matrix_view<const T>(stored.offset.data(), rows, cols)};
  });
}

// The matrices [d0, d0 + count) in `form` into out (count × L × L, backend
// memory): of the paper's operator s.ssm() (per channel for Mamba, per head for
// Mamba-2), or, for the unified form, of the operator made by unified_operator
// (reused across chunks).
template <class Backend, class Signals>
  requires requires(const Signals& s) { s.ssm(); }
void layer_attention(const Backend& be, const Signals& s, index_t d0, index_t count,
                     typename Signals::value_type* out) {
  be.materialize_channels(s.ssm(), d0, count, out);
}
template <class Backend, class Op, class Storage>
void layer_attention(const Backend& be, const bound<Op, Storage>& unified, index_t d0, index_t count,
                     typename Op::value_type* out) {
  be.materialize_channels(unified.view(), d0, count, out);
}

// The self-test: how well the materialized matrices reproduce the layer's own
// output y (the out_proj input), as max |error| / max |y|. A non-finite value
// anywhere makes the error NaN, which fails every tolerance check.
struct reconstruction_error {
  double paper = 0;    // (α·u + D·u) ⊙ gate against y
  double unified = 0;  // Â·x + offset against y
};

namespace detail {
// max |a − b| / max |b|, NaN when anything is not finite.
inline double relative_max_error(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]), m = std::abs(b[i]);
    if (!std::isfinite(d) || !std::isfinite(m)) return std::numeric_limits<double>::quiet_NaN();
    diff = std::max(diff, d);
    scale = std::max(scale, m);
  }
  return diff / (scale == 0 ? 1 : scale);
}
}  // namespace detail

// For the signals of every family: the paper's matrices (one per channel, or
// one per head serving its head_dim channels) applied to the SSM input u with
// the skip D and the gate, and the unified form applied to the conv input x
// plus the offset, both against y.
template <class Backend, class Signals>
[[nodiscard]] reconstruction_error check_reconstruction(const Backend& be, const Signals& s,
                                                        std::size_t max_chunk_bytes = analysis::default_chunk_bytes) {
  using T = typename Signals::value_type;
  const index_t D = s.channels(), L = s.length(), chunk = analysis::chunk_channels(D, L, sizeof(T), max_chunk_bytes);
  const auto paper = s.ssm();
  const index_t matrices = view_of(paper).out_channels(), per = D / matrices;
  auto m = be.alloc(chunk * L * L);
  auto out_paper = be.template alloc<double>(D * L), whole = be.template alloc<double>(D * L);
  for (index_t k0 = 0; k0 < matrices; k0 += chunk) {
    const index_t count = std::min(chunk, matrices - k0), c0 = k0 * per;
    be.materialize_channels(paper, k0, count, m.data());
    be.reconstruct(m.data(), s.u.data_handle() + c0 * L, s.skip.data() + k0, s.gate.data_handle() + c0 * L, nullptr,
                   count * per, L, out_paper.data() + c0 * L, per);
  }
  const auto unified = unified_operator(be, s);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0);
    layer_attention(be, unified, d0, count, m.data());
    be.reconstruct(m.data(), s.x.data_handle() + d0 * L, nullptr, nullptr, unified->offset.data_handle() + d0 * L, count,
                   L, whole.data() + d0 * L);
  }
  be.synchronize();
  const auto y = be.download(s.y.data_handle(), D * L);
  const std::vector<double> yd(y.begin(), y.end());
  return {detail::relative_max_error(be.download(out_paper.data(), D * L), yd),
          detail::relative_max_error(be.download(whole.data(), D * L), yd)};
}

}  // namespace mixlens::models
