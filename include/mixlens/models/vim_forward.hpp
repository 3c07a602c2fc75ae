// The Vision Mamba (hustvl/Vim) forward pass, written once against a backend
// (mixlens/backend.hpp on the host, gpu/backend.cuh on the device through
// gpu/models/vim.cuh):
//
//   image (H × W × C) → Conv2d(patch, stride) → patches row by row (M × E)
//   → CLS token inserted at its position (middle: before patch M/2; head: 0)
//   → + position embedding
//   → [RMSNorm → in_proj → xz = [x; z]
//      → forward branch on xz, backward branch on flip(xz), each a Mamba
//        selective branch with its own conv, x_proj, dt_proj, A, D
//        (models/mamba_forward.hpp: mamba_branch)
//      → y = (y_f + flip(y_b)) [/ 2] → out_proj → + residual] × depth
//   → RMSNorm (norm_f) → the CLS token (or the mean / last position) → head
//
// The block's order in VisionMamba (Add → Norm → Mixer, the residual carried
// beside the hidden states, fused_add_norm) computes the same sums as the
// pre-norm residual written here; residual_in_fp32 has no effect in float or
// double compute.
// Every layer hands its signals (vim_layer_signals: the two branches' Mamba
// signals, the backward one in its own, flipped time) to an observer.
// Needs nlohmann-json (through vim_config.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/error.hpp"
#include "mixlens/models/lm_model.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/vim_config.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::models {

// ---- weights as views --------------------------------------------------------------

// One bidirectional block: `forward` is a whole Mamba layer's views (norm,
// in_proj and out_proj are shared by both branches); `backward` holds only the
// backward branch's conv, x_proj, dt_proj, A and D (its norm, in_proj and
// out_proj are empty).
template <class T>
struct vim_layer_weights {
  mamba_layer_weights<T> forward, backward;

  template <class F>
  void for_each_view(F&& f) {
    f(forward), f(backward);
  }
};

template <class T>
struct vim_weights {
  using value_type = T;
  vim_config config;
  matrix_view<const T> patch_weight;  // (E × C·p·p): Conv2d's (E, C, p, p) flattened
  vector_view<const T> patch_bias;    // (E)
  vector_view<const T> cls_token;     // (E) or empty without a CLS token
  matrix_view<const T> pos_embed;     // (L × E) or empty
  std::vector<vim_layer_weights<T>> layers;
  vector_view<const T> norm_f;        // (E)
  matrix_view<const T> head;          // (classes × E)
  vector_view<const T> head_bias;     // (classes)

  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers.size()); }

  template <class F>
  void for_each_view(F&& f) {
    f(patch_weight), f(patch_bias), f(cls_token), f(pos_embed), f(norm_f), f(head), f(head_bias);
    for (auto& l : layers) f(l);
  }
};

// ---- one layer's signals ------------------------------------------------------------

// A bidirectional block's two branches.
enum class vim_direction { forward, backward };

// The signals of one bidirectional block: each branch's Mamba signals (their
// ssm() is the branch's S6 operator, the paper's α; mamba_forward.hpp's
// unified_operator and check_reconstruction take them as they are), the
// backward branch in its own time, position t' being position L − 1 − t' of
// the image sequence. y is the out_proj input: scale · (forward.y + flip(backward.y)).
template <class T>
struct vim_layer_signals {
  using value_type = T;
  index_t layer = 0;
  mamba_layer_signals<T> forward, backward;
  matrix_view<const T> y;  // (D × L)
  T scale = T(1);          // 1/2 when the model divides the sum (if_divide_out)
  index_t cls = -1;        // the CLS position in image-sequence time, −1 without one

  [[nodiscard]] index_t channels() const { return forward.channels(); }
  [[nodiscard]] index_t length() const { return forward.length(); }

  template <class F>
  void for_each_view(F&& f) {
    f(forward), f(backward), f(y);
  }
};

// ---- the forward pass ---------------------------------------------------------------

namespace detail {

// The image's patches as rows (M × C·p·p), each in the order of Conv2d's weight
// (channel, kernel row, kernel column); patches row by row over the grid.
template <class T>
[[nodiscard]] std::vector<T> image_patches(const vim_config& c, tensor_view<const T, 3> image) {
  const index_t gh = c.grid_height(), gw = c.grid_width(), p = c.patch_size, C = c.channels, K = c.patch_values();
  std::vector<T> out(static_cast<std::size_t>(c.num_patches() * K));
  for (index_t gy = 0; gy < gh; ++gy)
    for (index_t gx = 0; gx < gw; ++gx) {
      T* row = out.data() + (gy * gw + gx) * K;
      for (index_t ch = 0; ch < C; ++ch)
        for (index_t ky = 0; ky < p; ++ky)
          for (index_t kx = 0; kx < p; ++kx)
            row[(ch * p + ky) * p + kx] = image(gy * c.stride + ky, gx * c.stride + kx, ch);
    }
  return out;
}

}  // namespace detail

// Checks that `image` (H × W × C) is what the model takes.
inline void check_vim_image(const vim_config& c, index_t height, index_t width, index_t channels) {
  if (height != c.image_height || width != c.image_width || channels != c.channels)
    throw error("Vision Mamba: image of shape [" + std::to_string(height) + ", " + std::to_string(width) + ", " +
                std::to_string(channels) + "], the model takes [" + std::to_string(c.image_height) + ", " +
                std::to_string(c.image_width) + ", " + std::to_string(c.channels) + "] (height, width, channels)");
}

// Runs the classifier on `image` (H × W × C in host memory, as it enters
// patch_embed: already normalized) and returns the logits (num_classes) in the
// backend's memory. `observe(const vim_layer_signals<T>&)` is called after each
// layer; the buffers are reused by the next one. `inject(point, layer,
// direction, data, rows, cols)` (optional; models/mamba_forward.hpp's
// mamba_point) may change a signal in place: the block input (the residual
// stream entering layer k, L × E time-major; k = 0: the tokens after the
// position embedding) and the final norm's input with direction forward, and
// each branch's u, B, C, Δ and ssm_out in the branch's own time (the backward
// branch's flipped) — the finite-difference checks of models/vim_backward.hpp.
template <class Backend, class T, class Observer, class Inject = no_injection>
[[nodiscard]] auto vim_forward(const Backend& be, const vim_weights<T>& m, tensor_view<const T, 3> image,
                               Observer&& observe, Inject&& inject = {}) {
  constexpr bool injecting = !std::is_same_v<std::remove_cvref_t<Inject>, no_injection>;
  const vim_config& cfg = m.config;
  check_vim_image(cfg, image.extent(0), image.extent(1), image.extent(2));
  const index_t M = cfg.num_patches(), L = cfg.sequence_length(), E = cfg.hidden_size, D = cfg.intermediate_size,
                K = cfg.patch_values(), classes = cfg.num_classes, cls = cfg.cls_index();
  const T scale = cfg.divide_out ? T(0.5) : T(1);
  const std::vector<T> host_patches = detail::image_patches(cfg, image);
  const auto patches = be.upload(std::span<const T>(host_patches));
  auto h = be.alloc(L * E), hn = be.alloc(L * E), xz = be.alloc(2 * D * L), xz_b = be.alloc(2 * D * L),
       y = be.alloc(D * L), y_b = be.alloc(D * L), feature = be.alloc(E), logits = be.alloc(classes);
  auto forward = alloc_mamba_branch(be, cfg, L), backward = alloc_mamba_branch(be, cfg, L);

  // The residual stream h (L × E, time-major): patch rows [p0, p1) go to
  // positions token_of_patch(p0)…, in at most two runs around the CLS token.
  const auto embed_patches = [&](index_t p0, index_t p1) {
    if (p1 <= p0) return;
    T* out = h.data() + cfg.token_of_patch(p0) * E;
    be.gemm(false, true, p1 - p0, E, K, patches.data() + p0 * K, m.patch_weight.data_handle(), T(0), out);
    be.add_column_bias(out, m.patch_bias, p1 - p0, E);
  };
  if (cls >= 0) {
    embed_patches(0, cls);
    embed_patches(cls, M);
    be.fill(h.data() + cls * E, E, T(0));
    be.axpy(h.data() + cls * E, m.cls_token.data(), T(1), E);
  } else {
    embed_patches(0, M);
  }
  if (cfg.position_embedding) be.axpy(h.data(), m.pos_embed.data_handle(), T(1), L * E);

  // Each branch's injector: the direction added to mamba_branch's call.
  const auto branch_injector = [&](vim_direction dir) {
    if constexpr (injecting)
      return [&inject, dir](mamba_point p, index_t k, T* data, index_t rows, index_t cols) {
        inject(p, k, dir, data, rows, cols);
      };
    else
      return no_injection{};
  };
  for (index_t k = 0; k < m.num_layers(); ++k) {
    const vim_layer_weights<T>& w = m.layers[static_cast<std::size_t>(k)];
    if constexpr (injecting) inject(mamba_point::block_input, k, vim_direction::forward, h.data(), L, E);
    be.rms_norm(h.data(), L, E, w.forward.norm, cfg.norm_eps, hn.data());
    be.gemm(false, true, 2 * D, L, E, w.forward.in_proj.data_handle(), hn.data(), T(0), xz.data());  // xz = W_in·hnᵀ
    if (!w.forward.in_proj_bias.empty()) be.add_row_bias(xz.data(), w.forward.in_proj_bias, 2 * D, L);
    be.reverse_columns(xz.data(), 2 * D, L, xz_b.data());

    vim_layer_signals<T> s;
    s.layer = k, s.scale = scale, s.cls = cls;
    s.forward = mamba_branch(be, cfg, w.forward, k, xz.data(), L, forward, branch_injector(vim_direction::forward));
    s.backward =
        mamba_branch(be, cfg, w.backward, k, xz_b.data(), L, backward, branch_injector(vim_direction::backward));
    be.reverse_columns(backward.y.data(), D, L, y_b.data());
    be.fill(y.data(), D * L, T(0));
    be.axpy(y.data(), forward.y.data(), scale, D * L);
    be.axpy(y.data(), y_b.data(), scale, D * L);
    s.y = matrix_view<const T>(y.data(), D, L);

    be.gemm(true, true, L, E, D, y.data(), w.forward.out_proj.data_handle(), T(1), h.data());  // h += yᵀ·W_outᵀ
    if (!w.forward.out_proj_bias.empty()) be.add_column_bias(h.data(), w.forward.out_proj_bias, L, E);
    observe(static_cast<const vim_layer_signals<T>&>(s));
  }
  if constexpr (injecting)
    inject(mamba_point::final_norm_input, m.num_layers(), vim_direction::forward, h.data(), L, E);
  be.rms_norm(h.data(), L, E, m.norm_f, cfg.norm_eps, hn.data());
  const T* read = feature.data();
  if (cls >= 0) {
    read = hn.data() + cls * E;
  } else if (cfg.pooling == vim_pooling::last) {
    read = hn.data() + (L - 1) * E;
  } else {  // the mean over positions
    be.fill(feature.data(), E, T(0));
    for (index_t t = 0; t < L; ++t) be.axpy(feature.data(), hn.data() + t * E, T(1) / static_cast<T>(L), E);
  }
  be.gemm(false, true, 1, classes, E, read, m.head.data_handle(), T(0), logits.data());  // featureᵀ·W_headᵀ
  be.add_column_bias(logits.data(), m.head_bias, 1, classes);
  be.synchronize();
  return logits;
}

}  // namespace mixlens::models
