#define BOOST_TEST_MODULE vim_attribution
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/model_fixtures.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/vim_attention.hpp"
#include "mixlens/models/vim_attribution.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;

namespace {

// The references of tests/data/make_vim_gradient_fixtures.py (PyTorch autograd in float64).
const std::string fixture = "vim_mid_odd";

io::npy_array stored(const std::string& what) { return io::read_npy(reference(fixture, what + ".npy")); }

template <class T>
tensor<T, 3> image() {
  return read_image_npy<T>(reference(fixture, "image.npy"));
}

// max |got − want| / max |want| over a vector.
template <class V>
double compare_vector(const V& got, const io::npy_array& want) {
  const auto w = want.as<double>();
  BOOST_REQUIRE_EQUAL(w.size(), got.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - w[i]));
    scale = std::max(scale, std::abs(w[i]));
  }
  return diff / (scale > 0 ? scale : 1);
}

const gradient_options all{.embedding = true, .residual = true, .u = true, .delta = true, .b = true, .c = true, .ssm_out = true};

template <class T>
void check_gradients(double tol) {
  const auto model = load_vim<T>(test_data_dir() / fixture);
  const auto img = image<T>();
  const tensor_view<const T, 3> iv(img.view());
  double worst = 0;
  for (const std::string tag : {"argmax", "c3", "lrp_argmax"}) {
    const std::string p = "vgrad_" + tag + "_";
    const auto want = stored(p + "target").as<index_t>();
    const bool lrp = tag.starts_with("lrp");
    gradient_options options = all;
    if (lrp) options.rule = propagation::lrp;
    const auto g = vim_gradients(model, iv, tag == "c3" ? want[1] : -1, options);
    BOOST_TEST(g.target.position == want[0]);
    BOOST_TEST(g.target.token == want[1]);
    const auto check = [&](const std::vector<T>& got, const std::string& what) {
      const double err = compare_vector(got, stored(p + what));
      BOOST_TEST(err <= tol, tag << " " << what << ": relative error " << err);
      worst = std::max(worst, err);
    };
    check(g.embedding, "embedding");
    if (tag == "argmax") check(g.input, "input");
    for (index_t k = 0; k < model.num_layers(); ++k) {
      const std::string l = "layer" + std::to_string(k) + "_";
      const auto& layer = g.layers[static_cast<std::size_t>(k)];
      check(layer.residual, l + "residual");
      if (tag == "c3") continue;
      using branch = std::pair<std::string, const mamba_layer_gradient_arrays<std::vector<T>>*>;
      for (const auto& [dir, b] : {branch{"f", &layer.forward}, branch{"b", &layer.backward}}) {
        check(b->u, l + "u_" + dir);
        check(b->ssm_out, l + "ssm_out_" + dir);
        if (lrp) continue;
        check(b->delta, l + "delta_" + dir);
        check(b->b, l + "b_" + dir);
        check(b->c, l + "c_" + dir);
      }
    }
  }
  BOOST_TEST_MESSAGE(fixture << " (" << (std::is_same_v<T, float> ? "float" : "double")
                             << "): gradients, max relative error vs autograd " << worst);
}

template <class T>
void check_attributions(double tol) {
  const auto model = load_vim<T>(test_data_dir() / fixture);
  const auto img = image<T>();
  const tensor_view<const T, 3> iv(img.view());
  double worst = 0;
  const auto check = [&](const std::vector<double>& got, const std::string& what) {
    const double err = compare_vector(got, stored(what));
    BOOST_TEST(err <= tol, what << ": relative error " << err);
    worst = std::max(worst, err);
  };
  check(grad_input(model, iv).scores, "vattr_grad_input");
  check(lrp(model, iv).scores, "vattr_lrp");
  for (index_t start : {0, 1}) {
    const mamba_attr_options o{.start_layer = start, .full_matrix = true};
    const std::string s = "_start" + std::to_string(start);
    const auto a = mamba_attr(model, iv, -1, o), b = attn_grad(model, iv, -1, o);
    check(a.scores, "vattr_mamba_attr" + s);
    check(a.matrix, "vattr_mamba_attr" + s + "_rollout");
    check(b.scores, "vattr_attn_grad" + s);
    check(b.matrix, "vattr_attn_grad" + s + "_rollout");
    BOOST_TEST(a.target.position == 4);
  }
  BOOST_TEST_MESSAGE(fixture << " (" << (std::is_same_v<T, float> ? "float" : "double")
                             << "): attributions, max relative error vs PyTorch " << worst);
}

}  // namespace

BOOST_AUTO_TEST_CASE(gradients_match_autograd) {
  check_gradients<double>(1e-10);
  check_gradients<float>(1e-5);
}

BOOST_AUTO_TEST_CASE(attributions_match_the_reference) {
  check_attributions<double>(1e-10);
  check_attributions<float>(1e-5);
}

// attribute() for Vision Mamba: every method, the target and its defaults.
BOOST_AUTO_TEST_CASE(attribute_dispatches_every_method) {
  const auto model = load_vim<double>(test_data_dir() / fixture);
  const auto img = image<double>();
  const tensor_view<const double, 3> iv(img.view());
  const auto logits = vim_forward(model, iv);
  const index_t top = static_cast<index_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (std::size_t i = 0; i < attribution_method_count; ++i) {
    const auto method = static_cast<attribution_method>(i);
    const auto r = attribute(model, iv, method);
    BOOST_TEST(r.target.position == 4, to_string(method));
    BOOST_TEST(r.target.token == top, to_string(method));
    BOOST_TEST(r.value == logits[static_cast<std::size_t>(top)], to_string(method));
    BOOST_TEST(r.scores.size() == 10u, to_string(method));
    const auto other = attribute(model, iv, method, 3);
    BOOST_TEST(other.target.token == 3);
    BOOST_TEST(other.value == logits[3]);
  }
  BOOST_TEST(attribute(model, iv, attribution_method::grad_input).scores == grad_input(model, iv).scores);
  // rollout: the CLS row of the rollout of the channel-mean combined α.
  std::vector<matrix<double>> maps;
  (void)vim_forward(model, iv, [&](const vim_layer_signals<double>& s) {
    const auto full = vim_layer_attention(s, attention_form::paper);
    maps.push_back(analysis::aggregate_channels(tensor_view<const double, 3>(full.view())));
  });
  const auto rho = analysis::rollout(maps, 0);
  const auto r = attribute(model, iv, attribution_method::rollout);
  for (index_t j = 0; j < 10; ++j) BOOST_TEST(r.scores[static_cast<std::size_t>(j)] == rho(4, j), boost::test_tools::tolerance(1e-12));

  expect_error([&] { (void)attribute(model, iv, attribution_method::lrp, 7); }, "target_class");
  expect_error([&] { (void)attribute(model, iv, attribution_method::raw, 7); }, "target_class");
  expect_error([&] { (void)mamba_attr(model, iv, -1, {.start_layer = 2}); }, "options.start_layer");
}

// Mean pooling: the scores of the rollout methods are the mean of the rollout's rows.
BOOST_AUTO_TEST_CASE(mean_pooling_reads_every_row) {
  const auto model = load_vim<double>(test_data_dir() / "vim_mean_nopos");
  const auto img = read_image_npy<double>(reference("vim_mean_nopos", "image.npy"));
  const tensor_view<const double, 3> iv(img.view());
  const auto a = mamba_attr(model, iv, -1, {.full_matrix = true});
  BOOST_TEST(a.target.position == -1);
  const index_t L = model.config.sequence_length();
  for (index_t j = 0; j < L; ++j) {
    double mean = 0;
    for (index_t i = 0; i < L; ++i) mean += a.matrix[static_cast<std::size_t>(i * L + j)] / double(L);
    BOOST_TEST(a.scores[static_cast<std::size_t>(j)] == std::max(mean, 0.0), boost::test_tools::tolerance(1e-12));
  }
}
