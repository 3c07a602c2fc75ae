#define BOOST_TEST_MODULE rg_lru
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/rg_lru.hpp"

using namespace mixlens;

namespace {

// Griffin's equations written out from the mixer's weights in long double:
// gates, a_t = σ(Λ)^{c r_t} by pow, and the recurrence.
template <class T>
matrix<T> naive_rg_lru(const rg_lru_mixer<T>& m, const matrix<T>& x) {
  const index_t D = x.extent(0), L = x.extent(1);
  auto sig = [](long double z) { return 1.0L / (1.0L + std::exp(-z)); };
  matrix<T> y(D, L);
  for (index_t d = 0; d < D; ++d) {
    long double h = 0;
    for (index_t t = 0; t < L; ++t) {
      long double ra = m.b_a[d], ix = m.b_x[d];
      for (index_t e = 0; e < D; ++e) {
        ra += static_cast<long double>(m.w_a(d, e)) * x(e, t);
        ix += static_cast<long double>(m.w_x(d, e)) * x(e, t);
      }
      const long double a = std::pow(sig(m.lambda[d]), static_cast<long double>(m.c) * sig(ra));
      h = a * h + std::sqrt(1 - a * a) * sig(ix) * x(d, t);
      y(d, t) = static_cast<T>(h);
    }
  }
  return y;
}

template <class T>
void check_rg_lru(index_t L, std::uint64_t seed) {
  const index_t D = 3;
  auto mixer = rg_lru_mixer<T>::init(D, seed);
  auto x = testing::random_matrix<T>(D, L, seed + 100);
  auto op = mixer.bind(x.view());
  static_assert(linear_operator<rg_lru_operator<T>>);
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  auto y = mix(op, x.view());
  const double err = testing::relative_error(y, naive_rg_lru(mixer, x));
  BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
  matrix<T> scanned(D, L);
  op->apply(x.view(), scanned.view(), blelloch_scan{});
  BOOST_TEST(testing::relative_error(scanned, y) <= testing::tolerance<T>());
}

}  // namespace

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive) {
  for (index_t L : testing::test_lengths()) {
    check_rg_lru<double>(L, 1);
    check_rg_lru<double>(L, 2);
    check_rg_lru<float>(L, 3);
  }
}

// Channels split over threads (7 on 2 and 3): the sequential recurrence's
// results bit for bit; and through the host backend's apply.
BOOST_AUTO_TEST_CASE(channel_parallel_apply_is_bit_identical) {
  for (index_t L : {1, 301}) {
    const auto xd = testing::random_matrix<double>(7, L, 40 + L);
    testing::check_threaded_apply(rg_lru_mixer<double>::init(7, 41).bind(xd.view()), xd.view(), "double L=" + std::to_string(L));
    const auto xf = testing::random_matrix<float>(7, L, 42 + L);
    testing::check_threaded_apply(rg_lru_mixer<float>::init(7, 43).bind(xf.view()), xf.view(), "float L=" + std::to_string(L));
  }
}

// Griffin's init: a^c in [0.9, 0.999]; the √(1−a²) factor keeps a constant
// input's response bounded by 1/√(1−a²)·√(1−a²)/(1−a) scaling, here: with r = 1
// and i = 1 the stationary gain of h = a h + √(1−a²) is √((1+a)/(1−a)).
BOOST_AUTO_TEST_CASE(init_and_normalization) {
  auto m = rg_lru_mixer<double>::init(16, 4);
  for (double l : m.lambda) {
    const double ac = std::pow(1 / (1 + std::exp(-l)), 8.0);
    BOOST_TEST(ac >= 0.9);
    BOOST_TEST(ac <= 0.999);
  }
  const index_t L = 4000;
  matrix<double> decay(1, L), scale(1, L), x(1, L);
  for (index_t t = 0; t < L; ++t) {
    decay(0, t) = 0.99;
    scale(0, t) = std::sqrt(1 - 0.99 * 0.99);
    x(0, t) = 1;
  }
  rg_lru_operator<double> op(decay.view(), scale.view());
  auto y = mix(op, x.view());
  BOOST_TEST(std::abs(y(0, L - 1) - std::sqrt(1.99 / 0.01)) <= 1e-9);
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  matrix<double> decay(2, 4), scale(2, 5);
  testing::check_error([&] { rg_lru_operator<double>(decay.view(), scale.view()); }, {"'scale'", "length (extent 1) = 4", "= 5"});
  matrix<double> scale4(2, 4);
  decay(1, 2) = 1.5;
  testing::check_error([&] { rg_lru_operator<double>(decay.view(), scale4.view()).validate(); },
                       {"'decay'", "[0, 1] at [1][2]", "1.5"});
  decay(1, 2) = 0.5;
  rg_lru_operator<double> op(decay.view(), scale4.view());
  matrix<double> x(2, 4), y(2, 3);
  testing::check_error([&] { op.apply(x.view(), y.view()); }, {"'y'", "length (extent 1) = 4", "= 3"});
  std::vector<double> r(4);
  testing::check_error([&] { op.row(0, 0, 4, vector_view<double>(r.data(), r.size())); }, {"'t'", "[0, 4)", "4"});
  auto mixer = rg_lru_mixer<double>::init(3, 1);
  testing::check_error([&] { (void)mixer.bind(x.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { (void)rg_lru_mixer<double>::init(0, 1); }, {"channels", "positive"});
}
