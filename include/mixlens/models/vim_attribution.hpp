// Attribution recipes for Vision Mamba (hustvl/Vim) classifiers, on any backend,
// built on vim_gradients (models/vim_backward.hpp) like the language models'
// (models/mamba_attribution.hpp): one score per sequence position (patches and
// the CLS token; patch_map puts them on the grid) for one class logit.
//
//  - grad_input: Σ_e ∂target/∂h0 ⊙ h0 at the first block's input h0 (the patch
//    embeddings with the CLS token, position embedding added).
//  - lrp: MambaLRP, the same product under propagation::lrp; the scores sum to
//    the logit less the head's bias where no other bias lies on the path.
//  - mamba_attr: per layer the paper's α of both branches combined as the block
//    combines them, scale · (α_f + J·α_b·J) per channel, clamped at 0, min–max
//    normalized over the layer, averaged over channels, the columns weighted
//    by the min–max normalized per-token max of the positive gradient of the
//    target with respect to the layer's input; rolled out from start_layer;
//    the row the head reads (CLS; the mean of the rows for mean pooling).
//  - attn_grad: the same with both branches' unified matrices, combined
//    likewise, clamped, averaged, weighted, then min–max normalized.
//  - attribute(model, image, method, class): every method of attribute.hpp
//    on the host, raw and rollout being that row of the raw attention and of
//    the rollout of the combined α.
// The target's position is the CLS token's (vim_read_position; −1 when the
// head reads the mean of all positions); its token is the class.
// docs/attribution.md and docs/vim.md have the details.
// Needs nlohmann-json (through vim_model.hpp).
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/analysis/attribution.hpp"
#include "mixlens/analysis/faithfulness.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/mamba_attribution.hpp"
#include "mixlens/models/vim_backward.hpp"
#include "mixlens/models/vim_forward.hpp"
#include "mixlens/models/vim_model.hpp"

namespace mixlens::models {

namespace detail {

// Σ_e g ⊙ h0 at the first block's input, g propagated by `rule`.
template <class Backend, class T>
[[nodiscard]] attribution_result vim_gradient_times_input(const Backend& be, const vim_weights<T>& w,
                                                          tensor_view<const T, 3> image, index_t target_class,
                                                          propagation rule) {
  const auto g = vim_gradients(be, w, image, target_class, gradient_options{.rule = rule, .embedding = true});
  const index_t L = w.config.sequence_length(), E = w.config.hidden_size;
  const auto gh = be.download(g.embedding.data(), L * E), eh = be.download(g.input.data(), L * E);
  return {g.target, g.value,
          analysis::grad_input(matrix_view<const T>(gh.data(), L, E), matrix_view<const T>(eh.data(), L, E)), {}};
}

// The row the head reads of a rollout (L × L, row-major): row `read`, or the
// mean of the rows for read < 0 (mean pooling).
[[nodiscard]] inline std::vector<double> read_row(const std::vector<double>& m, index_t L, index_t read) {
  std::vector<double> row(static_cast<std::size_t>(L), 0.0);
  for (index_t i = 0; i < L; ++i)
    if (read < 0 || i == read)
      for (index_t j = 0; j < L; ++j)
        row[static_cast<std::size_t>(j)] += m[static_cast<std::size_t>(i * L + j)] / double(read < 0 ? L : 1);
  return row;
}

// E_d max(scale · (M_f + J·M_b·J), 0) into map (host), and the combined
// tensor's [min, max].
template <class Backend, class Forward, class Backward, class T>
std::pair<double, double> relu_bidirectional_mean(const Backend& be, const Forward& f, const Backward& b, T scale,
                                                  std::vector<double>& map, std::string_view where) {
  const index_t n = static_cast<index_t>(map.size());
  auto mean = be.alloc(n), minmax = be.alloc(3);
  analysis::aggregate_bidirectional(be, f, b, scale, channel_reduction::relu_mean, mean.data(), minmax.data());
  analysis::check_finite_blocks(be, f, b, minmax.data(), where);
  const auto m = be.download(mean.data(), n), range = be.download(minmax.data(), 2);
  std::copy(m.begin(), m.end(), map.begin());
  return {double(range[0]), double(range[1])};
}

// The token weights of a layer from its residual gradient (backend memory).
template <class Backend, class T>
[[nodiscard]] std::vector<double> token_weights(const Backend& be, const vim_layer_gradients<T>& lg) {
  const index_t L = lg.residual.extent(0), E = lg.residual.extent(1);
  const auto g = be.download(lg.residual.data_handle(), L * E);
  return analysis::token_gradient_weight(matrix_view<const T>(g.data(), L, E));
}

// The rollout of per-layer maps made by `layer_map(signals, gradients, map)`
// from options.start_layer on, and the row the head reads clamped at 0.
template <class Backend, class T, class LayerMap>
[[nodiscard]] attribution_result vim_gradient_weighted_rollout(const Backend& be, const vim_weights<T>& w,
                                                               tensor_view<const T, 3> image, index_t target_class,
                                                               const mamba_attr_options& options, std::string_view where,
                                                               LayerMap&& layer_map) {
  if (options.start_layer < 0 || options.start_layer >= w.num_layers())
    mixlens::detail::fail(where, "options.start_layer", "a layer in [0, " + std::to_string(w.num_layers()) + ")",
                          options.start_layer);
  const index_t L = w.config.sequence_length(), read = vim_read_position(w.config);
  analysis::target_row_rollout row(L, read >= 0 ? read : 0);
  std::optional<analysis::full_rollout> full;
  if (options.full_matrix || read < 0) full.emplace(L);
  const auto g = vim_gradients(be, w, image, target_class, gradient_options{.embedding = false},
                               [&](const vim_layer_signals<T>& s, const vim_layer_gradients<T>& lg) {
                                 if (s.layer < options.start_layer) return;
                                 std::vector<double> map(static_cast<std::size_t>(L * L));
                                 layer_map(s, lg, map);
                                 row.add_earlier(map);
                                 if (full) full->add_earlier(map);
                               });
  attribution_result r{g.target, g.value, read >= 0 ? row.row() : read_row(full->matrix(), L, read), {}};
  for (auto& v : r.scores) v = std::max(v, 0.0);  // as the recipes clamp their output
  if (options.full_matrix) r.matrix = full->matrix();
  return r;
}

}  // namespace detail

// On any backend, with the model's weights in its memory (host_weights,
// gpu::to_device); target_class < 0: the argmax.
template <class Backend, class T>
[[nodiscard]] attribution_result grad_input(const Backend& be, const vim_weights<T>& w, tensor_view<const T, 3> image,
                                            index_t target_class = -1) {
  return detail::vim_gradient_times_input(be, w, image, target_class, propagation::gradient);
}

// MambaLRP's relevance of each position. Conservation: Σ_t score_t = logit − head
// bias exactly when the conv1d biases are 0 and in_proj and out_proj have none.
template <class Backend, class T>
[[nodiscard]] attribution_result lrp(const Backend& be, const vim_weights<T>& w, tensor_view<const T, 3> image,
                                     index_t target_class = -1) {
  return detail::vim_gradient_times_input(be, w, image, target_class, propagation::lrp);
}

template <class Backend, class T>
[[nodiscard]] attribution_result mamba_attr(const Backend& be, const vim_weights<T>& w, tensor_view<const T, 3> image,
                                            index_t target_class = -1, const mamba_attr_options& options = {}) {
  constexpr std::string_view where = "mixlens::models::mamba_attr";
  return detail::vim_gradient_weighted_rollout(
      be, w, image, target_class, options, where,
      [&](const vim_layer_signals<T>& s, const vim_layer_gradients<T>& lg, std::vector<double>& map) {
        const auto [lo, hi] = detail::relu_bidirectional_mean(be, s.forward.ssm(), s.backward.ssm(), s.scale, map, where);
        analysis::mamba_attr_layer_map(map, lo, hi, detail::token_weights(be, lg));
      });
}

template <class Backend, class T>
[[nodiscard]] attribution_result attn_grad(const Backend& be, const vim_weights<T>& w, tensor_view<const T, 3> image,
                                           index_t target_class = -1, const mamba_attr_options& options = {}) {
  constexpr std::string_view where = "mixlens::models::attn_grad";
  return detail::vim_gradient_weighted_rollout(
      be, w, image, target_class, options, where,
      [&](const vim_layer_signals<T>& s, const vim_layer_gradients<T>& lg, std::vector<double>& map) {
        const unified_options u{.offset = false, .skip = options.unified_skip};
        (void)detail::relu_bidirectional_mean(be, unified_operator(be, s.forward, u), unified_operator(be, s.backward, u),
                                              s.scale, map, where);
        analysis::attn_grad_layer_map(map, detail::token_weights(be, lg));
      });
}

// The same on the host, for a loaded model.
template <class T>
[[nodiscard]] attribution_result grad_input(const vim_model<T>& m, tensor_view<const T, 3> image, index_t target_class = -1) {
  return grad_input(host_backend<T>{}, host_weights(m).view(), image, target_class);
}
template <class T>
[[nodiscard]] attribution_result lrp(const vim_model<T>& m, tensor_view<const T, 3> image, index_t target_class = -1) {
  return lrp(host_backend<T>{}, host_weights(m).view(), image, target_class);
}
template <class T>
[[nodiscard]] attribution_result mamba_attr(const vim_model<T>& m, tensor_view<const T, 3> image,
                                            index_t target_class = -1, const mamba_attr_options& options = {}) {
  return mamba_attr(host_backend<T>{}, host_weights(m).view(), image, target_class, options);
}
template <class T>
[[nodiscard]] attribution_result attn_grad(const vim_model<T>& m, tensor_view<const T, 3> image,
                                           index_t target_class = -1, const mamba_attr_options& options = {}) {
  return attn_grad(host_backend<T>{}, host_weights(m).view(), image, target_class, options);
}

namespace detail {

// The forward pass on `be` with the channel mean of every layer's combined
// α (the block's own combination): the target, its value and the row the head
// reads of raw attention (or of the rollout); no maps for `maps = false`.
template <class Backend, class T>
[[nodiscard]] attribution_result vim_attention_row(const Backend& be, const vim_weights<T>& w,
                                                   tensor_view<const T, 3> image, index_t target_class, bool maps,
                                                   bool rollout) {
  constexpr std::string_view where = "mixlens::models::attribute";
  const index_t L = w.config.sequence_length(), read = vim_read_position(w.config);
  check_vim_class(where, target_class, w.config.num_classes);  // before the forward pass
  analysis::model_maps<Backend> acc(be, L);
  auto map = be.alloc(L * L), minmax = be.alloc(3), out = be.alloc(L * L);
  const auto logits = vim_forward(be, w, image, [&](const vim_layer_signals<T>& s) {
    if (!maps) return;
    const auto f = s.forward.ssm(), b = s.backward.ssm();
    analysis::aggregate_bidirectional(be, f, b, s.scale, channel_reduction::mean, map.data(), minmax.data());
    analysis::check_finite_blocks(be, f, b, minmax.data(), "mixlens::analysis::raw_attention");
    acc.add(map.data(), minmax.data());
  });
  const auto host_logits = be.download(logits.data(), w.config.num_classes);
  const index_t c = resolve_vim_class(where, std::span<const T>(host_logits), target_class);
  attribution_result r{{read, c}, double(host_logits[static_cast<std::size_t>(c)]), {}, {}};
  if (maps && w.num_layers() > 0) {
    const T* p = rollout ? acc.rollout() : (acc.raw(out.data()), out.data());
    const auto row = be.download(p, L * L);
    r.scores = read_row(std::vector<double>(row.begin(), row.end()), L, read);
  }
  return r;
}

}  // namespace detail

// Scores over the sequence positions of the classifier's input for the logit of
// `target_class` (negative: the argmax), by `method`, on any backend with the
// model's weights in its memory (host_weights, gpu::to_device).
template <class Backend, class T>
[[nodiscard]] attribution_result attribute(const Backend& be, const vim_weights<T>& w, tensor_view<const T, 3> image,
                                           attribution_method method, index_t target_class = -1,
                                           const attribute_options& options = {}) {
  switch (method) {
    case attribution_method::raw: return detail::vim_attention_row(be, w, image, target_class, true, false);
    case attribution_method::rollout: return detail::vim_attention_row(be, w, image, target_class, true, true);
    case attribution_method::mamba_attr: return mamba_attr(be, w, image, target_class, options.mamba_attr);
    case attribution_method::grad_input: return grad_input(be, w, image, target_class);
    case attribution_method::attn_grad: return attn_grad(be, w, image, target_class, options.mamba_attr);
    case attribution_method::lrp: return lrp(be, w, image, target_class);
    case attribution_method::random: {
      auto r = detail::vim_attention_row(be, w, image, target_class, false, false);
      r.scores = analysis::random_scores(w.config.sequence_length(), options.seed);
      return r;
    }
  }
  mixlens::detail::fail("mixlens::models::attribute", "method", attribution_method_list(), static_cast<int>(method));
}

// The same on the host, for a loaded model.
template <class T>
[[nodiscard]] attribution_result attribute(const vim_model<T>& m, tensor_view<const T, 3> image,
                                           attribution_method method, index_t target_class = -1,
                                           const attribute_options& options = {}) {
  return attribute(host_backend<T>{}, host_weights(m).view(), image, method, target_class, options);
}

}  // namespace mixlens::models
