// One entry point for the attribution methods of a Mamba, Falcon-Mamba or
// Mamba-2 language model on the host (a model of either family, or a
// language_model holding one): models::attribute(model, tokens, method, target)
// returns the scores over the input positions for the logit logits[P][T].
//
//  - raw, rollout: row P of the raw attention averaged over the layers / of
//    the rollout over all layers (analysis::model_maps, the maps mixlens-attn
//    writes as raw.npy and rollout.npy);
//  - mamba_attr, grad_input, attn_grad, lrp: models/mamba_attribution.hpp
//    (Mamba-2: models/mamba2_attribution.hpp);
//  - random: uniform scores from the seed (analysis::random_scores), the
//    baseline of the perturbation tests.
// target_evaluator is the model side of analysis::faithfulness.
// A new method is an enumerator, its name in attribution_method_names and a
// case in attribute().
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "mixlens/analysis/faithfulness.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/detail/parallel.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba2_attribution.hpp"
#include "mixlens/models/mamba_attribution.hpp"

namespace mixlens::models {

enum class attribution_method { raw, rollout, mamba_attr, grad_input, random, attn_grad, lrp };

// The names in declaration order, as the command-line tools spell them.
inline constexpr std::string_view attribution_method_names[] = {"raw",    "rollout", "mamba-attr", "grad-input",
                                                                "random", "attn-grad", "lrp"};
inline constexpr std::size_t attribution_method_count = std::size(attribution_method_names);

[[nodiscard]] constexpr std::string_view to_string(attribution_method m) {
  const auto i = static_cast<std::size_t>(m);
  return i < attribution_method_count ? attribution_method_names[i] : std::string_view("?");
}

// The method named `name` ("mamba-attr"; "mamba_attr" is accepted too), or nullopt.
[[nodiscard]] inline std::optional<attribution_method> parse_attribution_method(std::string_view name) {
  for (std::size_t i = 0; i < attribution_method_count; ++i) {
    const std::string_view n = attribution_method_names[i];
    bool same = n.size() == name.size();
    for (std::size_t c = 0; same && c < n.size(); ++c) same = n[c] == name[c] || (n[c] == '-' && name[c] == '_');
    if (same) return static_cast<attribution_method>(i);
  }
  return std::nullopt;
}

// "raw, rollout, …, attn-grad or lrp": for messages.
[[nodiscard]] inline std::string attribution_method_list() {
  std::string s;
  for (std::size_t i = 0; i < attribution_method_count; ++i)
    s += std::string(i == 0 ? "" : i + 1 == attribution_method_count ? " or " : ", ") +
         std::string(attribution_method_names[i]);
  return s;
}

struct attribute_options {
  mamba_attr_options mamba_attr{};  // mamba_attr (and the other rollout-based gradient methods)
  std::uint64_t seed = 0;           // random
};

namespace detail {

// The forward pass on the host with the maps of every layer (the paper's α,
// channel mean): the resolved target, its value and row P of raw or rollout.
template <class T, class C, class Layer>
[[nodiscard]] attribution_result attention_row(const lm_model<T, C, Layer>& m, std::span<const index_t> tokens,
                                               gradient_target target, bool rollout) {
  constexpr std::string_view where = "mixlens::models::attribute";
  check_tokens(m.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size()), V = m.vocab_size();
  check_target(where, target, L, V);
  const index_t pos = target.position < 0 ? L - 1 : target.position;
  const host_backend<T> be;
  const auto weights = host_weights(m);
  analysis::model_maps<host_backend<T>> maps(be, L);
  auto map = be.alloc(L * L), minmax = be.alloc(3), out = be.alloc(L * L);
  const auto logits = mamba_forward(be, weights.view(), tokens, [&](const auto& s) {
    const auto op = s.ssm();
    analysis::aggregate_operator(be, op, channel_reduction::mean, map.data(), minmax.data());
    analysis::check_finite_blocks(be, op, minmax.data(), "mixlens::analysis::raw_attention");
    maps.add(map.data(), minmax.data());
  });
  const T* r = rollout ? maps.rollout() : (maps.raw(out.data()), out.data());
  const std::span<const T> row(logits.data() + pos * V, static_cast<std::size_t>(V));
  const index_t tok = resolve_target_token(where, row, pos, target.token);
  return {{pos, tok}, double(row[static_cast<std::size_t>(tok)]),
          std::vector<double>(r + pos * L, r + (pos + 1) * L), {}};
}

}  // namespace detail

// The resolved target (negative position: the last; negative token: the
// argmax there) and its value, from one forward pass; no scores.
template <class T, class C, class Layer>
[[nodiscard]] attribution_result resolve_target(const lm_model<T, C, Layer>& m, std::span<const index_t> tokens,
                                                gradient_target target) {
  constexpr std::string_view where = "mixlens::models::attribute";
  check_tokens(m.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size()), V = m.vocab_size();
  detail::check_target(where, target, L, V);
  const index_t pos = target.position < 0 ? L - 1 : target.position;
  const auto weights = host_weights(m);
  const auto logits = mamba_forward(host_backend<T>{}, weights.view(), tokens, [](const auto&) {});
  const std::span<const T> row(logits.data() + pos * V, static_cast<std::size_t>(V));
  const index_t tok = detail::resolve_target_token(where, row, pos, target.token);
  return {{pos, tok}, double(row[static_cast<std::size_t>(tok)]), {}, {}};
}


// Scores over the positions of `tokens` for the logit `target` (negative
// position: the last; negative token: the argmax there), by `method`.
template <class T, class C, class Layer>
[[nodiscard]] attribution_result attribute(const lm_model<T, C, Layer>& m, std::span<const index_t> tokens,
                                           attribution_method method, gradient_target target = {},
                                           const attribute_options& options = {}) {
  switch (method) {
    case attribution_method::raw: return detail::attention_row(m, tokens, target, false);
    case attribution_method::rollout: return detail::attention_row(m, tokens, target, true);
    case attribution_method::mamba_attr: return mamba_attr(m, tokens, target, options.mamba_attr);
    case attribution_method::grad_input: return grad_input(m, tokens, target);
    case attribution_method::attn_grad: return attn_grad(m, tokens, target, options.mamba_attr);
    case attribution_method::lrp: return lrp(m, tokens, target);
    case attribution_method::random: {
      auto r = resolve_target(m, tokens, target);
      r.scores = analysis::random_scores(static_cast<index_t>(tokens.size()), options.seed);
      return r;
    }
  }
  mixlens::detail::fail("mixlens::models::attribute", "method", attribution_method_list(),
                        static_cast<int>(method));
}

// The same for a model of either family.
template <class T>
[[nodiscard]] attribution_result resolve_target(const language_model<T>& m, std::span<const index_t> tokens,
                                                gradient_target target) {
  return std::visit([&](const auto& model) { return resolve_target(model, tokens, target); }, m);
}
template <class T>
[[nodiscard]] attribution_result attribute(const language_model<T>& m, std::span<const index_t> tokens,
                                           attribution_method method, gradient_target target = {},
                                           const attribute_options& options = {}) {
  return std::visit([&](const auto& model) { return attribute(model, tokens, method, target, options); }, m);
}

// The evaluator of analysis::faithfulness for a language model on the host:
// per perturbed sequence, one forward pass and logits[target_position][token]
// with its softmax probability (over the row, computed in double). The
// sequences of a batch run on `threads` OpenMP threads (1: in order on the
// caller; 0: every core); the forward's own products run on the BLAS, so more
// threads than cores over both would oversubscribe them. Model: mamba_model<T>
// or mamba2_model<T>.
template <class T, class Model = mamba_model<T>>
class target_evaluator {
 public:
  target_evaluator(const Model& m, index_t token, int threads = 1)
      : model_(&m), weights_(host_weights(m)), token_(token),
        threads_(mixlens::detail::resolve_threads("mixlens::models::target_evaluator", threads)) {
    if (token < 0 || token >= m.vocab_size())
      mixlens::detail::fail("mixlens::models::target_evaluator", "token",
                            "a token in [0, " + std::to_string(m.vocab_size()) + ")", token);
  }

  [[nodiscard]] analysis::target_output evaluate(const analysis::perturbed_sequence& s) const {
    const std::span<const index_t> tokens(s.tokens);
    const index_t V = model_->vocab_size();
    const auto logits = mamba_forward(host_backend<T>{}, weights_.view(), tokens, [](const auto&) {});
    const T* row = logits.data() + s.target_position * V;
    double top = double(row[0]);
    for (index_t v = 1; v < V; ++v) top = std::max(top, double(row[v]));
    double sum = 0;
    for (index_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - top);
    const double logit = double(row[token_]);
    return {logit, std::exp(logit - top) / sum};
  }

  [[nodiscard]] std::vector<analysis::target_output> operator()(std::span<const analysis::perturbed_sequence> batch) const {
    for (const auto& s : batch) {  // before any thread starts
      check_tokens(model_->vocab_size(), std::span<const index_t>(s.tokens));
      if (s.target_position < 0 || s.target_position >= static_cast<index_t>(s.tokens.size()))
        mixlens::detail::fail("mixlens::models::target_evaluator", "target_position",
                              "a position in [0, " + std::to_string(s.tokens.size()) + ")", s.target_position);
    }
    std::vector<analysis::target_output> out(batch.size());
    mixlens::detail::parallel_for(static_cast<index_t>(batch.size()), threads_, [&](index_t i) {
      out[static_cast<std::size_t>(i)] = evaluate(batch[static_cast<std::size_t>(i)]);
    });
    return out;
  }

 private:
  const Model* model_;
  decltype(host_weights(std::declval<const Model&>())) weights_;
  index_t token_;
  index_t threads_;
};

template <class T>
target_evaluator(const mamba_model<T>&, index_t, int = 1) -> target_evaluator<T, mamba_model<T>>;
template <class T>
target_evaluator(const mamba2_model<T>&, index_t, int = 1) -> target_evaluator<T, mamba2_model<T>>;

}  // namespace mixlens::models
