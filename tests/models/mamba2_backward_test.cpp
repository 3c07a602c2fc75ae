#define BOOST_TEST_MODULE mamba2_backward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/mamba2_backward.hpp"
#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba2_random.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;

namespace {

// Two small random Mamba-2 models in double. "mlp": a gated-MLP part (d_mlp),
// two groups of B and C, a gated norm over two groups, biases and a time-step
// limit that binds at some steps. "wide": 35 states (the SSD backward runs in
// slices of ssd_backward_state_slice), one group, one norm group, no limit.
// The norm weights and D are moved off 1 so that their parts are exercised.
mamba2_config small_config(bool wide) {
  mamba2_config c;
  c.vocab_size = 11, c.hidden_size = 8, c.num_layers = 2, c.conv_kernel = 3, c.chunk_size = 4;
  if (!wide) {
    c.num_heads = 4, c.head_dim = 3, c.state_size = 3, c.n_groups = 2, c.d_mlp = 2, c.norm_group_size = 6;
    c.use_bias = true, c.use_conv_bias = true, c.tie_embeddings = false, c.dt_min = 0.003, c.dt_max = 0.06;
  } else {
    c.num_heads = 2, c.head_dim = 4, c.state_size = 35, c.n_groups = 1, c.d_mlp = 0, c.norm_group_size = 8;
    c.use_bias = false, c.use_conv_bias = true, c.tie_embeddings = true;
  }
  c.norm_eps = 1e-5;
  return c;
}

mamba2_model<double> small_model(bool wide, std::uint64_t seed) {
  auto m = random_mamba2<double>(small_config(wide), seed);
  mixlens::detail::splitmix64 rng(seed + 77);
  for (auto& l : m.layers) {
    for (auto& w : l.norm) w = rng.uniform(0.5, 1.5);
    for (auto& w : l.norm_weight) w = rng.uniform(0.5, 1.5);
    for (auto& d : l.skip) d = rng.uniform(0.5, 1.5);
  }
  for (auto& w : m.norm_f) w = rng.uniform(0.5, 1.5);
  for (index_t i = 0; i < m.embedding.size(); ++i) m.embedding.data()[i] *= 20;  // N(0, 0.4): not tiny against eps
  return m;
}

// Adds eps·v to the signal at (point, layer) of the forward pass.
struct perturbation {
  mamba_point point;
  index_t layer;
  const std::vector<double>* v;
  double eps;
  void operator()(mamba_point p, index_t k, double* data, index_t rows, index_t cols) const {
    if (p != point || k != layer) return;
    BOOST_REQUIRE_EQUAL(static_cast<index_t>(v->size()), rows * cols);
    for (index_t i = 0; i < rows * cols; ++i) data[i] += eps * (*v)[static_cast<std::size_t>(i)];
  }
};

double logit(const mamba2_weights<double>& w, const std::vector<index_t>& tokens, gradient_target t,
             const perturbation& p) {
  const host_backend<double> be;
  const auto logits = mamba_forward(be, w, std::span<const index_t>(tokens), [](const auto&) {}, p);
  return logits[static_cast<std::size_t>(t.position * w.vocab_size() + t.token)];
}

struct quantity {
  mamba_point point;
  const char* name;
};

const quantity quantities[] = {{mamba_point::block_input, "residual"}, {mamba_point::u, "u"},
                               {mamba_point::delta, "delta"},        {mamba_point::b, "b"},
                               {mamba_point::c, "c"},                {mamba_point::ssm_out, "ssm_out"}};

const std::vector<double>& gradient_of(const mamba_gradients_result<std::vector<double>>& g, mamba_point p, index_t k) {
  const auto& l = g.layers[static_cast<std::size_t>(k)];
  switch (p) {
    case mamba_point::u: return l.u;
    case mamba_point::delta: return l.delta;
    case mamba_point::b: return l.b;
    case mamba_point::c: return l.c;
    case mamba_point::ssm_out: return l.ssm_out;
    default: return l.residual;
  }
}

const gradient_options all{.embedding = true, .residual = true, .u = true, .delta = true, .b = true, .c = true, .ssm_out = true};

// For every quantity of every layer and every position t: the directional
// derivative along a random direction supported on position t, by central
// differences, against ⟨gradient, direction⟩.
void check_against_differences(bool wide, gradient_target target) {
  const auto model = small_model(wide, wide ? 5 : 4);
  const auto weights = host_weights(model);
  const std::vector<index_t> tokens{3, 1, 4, 1, 5, 9, 2};
  const index_t L = static_cast<index_t>(tokens.size());
  const auto g = mamba2_gradients(host_backend<double>{}, weights.view(), std::span<const index_t>(tokens), target, all);
  BOOST_REQUIRE_EQUAL(g.layers.size(), 2u);
  const double eps = 1e-5;
  mixlens::detail::splitmix64 rng(11);
  double overall = 0;
  for (const auto& q : quantities)
    for (index_t k = 0; k < model.num_layers(); ++k) {
      const auto& grad = gradient_of(g, q.point, k);
      const bool time_major = q.point == mamba_point::block_input;
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
        const double fd = (logit(weights.view(), tokens, g.target, {q.point, k, &v, eps}) -
                           logit(weights.view(), tokens, g.target, {q.point, k, &v, -eps})) /
                          (2 * eps);
        worst = std::max(worst, std::abs(fd - analytic));
        scale = std::max(scale, std::abs(fd));
      }
      const double err = worst / scale;
      overall = std::max(overall, err);
      BOOST_TEST(scale > 1e-6, q.name << " layer " << k << ": gradient vanishes (" << scale << ")");
      BOOST_TEST(err <= 1e-6, (wide ? "wide " : "mlp ") << q.name << " layer " << k << ": relative error " << err);
    }
  BOOST_TEST_MESSAGE((wide ? "wide" : "mlp") << " target " << target.position << ": worst relative error vs central "
                                              "differences " << overall);
  // The embedding output is the first block's input.
  BOOST_TEST(g.embedding == g.layers[0].residual);
}

}  // namespace

BOOST_AUTO_TEST_CASE(mamba2_gradients_match_central_differences) {
  check_against_differences(false, {});
  check_against_differences(false, {.position = 2, .token = 7});
}

BOOST_AUTO_TEST_CASE(mamba2_gradients_with_state_slices_match_central_differences) {
  check_against_differences(true, {});
  check_against_differences(true, {.position = 0, .token = 4});
}

BOOST_AUTO_TEST_CASE(the_time_step_limit_binds_somewhere) {
  // The "mlp" model's limit holds some Δ at a bound, where ∂Δ stops.
  const auto model = small_model(false, 4);
  const std::vector<index_t> tokens{3, 1, 4, 1, 5, 9, 2};
  index_t low = 0, high = 0;
  const auto w = host_weights(model);
  (void)mamba_forward(host_backend<double>{}, w.view(), std::span<const index_t>(tokens), [&](const auto& s) {
    for (index_t h = 0; h < s.heads(); ++h)
      for (index_t t = 0; t < s.length(); ++t) {
        low += s.delta(h, t) == model.config.dt_min;
        high += s.delta(h, t) == model.config.dt_max;
      }
  });
  BOOST_TEST(low > 0);
  BOOST_TEST(high > 0);
}

BOOST_AUTO_TEST_CASE(target_defaults_and_options) {
  const auto model = small_model(false, 3);
  const std::vector<index_t> tokens{3, 1, 4, 1, 5};
  const auto logits = mamba_forward(model, std::span<const index_t>(tokens));
  index_t top = 0;
  for (index_t v = 0; v < logits.extent(1); ++v)
    if (logits(4, v) > logits(4, top)) top = v;
  const auto g = mamba2_gradients(model, std::span<const index_t>(tokens));
  BOOST_TEST(g.target.position == 4);
  BOOST_TEST(g.target.token == top);
  BOOST_TEST(g.value == logits(4, top));
  BOOST_TEST(g.embedding.size() == 5u * 8u);
  BOOST_TEST(g.layers.empty());  // nothing per layer requested: nothing kept

  const auto only_delta = mamba_gradients(model, std::span<const index_t>(tokens), {.position = 1, .token = 2},
                                          {.embedding = false, .delta = true});
  BOOST_TEST(only_delta.embedding.empty());
  BOOST_REQUIRE_EQUAL(only_delta.layers.size(), 2u);
  BOOST_TEST(only_delta.layers[1].delta.size() == 4u * 5u);  // per head
  BOOST_TEST(only_delta.layers[1].u.empty());
  BOOST_TEST(only_delta.value == logits(1, 2));
  // Causality: the logit at position 1 does not depend on later positions.
  for (index_t h = 0; h < 4; ++h)
    for (index_t t = 2; t < 5; ++t) BOOST_TEST(only_delta.layers[0].delta[static_cast<std::size_t>(h * 5 + t)] == 0.0);

  expect_error([&] { (void)mamba2_gradients(model, std::span<const index_t>(tokens), {.position = 5}); },
               "target.position");
  expect_error([&] { (void)mamba2_gradients(model, std::span<const index_t>(tokens), {.token = 11}); }, "target.token");
  expect_error([&] { (void)mamba2_gradients(model, std::span<const index_t>(std::vector<index_t>{1, 11})); },
               "outside the vocabulary");
}

BOOST_AUTO_TEST_CASE(observer_sees_every_layer_in_reverse) {
  const auto model = small_model(true, 5);
  const auto weights = host_weights(model);
  const std::vector<index_t> tokens{3, 1, 4, 1, 5};
  std::vector<index_t> order;
  std::vector<std::vector<double>> residual, u;
  const auto g = mamba2_gradients(host_backend<double>{}, weights.view(), std::span<const index_t>(tokens), {}, all,
                                  [&](const mamba2_layer_signals<double>& s, const mamba2_layer_gradients<double>& lg) {
                                    BOOST_TEST(s.layer == lg.layer);
                                    order.push_back(lg.layer);
                                    residual.emplace_back(lg.residual.data_handle(), lg.residual.data_handle() + 5 * 8);
                                    u.emplace_back(lg.u.data_handle(), lg.u.data_handle() + 8 * 5);
                                  });
  BOOST_TEST((order == std::vector<index_t>{1, 0}));
  BOOST_TEST(residual[0] == g.layers[1].residual);
  BOOST_TEST(u[1] == g.layers[0].u);
}

BOOST_AUTO_TEST_CASE(lrp_leaves_delta_b_c_without_gradient) {
  const auto model = small_model(false, 3);
  const std::vector<index_t> tokens{3, 1, 4, 1, 5};
  const auto g = mamba2_gradients(model, std::span<const index_t>(tokens), {},
                                  {.rule = propagation::lrp, .u = true, .delta = true, .b = true, .c = true});
  for (const auto& layer : g.layers) {
    for (const auto* v : {&layer.delta, &layer.b, &layer.c})
      BOOST_TEST(std::all_of(v->begin(), v->end(), [](double x) { return x == 0.0; }));
    BOOST_TEST(std::any_of(layer.u.begin(), layer.u.end(), [](double x) { return x != 0.0; }));
  }
}

// ---- against PyTorch autograd (tests/data/make_gradient_fixtures.py) -----------------

namespace {

template <class T>
void check_autograd(const char* name, int sequence, const std::vector<std::string>& tags, double tol) {
  const auto model = load_mamba2<T>(test_data_dir() / name);
  const auto tokens = tokens_of(name, sequence);
  const auto& cfg = model.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, S = cfg.ssm_channels(),
                GN = cfg.n_groups * cfg.state_size;
  for (const auto& tag : tags) {
    const auto file = [&](const std::string& what) { return io::read_npy(reference(name, "grad_" + tag + "_" + what + ".npy")); };
    const auto want = file("target").template as<index_t>();
    BOOST_REQUIRE_EQUAL(want.size(), 2u);
    const bool lrp = tag.starts_with("lrp_");
    const gradient_target target = tag.ends_with("last") ? gradient_target{} : gradient_target{want[0], want[1]};
    gradient_options options = all;
    if (lrp) options.rule = propagation::lrp;
    const auto g = mamba2_gradients(model, std::span<const index_t>(tokens), target, options);
    BOOST_TEST(g.target.position == want[0]);
    BOOST_TEST(g.target.token == want[1]);
    double worst = 0;
    const auto check = [&](const std::vector<T>& got, index_t rows, index_t cols, const std::string& what) {
      const auto ref = file(what);
      BOOST_REQUIRE((ref.shape == std::vector<index_t>{rows, cols}));
      const double err = compare(matrix_view<const T>(got.data(), rows, cols), ref);
      BOOST_TEST(err <= tol, name << " " << tag << " " << what << ": relative error " << err);
      worst = std::max(worst, err);
    };
    check(g.embedding, L, H, "embedding");
    for (index_t k = 0; k < model.num_layers(); ++k) {
      const auto& l = g.layers[static_cast<std::size_t>(k)];
      const std::string p = "layer" + std::to_string(k) + "_";
      check(l.residual, L, H, p + "residual");
      check(l.u, S, L, p + "u");
      check(l.ssm_out, S, L, p + "ssm_out");
      if (lrp) continue;
      check(l.delta, cfg.num_heads, L, p + "delta");
      check(l.b, GN, L, p + "b");
      check(l.c, GN, L, p + "c");
    }
    BOOST_TEST_MESSAGE(name << " " << tag << " (" << (std::is_same_v<T, float> ? "float" : "double")
                            << "): max relative error vs autograd " << worst);
  }
}

const std::vector<std::string> autograd_tags{"last", "mid", "lrp_last", "lrp_mid"};

}  // namespace

BOOST_AUTO_TEST_CASE(gradients_match_autograd_float) { check_autograd<float>("mamba2_tied_fp32", 1, autograd_tags, 1e-5); }

BOOST_AUTO_TEST_CASE(gradients_match_autograd_double) {
  check_autograd<double>("mamba2_tied_fp32", 1, autograd_tags, 1e-6);  // the reference is rounded to float
}
