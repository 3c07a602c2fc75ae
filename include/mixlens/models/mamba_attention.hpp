// Hidden attention of every layer of a Mamba, Falcon-Mamba or Mamba-2 language
// model on the host,
// computed layer by layer during the forward pass so that memory stays O(D·L²)
// for one layer. Conveniences over models/mamba_forward.hpp, where the forms,
// the unified operator and the reconstruction check are written once for host
// and device:
//  - paper:   α[d] (L × L), the S6 operator alone (Ali, Zimerman, Wolf 2024, eq. 12):
//             no D skip, no conv, no SiLU, no gate; y = (α·u + D·u) ⊙ SiLU(z);
//  - unified: Â[d] = diag(g)·(α + diag(D))·diag(σ(c + bias))·M_conv acting on the
//             in_proj output x, with the conv bias's constant contribution kept
//             apart as an offset: y = Â·x + offset (Zimerman, Ali, Wolf, ICLR 2025).
// For Mamba-2 the paper form is per head (heads × L × L) and the unified form
// folds the gated norm as its diagonal (docs/mamba2.md). Every function takes
// the signals (or the model) of any family.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string_view>
#include <vector>

#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::models {

// The layer as the unified operator, on the host; `->offset` is the conv bias's
// contribution (channels × L) unless options.offset is false.
template <class Signals>
[[nodiscard]] auto unified_operator(const Signals& s, const unified_options& options = {}) {
  return unified_operator(host_backend<typename Signals::value_type>{}, s, options);
}

// The number of matrices of the layer in `form`: channels, or Mamba-2's heads
// in the paper form.
template <class Signals>
[[nodiscard]] index_t attention_matrices(const Signals& s, attention_form form) {
  return form == attention_form::paper ? view_of(s.ssm()).out_channels() : s.channels();
}

// The layer's hidden attention: out is (attention_matrices × L × L).
template <class Signals>
void layer_attention(const Signals& s, attention_form form, tensor_view<typename Signals::value_type, 3> out) {
  constexpr std::string_view where = "mixlens::models::layer_attention";
  const index_t count = attention_matrices(s, form);
  mixlens::detail::check_equal(where, "out", "matrices (extent 0)", count, out.extent(0));
  mixlens::detail::check_square(where, "out", s.length(), out.extent(1), out.extent(2));
  const host_backend<typename Signals::value_type> be;
  if (form == attention_form::paper) layer_attention(be, s, 0, count, out.data_handle());
  else layer_attention(be, unified_operator(s, {.offset = false}), 0, count, out.data_handle());
}

template <class Signals>
[[nodiscard]] tensor<typename Signals::value_type, 3> layer_attention(const Signals& s, attention_form form) {
  tensor<typename Signals::value_type, 3> out(attention_matrices(s, form), s.length(), s.length());
  layer_attention(s, form, out.view());
  return out;
}

// Row t of matrix d (a channel, or a head in Mamba-2's paper form) in O(L·N),
// without forming it.
template <class Signals>
[[nodiscard]] std::vector<typename Signals::value_type> layer_attention_row(const Signals& s, attention_form form,
                                                                            index_t d, index_t t) {
  using T = typename Signals::value_type;
  std::vector<T> r(static_cast<std::size_t>(s.length()));
  const vector_view<T> view(r.data(), r.size());
  if (form == attention_form::paper) s.ssm().row(d, d, t, view);
  else unified_operator(s, {.offset = false})->row(d, d, t, view);
  return r;
}

// The self-test on the host (models/mamba_forward.hpp).
template <class Signals>
[[nodiscard]] reconstruction_error check_reconstruction(const Signals& s) {
  return check_reconstruction(host_backend<typename Signals::value_type>{}, s);
}

// Runs the model on `tokens` and calls `visit(signals, attention)` for each
// layer in `layers` (all when empty), attention being that layer's
// (attention_matrices × L × L) matrices in `form`. One attention buffer is reused
// for every layer. Returns the logits (L × V).
template <class Model, class Visitor>
[[nodiscard]] auto for_each_layer_attention(const Model& m, std::span<const index_t> tokens, attention_form form,
                                            std::span<const index_t> layers, Visitor&& visit) {
  using T = typename Model::value_type;
  for (index_t k : layers)
    if (k < 0 || k >= m.num_layers())
      mixlens::detail::fail("mixlens::models::for_each_layer_attention", "layers",
                            "layer indices in [0, " + std::to_string(m.num_layers()) + ")", k);
  tensor<T, 3> buffer;
  return mamba_forward(m, tokens, [&](const auto& s) {
    if (!layers.empty() && std::find(layers.begin(), layers.end(), s.layer) == layers.end()) return;
    if (buffer.size() == 0) buffer = tensor<T, 3>(attention_matrices(s, form), s.length(), s.length());
    layer_attention(s, form, buffer.view());
    visit(s, tensor_view<const T, 3>(buffer.view()));
  });
}

}  // namespace mixlens::models
