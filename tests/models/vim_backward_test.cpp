#define BOOST_TEST_MODULE vim_backward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/model_fixtures.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/vim_backward.hpp"
#include "mixlens/models/vim_model.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;

namespace {

// The committed fixtures (tests/data/make_vim_fixtures.py): middle CLS, divided sum;
// middle CLS with in/out_proj biases and stride 2; CLS at the head, no division,
// no conv bias; no CLS token, mean pooling, no position embedding.
const char* const fixtures[] = {"vim_mid_odd", "vim_mid_stride_bf16", "vim_head_nodiv", "vim_mean_nopos"};

template <class T>
tensor<T, 3> image_of(const std::string& name) {
  return read_image_npy<T>(reference(name, "image.npy"));
}

// Adds eps·v to the signal at (point, layer, direction) of the forward pass.
struct perturbation {
  mamba_point point;
  index_t layer;
  vim_direction direction;
  const std::vector<double>* v;
  double eps;
  void operator()(mamba_point p, index_t k, vim_direction dir, double* data, index_t rows, index_t cols) const {
    if (p != point || k != layer || dir != direction) return;
    BOOST_REQUIRE_EQUAL(static_cast<index_t>(v->size()), rows * cols);
    for (index_t i = 0; i < rows * cols; ++i) data[i] += eps * (*v)[static_cast<std::size_t>(i)];
  }
};

double logit(const vim_weights<double>& w, const tensor<double, 3>& image, index_t c, const perturbation& p) {
  const auto logits = vim_forward(host_backend<double>{}, w, tensor_view<const double, 3>(image.view()),
                                  [](const auto&) {}, p);
  return logits[static_cast<std::size_t>(c)];
}

struct quantity {
  mamba_point point;
  vim_direction direction;
  const char* name;
};

const quantity quantities[] = {
    {mamba_point::block_input, vim_direction::forward, "residual"},
    {mamba_point::u, vim_direction::forward, "u_f"},           {mamba_point::u, vim_direction::backward, "u_b"},
    {mamba_point::delta, vim_direction::forward, "delta_f"},   {mamba_point::delta, vim_direction::backward, "delta_b"},
    {mamba_point::b, vim_direction::forward, "b_f"},           {mamba_point::b, vim_direction::backward, "b_b"},
    {mamba_point::c, vim_direction::forward, "c_f"},           {mamba_point::c, vim_direction::backward, "c_b"},
    {mamba_point::ssm_out, vim_direction::forward, "ssm_out_f"}, {mamba_point::ssm_out, vim_direction::backward, "ssm_out_b"}};

const std::vector<double>& gradient_of(const vim_gradients_result<std::vector<double>>& g, const quantity& q, index_t k) {
  const auto& l = g.layers[static_cast<std::size_t>(k)];
  if (q.point == mamba_point::block_input) return l.residual;
  const auto& b = q.direction == vim_direction::forward ? l.forward : l.backward;
  switch (q.point) {
    case mamba_point::u: return b.u;
    case mamba_point::delta: return b.delta;
    case mamba_point::b: return b.b;
    case mamba_point::c: return b.c;
    default: return b.ssm_out;
  }
}

const gradient_options all{.embedding = true, .residual = true, .u = true, .delta = true, .b = true, .c = true, .ssm_out = true};

// For every quantity of every layer and every position t: the directional
// derivative along a random direction supported on position t, by central
// differences, against ⟨gradient, direction⟩; the worst relative error.
double check_against_differences(const vim_model<double>& model, const std::string& name, index_t target_class) {
  const auto weights = host_weights(model);
  const auto image = image_of<double>(name);
  const tensor_view<const double, 3> iv(image.view());
  const index_t L = model.config.sequence_length();
  const auto g = vim_gradients(host_backend<double>{}, weights.view(), iv, target_class, all);
  BOOST_REQUIRE_EQUAL(g.layers.size(), static_cast<std::size_t>(model.num_layers()));
  // Round-off dominates below 1e-4 (the smallest gradients are ~1e-3 of the logit).
  const double eps = 1e-4;
  mixlens::detail::splitmix64 rng(11);
  double worst_all = 0;
  for (const auto& q : quantities)
    for (index_t k = 0; k < model.num_layers(); ++k) {
      const auto& grad = gradient_of(g, q, k);
      const bool time_major = q.point == mamba_point::block_input;
      BOOST_REQUIRE(!grad.empty());
      BOOST_REQUIRE_EQUAL(static_cast<index_t>(grad.size()) % L, 0);
      double worst = 0, scale = 0;
      for (index_t t = 0; t < L; ++t) {
        std::vector<double> v(grad.size(), 0.0);
        double analytic = 0;
        for (std::size_t i = 0; i < v.size(); ++i) {
          const index_t at = time_major ? static_cast<index_t>(i) / (static_cast<index_t>(grad.size()) / L)
                                        : static_cast<index_t>(i) % L;
          if (at != t) continue;
          v[i] = rng.uniform(-1, 1);
          analytic += v[i] * grad[i];
        }
        const double fd = (logit(weights.view(), image, g.target.token, {q.point, k, q.direction, &v, eps}) -
                           logit(weights.view(), image, g.target.token, {q.point, k, q.direction, &v, -eps})) /
                          (2 * eps);
        worst = std::max(worst, std::abs(fd - analytic));
        scale = std::max(scale, std::abs(fd));
      }
      const double err = worst / scale;
      BOOST_TEST(scale > 1e-8, name << " " << q.name << " layer " << k << ": gradient vanishes (" << scale << ")");
      BOOST_TEST(err <= 1e-6, name << " " << q.name << " layer " << k << ": relative error " << err);
      worst_all = std::max(worst_all, err);
    }
  // The first block's input is where `embedding` is taken.
  BOOST_TEST(g.embedding == g.layers[0].residual);
  return worst_all;
}

// A fixture in double with its conv biases set to 0 (LRP's relevance then has no
// sink but the head bias).
vim_model<double> without_conv_bias(vim_model<double> m) {
  for (auto& l : m.layers)
    for (auto* layer : {&l.forward, &l.backward})
      for (auto& b : layer->conv_bias) b = 0;
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(vim_gradients_match_central_differences) {
  for (const char* name : fixtures) {
    const auto model = load_vim<double>(test_data_dir() / name);
    double worst = check_against_differences(model, name, -1);
    worst = std::max(worst, check_against_differences(model, name, 1));
    BOOST_TEST_MESSAGE(name << ": max relative error vs central differences " << worst);
  }
  // The last position read without a CLS token (final_pool_type "none").
  auto model = load_vim<double>(test_data_dir() / "vim_mean_nopos");
  model.config.pooling = vim_pooling::last;
  BOOST_TEST(vim_read_position(model.config) == model.config.sequence_length() - 1);
  const double worst = check_against_differences(model, "vim_mean_nopos", -1);
  BOOST_TEST_MESSAGE("vim_mean_nopos read at the last position: max relative error " << worst);
}

BOOST_AUTO_TEST_CASE(target_defaults_options_and_refusals) {
  const auto model = load_vim<double>(test_data_dir() / "vim_mid_odd");
  const auto image = image_of<double>("vim_mid_odd");
  const tensor_view<const double, 3> iv(image.view());
  const auto logits = vim_forward(model, iv);
  const index_t top = static_cast<index_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const auto g = vim_gradients(model, iv);
  BOOST_TEST(g.target.token == top);
  BOOST_TEST(g.target.position == 4);  // the CLS token
  BOOST_TEST(g.value == logits[static_cast<std::size_t>(top)]);
  BOOST_TEST(g.embedding.size() == 10u * 16u);
  BOOST_TEST(g.input.size() == 10u * 16u);
  BOOST_TEST(g.layers.empty());

  const auto only_delta = vim_gradients(model, iv, 2, {.embedding = false, .delta = true});
  BOOST_TEST(only_delta.embedding.empty());
  BOOST_TEST(only_delta.input.empty());
  BOOST_REQUIRE_EQUAL(only_delta.layers.size(), 2u);
  BOOST_TEST(only_delta.layers[1].forward.delta.size() == 32u * 10u);
  BOOST_TEST(only_delta.layers[1].backward.delta.size() == 32u * 10u);
  BOOST_TEST(only_delta.layers[1].forward.u.empty());
  BOOST_TEST(only_delta.layers[1].residual.empty());
  BOOST_TEST(only_delta.value == logits[2]);
  // In the last layer the CLS logit reads the forward branch at positions ≤ 4
  // only, and the backward branch at its positions ≤ L − 1 − 4 = 5 only.
  for (index_t d = 0; d < 32; ++d)
    for (index_t t = 0; t < 10; ++t) {
      if (t > 4) BOOST_TEST(only_delta.layers[1].forward.delta[static_cast<std::size_t>(d * 10 + t)] == 0.0);
      if (t > 5) BOOST_TEST(only_delta.layers[1].backward.delta[static_cast<std::size_t>(d * 10 + t)] == 0.0);
    }

  expect_error([&] { (void)vim_gradients(model, iv, 7); }, "target_class");
  const tensor<double, 3> wrong(12, 11, 3);
  expect_error([&] { (void)vim_gradients(model, tensor_view<const double, 3>(wrong.view())); }, "the model takes [12, 12, 3]");
}

BOOST_AUTO_TEST_CASE(observer_sees_every_layer_in_reverse) {
  const auto model = load_vim<double>(test_data_dir() / "vim_mid_odd");
  const auto weights = host_weights(model);
  const auto image = image_of<double>("vim_mid_odd");
  std::vector<index_t> order;
  std::vector<std::vector<double>> residual, u_b;
  std::vector<double> y_last;
  const auto g = vim_gradients(host_backend<double>{}, weights.view(), tensor_view<const double, 3>(image.view()), -1, all,
                               [&](const vim_layer_signals<double>& s, const vim_layer_gradients<double>& lg) {
                                 BOOST_TEST(s.layer == lg.layer);
                                 BOOST_TEST(lg.forward.layer == lg.layer);
                                 order.push_back(lg.layer);
                                 residual.emplace_back(lg.residual.data_handle(), lg.residual.data_handle() + 10 * 16);
                                 u_b.emplace_back(lg.backward.u.data_handle(), lg.backward.u.data_handle() + 32 * 10);
                                 if (s.layer == 1) y_last.assign(s.y.data_handle(), s.y.data_handle() + 32 * 10);
                               });
  BOOST_TEST((order == std::vector<index_t>{1, 0}));
  BOOST_TEST(residual[0] == g.layers[1].residual);
  BOOST_TEST(u_b[1] == g.layers[0].backward.u);
  // The recomputed signals are the forward pass's.
  std::vector<double> y_forward;
  (void)vim_forward(model, tensor_view<const double, 3>(image.view()), [&](const vim_layer_signals<double>& s) {
    if (s.layer == 1) y_forward.assign(s.y.data_handle(), s.y.data_handle() + 32 * 10);
  });
  BOOST_TEST(y_last == y_forward);
}

// MambaLRP: Σ_t Σ_e R[t][e] = logit − head bias when no bias but the head's lies on
// the relevance path (conv biases 0, no in/out_proj bias; dt_proj's bias feeds Δ,
// which is detached).
BOOST_AUTO_TEST_CASE(lrp_conserves_the_target) {
  for (const char* name : {"vim_mid_odd", "vim_head_nodiv", "vim_mean_nopos"}) {
    const auto model = without_conv_bias(load_vim<double>(test_data_dir() / name));
    const auto image = image_of<double>(name);
    for (index_t c : {index_t(-1), index_t(1)}) {
      const auto g = vim_gradients(model, tensor_view<const double, 3>(image.view()), c,
                                   {.rule = propagation::lrp, .embedding = true});
      double sum = 0;
      for (std::size_t i = 0; i < g.embedding.size(); ++i) sum += g.embedding[i] * g.input[i];
      const double want = g.value - model.head_bias[static_cast<std::size_t>(g.target.token)];
      const double err = std::abs(sum - want) / std::abs(want);
      BOOST_TEST(err <= 1e-6, name << " class " << g.target.token << ": Σ R = " << sum << ", logit − bias = " << want);
      BOOST_TEST_MESSAGE(name << " class " << g.target.token << ": LRP conservation relative error " << err);
    }
  }
}
