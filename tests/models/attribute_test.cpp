#define BOOST_TEST_MODULE attribute
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "common/batch_checks.hpp"
#include "common/model_fixtures.hpp"
#include "mixlens/analysis/faithfulness.hpp"
#include "mixlens/models/attribute.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;

namespace {

const mamba_model<double>& demo() {
  static const auto m = load_mamba<double>(test_data_dir() / "mamba_demo");
  return m;
}

// logits[P][T] of a plain forward pass and its softmax probability.
analysis::target_output direct(const std::vector<index_t>& tokens, index_t P, index_t T) {
  const auto w = host_weights(demo());
  const auto logits = mamba_forward(host_backend<double>{}, w.view(), std::span<const index_t>(tokens), [](const auto&) {});
  const index_t V = demo().vocab_size();
  const double* row = logits.data() + P * V;
  double top = row[0], sum = 0;
  for (index_t v = 0; v < V; ++v) top = std::max(top, row[v]);
  for (index_t v = 0; v < V; ++v) sum += std::exp(row[v] - top);
  return {row[T], std::exp(row[T] - top) / sum};
}

}  // namespace

BOOST_AUTO_TEST_CASE(method_names_round_trip) {
  for (std::size_t i = 0; i < attribution_method_count; ++i) {
    const auto m = static_cast<attribution_method>(i);
    BOOST_TEST((parse_attribution_method(to_string(m)).value() == m), to_string(m));
  }
  BOOST_TEST((parse_attribution_method("mamba_attr").value() == attribution_method::mamba_attr));
  BOOST_TEST(!parse_attribution_method("lime").has_value());
  BOOST_TEST(attribution_method_list() == "raw, rollout, mamba-attr, grad-input, random, attn-grad or lrp");
}

BOOST_AUTO_TEST_CASE(dispatcher_matches_the_methods) {
  const auto tokens = tokens_of("mamba_demo", 0);
  const std::span<const index_t> t(tokens);
  const index_t L = static_cast<index_t>(tokens.size());
  const auto gi = attribute(demo(), t, attribution_method::grad_input), gi_direct = grad_input(demo(), t);
  BOOST_TEST(gi.scores == gi_direct.scores, boost::test_tools::per_element());
  const auto raw = attribute(demo(), t, attribution_method::raw), roll = attribute(demo(), t, attribution_method::rollout);
  BOOST_TEST(raw.target.position == L - 1);
  BOOST_TEST(raw.target.token == gi.target.token);  // the same argmax
  BOOST_TEST(raw.value == gi.value, boost::test_tools::tolerance(1e-12));
  BOOST_TEST_REQUIRE(raw.scores.size() == std::size_t(L));
  double sum = 0;  // the rollout's rows sum to 1 (non-negative maps)
  for (double v : roll.scores) sum += v;
  BOOST_TEST(sum == 1.0, boost::test_tools::tolerance(1e-9));
  const auto r1 = attribute(demo(), t, attribution_method::random, {}, {.seed = 3}),
             r2 = attribute(demo(), t, attribution_method::random, {}, {.seed = 3});
  BOOST_TEST(r1.scores == r2.scores, boost::test_tools::per_element());
  BOOST_CHECK_THROW((void)attribute(demo(), t, attribution_method::raw, {.position = L}), mixlens::error);
}

BOOST_AUTO_TEST_CASE(curves_start_at_the_unperturbed_logit_and_end_at_a_direct_forward) {
  const auto tokens = tokens_of("mamba_demo", 0);
  const std::span<const index_t> t(tokens);
  const index_t L = static_cast<index_t>(tokens.size());
  const auto a = attribute(demo(), t, attribution_method::grad_input);
  const index_t P = a.target.position, T = a.target.token;
  const target_evaluator<double> eval(demo(), T, 2);
  for (auto mode : {analysis::perturbation_mode::replace, analysis::perturbation_mode::remove}) {
    const analysis::faithfulness_options o{.steps = 5, .mode = mode, .replacement_token = 0, .target_position = P};
    const auto r = analysis::faithfulness(t, std::span<const double>(a.scores), eval, o);
    BOOST_TEST(r.morf.logit.front() == a.value, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.lerf.logit.front() == a.value, boost::test_tools::tolerance(1e-12));
    // Everything but the target perturbed: the same sequence in both orders.
    std::vector<index_t> all = mode == analysis::perturbation_mode::replace ? std::vector<index_t>(std::size_t(L), 0)
                                                                           : std::vector<index_t>{};
    if (mode == analysis::perturbation_mode::replace) all[std::size_t(P)] = tokens[std::size_t(P)];
    else all.push_back(tokens[std::size_t(P)]);
    const auto want = direct(all, mode == analysis::perturbation_mode::replace ? P : 0, T);
    BOOST_TEST(r.morf.logit.back() == want.logit, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.lerf.probability.back() == want.probability, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.morf.probability.front() == direct(tokens, P, T).probability, boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(mamba2_models_take_every_method) {
  // Through the language_model variant: each method equals its recipe, the
  // maps' rows are rows of the rollout, the evaluator reads the same logit.
  const language_model<double> model = load_language_model<double>(test_data_dir() / "mamba2_tied_fp32");
  const auto& m2 = std::get<mamba2_model<double>>(model);
  const auto tokens = tokens_of("mamba2_tied_fp32", 0);
  const std::span<const index_t> t(tokens);
  const index_t L = static_cast<index_t>(tokens.size());
  const auto lrp_scores = attribute(model, t, attribution_method::lrp);
  BOOST_TEST(lrp_scores.scores == lrp(m2, t).scores, boost::test_tools::per_element());
  BOOST_TEST(attribute(model, t, attribution_method::grad_input).scores == grad_input(m2, t).scores,
             boost::test_tools::per_element());
  BOOST_TEST(attribute(model, t, attribution_method::mamba_attr, {}, {.mamba_attr = {.start_layer = 1}}).scores ==
                 mamba_attr(m2, t, {}, {.start_layer = 1}).scores,
             boost::test_tools::per_element());
  BOOST_TEST(attribute(model, t, attribution_method::attn_grad).scores == attn_grad(m2, t).scores,
             boost::test_tools::per_element());
  const auto roll = attribute(model, t, attribution_method::rollout), raw = attribute(model, t, attribution_method::raw);
  BOOST_TEST_REQUIRE(roll.scores.size() == std::size_t(L));
  BOOST_TEST(raw.target.token == lrp_scores.target.token);
  double sum = 0;
  for (double v : roll.scores) sum += v;
  BOOST_TEST(sum == 1.0, boost::test_tools::tolerance(1e-9));
  const auto target = resolve_target(model, t, {});
  BOOST_TEST(target.value == lrp_scores.value, boost::test_tools::tolerance(1e-12));
  const target_evaluator eval(m2, target.target.token);
  const analysis::perturbed_sequence unperturbed{tokens, target.target.position};
  BOOST_TEST(eval(std::span<const analysis::perturbed_sequence>(&unperturbed, 1))[0].logit == target.value,
             boost::test_tools::tolerance(1e-12));
  BOOST_CHECK_THROW((void)attribute(model, t, attribution_method::lrp, {.position = L}), mixlens::error);
}

BOOST_AUTO_TEST_CASE(batched_forward_equals_one_pass_per_sequence) {
  // Plain, with biases (in_proj, out_proj, conv) and Falcon-Mamba's δ, B, C norms.
  // Mamba-2: one group, groups with biases in bf16, and the gated MLP.
  for (const char* name : {"mamba_demo", "mamba_bias_bf16", "falcon_mamba_fp32", "mamba2_tied_fp32",
                           "mamba2_groups_bf16", "mamba2_ss_mlp"}) {
    const language_model<double> model = load_language_model<double>(test_data_dir() / name);
    std::visit(
        [&](const auto& m) {
          const auto w = host_weights(m);
          const host_backend<double> be;
          BOOST_TEST(batch_forward_error(be, w.view(), 5, 11, 5, 1) <= 1e-12, name);
          BOOST_TEST(batch_forward_error(be, w.view(), 1, 1, 3, 2) <= 1e-12, name << ", one token");
          BOOST_TEST(batch_evaluator_error(be, w.view(), 9, 3) <= 1e-12, name << ", evaluator");
        },
        model);
  }
}

BOOST_AUTO_TEST_CASE(batched_forward_refuses_bad_input) {
  const auto w = host_weights(demo());
  const host_backend<double> be;
  const mamba_batch_forward<host_backend<double>, double> f(be, w.view(), 2);
  const std::vector<index_t> ids{1, 2, 3, 4, 5, 6}, two{0, 2}, three{0, 1, 2}, outside{0, 3};
  BOOST_CHECK_THROW((void)f.target_logits(ids, three), mixlens::error);    // more than max_batch
  BOOST_CHECK_THROW((void)f.target_logits(ids, outside), mixlens::error);  // position 3 of length 3
  BOOST_CHECK_THROW((void)f.target_logits(std::vector<index_t>{1, 2, 3}, two), mixlens::error);  // 3 ids for 2
  BOOST_CHECK_THROW((void)f.target_logits(std::vector<index_t>{1, 2, 3, 9999}, two), mixlens::error);
  BOOST_CHECK_THROW((mamba_batch_forward<host_backend<double>, double>(be, w.view(), 0)), mixlens::error);
  const batch_target_evaluator<host_backend<double>, mamba_weights<double>> e(be, w.view());
  const std::vector<analysis::perturbed_sequence> bad{{{1, 2, 3}, 3}};
  BOOST_CHECK_THROW((void)e(bad, 0), mixlens::error);
  BOOST_CHECK_THROW((void)e({}, demo().vocab_size()), mixlens::error);
}

BOOST_AUTO_TEST_CASE(faithfulness_of_methods_equals_one_method_at_a_time) {
  const auto tokens = tokens_of("mamba_demo", 0);
  const std::span<const index_t> t(tokens);
  const std::vector<attribution_method> methods{attribution_method::rollout, attribution_method::random,
                                                attribution_method::lrp};
  const faithfulness_run_options run{.curves = {.steps = 4, .mode = analysis::perturbation_mode::remove},
                                     .random_draws = 3, .attribute = {.seed = 5}};
  const auto w = host_weights(demo());
  int calls = 0;
  const auto all = faithfulness_of_methods(host_backend<double>{}, w.view(), t, std::span<const attribution_method>(methods),
                                           {.position = 30}, run,
                                           [&](std::span<const analysis::perturbed_sequence> b, index_t token) {
                                             ++calls;
                                             return target_evaluator<double>(demo(), token)(b);
                                           });
  BOOST_TEST(calls == 1);  // every method's sequences in one call
  BOOST_TEST_REQUIRE(all.size() == methods.size());
  const auto target = resolve_target(demo(), t, {.position = 30});
  const target_evaluator<double> eval(demo(), target.target.token);
  analysis::faithfulness_options o = run.curves;
  o.target_position = 30;
  for (std::size_t i = 0; i < methods.size(); ++i) {
    BOOST_TEST(all[i].attribution.target.position == 30);
    BOOST_TEST(all[i].attribution.target.token == target.target.token);
    const auto want = methods[i] == attribution_method::random
                          ? analysis::random_baseline(t, eval, o, 3, 5)
                          : analysis::faithfulness(t, std::span<const double>(attribute(demo(), t, methods[i], target.target).scores),
                                                   eval, o);
    BOOST_TEST(all[i].result.delta_logit == want.delta_logit, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(all[i].result.morf.probability == want.morf.probability, boost::test_tools::per_element());
  }
}
