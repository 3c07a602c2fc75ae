#define BOOST_TEST_MODULE gss
#include <boost/test/unit_test.hpp>

#include <complex>

#include "common/dss_reference.hpp"
#include "common/oracles.hpp"
#include "mixlens/ops/gss.hpp"

using namespace mixlens;
using testing::cld;
using testing::naive_dss;

namespace {

long double gelu(long double v) { return 0.5L * v * (1.0L + std::erf(v / std::sqrt(2.0L))); }

// GELU(W x + b) by direct sums.
template <class T>
matrix<T> naive_projection(const matrix<T>& w, const std::vector<T>& b, const matrix<T>& x) {
  matrix<T> y(w.extent(0), x.extent(1));
  for (index_t o = 0; o < w.extent(0); ++o)
    for (index_t t = 0; t < x.extent(1); ++t) {
      long double acc = b.empty() ? 0.0L : b[o];
      for (index_t i = 0; i < w.extent(1); ++i) acc += static_cast<long double>(w(o, i)) * x(i, t);
      y(o, t) = static_cast<T>(gelu(acc));
    }
  return y;
}


// A mixer with random biases (the default init has none) so the tests cover them.
template <class T>
gss_mixer<T> test_mixer(index_t in, index_t C, index_t N, dss_variant variant, std::uint64_t seed) {
  auto base = gss_mixer<T>::init(in, C, N, variant, {.seed = seed});
  auto p = base.parameters();
  p.b_gate = testing::random_vector<T>(C, seed + 1, -0.5, 0.5);
  p.b_value = testing::random_vector<T>(C, seed + 2, -0.5, 0.5);
  return gss_mixer<T>(std::move(p), base.dss());
}

template <class T>
void check_mixer(dss_variant variant) {
  const index_t in = 3, C = 2, N = 8;
  for (std::uint64_t seed : {1u, 2u}) {
    auto mixer = test_mixer<T>(in, C, N, variant, seed);
    for (index_t L : testing::test_lengths()) {
      auto x = testing::random_matrix<T>(in, L, 10 * seed + L);
      auto op = mixer.bind(x.view());
      static_assert(linear_operator<gss_operator<T>>);
      const auto v = mixer.value(x.view());
      testing::check_linear_operator(op, v.view(), testing::tolerance<T>());

      // Independent reference: gate, value and DSS recurrence by direct sums.
      const auto& p = mixer.parameters();
      const auto g = naive_projection(p.w_gate, p.b_gate, x);
      const auto vn = naive_projection(p.w_value, p.b_value, x);
      const auto d = naive_dss(mixer.dss(), vn);
      matrix<T> ref(C, L);
      for (index_t c = 0; c < C; ++c)
        for (index_t t = 0; t < L; ++t) ref(c, t) = g(c, t) * d(c, t);
      BOOST_TEST(testing::relative_error(mixer.gate(x.view()), g) <= testing::tolerance<T>());
      BOOST_TEST(testing::relative_error(v, vn) <= testing::tolerance<T>());
      const auto y = mixer.forward(x.view());
      const double err = testing::relative_error(y, ref);
      BOOST_TEST(err <= 20 * testing::tolerance<T>(), to_string(variant) << " L=" << L << " err=" << err);
      // forward(x) is the bound operator applied to v(x).
      BOOST_TEST(testing::relative_error(y, mix(op, v.view())) == 0.0);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(traits) {
  using tr = operator_traits<gss_operator<double>>;
  static_assert(tr::name == "GSS" && tr::control == data_control::diagonal && !tr::time_invariant && !tr::channel_mixing);
  static_assert(mixer<gss_mixer<float>> && mixer<dss_mixer<float>>);
}

BOOST_AUTO_TEST_CASE(operator_checks_and_naive_reference) {
  check_mixer<double>(dss_variant::exp);
  check_mixer<float>(dss_variant::exp);
  check_mixer<double>(dss_variant::softmax);
  check_mixer<float>(dss_variant::softmax);
}

BOOST_AUTO_TEST_CASE(matrix_is_gate_times_toeplitz) {
  const index_t L = 200, C = 3;
  auto mixer = test_mixer<double>(4, C, 16, dss_variant::exp, 7);
  auto x = testing::random_matrix<double>(4, L, 1), x0 = testing::random_matrix<double>(4, L, 2);
  auto op = mixer.bind(x.view()), op0 = mixer.bind(x0.view());
  auto lti = mixer.dss().bind(L);
  const auto g = mixer.gate(x.view()), g0 = mixer.gate(x0.view());
  for (index_t c = 0; c < C; ++c) {
    const auto m = materialize(op, c, c), m0 = materialize(op0, c, c), toeplitz = materialize(lti, c, c);
    double changed = 0;
    for (index_t t = 0; t < L; ++t) {
      const double ratio_t = g(c, t) / g0(c, t);
      for (index_t s = 0; s < L; ++s) {
        // M(x) = diag(g(x))·T, entry by entry.
        BOOST_REQUIRE_EQUAL(m(t, s), g(c, t) * toeplitz(t, s));
        if (s > t) continue;
        changed = std::max(changed, std::abs(m(t, s) - m0(t, s)));
        // M(x)/M(x0) on the support depends on t only: rank one, the gate ratio.
        if (std::abs(m0(t, s)) > 1e-12 && std::abs(g0(c, t)) > 1e-6)
          BOOST_REQUIRE_SMALL(m(t, s) / m0(t, s) - ratio_t, 1e-9 * std::max(1.0, std::abs(ratio_t)));
      }
    }
    BOOST_TEST(changed > 1e-3, "M(x) must depend on x (channel " << c << ")");
  }
}

BOOST_AUTO_TEST_CASE(bad_input_throws) {
  auto dss = dss_mixer<double>::init(2, 4, dss_variant::exp);
  auto good = [] { return gss_parameters<double>{matrix<double>(2, 3), {}, matrix<double>(2, 3), {}}; };
  {
    auto p = good();
    p.w_gate = matrix<double>(3, 3);
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'w_gate'", "rows (= DSS channels) = 2", "= 3"});
    p = good();
    p.w_value = matrix<double>(2, 4);
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'w_value'", "columns (= in_channels) = 3", "= 4"});
    p = good();
    p.w_value = matrix<double>(1, 3);
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'w_value'", "rows (= DSS channels) = 2", "= 1"});
    p = good();
    p.w_gate = matrix<double>(2, 0);
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'w_gate (in_channels", "positive", "0"});
    p = good();
    p.b_gate = {1.0};
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'b_gate'", "size = 2", "size = 1"});
    p = good();
    p.b_value = {1.0, 2.0, 3.0};
    testing::check_error([&] { gss_mixer<double>(p, dss); }, {"'b_value'", "size = 2", "size = 3"});
  }
  gss_mixer<double> m(good(), dss);
  matrix<double> x2(2, 8), x0(3, 0);
  testing::check_error([&] { (void)m.bind(x2.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { (void)m.forward(x0.view()); }, {"'x (length", "positive", "0"});
  testing::check_error([&] { (void)m.gate(x2.view()); }, {"gate", "'x'"});
  testing::check_error([&] { (void)gss_mixer<double>::init(0, 2, 4); }, {"'in_channels'", "positive"});
  testing::check_error([&] { (void)gss_mixer<double>::init(2, 2, 0); }, {"'state_size'", "positive"});

  matrix<double> x(3, 8);
  auto op = m.bind(x.view());
  matrix<double> v_bad(2, 7), y(2, 8), mm(8, 8), m_bad(8, 7);
  testing::check_error([&] { op->apply(v_bad.view(), y.view()); }, {"gss_operator::apply", "'v'", "length (extent 1) = 8"});
  testing::check_error([&] { op->materialize(0, 2, mm.view()); }, {"'in'", "[0, 2)"});
  testing::check_error([&] { op->materialize(0, 0, m_bad.view()); }, {"'m'", "columns = 8", "= 7"});
  std::vector<double> r(8);
  testing::check_error([&] { op->row(0, 0, 8, vector_view<double>(r.data(), r.size())); }, {"'t'", "[0, 8)"});
  // A gate that does not match the convolution.
  matrix<double> k(2, 8), gate(2, 5);
  causal_conv_operator<double, dss_kind> conv(k.view(), {}, 8);
  testing::check_error([&] { gss_operator<double>(gate.view(), conv); }, {"'gate'", "length (extent 1) = 8", "= 5"});
}
