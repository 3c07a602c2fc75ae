// The gradients of one class logit of a Vision Mamba (hustvl/Vim) classifier
// with respect to its activations (not its weights), written once against a
// backend like the forward pass (models/vim_forward.hpp) and like the Mamba
// language models' (models/mamba_backward.hpp), whose branch backward both
// directions of a block run.
//
// The target is logits[c] of the head (c: the argmax by default), the head
// reading the CLS token after norm_f (or, without one, the mean or the last
// position, as the config says). Differentiated with respect to: the sequence
// entering the first block (patch embeddings, the CLS token, plus the position
// embedding: `embedding`), every block's input (the residual stream entering
// layer k), and per layer and per direction the scan input u, Δ, B, C and the
// scan output S6(u) + D·u before the gate — each branch's in its own time (the
// backward branch's is flipped: its position t′ is image position L − 1 − t′).
// All are total derivatives.
//
// The block, y = scale · (y_f + J·y_b) with y_f = branch_f(xz), y_b =
// branch_b(J·xz) (J the time flip, scale ½ with if_divide_out), runs backwards as
//   ∂y_f = scale · ∂y,   ∂y_b = scale · J·∂y,   ∂xz = ∂xz_f + J·∂xz_b,
// each branch through mamba_branch_backward. Under propagation::lrp both
// branches take MambaLRP's rules (as mamba_gradients does) and the norms'
// denominators are detached; flips, sums and the scale are linear.
//
// Memory: as mamba_gradients (the residual stream entering each layer kept,
// one layer's signals recomputed at a time), with two branches per layer.
// docs/attribution.md and docs/vim.md have the equations.
// Needs nlohmann-json (through vim_forward.hpp).
#pragma once

#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/error.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/vim_forward.hpp"
#include "mixlens/models/vim_model.hpp"
#include "mixlens/ops/s6/backward.hpp"

namespace mixlens::models {

// The position the head reads: the CLS token's, the last one (final_pool_type
// "none" without a CLS token), or −1 for the mean over all positions.
[[nodiscard]] inline index_t vim_read_position(const vim_config& c) {
  if (c.cls_index() >= 0) return c.cls_index();
  return c.pooling == vim_pooling::last ? c.sequence_length() - 1 : -1;
}

// One layer's gradients as views into the backward pass's buffers (backend
// memory): the residual stream's time-major (L × E), the rest channel-major.
template <class T>
struct vim_layer_gradients {
  using value_type = T;
  index_t layer = 0;
  matrix_view<const T> residual;     // ∂/∂ the residual stream entering the layer (L × E)
  matrix_view<const T> out_proj_in;  // ∂/∂ y = scale · (y_f + J·y_b) (D × L)
  matrix_view<const T> x, z;         // ∂/∂ the halves of in_proj's output, both branches' paths (D × L)
  // Each branch's gradients in its own time (mamba_layer_gradients without
  // residual; out_proj_in there is ∂/∂ the branch output y_f or y_b, x and z
  // that branch's path alone).
  mamba_layer_gradients<T> forward, backward;
};

template <class Array>
struct vim_layer_gradient_arrays {
  Array residual;                                        // (L × E)
  mamba_layer_gradient_arrays<Array> forward, backward;  // u, delta, b, c, ssm_out in the branch's time
};

// What vim_gradients returns: the target (position: vim_read_position, token:
// the class) and its value, and the requested gradients in backend arrays.
template <class Array>
struct vim_gradients_result {
  gradient_target target;
  double value = 0;
  Array embedding;  // ∂/∂ the first block's input (L × E), with options.embedding
  Array input;      // that input itself (L × E), with options.embedding
  std::vector<vim_layer_gradient_arrays<Array>> layers;  // one per layer when any per-layer option is set
};

namespace detail {

// Records the residual stream at block_input and final_norm_input.
template <class Backend, class Array>
struct vim_stream_recorder {
  const Backend* be;
  std::vector<Array>* stream;
  template <class T>
  void operator()(mamba_point p, index_t, vim_direction, T* data, index_t rows, index_t cols) const {
    if (p != mamba_point::block_input && p != mamba_point::final_norm_input) return;
    stream->push_back(be->alloc(rows * cols));
    be->copy(data, rows * cols, stream->back().data());
  }
};

// Refuses a class at or above the class count.
inline void check_vim_class(std::string_view where, index_t target_class, index_t classes) {
  if (target_class >= classes)
    mixlens::detail::fail(where, "target_class",
                          "a class below the class count " + std::to_string(classes) + " (or < 0: the argmax)",
                          target_class);
}

// The target class: `target_class`, or for a negative one the argmax of the
// logits (which must then be finite).
template <class T>
[[nodiscard]] index_t resolve_vim_class(std::string_view where, std::span<const T> logits, index_t target_class) {
  const index_t classes = static_cast<index_t>(logits.size());
  check_vim_class(where, target_class, classes);
  if (target_class >= 0) return target_class;
  index_t c = 0;
  for (index_t v = 0; v < classes; ++v) {
    const T x = logits[static_cast<std::size_t>(v)];
    if (!std::isfinite(x))
      mixlens::detail::fail(where, "logits", "finite values (for the argmax)",
                            std::to_string(x) + " at class " + std::to_string(v));
    if (x > logits[static_cast<std::size_t>(c)]) c = v;
  }
  return c;
}

}  // namespace detail

// The gradients of logits[target_class] (negative: the argmax) with respect to
// the activations, in the backend's memory. `observe(const
// vim_layer_signals<T>&, const vim_layer_gradients<T>&)` is called once per
// layer, from the last layer to the first, with the layer's recomputed forward
// signals and its gradients (views valid during the call).
template <class Backend, class T, class Observer>
[[nodiscard]] auto vim_gradients(const Backend& be, const vim_weights<T>& m, tensor_view<const T, 3> image,
                                 index_t target_class, const gradient_options& options, Observer&& observe) {
  constexpr bool has_scan_backward =
      requires(const Backend& b, const s6_operator<T>& op, const T* p, const s6_gradient_views<T>& g) {
        b.s6_backward(op, p, p, g);
      };
  static_assert(has_scan_backward, "vim_gradients: this backend has no s6_backward (the selective-scan backward), "
                                   "so the gradients cannot be computed on it");
  constexpr std::string_view where = "mixlens::models::vim_gradients";
  using array = typename Backend::template array<T>;
  const vim_config& cfg = m.config;
  check_vim_image(cfg, image.extent(0), image.extent(1), image.extent(2));
  const index_t L = cfg.sequence_length(), E = cfg.hidden_size, D = cfg.intermediate_size,
                classes = cfg.num_classes, layers = m.num_layers(), read = vim_read_position(cfg);
  detail::check_vim_class(where, target_class, classes);  // before the forward pass

  // Forward: the logits, and the residual stream entering every layer and the final norm.
  std::vector<array> stream;
  const auto logits =
      vim_forward(be, m, image, [](const auto&) {}, detail::vim_stream_recorder<Backend, array>{&be, &stream});
  be.synchronize();
  const auto row = be.download(logits.data(), classes);
  const index_t c = detail::resolve_vim_class(where, std::span<const T>(row), target_class);
  vim_gradients_result<array> result;
  result.target = {read, c};
  result.value = double(row[static_cast<std::size_t>(c)]);

  // Reverse: the head (∂ of the feature is row c of W_head at the position read,
  // or 1/L of it at every position), the final norm.
  auto gf = detail::alloc_mamba_backward(be, cfg, L), gb = detail::alloc_mamba_backward(be, cfg, L);
  T *dh = gf.dh.data(), *dhn = gf.dhn.data();  // the residual stream's gradient and its norm's
  be.fill_zero(dhn, L * E);
  const T* head_row = m.head.data_handle() + c * E;
  if (read >= 0) be.axpy(dhn + read * E, head_row, T(1), E);
  else
    for (index_t t = 0; t < L; ++t) be.axpy(dhn + t * E, head_row, T(1) / static_cast<T>(L), E);
  const bool lrp = options.rule == propagation::lrp;
  be.rms_norm_backward(stream.back().data(), L, E, m.norm_f, cfg.norm_eps, dhn, dh, false, lrp);

  const T scale = cfg.divide_out ? T(0.5) : T(1);
  auto hn = be.alloc(L * E), xz = be.alloc(2 * D * L), xz_b = be.alloc(2 * D * L), y = be.alloc(D * L),
       y_b = be.alloc(D * L), dy = be.alloc(D * L), dxz = be.alloc(2 * D * L);
  auto forward = alloc_mamba_branch(be, cfg, L), backward = alloc_mamba_branch(be, cfg, L);
  const bool per_layer = options.residual || options.u || options.delta || options.b || options.c || options.ssm_out;
  if (per_layer) result.layers.resize(static_cast<std::size_t>(layers));
  const auto signal = [L](const T* p, index_t rows) { return matrix_view<const T>(p, rows, L); };

  for (index_t k = layers - 1; k >= 0; --k) {
    const vim_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    const T* h = stream[static_cast<std::size_t>(k)].data();
    // The layer's forward signals again, from its input (as vim_forward computes them).
    be.rms_norm(h, L, E, w.forward.norm, cfg.norm_eps, hn.data());
    be.gemm(false, true, 2 * D, L, E, w.forward.in_proj.data_handle(), hn.data(), T(0), xz.data());
    if (!w.forward.in_proj_bias.empty()) be.add_row_bias(xz.data(), w.forward.in_proj_bias, 2 * D, L);
    be.reverse_columns(xz.data(), 2 * D, L, xz_b.data());
    vim_layer_signals<T> s;
    s.layer = k, s.scale = scale, s.cls = cfg.cls_index();
    s.forward = mamba_branch(be, cfg, w.forward, k, xz.data(), L, forward);
    s.backward = mamba_branch(be, cfg, w.backward, k, xz_b.data(), L, backward);
    be.reverse_columns(backward.y.data(), D, L, y_b.data());
    be.fill(y.data(), D * L, T(0));
    be.axpy(y.data(), forward.y.data(), scale, D * L);
    be.axpy(y.data(), y_b.data(), scale, D * L);
    s.y = signal(y.data(), D);

    // out_proj: ∂y = W_outᵀ·∂hᵀ; ∂y_f = scale·∂y, ∂y_b = scale·J·∂y; each branch to its ∂xz.
    be.gemm(true, true, D, L, E, w.forward.out_proj.data_handle(), dh, T(0), dy.data());
    be.fill(gf.dy.data(), D * L, T(0));
    be.axpy(gf.dy.data(), dy.data(), scale, D * L);
    be.reverse_columns(dy.data(), D, L, gb.dy.data());
    if (scale != T(1)) be.scale(gb.dy.data(), scale, D * L);
    detail::mamba_branch_backward(be, cfg, w.forward, s.forward, L, gf, lrp);
    detail::mamba_branch_backward(be, cfg, w.backward, s.backward, L, gb, lrp);
    // ∂xz = ∂xz_f + J·∂xz_b; in_proj: ∂hn = ∂xzᵀ·W_in; the block's norm; the residual path already in dh.
    be.reverse_columns(gb.dxz.data(), 2 * D, L, dxz.data());
    be.axpy(dxz.data(), gf.dxz.data(), T(1), 2 * D * L);
    be.gemm(true, false, L, E, 2 * D, dxz.data(), w.forward.in_proj.data_handle(), T(0), dhn);
    be.rms_norm_backward(h, L, E, w.forward.norm, cfg.norm_eps, dhn, dh, true, lrp);

    vim_layer_gradients<T> lg;
    lg.layer = k;
    lg.residual = matrix_view<const T>(dh, L, E);
    lg.out_proj_in = signal(dy.data(), D);
    lg.x = signal(dxz.data(), D), lg.z = signal(dxz.data() + D * L, D);
    lg.forward = detail::branch_gradient_views(cfg, k, L, gf);
    lg.backward = detail::branch_gradient_views(cfg, k, L, gb);
    observe(static_cast<const vim_layer_signals<T>&>(s), static_cast<const vim_layer_gradients<T>&>(lg));
    if (per_layer) {
      auto& out = result.layers[static_cast<std::size_t>(k)];
      if (options.residual) {
        out.residual = be.alloc(L * E);
        be.copy(dh, L * E, out.residual.data());
      }
      detail::keep_branch_gradients(be, cfg, L, options, gf, out.forward);
      detail::keep_branch_gradients(be, cfg, L, options, gb, out.backward);
    }
  }
  if (options.embedding) {
    result.embedding = be.alloc(L * E);
    be.copy(dh, L * E, result.embedding.data());
    result.input = std::move(stream.front());
  }
  be.synchronize();
  return result;
}

template <class Backend, class T>
[[nodiscard]] auto vim_gradients(const Backend& be, const vim_weights<T>& m, tensor_view<const T, 3> image,
                                 index_t target_class = -1, const gradient_options& options = {}) {
  return vim_gradients(be, m, image, target_class, options, [](const auto&, const auto&) {});
}

// On the host, for a loaded model: the gradients in std::vector.
template <class T>
[[nodiscard]] vim_gradients_result<std::vector<T>> vim_gradients(const vim_model<T>& m, tensor_view<const T, 3> image,
                                                                 index_t target_class = -1,
                                                                 const gradient_options& options = {}) {
  const auto weights = host_weights(m);
  return vim_gradients(host_backend<T>{}, weights.view(), image, target_class, options);
}

}  // namespace mixlens::models
