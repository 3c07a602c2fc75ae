#define BOOST_TEST_MODULE faithfulness
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "mixlens/analysis/faithfulness.hpp"

using namespace mixlens;
using namespace mixlens::analysis;

namespace {

// An additive toy model: logit = Σ over the sequence of the token ids (the
// replacement token 0 adds nothing), probability = σ(logit / 10). Deleting a
// token and replacing it by 0 then give the same values, and every curve is
// known by hand.
std::vector<target_output> additive(std::span<const perturbed_sequence> batch) {
  std::vector<target_output> out;
  for (const auto& s : batch) {
    double sum = 0;
    for (index_t t : s.tokens) sum += double(t);
    out.push_back({sum, 1 / (1 + std::exp(-sum / 10))});
  }
  return out;
}

const std::vector<index_t> tokens{1, 2, 3, 4, 5};
const std::vector<double> scores{0.1, 0.9, 0.5, 0.3, 7.0};  // the target's own score is ignored

void check_curve(const std::vector<double>& got, const std::vector<double>& want) {
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) BOOST_TEST(got[i] == want[i], "point " << i);
}

bool message_has(const mixlens::error& e, const std::string& what) {
  return std::string(e.what()).find(what) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(additive_model_curves_and_aucs_by_hand) {
  for (auto mode : {perturbation_mode::replace, perturbation_mode::remove}) {
    const auto r = faithfulness(std::span<const index_t>(tokens), std::span<const double>(scores), additive,
                                {.steps = 4, .mode = mode});
    // MoRF removes positions 1, 2, 3, 0 (tokens 2, 3, 4, 1); LeRF 0, 3, 2, 1; the target (4) stays.
    check_curve(r.morf.logit, {15, 13, 10, 6, 5});
    check_curve(r.lerf.logit, {15, 14, 10, 7, 5});
    BOOST_TEST(r.morf.auc_logit == 9.75, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.lerf.auc_logit == 10.25, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.delta_logit == 0.5, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(r.morf.probability[0] == 1 / (1 + std::exp(-1.5)), boost::test_tools::tolerance(1e-12));
  }
}

BOOST_AUTO_TEST_CASE(remove_shortens_and_shifts_the_target_replace_keeps_them) {
  const faithfulness_options o{.steps = 2, .mode = perturbation_mode::remove, .target_position = 2};
  const std::vector<index_t> order = perturbation_order(scores, 2, true);  // 4, 1, 3, 0
  BOOST_TEST(order == (std::vector<index_t>{4, 1, 3, 0}), boost::test_tools::per_element());
  const auto rem = perturbed_sequences(tokens, order, 2, o);
  BOOST_TEST_REQUIRE(rem.size() == 3u);
  BOOST_TEST(rem[1].tokens == (std::vector<index_t>{1, 3, 4}), boost::test_tools::per_element());
  BOOST_TEST(rem[1].target_position == 1);  // position 1 went before it
  BOOST_TEST(rem[2].tokens == (std::vector<index_t>{3}), boost::test_tools::per_element());
  BOOST_TEST(rem[2].target_position == 0);
  auto r = o;
  r.mode = perturbation_mode::replace, r.replacement_token = 9;
  const auto rep = perturbed_sequences(tokens, order, 2, r);
  BOOST_TEST(rep[1].tokens == (std::vector<index_t>{1, 9, 3, 4, 9}), boost::test_tools::per_element());
  BOOST_TEST(rep[2].tokens == (std::vector<index_t>{9, 9, 3, 9, 9}), boost::test_tools::per_element());
  BOOST_TEST(rep[2].target_position == 2);
}

BOOST_AUTO_TEST_CASE(steps_take_floor_of_the_fraction) {
  // 4 perturbable positions in 3 steps: 0, 1, 2, 4 perturbed.
  const std::vector<double> flat(5, 0.0);
  const auto r = faithfulness(std::span<const index_t>(tokens), std::span<const double>(flat), additive, {.steps = 3});
  // Ties by position in both orders: MoRF and LeRF both perturb 0, 1, 2, 3 in that order.
  check_curve(r.morf.logit, {15, 14, 12, 5});
  check_curve(r.lerf.logit, r.morf.logit);
  BOOST_TEST(r.delta_logit == 0.0);
}

BOOST_AUTO_TEST_CASE(random_baseline_is_reproducible_and_averages_its_draws) {
  const std::span<const index_t> t(tokens);
  const faithfulness_options o{.steps = 4};
  const auto a = random_baseline(t, additive, o, 5, 42), b = random_baseline(t, additive, o, 5, 42);
  check_curve(a.morf.logit, b.morf.logit);
  BOOST_TEST(a.delta_logit == b.delta_logit);
  std::vector<faithfulness_result> each;
  for (std::uint64_t d = 0; d < 5; ++d) {
    const auto s = random_scores(5, 42 + d);
    each.push_back(faithfulness(t, std::span<const double>(s), additive, o));
  }
  const auto m = average(each);
  for (std::size_t i = 0; i < m.morf.logit.size(); ++i)
    BOOST_TEST(a.morf.logit[i] == m.morf.logit[i], boost::test_tools::tolerance(1e-12));
  BOOST_TEST(a.morf.logit.front() == 15.0);
  BOOST_TEST(a.morf.logit.back() == 5.0);
  BOOST_TEST((random_scores(5, 42) != random_scores(5, 43)));  // another seed, other scores
}

BOOST_AUTO_TEST_CASE(trapezoid_rule) {
  const std::vector<double> y{0, 1, 2};
  BOOST_TEST(trapezoid_auc(y) == 1.0);
  const std::vector<double> one{3};
  BOOST_TEST(trapezoid_auc(one) == 3.0);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_the_argument) {
  const std::span<const index_t> t(tokens);
  const auto expect = [&](std::vector<double> s, faithfulness_options o, const std::string& what) {
    BOOST_CHECK_EXCEPTION((void)faithfulness(t, std::span<const double>(s), additive, o), mixlens::error,
                          [&](const mixlens::error& e) { return message_has(e, what); });
  };
  expect({}, {}, "'scores': expected at least one score");
  expect({1, 2}, {}, "'scores': expected one score per token (5)");
  expect(scores, {.steps = 0}, "'options.steps': expected at least 1, got 0");
  expect({0, NAN, 0, 0, 0}, {}, "'scores': expected finite values");
  expect(scores, {.target_position = 5}, "'options.target_position'");
  BOOST_CHECK_THROW((void)random_baseline(t, additive, {}, 0), mixlens::error);
}

BOOST_AUTO_TEST_CASE(several_score_vectors_in_one_call_equal_one_call_each) {
  const std::vector<std::vector<double>> sets{scores, {5, 4, 3, 2, 1}, {0, 0, 1, 0, 0}};
  const std::span<const index_t> t(tokens);
  for (auto mode : {perturbation_mode::replace, perturbation_mode::remove}) {
    const faithfulness_options o{.steps = 3, .mode = mode, .target_position = 1};
    int calls = 0;
    const auto counted = [&](std::span<const perturbed_sequence> b) { ++calls; return additive(b); };
    const auto all = faithfulness(t, std::span<const std::vector<double>>(sets), counted, o);
    BOOST_TEST(calls == 1);
    BOOST_TEST_REQUIRE(all.size() == sets.size());
    for (std::size_t i = 0; i < sets.size(); ++i) {
      const auto one = faithfulness(t, std::span<const double>(sets[i]), additive, o);
      check_curve(all[i].morf.logit, one.morf.logit);
      check_curve(all[i].lerf.probability, one.lerf.probability);
      BOOST_TEST(all[i].delta_logit == one.delta_logit);
    }
  }
  // A bad vector anywhere is refused before the evaluator runs.
  const std::vector<std::vector<double>> bad{scores, {1, 2}};
  int calls = 0;
  BOOST_CHECK_THROW((void)faithfulness(t, std::span<const std::vector<double>>(bad),
                                       [&](std::span<const perturbed_sequence> b) { ++calls; return additive(b); }),
                    mixlens::error);
  BOOST_TEST(calls == 0);
}
