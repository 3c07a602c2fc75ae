// Hidden attention of every layer of a Mamba language model, computed layer by
// layer during the forward pass so that memory stays O(D·L²) for one layer.
//
// Two forms (DESIGN.md §1):
//  - paper:   α[d] (L × L), the S6 operator alone (Ali, Zimerman, Wolf 2024, eq. 12):
//             no D skip, no conv, no SiLU, no gate; y = (α·u + D·u) ⊙ SiLU(z);
//  - unified: Â[d] = diag(g)·(α + diag(D))·diag(σ(c + bias))·M_conv acting on the
//             in_proj output x, with the conv bias's constant contribution kept
//             apart as an offset: y = Â·x + offset (Zimerman, Ali, Wolf, ICLR 2025).
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string_view>
#include <vector>

#include "mixlens/models/mamba_model.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens::models {

enum class attention_form { paper, unified };

[[nodiscard]] constexpr std::string_view to_string(attention_form f) {
  return f == attention_form::paper ? "paper" : "unified";
}

// The layer as the unified operator (conv, activation factor, D and gate folded
// in); `->offset` is the conv bias's contribution (D × L).
template <class T>
[[nodiscard]] bound_mamba_block<T> unified_operator(const mamba_layer<T>& w, const mamba_layer_signals<T>& s) {
  return bind_mamba_block(w.ssm, w.conv_weight.view(), vector_view<const T>(w.conv_bias.data(), w.conv_bias.size()),
                          s.x.view(), s.z.view());
}

namespace detail {
template <class T>
void check_attention_out(std::string_view where, const mamba_layer_signals<T>& s, tensor_view<T, 3> out) {
  mixlens::detail::check_equal(where, "out", "channels (extent 0)", s.u.extent(0), out.extent(0));
  mixlens::detail::check_square(where, "out", s.u.extent(1), out.extent(1), out.extent(2));
}
}  // namespace detail

// The layer's hidden attention, all channels: out is (D × L × L).
template <class T>
void layer_attention(const mamba_layer<T>& w, const mamba_layer_signals<T>& s, attention_form form,
                     tensor_view<T, 3> out) {
  detail::check_attention_out("mixlens::models::layer_attention", s, out);
  const index_t D = out.extent(0), L = out.extent(1);
  auto block = [&](index_t d) { return matrix_view<T>(out.data_handle() + d * L * L, L, L); };
  if (form == attention_form::paper) {
    const s6_operator<T> op = s.ssm(w);
    for (index_t d = 0; d < D; ++d) op.alpha(d, block(d));
  } else {
    const auto op = unified_operator(w, s);
    for (index_t d = 0; d < D; ++d) op->materialize(d, d, block(d));
  }
}

template <class T>
[[nodiscard]] tensor<T, 3> layer_attention(const mamba_layer<T>& w, const mamba_layer_signals<T>& s,
                                           attention_form form) {
  tensor<T, 3> out(s.u.extent(0), s.u.extent(1), s.u.extent(1));
  layer_attention(w, s, form, out.view());
  return out;
}

// Row t of channel d's matrix in O(L·N), without forming it.
template <class T>
[[nodiscard]] std::vector<T> layer_attention_row(const mamba_layer<T>& w, const mamba_layer_signals<T>& s,
                                                 attention_form form, index_t d, index_t t) {
  std::vector<T> r(static_cast<std::size_t>(s.u.extent(1)));
  const vector_view<T> view(r.data(), r.size());
  if (form == attention_form::paper) s.ssm(w).alpha_row(d, t, view);
  else unified_operator(w, s)->row(d, d, t, view);
  return r;
}

// The self-test: how well the materialized matrices reproduce the layer's own
// output y (the out_proj input), as max |error| / max |y|. NaN (or infinite)
// when y or a reconstruction holds a NaN or an infinity, so that no tolerance
// check passes on them.
struct reconstruction_error {
  double paper = 0;    // (α·u + D·u) ⊙ SiLU(z) against y
  double unified = 0;  // Â·x + offset against y
};

template <class T>
[[nodiscard]] reconstruction_error check_reconstruction(const mamba_layer<T>& w, const mamba_layer_signals<T>& s) {
  const index_t D = s.u.extent(0), L = s.u.extent(1);
  const s6_operator<T> alpha = s.ssm(w);
  const auto unified = unified_operator(w, s);
  matrix<T> m(L, L);
  double scale = 0, paper_err = 0, unified_err = 0;
  // A max that keeps NaN: std::max(e, NaN) is e, and the check would pass.
  const auto worst = [](double& e, double v) {
    if (std::isnan(v) || v > e) e = v;
  };
  for (index_t d = 0; d < D; ++d) {
    alpha.alpha(d, m.view());
    for (index_t t = 0; t < L; ++t) {
      long double acc = 0;
      for (index_t j = 0; j <= t; ++j) acc += static_cast<long double>(m(t, j)) * s.u(d, j);
      acc = (acc + static_cast<long double>(w.ssm.skip[static_cast<std::size_t>(d)]) * s.u(d, t)) * s.gate(d, t);
      worst(paper_err, static_cast<double>(std::abs(acc - s.y(d, t))));
      worst(scale, static_cast<double>(std::abs(s.y(d, t))));
    }
    unified->materialize(d, d, m.view());
    for (index_t t = 0; t < L; ++t) {
      long double acc = unified->offset(d, t);
      for (index_t j = 0; j <= t; ++j) acc += static_cast<long double>(m(t, j)) * s.x(d, j);
      worst(unified_err, static_cast<double>(std::abs(acc - s.y(d, t))));
    }
  }
  if (scale == 0) scale = 1;
  return {paper_err / scale, unified_err / scale};
}

// Runs the model on `tokens` and calls `visit(signals, attention)` for each
// layer in `layers` (all when empty), attention being that layer's (D × L × L)
// matrices in `form`. One attention buffer is reused for every layer. Returns
// the logits (L × V).
template <class T, class Visitor>
[[nodiscard]] matrix<T> for_each_layer_attention(const mamba_model<T>& m, std::span<const index_t> tokens,
                                                 attention_form form, std::span<const index_t> layers, Visitor&& visit) {
  for (index_t k : layers)
    if (k < 0 || k >= m.num_layers())
      mixlens::detail::fail("mixlens::models::for_each_layer_attention", "layers",
                            "layer indices in [0, " + std::to_string(m.num_layers()) + ")", k);
  tensor<T, 3> buffer;
  return mamba_forward(m, tokens, [&](const mamba_layer_signals<T>& s) {
    if (!layers.empty() && std::find(layers.begin(), layers.end(), s.layer) == layers.end()) return;
    if (buffer.size() == 0) buffer = tensor<T, 3>(s.u.extent(0), s.u.extent(1), s.u.extent(1));
    layer_attention(m.layers[static_cast<std::size_t>(s.layer)], s, form, buffer.view());
    visit(s, tensor_view<const T, 3>(buffer.view()));
  });
}

}  // namespace mixlens::models
