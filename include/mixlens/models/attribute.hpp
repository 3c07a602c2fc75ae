// One entry point for the attribution methods of a Mamba, Falcon-Mamba or
// Mamba-2 language model: models::attribute(backend, weights, tokens, method,
// target) on any backend, or attribute(model, tokens, …) on the host (a model
// of either family, or a language_model holding one), returns the scores over
// the input positions for the logit logits[P][T].
//
//  - raw, rollout: row P of the raw attention averaged over the layers / of
//    the rollout over all layers (analysis::model_maps, the maps mixlens-attn
//    writes as raw.npy and rollout.npy);
//  - mamba_attr, grad_input, attn_grad, lrp: models/mamba_attribution.hpp
//    (Mamba-2: models/mamba2_attribution.hpp);
//  - random: uniform scores from the seed (analysis::random_scores), the
//    baseline of the perturbation tests.
// target_evaluator (host, per sequence) and batch_target_evaluator (any
// backend, batched) are the model side of analysis::faithfulness;
// faithfulness_of_methods runs every method's perturbation tests on one
// sequence, as mixlens-eval does.
// A new method is an enumerator, its name in attribution_method_names and a
// case in attribute().
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <map>
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
#include "mixlens/models/mamba_batch.hpp"
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

// The target logits[pos][token] (a negative token: the argmax of the row) and
// its value, from logits (L × V) in the backend's memory.
template <class Backend, class T>
[[nodiscard]] attribution_result read_target(const Backend& be, const T* logits, index_t pos, index_t V, index_t token) {
  const auto row = be.download(logits + pos * V, V);
  const index_t tok = resolve_target_token("mixlens::models::attribute", std::span<const T>(row), pos, token);
  return {{pos, tok}, double(row[static_cast<std::size_t>(tok)]), {}, {}};
}

// The forward pass with the maps of every layer (the paper's α, channel
// mean): the resolved target, its value and row P of raw or rollout.
template <class Backend, class Weights>
[[nodiscard]] attribution_result attention_row(const Backend& be, const Weights& w, std::span<const index_t> tokens,
                                               gradient_target target, bool rollout) {
  constexpr std::string_view where = "mixlens::models::attribute";
  check_tokens(w.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size()), V = w.vocab_size();
  check_target(where, target, L, V);
  const index_t pos = target.position < 0 ? L - 1 : target.position;
  analysis::model_maps<Backend> maps(be, L);
  auto map = be.alloc(L * L), minmax = be.alloc(3), out = be.alloc(L * L);
  const auto logits = mamba_forward(be, w, tokens, [&](const auto& s) {
    const auto op = s.ssm();
    analysis::aggregate_operator(be, op, channel_reduction::mean, map.data(), minmax.data());
    analysis::check_finite_blocks(be, op, minmax.data(), "mixlens::analysis::raw_attention");
    maps.add(map.data(), minmax.data());
  });
  const auto* r = rollout ? maps.rollout() : (maps.raw(out.data()), out.data());
  attribution_result result = read_target(be, logits.data(), pos, V, target.token);
  const auto scores = be.download(r + pos * L, L);
  result.scores.assign(scores.begin(), scores.end());
  return result;
}

// logits[token] and its softmax probability over the row (in double).
template <class T>
[[nodiscard]] analysis::target_output target_value(std::span<const T> row, index_t token) {
  double top = double(row[0]);
  for (const T v : row) top = std::max(top, double(v));
  double sum = 0;
  for (const T v : row) sum += std::exp(double(v) - top);
  const double logit = double(row[static_cast<std::size_t>(token)]);
  return {logit, std::exp(logit - top) / sum};
}

// The checks of an evaluator's batch, before any work.
inline void check_perturbed(index_t vocab_size, std::span<const analysis::perturbed_sequence> batch,
                            std::string_view where) {
  for (const auto& s : batch) {
    check_tokens(vocab_size, std::span<const index_t>(s.tokens));
    if (s.target_position < 0 || s.target_position >= static_cast<index_t>(s.tokens.size()))
      mixlens::detail::fail(where, "target_position", "a position in [0, " + std::to_string(s.tokens.size()) + ")",
                            s.target_position);
  }
}

}  // namespace detail

// The resolved target (negative position: the last; negative token: the
// argmax there) and its value, from one forward pass on `be`; no scores.
template <class Backend, class Weights>
[[nodiscard]] attribution_result resolve_target(const Backend& be, const Weights& w, std::span<const index_t> tokens,
                                                gradient_target target) {
  constexpr std::string_view where = "mixlens::models::attribute";
  check_tokens(w.vocab_size(), tokens);
  const index_t L = static_cast<index_t>(tokens.size()), V = w.vocab_size();
  detail::check_target(where, target, L, V);
  const index_t pos = target.position < 0 ? L - 1 : target.position;
  const auto logits = mamba_forward(be, w, tokens, [](const auto&) {});
  return detail::read_target(be, logits.data(), pos, V, target.token);
}

// Scores over the positions of `tokens` for the logit `target` (negative
// position: the last; negative token: the argmax there), by `method`, on `be`
// with the weights `w` (mamba_weights or mamba2_weights in its memory).
template <class Backend, class Weights>
[[nodiscard]] attribution_result attribute(const Backend& be, const Weights& w, std::span<const index_t> tokens,
                                           attribution_method method, gradient_target target = {},
                                           const attribute_options& options = {}) {
  switch (method) {
    case attribution_method::raw: return detail::attention_row(be, w, tokens, target, false);
    case attribution_method::rollout: return detail::attention_row(be, w, tokens, target, true);
    case attribution_method::mamba_attr: return mamba_attr(be, w, tokens, target, options.mamba_attr);
    case attribution_method::grad_input: return grad_input(be, w, tokens, target);
    case attribution_method::attn_grad: return attn_grad(be, w, tokens, target, options.mamba_attr);
    case attribution_method::lrp: return lrp(be, w, tokens, target);
    case attribution_method::random: {
      auto r = resolve_target(be, w, tokens, target);
      r.scores = analysis::random_scores(static_cast<index_t>(tokens.size()), options.seed);
      return r;
    }
  }
  mixlens::detail::fail("mixlens::models::attribute", "method", attribution_method_list(),
                        static_cast<int>(method));
}

// The same on the host for a loaded model.
template <class T, class C, class Layer>
[[nodiscard]] attribution_result resolve_target(const lm_model<T, C, Layer>& m, std::span<const index_t> tokens,
                                                gradient_target target) {
  return resolve_target(host_backend<T>{}, host_weights(m).view(), tokens, target);
}
template <class T, class C, class Layer>
[[nodiscard]] attribution_result attribute(const lm_model<T, C, Layer>& m, std::span<const index_t> tokens,
                                           attribution_method method, gradient_target target = {},
                                           const attribute_options& options = {}) {
  return attribute(host_backend<T>{}, host_weights(m).view(), tokens, method, target, options);
}

// ---- faithfulness of several methods on one sequence --------------------------------

// One method's attribution and its perturbation curves (random: the target
// without scores, and the curves averaged over the draws).
struct method_faithfulness {
  attribution_method method;
  attribution_result attribution;
  analysis::faithfulness_result result;
};

struct faithfulness_run_options {
  analysis::faithfulness_options curves{};  // target_position: see `target`
  index_t random_draws = 10;                // random: draws averaged (seeds seed, seed + 1, …)
  attribute_options attribute{};            // start layer, attn-grad's D, the random seed
};

// What mixlens-eval does for each sequence: the target resolved once on the
// unperturbed tokens (`target`: negative position the last, negative token the
// argmax there), every method's scores for it on `be`, then the perturbed
// sequences of all methods and all random draws in one call of
// `evaluate(std::span<const analysis::perturbed_sequence>, index_t token)` (a
// batched evaluator runs them together). options.curves.target_position is
// replaced by the resolved position.
template <class Backend, class Weights, class Evaluate>
[[nodiscard]] std::vector<method_faithfulness> faithfulness_of_methods(
    const Backend& be, const Weights& w, std::span<const index_t> tokens, std::span<const attribution_method> methods,
    gradient_target target, const faithfulness_run_options& options, Evaluate&& evaluate) {
  const attribution_result resolved = resolve_target(be, w, tokens, target);
  std::vector<method_faithfulness> out;
  std::vector<std::vector<double>> sets;
  for (const attribution_method m : methods) {
    if (m == attribution_method::random) {
      out.push_back({m, resolved, {}});
      for (auto& d : analysis::random_draws(static_cast<index_t>(tokens.size()), options.random_draws,
                                            options.attribute.seed))
        sets.push_back(std::move(d));
      continue;
    }
    auto a = attribute(be, w, tokens, m, resolved.target, options.attribute);
    sets.push_back(a.scores);
    out.push_back({m, std::move(a), {}});
  }
  analysis::faithfulness_options curves = options.curves;
  curves.target_position = resolved.target.position;
  const index_t token = resolved.target.token;
  const auto results = analysis::faithfulness(
      tokens, std::span<const std::vector<double>>(sets),
      [&](std::span<const analysis::perturbed_sequence> batch) { return evaluate(batch, token); }, curves);
  std::size_t next = 0;
  for (auto& r : out) {
    const std::size_t n = r.method == attribution_method::random ? static_cast<std::size_t>(options.random_draws) : 1;
    r.result = analysis::average(std::span<const analysis::faithfulness_result>(results.data() + next, n));
    next += n;
  }
  return out;
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
    const index_t V = model_->vocab_size();
    const auto logits = mamba_forward(host_backend<T>{}, weights_.view(), std::span<const index_t>(s.tokens), [](const auto&) {});
    return detail::target_value(std::span<const T>(logits.data() + s.target_position * V, static_cast<std::size_t>(V)),
                                token_);
  }

  [[nodiscard]] std::vector<analysis::target_output> operator()(std::span<const analysis::perturbed_sequence> batch) const {
    detail::check_perturbed(model_->vocab_size(), batch, "mixlens::models::target_evaluator");  // before any thread starts
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

// The evaluator of analysis::faithfulness on any backend, for every language
// family (Weights: mamba_weights or mamba2_weights; bind the target token:
// [&](auto b) { return e(b, token); }): the sequences of a call, each distinct
// one once, grouped by length and run up to `max_batch` (and about
// `max_tokens` ids) at a time through the family's batched forward
// (models/mamba_batch.hpp), which forms only the target rows of the logits.
// `be` and the weights' memory must outlive the evaluator.
template <class Backend, class Weights>
class batch_target_evaluator {
  using T = typename Weights::value_type;

 public:
  batch_target_evaluator(const Backend& be, const Weights& w, index_t max_batch = 128,
                         index_t max_tokens = index_t(1) << 16)
      : forward_(be, w, max_batch), be_(be), vocab_(w.vocab_size()), max_tokens_(max_tokens) {
    mixlens::detail::check_positive("mixlens::models::batch_target_evaluator", "max_tokens", max_tokens);
  }

  // logits[target_position][token] and its probability for every sequence.
  [[nodiscard]] std::vector<analysis::target_output> operator()(std::span<const analysis::perturbed_sequence> batch,
                                                                index_t token) const {
    constexpr std::string_view where = "mixlens::models::batch_target_evaluator";
    if (token < 0 || token >= vocab_)
      mixlens::detail::fail(where, "token", "a token in [0, " + std::to_string(vocab_) + ")", token);
    detail::check_perturbed(vocab_, batch, where);
    // Distinct sequences by (length, target, ids): the unperturbed and the fully
    // perturbed sequence recur in every curve.
    std::map<std::pair<index_t, const analysis::perturbed_sequence*>, std::vector<std::size_t>, order> groups;
    for (std::size_t i = 0; i < batch.size(); ++i)
      groups[{static_cast<index_t>(batch[i].tokens.size()), &batch[i]}].push_back(i);
    std::vector<analysis::target_output> out(batch.size());
    std::vector<index_t> ids, positions;
    std::vector<const std::vector<std::size_t>*> owners;
    const auto flush = [&] {
      if (owners.empty()) return;
      const auto logits = forward_.target_logits(ids, positions);
      const auto host = be_.download(logits.data(), static_cast<index_t>(owners.size()) * vocab_);
      for (std::size_t b = 0; b < owners.size(); ++b) {
        const auto value = detail::target_value(
            std::span<const T>(host.data() + b * static_cast<std::size_t>(vocab_), static_cast<std::size_t>(vocab_)),
            token);
        for (const std::size_t i : *owners[b]) out[i] = value;
      }
      ids.clear(), positions.clear(), owners.clear();
    };
    index_t length = -1;
    for (const auto& [key, members] : groups) {
      const index_t L = key.first;
      const index_t per_pass = std::clamp<index_t>(max_tokens_ / L, 1, forward_.max_batch());
      if (L != length || static_cast<index_t>(owners.size()) == per_pass) flush();
      length = L;
      ids.insert(ids.end(), key.second->tokens.begin(), key.second->tokens.end());
      positions.push_back(key.second->target_position);
      owners.push_back(&members);
    }
    flush();
    return out;
  }

 private:
  struct order {
    bool operator()(const std::pair<index_t, const analysis::perturbed_sequence*>& a,
                    const std::pair<index_t, const analysis::perturbed_sequence*>& b) const {
      if (a.first != b.first) return a.first < b.first;
      if (a.second->target_position != b.second->target_position)
        return a.second->target_position < b.second->target_position;
      return a.second->tokens < b.second->tokens;
    }
  };

  batch_forward_t<Backend, Weights> forward_;
  const Backend& be_;
  index_t vocab_, max_tokens_;
};

template <class T>
target_evaluator(const mamba_model<T>&, index_t, int = 1) -> target_evaluator<T, mamba_model<T>>;
template <class T>
target_evaluator(const mamba2_model<T>&, index_t, int = 1) -> target_evaluator<T, mamba2_model<T>>;

}  // namespace mixlens::models
