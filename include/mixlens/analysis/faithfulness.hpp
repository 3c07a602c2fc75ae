// Perturbation tests of an attribution (faithfulness): the input positions are
// perturbed in the order of their scores, most relevant first (MoRF) or least
// relevant first (LeRF), a fraction k/steps of them at step k, and the target's
// logit and probability are read after each step. A faithful attribution makes
// the MoRF curve fall fast and the LeRF curve slowly: ΔA^F = AUC(LeRF) − AUC(MoRF)
// is large. Pure host code: the model is reached only through the evaluator.
// docs/attribution.md ("Faithfulness") has the definitions and the choices.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::analysis {

// remove: the perturbed positions are deleted (the sequence gets shorter and the
// target moves left by the number deleted before it); replace: they hold
// replacement_token instead (length and target position unchanged).
enum class perturbation_mode { remove, replace };

[[nodiscard]] constexpr std::string_view to_string(perturbation_mode m) {
  return mixlens::detail::enum_name(m, {"remove", "replace"});
}

struct faithfulness_options {
  index_t steps = 10;                                 // curve points 0..steps
  perturbation_mode mode = perturbation_mode::replace;
  index_t replacement_token = 0;                      // for replace
  index_t target_position = -1;                       // never perturbed; negative: the last position
};

// One sequence to evaluate, and where its target logit is read.
struct perturbed_sequence {
  std::vector<index_t> tokens;
  index_t target_position = 0;
};

// What the evaluator returns per sequence: logits[target_position][token] and
// its softmax probability.
struct target_output {
  double logit = 0, probability = 0;
};

// Values at x = k/steps, k = 0..steps, and their trapezoid areas over [0, 1].
struct perturbation_curve {
  std::vector<double> logit, probability;
  double auc_logit = 0, auc_probability = 0;
};

struct faithfulness_result {
  perturbation_curve morf, lerf;
  double delta_logit = 0, delta_probability = 0;  // AUC(LeRF) − AUC(MoRF)
};

// The trapezoid rule over x = k/(n−1) in [0, 1]; one value: that value.
[[nodiscard]] inline double trapezoid_auc(std::span<const double> y) {
  if (y.empty()) mixlens::detail::fail("mixlens::analysis::trapezoid_auc", "y", "at least one value", 0);
  if (y.size() == 1) return y[0];
  double s = 0;
  for (std::size_t i = 1; i < y.size(); ++i) s += 0.5 * (y[i - 1] + y[i]);
  return s / double(y.size() - 1);
}

// The number of perturbed positions at step k of `steps` out of n perturbable
// ones: floor(k·n/steps), so step 0 perturbs none and the last step all.
[[nodiscard]] inline index_t perturbed_count(index_t k, index_t steps, index_t n) { return k * n / steps; }

}  // namespace mixlens::analysis

// (in mixlens::detail: an analysis::detail would hide mixlens::detail from the
// analysis headers)
namespace mixlens::detail {

inline constexpr std::string_view faithfulness_where = "mixlens::analysis::faithfulness";

inline index_t resolve_faithfulness_target(index_t L, index_t target) {
  if (target >= L)
    mixlens::detail::fail(faithfulness_where, "options.target_position", "a position in [0, " + std::to_string(L) + ")",
                          target);
  return target < 0 ? L - 1 : target;
}

inline void check_faithfulness_inputs(std::span<const index_t> tokens, std::span<const double> scores,
                                      const analysis::faithfulness_options& o) {
  constexpr auto where = faithfulness_where;
  if (scores.empty()) mixlens::detail::fail(where, "scores", "at least one score", "an empty list");
  if (scores.size() != tokens.size())
    mixlens::detail::fail(where, "scores", "one score per token (" + std::to_string(tokens.size()) + ")", scores.size());
  if (o.steps < 1) mixlens::detail::fail(where, "options.steps", "at least 1", o.steps);
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (!std::isfinite(scores[i]))
      mixlens::detail::fail(where, "scores", "finite values", std::to_string(scores[i]) + " at " + std::to_string(i));
  (void)resolve_faithfulness_target(static_cast<index_t>(tokens.size()), o.target_position);
}

}  // namespace mixlens::detail

namespace mixlens::analysis {


// The perturbable positions (all but the target) in perturbation order: by
// descending score for MoRF, ascending for LeRF; equal scores by position, in
// both orders, so that the result does not depend on the sort.
[[nodiscard]] inline std::vector<index_t> perturbation_order(std::span<const double> scores, index_t target,
                                                             bool most_relevant_first) {
  std::vector<index_t> order;
  for (index_t i = 0; i < static_cast<index_t>(scores.size()); ++i)
    if (i != target) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
    const double sa = scores[static_cast<std::size_t>(a)], sb = scores[static_cast<std::size_t>(b)];
    return most_relevant_first ? sa > sb : sa < sb;
  });
  return order;
}

// The steps + 1 sequences of one curve: the first `perturbed_count` positions
// of `order` perturbed.
[[nodiscard]] inline std::vector<perturbed_sequence> perturbed_sequences(std::span<const index_t> tokens,
                                                                         std::span<const index_t> order, index_t target,
                                                                         const faithfulness_options& o) {
  const index_t L = static_cast<index_t>(tokens.size()), n = static_cast<index_t>(order.size());
  std::vector<perturbed_sequence> out;
  std::vector<char> hit(static_cast<std::size_t>(L));
  for (index_t k = 0; k <= o.steps; ++k) {
    std::fill(hit.begin(), hit.end(), char(0));
    const index_t count = perturbed_count(k, o.steps, n);
    for (index_t i = 0; i < count; ++i) hit[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 1;
    perturbed_sequence s;
    s.target_position = target;
    for (index_t t = 0; t < L; ++t) {
      const bool h = hit[static_cast<std::size_t>(t)];
      if (!h) s.tokens.push_back(tokens[static_cast<std::size_t>(t)]);
      else if (o.mode == perturbation_mode::replace) s.tokens.push_back(o.replacement_token);
      else if (t < target) --s.target_position;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// MoRF and LeRF curves of each score vector of `score_sets` (one score per
// token each). `evaluate` takes a std::span<const perturbed_sequence> and
// returns one target_output per sequence (in order): the 2·(steps + 1)
// sequences of every score vector come in one call, so that the evaluator may
// run them side by side (or batched, and each distinct sequence once).
template <class Evaluate>
[[nodiscard]] std::vector<faithfulness_result> faithfulness(std::span<const index_t> tokens,
                                                            std::span<const std::vector<double>> score_sets,
                                                            Evaluate&& evaluate, const faithfulness_options& o = {}) {
  for (const auto& scores : score_sets) mixlens::detail::check_faithfulness_inputs(tokens, scores, o);
  const index_t target = mixlens::detail::resolve_faithfulness_target(static_cast<index_t>(tokens.size()), o.target_position);
  std::vector<perturbed_sequence> batch;
  for (const auto& scores : score_sets)
    for (const bool morf : {true, false}) {
      auto curve = perturbed_sequences(tokens, perturbation_order(scores, target, morf), target, o);
      batch.insert(batch.end(), std::make_move_iterator(curve.begin()), std::make_move_iterator(curve.end()));
    }
  const std::vector<target_output> values = evaluate(std::span<const perturbed_sequence>(batch));
  if (values.size() != batch.size())
    mixlens::detail::fail(mixlens::detail::faithfulness_where, "evaluate", "one result per sequence (" +
                          std::to_string(batch.size()) + ")", values.size());
  const std::size_t points = static_cast<std::size_t>(o.steps + 1);
  std::vector<faithfulness_result> out(score_sets.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    faithfulness_result& r = out[i / (2 * points)];
    perturbation_curve& c = i % (2 * points) < points ? r.morf : r.lerf;
    c.logit.push_back(values[i].logit);
    c.probability.push_back(values[i].probability);
  }
  for (faithfulness_result& r : out) {
    for (perturbation_curve* c : {&r.morf, &r.lerf}) {
      c->auc_logit = trapezoid_auc(c->logit);
      c->auc_probability = trapezoid_auc(c->probability);
    }
    r.delta_logit = r.lerf.auc_logit - r.morf.auc_logit;
    r.delta_probability = r.lerf.auc_probability - r.morf.auc_probability;
  }
  return out;
}

// The curves of one score vector.
template <class Evaluate>
[[nodiscard]] faithfulness_result faithfulness(std::span<const index_t> tokens, std::span<const double> scores,
                                               Evaluate&& evaluate, const faithfulness_options& o = {}) {
  const std::vector<double> one(scores.begin(), scores.end());
  return faithfulness(tokens, std::span<const std::vector<double>>(&one, 1), evaluate, o).front();
}

// The element-wise mean of results of equal steps (curves, AUCs and ΔA^F
// averaged alike: the AUC is linear in the curve).
[[nodiscard]] inline faithfulness_result average(std::span<const faithfulness_result> results) {
  if (results.empty()) mixlens::detail::fail("mixlens::analysis::average", "results", "at least one result", 0);
  faithfulness_result m = results[0];
  const auto add = [](perturbation_curve& a, const perturbation_curve& b) {
    mixlens::detail::check_equal("mixlens::analysis::average", "results", "curve points", a.logit.size(), b.logit.size());
    for (std::size_t i = 0; i < a.logit.size(); ++i) a.logit[i] += b.logit[i], a.probability[i] += b.probability[i];
    a.auc_logit += b.auc_logit, a.auc_probability += b.auc_probability;
  };
  for (std::size_t i = 1; i < results.size(); ++i) {
    add(m.morf, results[i].morf);
    add(m.lerf, results[i].lerf);
    m.delta_logit += results[i].delta_logit, m.delta_probability += results[i].delta_probability;
  }
  const double n = double(results.size());
  for (perturbation_curve* c : {&m.morf, &m.lerf}) {
    for (auto& v : c->logit) v /= n;
    for (auto& v : c->probability) v /= n;
    c->auc_logit /= n, c->auc_probability /= n;
  }
  m.delta_logit /= n, m.delta_probability /= n;
  return m;
}

// Scores uniform in [0, 1) from splitmix64(seed): the same on every platform.
[[nodiscard]] inline std::vector<double> random_scores(index_t length, std::uint64_t seed) {
  mixlens::detail::splitmix64 g(seed);
  std::vector<double> s(static_cast<std::size_t>(length));
  for (auto& v : s) v = g.uniform();
  return s;
}

// The `draws` random score vectors of the random-attribution baseline (draw d
// seeded with seed + d).
[[nodiscard]] inline std::vector<std::vector<double>> random_draws(index_t length, index_t draws, std::uint64_t seed) {
  if (draws < 1) mixlens::detail::fail("mixlens::analysis::random_baseline", "draws", "at least 1", draws);
  std::vector<std::vector<double>> out;
  for (index_t d = 0; d < draws; ++d) out.push_back(random_scores(length, seed + static_cast<std::uint64_t>(d)));
  return out;
}

// The random-attribution baseline: faithfulness of random_draws, averaged.
template <class Evaluate>
[[nodiscard]] faithfulness_result random_baseline(std::span<const index_t> tokens, Evaluate&& evaluate,
                                                  const faithfulness_options& o = {}, index_t draws = 10,
                                                  std::uint64_t seed = 0) {
  const auto sets = random_draws(static_cast<index_t>(tokens.size()), draws, seed);
  const auto all = faithfulness(tokens, std::span<const std::vector<double>>(sets), evaluate, o);
  return average(all);
}

}  // namespace mixlens::analysis
