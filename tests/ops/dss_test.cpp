#define BOOST_TEST_MODULE dss
#include <boost/test/unit_test.hpp>

#include <complex>
#include <numeric>

#include "common/dss_reference.hpp"
#include "common/oracles.hpp"
#include "mixlens/ops/dss.hpp"

using namespace mixlens;
using testing::cld;
using testing::at;
using testing::naive_dss;
using testing::step;

namespace {


// K_k by the direct double sum over states (softmax normalizer shifted by the
// largest Re exponent, so that it stays finite for Re Λ > 0).
template <class T>
std::vector<long double> naive_kernel(const dss_mixer<T>& mixer, index_t c, index_t L) {
  const auto& p = mixer.parameters();
  std::vector<long double> k(L, 0.0L);
  for (index_t n = 0; n < mixer.state_size(); ++n) {
    const cld mu = step(p, c, n), lambda = at(p.lambda, c, n), w = at(p.w, c, n);
    if (mixer.variant() == dss_variant::exp) {
      for (index_t t = 0; t < L; ++t)
        k[t] += (w * (std::exp(mu) - cld(1)) / lambda * std::exp(mu * static_cast<long double>(t))).real();
    } else {
      long double pmax = -1e300L;
      for (index_t r = 0; r < L; ++r) pmax = std::max(pmax, mu.real() * r);
      cld z = 0;
      for (index_t r = 0; r < L; ++r) z += std::exp(mu * static_cast<long double>(r) - pmax);
      for (index_t t = 0; t < L; ++t)
        k[t] += (w / lambda * std::exp(mu * static_cast<long double>(t) - pmax) / z).real();
    }
  }
  return k;
}

template <class T>
dss_parameters<T> params(index_t C, index_t N, double re_lo, double re_hi, std::uint64_t seed, bool sep_dt) {
  auto re = testing::random_vector<T>(C * N, seed, re_lo, re_hi);
  auto im = testing::random_vector<T>(C * N, seed + 1, -3, 3);
  auto w = testing::random_matrix<T>(C, 2 * N, seed + 2);
  dss_parameters<T> p;
  p.lambda = matrix<complex<T>>(C, N);
  p.w = matrix<complex<T>>(C, N);
  for (index_t c = 0; c < C; ++c)
    for (index_t n = 0; n < N; ++n) {
      p.lambda(c, n) = complex<T>(re[c * N + n], im[c * N + n]);
      p.w(c, n) = complex<T>(w(c, 2 * n), w(c, 2 * n + 1));
    }
  p.dt = testing::random_vector<T>(C, seed + 3, 1e-3, 1e-1);
  if (sep_dt) p.dt_imag = testing::random_vector<T>(C, seed + 4, 1e-3, 1e-1);
  p.skip = testing::random_vector<T>(C, seed + 5, -1, 1);
  return p;
}

template <class T>
void check_variant(dss_variant variant, double re_lo, double re_hi) {
  const index_t C = 2, N = 8;
  for (std::uint64_t seed : {1u, 2u}) {
    for (index_t L : testing::test_lengths()) {
      dss_mixer<T> mixer(params<T>(C, N, re_lo, re_hi, 100 * seed + L, seed == 2), variant);
      auto x = testing::random_matrix<T>(C, L, 7 * seed + L);
      auto op = mixer.bind(x.view());
      static_assert(linear_operator<std::remove_cvref_t<decltype(op.view())>>);
      testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
      auto y = mix(op, x.view());
      const double err = testing::relative_error(y, naive_dss(mixer, x));
      BOOST_TEST(err <= 20 * testing::tolerance<T>(), to_string(variant) << " L=" << L << " seed=" << seed << " err=" << err);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(dss_exp_matches_recurrence) {
  check_variant<double>(dss_variant::exp, -1.0, -0.05);
  check_variant<float>(dss_variant::exp, -1.0, -0.05);
}

BOOST_AUTO_TEST_CASE(dss_exp_no_scale_matches_recurrence) {
  check_variant<double>(dss_variant::exp_no_scale, -1.0, -0.05);
  check_variant<float>(dss_variant::exp_no_scale, -1.0, -0.05);
}

BOOST_AUTO_TEST_CASE(dss_softmax_epsilon_bounds_the_reciprocal) {
  // ε → 0 gives the exact kernel; a positive ε shrinks every coefficient.
  auto p = params<double>(2, 6, -1.0, 1.0, 5, true);
  const dss_mixer<double> exact(p, dss_variant::softmax);
  p.softmax_epsilon = 1e-300;
  const dss_mixer<double> tiny(p, dss_variant::softmax);
  const auto k0 = exact.kernel(40), k1 = tiny.kernel(40);
  BOOST_TEST(testing::relative_error(k1, k0) < 1e-13);
  p.softmax_epsilon = -1;
  testing::check_error([&] { dss_mixer<double>(p, dss_variant::softmax); }, {"'softmax_epsilon'", ">= 0"});
}

BOOST_AUTO_TEST_CASE(dss_softmax_matches_recurrence) {
  // Both signs of Re Λ: the softmax kernel allows growing modes.
  check_variant<double>(dss_variant::softmax, -1.0, 1.0);
  check_variant<float>(dss_variant::softmax, -1.0, 1.0);
}

BOOST_AUTO_TEST_CASE(kernel_matches_direct_sums) {
  for (auto variant : {dss_variant::exp, dss_variant::softmax})
    for (index_t L : {1, 5, 64, 1000}) {
      dss_mixer<double> mixer(params<double>(3, 6, -2.0, variant == dss_variant::exp ? -0.01 : 2.0, L, true), variant);
      auto k = mixer.kernel(L);
      for (index_t c = 0; c < 3; ++c) {
        auto ref = naive_kernel(mixer, c, L);
        double diff = 0, scale = 0;
        for (index_t t = 0; t < L; ++t) {
          diff = std::max(diff, double(std::abs(k(c, t) - ref[t])));
          scale = std::max(scale, double(std::abs(ref[t])));
        }
        BOOST_TEST(diff <= 1e-13 * scale, to_string(variant) << " L=" << L << " c=" << c);
      }
    }
}

BOOST_AUTO_TEST_CASE(softmax_extreme_exponents_stay_finite) {
  // Re ΛΔL ≈ ±2000: e^{ΛΔr} over/underflows without the max shift; Re Λ = 0
  // and ΛΔ → 0 hit the geometric-sum edge cases.
  const index_t L = 2048;
  const double res[] = {1.0, -1.0, 0.0, 1e-13, -1e-13};
  for (double re : res) {
    dss_parameters<double> p;
    p.lambda = matrix<complex<double>>(1, 2);
    p.w = matrix<complex<double>>(1, 2);
    p.lambda(0, 0) = complex<double>(re, 0.3);
    p.lambda(0, 1) = complex<double>(re, re == 0.0 ? 1e-12 : -2.0);
    p.w(0, 0) = complex<double>(1.0, -0.5);
    p.w(0, 1) = complex<double>(0.25, 2.0);
    p.dt = {1.0};
    dss_mixer<double> mixer(p, dss_variant::softmax);
    auto k = mixer.kernel(L);
    auto ref = naive_kernel(mixer, 0, L);
    double diff = 0, scale = 0;
    for (index_t t = 0; t < L; ++t) {
      BOOST_REQUIRE(std::isfinite(k(0, t)));
      diff = std::max(diff, double(std::abs(k(0, t) - ref[t])));
      scale = std::max(scale, double(std::abs(ref[t])));
    }
    BOOST_TEST(diff <= 1e-12 * scale, "Re Λ = " << re << ": " << diff / scale);
  }
}

BOOST_AUTO_TEST_CASE(bound_operator_is_input_independent_toeplitz) {
  auto mixer = dss_mixer<double>::init(3, 16, dss_variant::exp, {.seed = 4});
  auto x1 = testing::random_matrix<double>(3, 300, 1), x2 = testing::random_matrix<double>(3, 300, 2, 5.0);
  auto a = mixer.bind(x1.view()), b = mixer.bind(x2.view()), c = mixer.bind(300);
  for (index_t ch = 0; ch < 3; ++ch) {
    auto ma = materialize(a, ch, ch), mb = materialize(b, ch, ch), mc = materialize(c, ch, ch);
    BOOST_TEST(testing::relative_error(ma, mb) == 0.0);
    BOOST_TEST(testing::relative_error(ma, mc) == 0.0);
    for (index_t t = 1; t < 300; ++t)
      for (index_t s = 1; s <= t; ++s) BOOST_REQUIRE_EQUAL(ma(t, s), ma(t - 1, s - 1));
  }
  using traits = operator_traits<causal_conv_operator<double, dss_kind>>;
  static_assert(traits::name == "DSS" && traits::control == data_control::none && traits::time_invariant &&
                !traits::channel_mixing);
}

BOOST_AUTO_TEST_CASE(initializations) {
  // N = 1: S = [[0, −√3/2], [√3/2, 0]], eigenvalues ±i√3/2.
  BOOST_TEST(std::abs(skew_hippo_frequencies(1)[0] - std::sqrt(3.0) / 2) < 1e-15);
  // N = 2: ω₀²ω₁² = Pf(S)² and ω₀² + ω₁² = ‖S‖²_F / 2.
  {
    auto s = [](int r, int c) { return r > c ? std::sqrt(double((2 * r + 1) * (2 * c + 1))) / 2 : -std::sqrt(double((2 * r + 1) * (2 * c + 1))) / 2; };
    const double pf = s(0, 1) * s(2, 3) - s(0, 2) * s(1, 3) + s(0, 3) * s(1, 2);
    auto w = skew_hippo_frequencies(2);
    BOOST_TEST(std::abs(w[0] * w[0] * w[1] * w[1] - pf * pf) < 1e-12 * pf * pf);
    double fro = 0;
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < r; ++c) fro += s(r, c) * s(r, c);
    BOOST_TEST(std::abs(w[0] * w[0] + w[1] * w[1] - fro) < 1e-12 * fro);
  }
  // N = 64: trace identity Σω² = Σ_{r>c} S_rc², descending, positive.
  {
    const index_t N = 64;
    auto w = skew_hippo_frequencies(N);
    double sum = 0, fro = 0;
    for (double v : w) sum += v * v;
    for (int r = 0; r < 2 * N; ++r)
      for (int c = 0; c < r; ++c) fro += (2.0 * r + 1) * (2.0 * c + 1) / 4;
    BOOST_TEST(std::abs(sum - fro) < 1e-12 * fro);
    BOOST_TEST(std::is_sorted(w.rbegin(), w.rend()));
    BOOST_TEST(w.back() > 0.0);
  }
  auto hippo = dss_mixer<float>::init(2, 8, dss_variant::softmax, {.seed = 3});
  auto lin = dss_mixer<double>::init(2, 8, dss_variant::exp, {.lambda_init = dss_init::s4d_lin, .skip = false, .seed = 3});
  const auto omega = skew_hippo_frequencies(8);
  for (index_t c = 0; c < 2; ++c) {
    BOOST_TEST(hippo.parameters().dt[c] >= 1e-3f);
    BOOST_TEST(hippo.parameters().dt[c] <= 1e-1f);
    for (index_t n = 0; n < 8; ++n) {
      BOOST_TEST(hippo.parameters().lambda(c, n).real() == -0.5f);
      BOOST_TEST(hippo.parameters().lambda(c, n).imag() == static_cast<float>(omega[n]));
      BOOST_TEST(std::abs(lin.parameters().lambda(c, n).imag() - std::numbers::pi * n) < 1e-12);
    }
  }
  BOOST_TEST(hippo.parameters().skip.size() == 2u);
  BOOST_TEST(lin.parameters().skip.empty());
  // Initialized mixers pass the operator checks too.
  auto x = testing::random_matrix<float>(2, 512, 9);
  testing::check_linear_operator(hippo.bind(x.view()), x.view(), testing::tolerance<float>());
  auto xd = testing::random_matrix<double>(2, 512, 9);
  testing::check_linear_operator(lin.bind(xd.view()), xd.view(), testing::tolerance<double>());
}

BOOST_AUTO_TEST_CASE(bad_input_throws) {
  auto good = [] { return params<double>(2, 3, -1.0, -0.1, 1, false); };
  {
    auto p = good();
    p.lambda(1, 2) = complex<double>(0.5, 1.0);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'lambda'", "Re Λ < 0", "0.5 + 1i"});
    BOOST_CHECK_NO_THROW(dss_mixer<double>(p, dss_variant::softmax));
    p.lambda(1, 2) = complex<double>(0.0, 1.0);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'lambda'", "Re Λ < 0", "0 + 1i"});
    p.lambda(1, 2) = complex<double>(0.0, 0.0);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::softmax); }, {"'lambda'", "Λ != 0"});
  }
  {
    auto p = good();
    p.dt[1] = 0.0;
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'dt'", "positive", "0"});
    p.dt[1] = -0.5;
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'dt'", "positive", "-0.5"});
    p = good();
    p.dt_imag = {0.1, -1.0};
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'dt_imag'", "positive", "-1"});
    p.dt_imag = {0.1};
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'dt_imag'", "size = 2", "size = 1"});
  }
  {
    auto p = good();
    p.dt = {0.1};
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'dt'", "size = 2", "size = 1"});
    p = good();
    p.w = matrix<complex<double>>(2, 4);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'w'", "columns = 3", "columns = 4"});
    p = good();
    p.skip = {1, 2, 3};
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"'skip'", "size = 2", "size = 3"});
    p = good();
    p.lambda = matrix<complex<double>>(0, 3);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"lambda (channels", "positive", "0"});
    p = good();
    p.lambda = matrix<complex<double>>(2, 0);
    p.w = matrix<complex<double>>(2, 0);
    testing::check_error([&] { dss_mixer<double>(p, dss_variant::exp); }, {"lambda (state size", "positive", "0"});
  }
  dss_mixer<double> mixer(good(), dss_variant::exp);
  testing::check_error([&] { (void)mixer.bind(index_t(0)); }, {"'length'", "positive", "0"});
  testing::check_error([&] { (void)mixer.kernel(-3); }, {"'length'", "positive", "-3"});
  matrix<double> x3(3, 10), x0(2, 0);
  testing::check_error([&] { (void)mixer.bind(x3.view()); }, {"'x'", "channels (extent 0) = 2", "= 3"});
  testing::check_error([&] { (void)mixer.bind(x0.view()); }, {"'x (length", "positive", "0"});
  testing::check_error([&] { (void)dss_mixer<double>::init(0, 4, dss_variant::exp); }, {"'channels'", "positive"});
  testing::check_error([&] { (void)dss_mixer<double>::init(2, 0, dss_variant::exp); }, {"'state_size'", "positive"});
  testing::check_error([&] { (void)dss_mixer<double>::init(2, 4, dss_variant::exp, {.dt_min = 0.0}); }, {"'dt_min'", "positive"});
  auto op = mixer.bind(10);
  matrix<double> y(2, 9);
  testing::check_error([&] { op->apply(x3.view(), y.view()); }, {"'x'", "channels (extent 0) = 2"});
}
