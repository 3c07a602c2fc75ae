#define BOOST_TEST_MODULE mamba_attention
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/mamba_attention.hpp"

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;
using namespace mixlens::testing;

namespace {

const fs::path data_dir = test_data_dir();

// Writes into a copied signal (the copy's memory belongs to the test).
template <class T>
T& at(matrix_view<const T> m, index_t i, index_t j) {
  return const_cast<T&>(m(i, j));
}

// Eq. 12 of the paper summed term by term in long double from Δ, A, B, C: the
// independent oracle for α.
template <class T>
long double naive_alpha(const mamba_layer_signals<T>& s, index_t d, index_t i, index_t j) {
  if (j > i) return 0;
  long double sum = 0;
  for (index_t n = 0; n < s.a.extent(1); ++n) {
    long double decay = 0;
    for (index_t k = j + 1; k <= i; ++k) decay += s.delta(d, k);
    sum += static_cast<long double>(s.c(0, n, i)) * std::exp(static_cast<long double>(s.a(d, n)) * decay) *
           s.delta(d, j) * s.b(0, n, j);
  }
  return sum;
}

template <class T>
void check_model(const char* name, int sequence, double tol) {
  const auto model = load_mamba<T>(data_dir / name);
  const auto tokens = tokens_of(name, sequence);
  const auto signals = all_signals(model, tokens);
  const index_t L = static_cast<index_t>(tokens.size());
  for (const auto& owner : signals) {
    const auto& s = owner.view();
    const index_t D = s.u.extent(0);

    // The self-test: both forms reproduce the layer's output.
    const auto e = check_reconstruction(s);
    BOOST_TEST(e.paper <= tol, name << " layer " << s.layer << ": paper reconstruction " << e.paper);
    BOOST_TEST(e.unified <= tol, name << " layer " << s.layer << ": unified reconstruction " << e.unified);

    // α against the independent eq. 12 oracle, on a few channels.
    const auto alpha = layer_attention(s, attention_form::paper);
    double diff = 0, scale = 0;
    for (index_t d = 0; d < D; d += std::max<index_t>(1, D / 5))
      for (index_t i = 0; i < L; ++i)
        for (index_t j = 0; j < L; ++j) {
          const long double want = naive_alpha(s, d, i, j);
          diff = std::max(diff, static_cast<double>(std::abs(alpha(d, i, j) - want)));
          scale = std::max(scale, static_cast<double>(std::abs(want)));
        }
    BOOST_TEST(diff <= tol * std::max(scale, 1.0), name << " layer " << s.layer << ": alpha vs eq. 12 " << diff);

    // Rows without the matrix equal the matrix's rows, in both forms.
    const auto unified = layer_attention(s, attention_form::unified);
    for (index_t d : {index_t(0), D - 1})
      for (index_t t : {index_t(0), L / 2, L - 1}) {
        const auto rp = layer_attention_row(s, attention_form::paper, d, t);
        const auto ru = layer_attention_row(s, attention_form::unified, d, t);
        for (index_t j = 0; j < L; ++j) {
          BOOST_TEST(std::abs(rp[static_cast<std::size_t>(j)] - alpha(d, t, j)) <= tol * (1 + std::abs(alpha(d, t, j))));
          BOOST_TEST(std::abs(ru[static_cast<std::size_t>(j)] - unified(d, t, j)) <= tol * (1 + std::abs(unified(d, t, j))));
        }
      }

    // Causal: nothing above the diagonal; the conv bias shows up as an offset.
    for (index_t d = 0; d < D; ++d)
      for (index_t i = 0; i < L; ++i)
        for (index_t j = i + 1; j < L; ++j) {
          BOOST_TEST(alpha(d, i, j) == T(0));
          BOOST_TEST(unified(d, i, j) == T(0));
        }
    const auto op = unified_operator(s);
    double offset = 0;
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) offset = std::max(offset, static_cast<double>(std::abs(op->offset(d, t))));
    BOOST_TEST(offset > 0, name << ": conv bias offset should be non-zero");
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(reconstruction_rows_and_eq12_double) {
  check_model<double>("mamba_tied_fp32", 2, 1e-12);
  check_model<double>("mamba_bias_bf16", 1, 1e-12);
  check_model<double>("mamba_ss_f16", 0, 1e-12);
  check_model<double>("falcon_mamba_fp32", 1, 1e-12);
  check_model<double>("falcon_mamba_sharded_bf16", 0, 1e-12);
}

BOOST_AUTO_TEST_CASE(reconstruction_rows_and_eq12_float) {
  check_model<float>("mamba_tied_fp32", 2, 1e-5);
  check_model<float>("mamba_bias_bf16", 1, 1e-5);
  check_model<float>("falcon_mamba_fp32", 1, 1e-5);
}

BOOST_AUTO_TEST_CASE(paper_form_against_transformers_signals) {
  // α·u + D·u, gated, from the C++ signals, against the out_proj input that
  // transformers recorded: the attention explains the real layer.
  const auto model = load_mamba<double>(data_dir / "mamba_bias_bf16");
  const auto tokens = tokens_of("mamba_bias_bf16", 1);
  const index_t L = static_cast<index_t>(tokens.size());
  (void)mamba_forward(model, std::span<const index_t>(tokens), [&](const mamba_layer_signals<double>& s) {
    const auto ref = io::read_npy(data_dir / "reference" / "mamba_bias_bf16" /
                                  ("layer" + std::to_string(s.layer) + "_1_ssm_out.npy")).as<double>();
    const auto alpha = layer_attention(s, attention_form::paper);
    const index_t D = s.u.extent(0);
    double diff = 0, scale = 0;
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        double y = s.skip[static_cast<std::size_t>(d)] * s.u(d, t);
        for (index_t j = 0; j <= t; ++j) y += alpha(d, t, j) * s.u(d, j);
        y *= s.gate(d, t);
        const double want = ref[static_cast<std::size_t>(t * D + d)];
        diff = std::max(diff, std::abs(y - want));
        scale = std::max(scale, std::abs(want));
      }
    BOOST_TEST(diff / scale <= 1e-5, "layer " << s.layer << ": " << diff / scale);
  });
}

BOOST_AUTO_TEST_CASE(streaming_visits_the_selected_layers) {
  const auto model = load_mamba<double>(data_dir / "mamba_bias_bf16");
  const auto tokens = tokens_of("mamba_bias_bf16", 1);
  const std::vector<index_t> layers{2, 0};
  std::vector<index_t> seen;
  const auto logits = for_each_layer_attention(model, std::span<const index_t>(tokens), attention_form::unified,
                                               std::span<const index_t>(layers),
                                               [&](const mamba_layer_signals<double>& s, tensor_view<const double, 3> a) {
                                                 seen.push_back(s.layer);
                                                 BOOST_TEST(a.extent(0) == 120);
                                                 BOOST_TEST(a.extent(1) == static_cast<index_t>(tokens.size()));
                                                 const auto direct = layer_attention(s, attention_form::unified);
                                                 BOOST_TEST(std::equal(direct.data(), direct.data() + direct.size(), a.data_handle()));
                                               });
  BOOST_TEST(seen == (std::vector<index_t>{0, 2}));
  const auto plain = mamba_forward(model, std::span<const index_t>(tokens));
  BOOST_TEST(testing::relative_error(logits, plain) == 0.0);

  const std::vector<index_t> bad{3};
  testing::check_error([&] {
    (void)for_each_layer_attention(model, std::span<const index_t>(tokens), attention_form::paper,
                                   std::span<const index_t>(bad), [](auto&&...) {});
  }, {"layers", "[0, 3)"});
  const auto signals = all_signals(model, tokens);
  tensor<double, 3> wrong(120, 5, 5);
  testing::check_error([&] { layer_attention(signals[0].view(), attention_form::paper, wrong.view()); },
                       {"out", "rows"});
  testing::check_error([&] { (void)layer_attention_row(signals[0].view(), attention_form::paper, 120, 0); },
                       {"channel in [0, 120)"});
  testing::check_error([&] { (void)layer_attention_row(signals[0].view(), attention_form::paper, 0, 99); },
                       {"position"});
}

// The self-test must fail on a NaN or an infinity, not pass because a max over
// the errors skipped it.
BOOST_AUTO_TEST_CASE(reconstruction_fails_on_non_finite_values) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const auto model = load_mamba<double>(data_dir / "mamba_bias_bf16");
  const auto tokens = tokens_of("mamba_bias_bf16", 1);
  const auto signals = all_signals(model, tokens);
  const auto fine = check_reconstruction(signals[0].view());
  BOOST_REQUIRE(fine.paper <= 1e-10);
  BOOST_REQUIRE(fine.unified <= 1e-10);

  for (const double bad : {nan, inf, -inf}) {
    const auto copy = owned_copy(signals[0].view());
    at(copy->y, 7, 3) = bad;  // the output checked against
    const auto e = check_reconstruction(copy.view());
    BOOST_TEST(!(e.paper <= 1e-4), "y(7, 3) = " << bad << ": paper error " << e.paper);
    BOOST_TEST(!(e.unified <= 1e-4), "y(7, 3) = " << bad << ": unified error " << e.unified);
  }
  {
    const auto copy = owned_copy(signals[0].view());
    at(copy->u, 4, 0) = nan;  // the paper form's input: its reconstruction is NaN, y is not
    const auto e = check_reconstruction(copy.view());
    BOOST_TEST(std::isnan(e.paper));
    BOOST_TEST(e.unified <= 1e-10);
  }
  // One NaN weight (the D skip of the last layer): that layer's y is NaN in one
  // channel, and its check fails.
  auto broken = model;
  const auto last = static_cast<std::size_t>(broken.num_layers() - 1);
  broken.layers[last].ssm.skip[5] = nan;
  const auto broken_signals = all_signals(broken, tokens);
  const auto e = check_reconstruction(broken_signals[last].view());
  BOOST_TEST(std::isnan(e.paper));
  BOOST_TEST(std::isnan(e.unified));
}
