#define BOOST_TEST_MODULE mamba_attribution
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_attribution.hpp"
#include "mixlens/models/mamba_random.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;

namespace {

mamba_model<double> small_model(bool falcon, std::uint64_t seed, index_t layers = 3) {
  mamba_config c;
  c.vocab_size = 13, c.hidden_size = 8, c.num_layers = layers, c.state_size = 3, c.intermediate_size = 10;
  c.conv_kernel = 3, c.time_step_rank = 2, c.use_conv_bias = true, c.bc_dt_norm = falcon, c.mixer_rms_eps = 1e-3;
  auto m = random_mamba<double>(c, seed);
  for (index_t i = 0; i < m.embedding.size(); ++i) m.embedding.data()[i] *= 20;
  return m;
}

const std::vector<index_t> tokens{2, 7, 1, 8, 2, 8, 1};

enum class recipe { mamba_attr, attn_grad };

// The recipes step by step on whole tensors: every channel's matrix
// materialized (the paper's α, or the unified form's Â), clamped, normalized
// over the layer (mamba-attr: before the channel mean; attn-grad: after the
// column weights), the token weights from the stored residual gradients; the
// rollout as a product of L × L matrices. Returns the whole rollout (L × L).
std::vector<double> rollout_reference(const mamba_model<double>& m, gradient_target target, index_t start, recipe how,
                                      bool with_skip = true) {
  const auto g = mamba_gradients(m, std::span<const index_t>(tokens), target, {.residual = true});
  const auto signals = all_signals(m, tokens);
  const index_t L = static_cast<index_t>(tokens.size()), H = m.config.hidden_size, D = m.config.intermediate_size;
  const auto normalize = [](std::vector<double>& v) {
    const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    for (auto& x : v) x = (x - lo) / (hi - lo);
  };
  std::vector<std::vector<double>> aug;
  for (index_t k = start; k < m.num_layers(); ++k) {
    auto s = signals[static_cast<std::size_t>(k)].view();
    const std::vector<double> no_skip(static_cast<std::size_t>(D), 0.0);
    if (!with_skip) s.skip = vector_view<const double>(no_skip.data(), D);  // Â without D: D = 0 in the block
    std::vector<double> clamped;  // D × L × L
    const auto all = layer_attention(s, how == recipe::mamba_attr ? attention_form::paper : attention_form::unified);
    for (index_t i = 0; i < D * L * L; ++i) clamped.push_back(std::max(all.data()[i], 0.0));
    if (how == recipe::mamba_attr) normalize(clamped);
    std::vector<double> mean(static_cast<std::size_t>(L * L), 0.0);
    for (index_t d = 0; d < D; ++d)
      for (index_t i = 0; i < L * L; ++i) mean[static_cast<std::size_t>(i)] += clamped[static_cast<std::size_t>(d * L * L + i)] / double(D);
    const auto& grad = g.layers[static_cast<std::size_t>(k)].residual;
    std::vector<double> w(static_cast<std::size_t>(L), 0.0);
    for (index_t t = 0; t < L; ++t)
      for (index_t h = 0; h < H; ++h) w[static_cast<std::size_t>(t)] = std::max(w[static_cast<std::size_t>(t)], grad[static_cast<std::size_t>(t * H + h)]);
    normalize(w);
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < L; ++j) mean[static_cast<std::size_t>(i * L + j)] *= w[static_cast<std::size_t>(j)];
    if (how == recipe::attn_grad) normalize(mean);
    std::vector<double> a(static_cast<std::size_t>(L * L));
    for (index_t i = 0; i < L; ++i) {
      double sum = 0;
      for (index_t j = 0; j < L; ++j) {
        a[static_cast<std::size_t>(i * L + j)] = mean[static_cast<std::size_t>(i * L + j)] + (i == j ? 1 : 0);
        sum += a[static_cast<std::size_t>(i * L + j)];
      }
      for (index_t j = 0; j < L; ++j) a[static_cast<std::size_t>(i * L + j)] /= sum;
    }
    aug.push_back(std::move(a));
  }
  std::vector<double> joint = aug[0];
  for (std::size_t k = 1; k < aug.size(); ++k) {
    std::vector<double> next(static_cast<std::size_t>(L * L), 0.0);
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < L; ++j)
        for (index_t r = 0; r < L; ++r)
          next[static_cast<std::size_t>(i * L + j)] += aug[k][static_cast<std::size_t>(i * L + r)] * joint[static_cast<std::size_t>(r * L + j)];
    joint = std::move(next);
  }
  return joint;
}

// The target row of the reference rollout, clamped at 0 as the recipes do.
std::vector<double> target_row(const std::vector<double>& joint, gradient_target target) {
  const index_t L = static_cast<index_t>(tokens.size()), p = target.position < 0 ? L - 1 : target.position;
  std::vector<double> row(joint.begin() + p * L, joint.begin() + (p + 1) * L);
  for (auto& v : row) v = std::max(v, 0.0);
  return row;
}

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// Adds eps·e_t (row t of the embedding output itself) at the first block's input.
struct scale_row {
  index_t row;
  double eps;
  void operator()(mamba_point p, index_t k, double* data, index_t, index_t cols) const {
    if (p != mamba_point::block_input || k != 0) return;
    for (index_t h = 0; h < cols; ++h) data[row * cols + h] *= 1 + eps;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(rollout_recipes_match_a_step_by_step_reference) {
  for (const recipe how : {recipe::mamba_attr, recipe::attn_grad})
    for (const bool falcon : {false, true})
      for (const index_t start : {0, 1, 2})
        for (const gradient_target target : {gradient_target{}, gradient_target{3, 5}}) {
          const auto m = small_model(falcon, falcon ? 21 : 20);
          const std::span<const index_t> t(tokens);
          const mamba_attr_options options{.start_layer = start, .full_matrix = start == 1};
          const auto got = how == recipe::mamba_attr ? mamba_attr(m, t, target, options) : attn_grad(m, t, target, options);
          const auto joint = rollout_reference(m, target, start, how);
          const auto want = target_row(joint, target);
          const double d = max_diff(got.scores, want);
          BOOST_TEST(d <= 1e-12, "recipe " << int(how) << " falcon " << falcon << " start " << start << " position "
                                            << target.position << ": " << d);
          BOOST_TEST(got.matrix.size() == (options.full_matrix ? joint.size() : 0));
          if (options.full_matrix) BOOST_TEST(max_diff(got.matrix, joint) <= 1e-12);
          // Causal: nothing after the target position.
          for (index_t p = got.target.position + 1; p < static_cast<index_t>(tokens.size()); ++p)
            BOOST_TEST(got.scores[static_cast<std::size_t>(p)] == 0.0);
          BOOST_TEST(*std::max_element(want.begin(), want.end()) > 0.05);
        }
}

BOOST_AUTO_TEST_CASE(attn_grad_without_d_matches_its_reference) {
  for (const bool falcon : {false, true})
    for (const index_t start : {0, 2}) {
      const auto m = small_model(falcon, falcon ? 21 : 20);
      const std::span<const index_t> t(tokens);
      const auto got = attn_grad(m, t, {}, {.start_layer = start, .unified_skip = false});
      const auto want = target_row(rollout_reference(m, {}, start, recipe::attn_grad, false), {});
      BOOST_TEST(max_diff(got.scores, want) <= 1e-12, "falcon " << falcon << " start " << start);
      // D matters: with it the row moves.
      BOOST_TEST(max_diff(got.scores, attn_grad(m, t, {}, {.start_layer = start}).scores) > 1e-4);
    }
}

BOOST_AUTO_TEST_CASE(attn_grad_reads_the_unified_form) {
  // The unified matrices carry the conv, the activation factor, D and the gate:
  // the two recipes give different rows on the same target.
  const auto m = small_model(false, 20);
  const std::span<const index_t> t(tokens);
  BOOST_TEST(max_diff(attn_grad(m, t).scores, mamba_attr(m, t).scores) > 1e-3);
}

BOOST_AUTO_TEST_CASE(mamba_attr_depends_on_the_gradients) {
  // Two targets give different token weights, hence different rows (the maps alone would not).
  const auto m = small_model(false, 20);
  const auto a = mamba_attr(m, std::span<const index_t>(tokens), {.token = 1});
  const auto b = mamba_attr(m, std::span<const index_t>(tokens), {.token = 9});
  BOOST_TEST(max_diff(a.scores, b.scores) > 1e-3);
}

BOOST_AUTO_TEST_CASE(grad_input_is_the_derivative_along_the_input) {
  // score_t = d/dε target(e with row t scaled by 1 + ε) at ε = 0.
  const auto m = small_model(true, 22, 2);
  const auto r = grad_input(m, std::span<const index_t>(tokens));
  const auto weights = host_weights(m);
  const host_backend<double> be;
  const index_t V = m.vocab_size();
  const auto at = [&](index_t row, double eps) {
    const auto logits = mamba_forward(be, weights.view(), std::span<const index_t>(tokens), [](const auto&) {},
                                      scale_row{row, eps});
    return logits[static_cast<std::size_t>(r.target.position * V + r.target.token)];
  };
  double worst = 0, scale = 0;
  for (index_t t = 0; t < static_cast<index_t>(tokens.size()); ++t) {
    const double eps = 1e-5, fd = (at(t, eps) - at(t, -eps)) / (2 * eps);
    worst = std::max(worst, std::abs(fd - r.scores[static_cast<std::size_t>(t)]));
    scale = std::max(scale, std::abs(fd));
  }
  BOOST_TEST(scale > 1e-4);
  BOOST_TEST(worst / scale <= 1e-7, "relative error " << worst / scale);
}

BOOST_AUTO_TEST_CASE(lrp_conserves_the_target) {
  // Without biases on the relevance path (the conv's here; in_proj and out_proj
  // have none), the relevance at the input sums to the target.
  for (const bool falcon : {false, true})
    for (const gradient_target target : {gradient_target{}, gradient_target{4, 3}}) {
      auto m = small_model(falcon, falcon ? 31 : 30);
      for (auto& layer : m.layers) std::fill(layer.conv_bias.begin(), layer.conv_bias.end(), 0.0);
      const auto r = lrp(m, std::span<const index_t>(tokens), target);
      double sum = 0;
      for (double v : r.scores) sum += v;
      BOOST_TEST(std::abs(r.value) > 1e-2);
      BOOST_TEST(std::abs(sum - r.value) <= 1e-6 * std::abs(r.value),
                 "falcon " << falcon << ": Σ relevance " << sum << ", target " << r.value);
      BOOST_TEST_MESSAGE("falcon " << falcon << ": conservation error " << std::abs(sum - r.value) / std::abs(r.value));
      // The exact gradient does not conserve (the test can tell the two apart).
      const auto g = grad_input(m, std::span<const index_t>(tokens), target);
      double gsum = 0;
      for (double v : g.scores) gsum += v;
      BOOST_TEST(std::abs(gsum - r.value) > 1e-3 * std::abs(r.value));
    }
  // A conv bias keeps a share.
  const auto m = small_model(false, 30);
  const auto r = lrp(m, std::span<const index_t>(tokens));
  double sum = 0;
  for (double v : r.scores) sum += v;
  BOOST_TEST(std::abs(sum - r.value) > 1e-6 * std::abs(r.value));
}

BOOST_AUTO_TEST_CASE(lrp_leaves_delta_b_c_without_gradient) {
  const auto m = small_model(true, 32, 2);
  const auto g = mamba_gradients(m, std::span<const index_t>(tokens), {},
                                 {.rule = propagation::lrp, .delta = true, .b = true, .c = true});
  for (const auto& layer : g.layers)
    for (const auto* v : {&layer.delta, &layer.b, &layer.c})
      BOOST_TEST(std::all_of(v->begin(), v->end(), [](double x) { return x == 0.0; }));
}

BOOST_AUTO_TEST_CASE(pieces_check_their_arguments) {
  const auto m = small_model(false, 20, 2);
  expect_error([&] { (void)mamba_attr(m, std::span<const index_t>(tokens), {}, {.start_layer = 2}); }, "options.start_layer");
  expect_error([] { analysis::target_row_rollout r(4, 4); }, "target");
  std::vector<double> map(9, 0.0);
  expect_error([&] { analysis::mamba_attr_layer_map(map, 0, 1, std::vector<double>(2)); }, "relu_mean");
  std::vector<double> nan{1.0, std::nan("")};
  expect_error([&] { analysis::min_max_normalize(nan, "here", "v"); }, "finite values at 1");
}

// ---- against PyTorch (tests/data/make_attribution_fixtures.py) -----------------------
// An independent float64 PyTorch implementation of both recipes (the paper's α and the
// unified Â formed as matrices, autograd's residual gradients, the rollout as products)
// on committed checkpoints, for the target "last" (the last position, its argmax).

namespace {

struct attribution_case {
  const char* model;
  int sequence;
  std::vector<index_t> starts;
};

const attribution_case attribution_cases[] = {
    {"mamba_tied_fp32", 2, {0, 1}}, {"falcon_mamba_fp32", 1, {0, 1}}, {"mamba_demo", 0, {0, 2}}};

// max |got − want| / max |want|.
double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / (scale > 0 ? scale : 1);
}

template <class T>
void check_pytorch_references(double tol) {
  for (const auto& c : attribution_cases) {
    const auto model = load_mamba<T>(test_data_dir() / c.model);
    const auto seq = tokens_of(c.model, c.sequence);
    const index_t L = static_cast<index_t>(seq.size());
    const auto target = io::read_npy(reference(c.model, "attr_target.npy")).as<index_t>();
    BOOST_REQUIRE_EQUAL(target.size(), 2u);
    for (const recipe how : {recipe::mamba_attr, recipe::attn_grad})
      for (const index_t start : c.starts) {
        const mamba_attr_options options{.start_layer = start, .full_matrix = true};
        const std::span<const index_t> t(seq);
        const auto got = how == recipe::mamba_attr ? mamba_attr(model, t, {}, options) : attn_grad(model, t, {}, options);
        BOOST_TEST(got.target.position == target[0]);
        BOOST_TEST(got.target.token == target[1]);
        const std::string file = std::string("attr_") + (how == recipe::mamba_attr ? "mamba_attr" : "attn_grad") +
                                 "_start" + std::to_string(start);
        const auto row = io::read_npy(reference(c.model, file + ".npy"));
        const auto full = io::read_npy(reference(c.model, file + "_rollout.npy"));
        BOOST_REQUIRE((row.shape == std::vector<index_t>{L}));
        BOOST_REQUIRE((full.shape == std::vector<index_t>{L, L}));
        const double e_row = relative_error(got.scores, row.as<double>());
        const double e_full = relative_error(got.matrix, full.as<double>());
        BOOST_TEST(e_row <= tol, c.model << " " << file << ": target row, relative error " << e_row);
        BOOST_TEST(e_full <= tol, c.model << " " << file << ": rollout, relative error " << e_full);
        BOOST_TEST_MESSAGE(c.model << " " << file << " (" << (std::is_same_v<T, float> ? "float" : "double")
                                   << "): relative error vs PyTorch, target row " << e_row << ", rollout " << e_full);
      }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(rollout_recipes_match_pytorch_double) { check_pytorch_references<double>(1e-9); }

BOOST_AUTO_TEST_CASE(rollout_recipes_match_pytorch_float) { check_pytorch_references<float>(1e-4); }
