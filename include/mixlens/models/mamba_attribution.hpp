// Attribution recipes for Mamba and Falcon-Mamba language models, on any backend,
// built on mamba_gradients (models/mamba_backward.hpp) and the pieces of
// analysis/attribution.hpp: one score per input position for one logit.
//
//  - grad_input: Σ_h ∂target/∂e ⊙ e at the embedding output e.
//  - lrp: MambaLRP (Jafari et al., NeurIPS 2024): the same product, the
//    gradient propagated by LRP's rules (propagation::lrp); the scores sum to
//    the target where no bias lies on the relevance path.
//  - mamba_attr (as AmeenAli/HiddenMambaAttn's generate_mamba_attr combines
//    them): per layer, the paper's α clamped at 0, min–max normalized over the
//    layer, averaged over channels, its columns weighted by the min–max normalized
//    per-token max of the positive gradient of the target with respect to the
//    layer's input; then I added, rows normalized, rolled out from start_layer to
//    the last layer; the target position's row.
//  - attn_grad (as Itamarzimm/UnifiedImplicitAttnRepr's attribution combines
//    them): per layer, the unified form's matrices clamped at 0 and averaged over
//    channels, the columns weighted by the same token weights, then min–max
//    normalized over the layer; rolled out and read like mamba_attr.
// docs/attribution.md has the details.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/analysis/attribution.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::models {

// Scores (L) for the resolved target and its value; for the rollout recipes with
// options.full_matrix, the whole rollout (L × L, row-major) whose target row the
// scores are (before their clamp at 0).
struct attribution_result {
  gradient_target target;
  double value = 0;
  std::vector<double> scores;
  std::vector<double> matrix;
};

namespace detail {

// Σ_h g ⊙ e at the embedding output, g propagated by `rule`; for the weights of
// any family with mamba_gradients (Mamba-2: models/mamba2_attribution.hpp).
template <class Backend, class Weights>
[[nodiscard]] attribution_result gradient_times_input(const Backend& be, const Weights& w,
                                                      std::span<const index_t> tokens, gradient_target target,
                                                      propagation rule) {
  using T = typename Weights::value_type;
  const auto g = mamba_gradients(be, w, tokens, target, gradient_options{.rule = rule, .embedding = true});
  const index_t L = static_cast<index_t>(tokens.size()), H = w.config.hidden_size;
  auto e = be.alloc(L * H);  // the embedding output
  be.embed(be.upload(tokens), w.embedding, e.data());
  const auto gh = be.download(g.embedding.data(), L * H), eh = be.download(e.data(), L * H);
  return {g.target, g.value,
          analysis::grad_input(matrix_view<const T>(gh.data(), L, H), matrix_view<const T>(eh.data(), L, H)), {}};
}

}  // namespace detail

// On any backend, with the model's weights in its memory (host_weights,
// gpu::to_device); the overloads taking a mamba_model run on the host.
template <class Backend, class T>
[[nodiscard]] attribution_result grad_input(const Backend& be, const mamba_weights<T>& w,
                                            std::span<const index_t> tokens, gradient_target target = {}) {
  return detail::gradient_times_input(be, w, tokens, target, propagation::gradient);
}

// MambaLRP's relevance of each position: Σ_h R[t][h], R = ∂̃target/∂e ⊙ e with
// ∂̃ the gradient under LRP's rules. Conservation: Σ_t score_t = target exactly
// when conv1d, in_proj and out_proj have no bias (each bias keeps its share).
template <class Backend, class T>
[[nodiscard]] attribution_result lrp(const Backend& be, const mamba_weights<T>& w, std::span<const index_t> tokens,
                                     gradient_target target = {}) {
  return detail::gradient_times_input(be, w, tokens, target, propagation::lrp);
}

struct mamba_attr_options {
  index_t start_layer = 0;   // the first layer of the rollout
  bool full_matrix = false;  // also the whole L × L rollout (O(L³) per layer, on the host)
  // attn-grad: D in the unified matrices (so that Â·x + offset = y); false
  // forms them without it, as the unified form's authors' code does.
  bool unified_skip = true;
};

namespace detail {

// The rollout of per-layer maps made by `layer_map(signals, gradients, map)`
// (map: L × L in double on the host, row-major, in place) from
// options.start_layer on, and its target row clamped at 0 (any family with
// mamba_gradients).
template <class Backend, class Weights, class LayerMap>
[[nodiscard]] attribution_result gradient_weighted_rollout(const Backend& be, const Weights& w,
                                                           std::span<const index_t> tokens, gradient_target target,
                                                           const mamba_attr_options& options, std::string_view where,
                                                           LayerMap&& layer_map) {
  if (options.start_layer < 0 || options.start_layer >= w.num_layers())
    mixlens::detail::fail(where, "options.start_layer", "a layer in [0, " + std::to_string(w.num_layers()) + ")",
                          options.start_layer);
  check_tokens(w.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size());
  const index_t pos = target.position < 0 || target.position >= L ? L - 1 : target.position;  // mamba_gradients checks it
  analysis::target_row_rollout row(L, pos);
  std::optional<analysis::full_rollout> full;
  if (options.full_matrix) full.emplace(L);
  const auto g = mamba_gradients(be, w, tokens, target, gradient_options{.embedding = false},
                                 [&](const auto& s, const auto& lg) {
                                   if (s.layer < options.start_layer) return;
                                   std::vector<double> map(static_cast<std::size_t>(L * L));
                                   layer_map(s, lg, map);
                                   row.add_earlier(map);
                                   if (full) full->add_earlier(map);
                                 });
  attribution_result r{g.target, g.value, row.row(), {}};
  for (auto& v : r.scores) v = std::max(v, 0.0);  // as the recipes clamp their output
  if (full) r.matrix = full->matrix();
  return r;
}

// E_d max(M_d, 0) over the operator's channels into map (host), and the
// tensor's [min, max].
template <class Backend, class Op>
std::pair<double, double> relu_channel_mean(const Backend& be, const Op& op, std::vector<double>& map,
                                            std::string_view where) {
  const index_t n = static_cast<index_t>(map.size());
  auto mean = be.alloc(n), minmax = be.alloc(3);
  analysis::aggregate_operator(be, op, channel_reduction::relu_mean, mean.data(), minmax.data());
  analysis::check_finite_blocks(be, op, minmax.data(), where);
  const auto m = be.download(mean.data(), n), range = be.download(minmax.data(), 2);
  std::copy(m.begin(), m.end(), map.begin());
  return {double(range[0]), double(range[1])};
}

// The token weights of a layer from its residual gradient (backend memory).
template <class Backend, class Gradients>
[[nodiscard]] std::vector<double> token_weights(const Backend& be, const Gradients& lg) {
  using T = typename Gradients::value_type;
  const index_t L = lg.residual.extent(0), H = lg.residual.extent(1);
  const auto g = be.download(lg.residual.data_handle(), L * H);
  return analysis::token_gradient_weight(matrix_view<const T>(g.data(), L, H));
}

// mamba-attr's and attn-grad's layer maps for the signals of any family: the
// paper's α of s.ssm() (per channel for Mamba, per head for Mamba-2), or the
// unified form's matrices (per channel).
template <class Backend, class Weights>
[[nodiscard]] attribution_result mamba_attr_rollout(const Backend& be, const Weights& w, std::span<const index_t> tokens,
                                                    gradient_target target, const mamba_attr_options& options) {
  constexpr std::string_view where = "mixlens::models::mamba_attr";
  return gradient_weighted_rollout(be, w, tokens, target, options, where,
                                   [&](const auto& s, const auto& lg, std::vector<double>& map) {
                                     const auto [lo, hi] = relu_channel_mean(be, s.ssm(), map, where);  // the paper's α
                                     analysis::mamba_attr_layer_map(map, lo, hi, token_weights(be, lg));
                                   });
}
template <class Backend, class Weights>
[[nodiscard]] attribution_result attn_grad_rollout(const Backend& be, const Weights& w, std::span<const index_t> tokens,
                                                   gradient_target target, const mamba_attr_options& options) {
  constexpr std::string_view where = "mixlens::models::attn_grad";
  return gradient_weighted_rollout(be, w, tokens, target, options, where,
                                   [&](const auto& s, const auto& lg, std::vector<double>& map) {
                                     (void)relu_channel_mean(be, unified_operator(be, s, {.offset = false, .skip = options.unified_skip}),
                                                            map, where);
                                     analysis::attn_grad_layer_map(map, token_weights(be, lg));
                                   });
}

}  // namespace detail

template <class Backend, class T>
[[nodiscard]] attribution_result mamba_attr(const Backend& be, const mamba_weights<T>& w,
                                            std::span<const index_t> tokens, gradient_target target = {},
                                            const mamba_attr_options& options = {}) {
  return detail::mamba_attr_rollout(be, w, tokens, target, options);
}

// Attention × gradient on the unified form (Zimerman, Ali, Wolf, ICLR 2025).
template <class Backend, class T>
[[nodiscard]] attribution_result attn_grad(const Backend& be, const mamba_weights<T>& w,
                                           std::span<const index_t> tokens, gradient_target target = {},
                                           const mamba_attr_options& options = {}) {
  return detail::attn_grad_rollout(be, w, tokens, target, options);
}

// The same on the host, for a loaded model.
template <class T>
[[nodiscard]] attribution_result grad_input(const mamba_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}) {
  return grad_input(host_backend<T>{}, host_weights(m).view(), tokens, target);
}
template <class T>
[[nodiscard]] attribution_result lrp(const mamba_model<T>& m, std::span<const index_t> tokens,
                                     gradient_target target = {}) {
  return lrp(host_backend<T>{}, host_weights(m).view(), tokens, target);
}
template <class T>
[[nodiscard]] attribution_result mamba_attr(const mamba_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}, const mamba_attr_options& options = {}) {
  return mamba_attr(host_backend<T>{}, host_weights(m).view(), tokens, target, options);
}
template <class T>
[[nodiscard]] attribution_result attn_grad(const mamba_model<T>& m, std::span<const index_t> tokens,
                                           gradient_target target = {}, const mamba_attr_options& options = {}) {
  return attn_grad(host_backend<T>{}, host_weights(m).view(), tokens, target, options);
}

}  // namespace mixlens::models
