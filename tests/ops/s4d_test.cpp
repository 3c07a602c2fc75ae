#define BOOST_TEST_MODULE s4d
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <complex>
#include <numbers>
#include <random>

#include "common/oracles.hpp"
#include "mixlens/ops/s4d.hpp"

using namespace mixlens;
using cd = std::complex<double>;

namespace {

template <class T>
cd to_std(const complex<T>& z) {
  return {double(z.real()), double(z.imag())};
}

// The kernel by the direct recurrence h_k = Ā h_{k−1}, h_0 = B̄, K_k = 2·Re⟨C, h_k⟩, with
// the discretization written out naively here (not the library's Vandermonde path).
template <class T>
std::vector<double> recurrence_kernel(const s4d_mixer<T>& m, index_t h, index_t L) {
  std::vector<double> k(static_cast<std::size_t>(L), 0.0);
  const double dt = std::exp(double(m.log_dt[static_cast<std::size_t>(h)]));
  for (index_t n = 0; n < m.a.extent(1); ++n) {
    const cd a = to_std(m.a(h, n)), b = to_std(m.b(h, n)), c = to_std(m.c(h, n));
    cd abar, bbar;
    if (m.discretization == ssm_discretization::zoh) {
      abar = std::exp(dt * a);
      bbar = (abar - 1.0) / a * b;
    } else {
      abar = (1.0 + dt * a / 2.0) / (1.0 - dt * a / 2.0);
      bbar = dt * b / (1.0 - dt * a / 2.0);
    }
    cd state = bbar;
    for (index_t t = 0; t < L; ++t) {
      k[static_cast<std::size_t>(t)] += 2.0 * (c * state).real();
      state *= abar;
    }
  }
  return k;
}

// y = K * x + D x by direct convolution, with the recurrence kernels.
template <class T>
matrix<T> naive_apply(const s4d_mixer<T>& m, const matrix<T>& x) {
  return testing::direct_convolution(x, [&](index_t h) { return recurrence_kernel(m, h, x.extent(1)); }, m.skip);
}

// A random S4D layer with Re A in [−1, −0.05], Im A in [−20, 20].
template <class T>
s4d_mixer<T> random_mixer(index_t H, index_t half, std::uint64_t seed, ssm_discretization disc) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> re(-1.0, -0.05), im(-20.0, 20.0), nrm(-1.0, 1.0);
  matrix<complex<T>> a(H, half), b(H, half), c(H, half);
  for (index_t h = 0; h < H; ++h)
    for (index_t n = 0; n < half; ++n) {
      a(h, n) = complex<T>(T(re(gen)), T(im(gen)));
      b(h, n) = complex<T>(T(nrm(gen)), T(nrm(gen)));
      c(h, n) = complex<T>(T(nrm(gen)), T(nrm(gen)));
    }
  auto log_dt = testing::random_vector<T>(H, seed + 1, std::log(1e-3), std::log(0.5));
  auto d = testing::random_vector<T>(H, seed + 2, -1, 1);
  return s4d_mixer<T>(std::move(a), std::move(b), std::move(c), std::move(log_dt), std::move(d), disc);
}

double kernel_error(const matrix<double>& k, const std::vector<double>& ref, index_t h) {
  return testing::relative_error(&k(h, 0), ref.data(), k.extent(1));
}

template <class T>
void check_layer(const s4d_mixer<T>& m, index_t L, std::uint64_t seed) {
  auto op = m.bind(L);
  static_assert(linear_operator<std::remove_cvref_t<decltype(op.view())>>);
  static_assert(operator_traits<std::remove_cvref_t<decltype(op.view())>>::name == "S4D");
  auto x = testing::random_matrix<T>(m.channels(), L, seed);
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, x.view()), naive_apply(m, x));
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-11;
  BOOST_TEST(err <= tol, "S4D apply vs naive: " << err << " at L=" << L);
}

}  // namespace

BOOST_AUTO_TEST_CASE(operator_algebra_and_naive_reference) {
  std::uint64_t seed = 100;
  for (index_t L : testing::test_lengths()) {
    seed += 10;
    check_layer(s4d_mixer<double>::init(3, 16, s4d_init::lin, seed), L, seed + 1);
    check_layer(s4d_mixer<double>::init(2, 8, s4d_init::inv, seed + 2, ssm_discretization::bilinear), L, seed + 3);
    check_layer(random_mixer<double>(2, 6, seed + 4, ssm_discretization::zoh), L, seed + 5);
    check_layer(s4d_mixer<float>::init(2, 16, s4d_init::real, seed + 6), L, seed + 7);
    check_layer(random_mixer<float>(2, 4, seed + 8, ssm_discretization::bilinear), L, seed + 9);
  }
}

// ZOH and bilinear, every init, against the recurrence: the Vandermonde kernel is
// exact up to rounding.
BOOST_AUTO_TEST_CASE(kernel_matches_recurrence) {
  const index_t L = 2048;
  std::uint64_t seed = 7;
  for (auto disc : {ssm_discretization::zoh, ssm_discretization::bilinear}) {
    for (auto init : {s4d_init::lin, s4d_init::inv, s4d_init::real})
      for (double dt : {1e-3, 0.1, 1.0}) {
        auto m = s4d_mixer<double>::init(2, 64, init, ++seed, disc, dt, dt);
        const auto k = m.kernel(L);
        for (index_t h = 0; h < 2; ++h)
          BOOST_TEST(kernel_error(k, recurrence_kernel(m, h, L), h) <= 1e-11,
                     to_string(init) << " dt=" << dt << " bilinear=" << (disc == ssm_discretization::bilinear));
      }
    auto m = random_mixer<double>(3, 16, ++seed, disc);
    const auto k = m.kernel(L);
    for (index_t h = 0; h < 3; ++h) BOOST_TEST(kernel_error(k, recurrence_kernel(m, h, L), h) <= 1e-11);
    // float parameters: the kernel is computed in double, then rounded.
    auto mf = s4d_mixer<float>::init(2, 32, s4d_init::inv, ++seed, disc);
    const auto kf = mf.kernel(L);
    for (index_t h = 0; h < 2; ++h) {
      const auto ref = recurrence_kernel(mf, h, L);
      std::vector<float> reff(ref.begin(), ref.end());
      BOOST_TEST(testing::relative_error(&kf(h, 0), reff.data(), L) <= 1e-6);
    }
  }
}

BOOST_AUTO_TEST_CASE(discretizations_differ_and_agree_for_small_steps) {
  // Bilinear and ZOH are both O(Δ²)-close discretizations of the same system.
  auto zoh = s4d_mixer<double>::init(1, 8, s4d_init::lin, 3, ssm_discretization::zoh, 1e-4, 1e-4);
  auto bil = zoh;
  bil.discretization = ssm_discretization::bilinear;
  const auto kz = zoh.kernel(64), kb = bil.kernel(64);
  const double err = testing::relative_error(kz.data(), kb.data(), 64);
  BOOST_TEST(err > 0.0);
  BOOST_TEST(err < 1e-6);
}

BOOST_AUTO_TEST_CASE(materialized_matrix_is_the_kernel_toeplitz) {
  auto m = s4d_mixer<double>::init(2, 16, s4d_init::inv, 11);
  const index_t L = 50;
  auto op = m.bind(L);
  const auto k = m.kernel(L);
  for (index_t h = 0; h < 2; ++h) {
    auto block = materialize(op, h, h);
    double err = 0;
    for (index_t t = 0; t < L; ++t)
      for (index_t s = 0; s < L; ++s) {
        double expect = s > t ? 0.0 : k(h, t - s);
        if (s == t) expect += m.skip[static_cast<std::size_t>(h)];
        err = std::max(err, std::abs(block(t, s) - expect));
      }
    BOOST_TEST(err == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(bound_operator_does_not_depend_on_the_input) {
  auto m = s4d_mixer<double>::init(3, 8, s4d_init::lin, 5);
  const index_t L = 40;
  auto x1 = testing::random_matrix<double>(3, L, 1), x2 = testing::random_matrix<double>(3, L, 2, 10.0);
  auto b1 = m.bind(x1.view()), b2 = m.bind(x2.view()), b3 = m.bind(L);
  for (index_t h = 0; h < 3; ++h) {
    auto m1 = materialize(b1, h, h), m2 = materialize(b2, h, h), m3 = materialize(b3, h, h);
    BOOST_TEST(testing::relative_error(m1, m2) == 0.0);
    BOOST_TEST(testing::relative_error(m1, m3) == 0.0);
  }
  // Moving the owner keeps the view valid (kernel on the heap).
  auto moved = std::move(b1);
  BOOST_TEST(testing::relative_error(mix(moved, x1.view()), mix(b2, x1.view())) == 0.0);
}

BOOST_AUTO_TEST_CASE(initializations_have_the_documented_values) {
  const index_t N = 64;
  const double pi = std::numbers::pi;
  const auto lin = s4d_diagonal<double>(s4d_init::lin, N);
  const auto inv = s4d_diagonal<double>(s4d_init::inv, N);
  const auto real = s4d_diagonal<double>(s4d_init::real, N);
  BOOST_TEST(lin.size() == std::size_t(N / 2));
  for (std::size_t n = 0; n < lin.size(); ++n) {
    const double dn = double(n);
    BOOST_TEST(lin[n].real() == -0.5);
    BOOST_TEST(lin[n].imag() == pi * dn);
    BOOST_TEST(inv[n].real() == -0.5);
    BOOST_TEST(std::abs(inv[n].imag() - N / pi * (N / (2 * dn + 1) - 1)) <= 1e-12 * std::abs(inv[n].imag()));
    BOOST_TEST(real[n].real() == -(dn + 1));
    BOOST_TEST(real[n].imag() == 0.0);
  }
  // Spot values: S4D-Inv n = 0 is (N/π)(N − 1); n = N/2 − 1 is (N/π)(N/(N−1) − 1).
  BOOST_TEST(std::abs(inv[0].imag() - 64.0 / pi * 63.0) < 1e-12);
  BOOST_TEST(std::abs(inv[31].imag() - 64.0 / pi * (64.0 / 63.0 - 1.0)) < 1e-12);
  for (auto init : {s4d_init::lin, s4d_init::inv, s4d_init::real}) {
    auto m = s4d_mixer<float>::init(4, N, init, 9, ssm_discretization::zoh, 1e-3, 1e-1);
    BOOST_TEST(m.channels() == 4);
    BOOST_TEST(m.state_size() == N);
    for (index_t h = 0; h < 4; ++h) {
      const double dt = m.dt(h);
      BOOST_TEST((dt >= 1e-3 * (1 - 1e-6) && dt <= 1e-1 * (1 + 1e-6)));
      for (index_t n = 0; n < N / 2; ++n) {
        BOOST_TEST(m.a(h, n).real() < 0.0f);
        BOOST_TEST((m.b(h, n) == complex<float>(1.0f, 0.0f)));
        const auto s = m.discretize(h, n);
        BOOST_TEST(std::abs(to_std(s.a_bar)) < 1.0);  // stable
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_parameters_throw) {
  auto good = random_mixer<double>(2, 4, 1, ssm_discretization::zoh);
  auto with = [&](auto edit) {
    return [=]() mutable {
      auto m = good;
      edit(m);
      m.validate();
    };
  };
  testing::check_error(with([](auto& m) { m.a(1, 2) = complex<double>(0.1, 3.0); }),
                       {"'a'", "Re < 0", "(1, 2)", "0.1"});
  testing::check_error(with([](auto& m) { m.a(0, 0) = complex<double>(0.0, 1.0); }), {"'a'", "Re < 0"});
  testing::check_error(with([](auto& m) { m.log_dt[1] = -1000.0; }), {"'log_dt'", "dt = exp(log_dt) > 0", "channel 1"});
  testing::check_error(with([](auto& m) { m.log_dt.pop_back(); }), {"'log_dt'", "size = 2", "size = 1"});
  testing::check_error(with([](auto& m) { m.skip.push_back(1.0); }), {"'skip'", "size = 2", "size = 3"});
  testing::check_error(with([](auto& m) { m.b = matrix<complex<double>>(2, 3); }), {"'b'", "states (extent 1) = 4"});
  testing::check_error(with([](auto& m) { m.c = matrix<complex<double>>(1, 4); }), {"'c'", "channels (extent 0) = 2"});
  testing::check_error(with([](auto& m) { m.a = matrix<complex<double>>(0, 4); }), {"'a (channels, extent 0)'", "positive"});
  testing::check_error(with([](auto& m) { m.a = matrix<complex<double>>(2, 0); }), {"'a (states, extent 1)'", "positive"});
  // Constructor checks too.
  testing::check_error([] { s4d_mixer<double>(matrix<complex<double>>(1, 1), matrix<complex<double>>(1, 1),
                                               matrix<complex<double>>(1, 1), {0.0}); },
                       {"'a'", "Re < 0"});
  // Initializers: N odd (no conjugate pairs), zero sizes, bad dt range.
  testing::check_error([] { s4d_mixer<double>::init(2, 7, s4d_init::lin, 1); }, {"'state_size'", "even", "7"});
  testing::check_error([] { s4d_mixer<double>::init(2, 0, s4d_init::lin, 1); }, {"'state_size'", "positive"});
  testing::check_error([] { s4d_mixer<double>::init(0, 8, s4d_init::lin, 1); }, {"'channels'", "positive"});
  testing::check_error([] { s4d_mixer<double>::init(1, 8, s4d_init::lin, 1, ssm_discretization::zoh, -1.0); },
                       {"'dt_min'", "positive"});
  testing::check_error([] { s4d_mixer<double>::init(1, 8, s4d_init::lin, 1, ssm_discretization::zoh, 0.1, 0.01); },
                       {"'dt_max'", ">= dt_min"});
  // Lengths and inputs.
  testing::check_error([&] { (void)good.kernel(0); }, {"'length'", "positive", "0"});
  testing::check_error([&] { (void)good.bind(index_t(0)); }, {"'length'", "positive"});
  matrix<double> x3(3, 5), x0(2, 0);
  testing::check_error([&] { (void)good.bind(x3.view()); }, {"'x'", "channels (extent 0) = 2", "= 3"});
  testing::check_error([&] { (void)good.bind(x0.view()); }, {"'x (length, extent 1)'", "positive"});
  auto op = good.bind(8);
  matrix<double> y(2, 8), x(2, 9);
  testing::check_error([&] { op->apply(x.view(), y.view()); }, {"'x'", "length (extent 1) = 8", "= 9"});
}
