// Attribution recipes for Mamba and Falcon-Mamba language models on the host,
// built on mamba_gradients (models/mamba_backward.hpp) and the pieces of
// analysis/attribution.hpp: one score per input position for one logit.
//
//  - grad_input: Σ_h ∂target/∂e ⊙ e at the embedding output e.
//  - mamba_attr (as AmeenAli/HiddenMambaAttn's generate_mamba_attr combines
//    them): per layer, the paper's α clamped at 0, min–max normalized over the
//    layer, averaged over channels, its columns weighted by the min–max normalized
//    per-token max of the positive gradient of the target with respect to the
//    layer's input; then I added, rows normalized, rolled out from start_layer to
//    the last layer; the target position's row.
// docs/attribution.md has the details.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "mixlens/analysis/attribution.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::models {

// Scores (L) for the resolved target and its value.
struct attribution_result {
  gradient_target target;
  double value = 0;
  std::vector<double> scores;
};

template <class T>
[[nodiscard]] attribution_result grad_input(const mamba_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}) {
  const auto g = mamba_gradients(m, tokens, target, gradient_options{.embedding = true});
  const index_t L = static_cast<index_t>(tokens.size()), H = m.config.hidden_size;
  matrix<T> e(L, H);  // the embedding output
  for (index_t t = 0; t < L; ++t)
    for (index_t h = 0; h < H; ++h) e(t, h) = m.embedding(tokens[static_cast<std::size_t>(t)], h);
  return {g.target, g.value,
          analysis::grad_input(matrix_view<const T>(g.embedding.data(), L, H), matrix_view<const T>(e.view()))};
}

struct mamba_attr_options {
  index_t start_layer = 0;  // the first layer of the rollout
};

template <class T>
[[nodiscard]] attribution_result mamba_attr(const mamba_model<T>& m, std::span<const index_t> tokens,
                                            gradient_target target = {}, const mamba_attr_options& options = {}) {
  constexpr std::string_view where = "mixlens::models::mamba_attr";
  if (options.start_layer < 0 || options.start_layer >= m.num_layers())
    mixlens::detail::fail(where, "options.start_layer", "a layer in [0, " + std::to_string(m.num_layers()) + ")",
                          options.start_layer);
  check_tokens(m.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size()), H = m.config.hidden_size;
  const index_t pos = target.position < 0 || target.position >= L ? L - 1 : target.position;  // mamba_gradients checks it
  const host_backend<T> be;
  const auto weights = host_weights(m);
  analysis::target_row_rollout rollout(L, pos);
  std::vector<T> map(static_cast<std::size_t>(L * L)), minmax(3);
  const auto g = mamba_gradients(be, weights.view(), tokens, target, gradient_options{.embedding = false},
                                 [&](const mamba_layer_signals<T>& s, const mamba_layer_gradients<T>& lg) {
                                   if (s.layer < options.start_layer) return;
                                   const auto op = s.ssm();  // the paper's α
                                   analysis::aggregate_operator(be, op, channel_reduction::relu_mean, map.data(), minmax.data());
                                   analysis::check_finite_blocks(be, op, minmax.data(), where);
                                   std::vector<double> layer(map.begin(), map.end());
                                   analysis::mamba_attr_layer_map(layer, double(minmax[0]), double(minmax[1]),
                                                                  analysis::token_gradient_weight(
                                                                      matrix_view<const T>(lg.residual.data_handle(), L, H)));
                                   rollout.add_earlier(layer);
                                 });
  std::vector<double> scores = rollout.row();
  for (auto& v : scores) v = std::max(v, 0.0);  // as the recipe clamps its output
  return {g.target, g.value, std::move(scores)};
}

}  // namespace mixlens::models
