#define BOOST_TEST_MODULE rwkv4
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "common/oracles.hpp"
#include "mixlens/ops/rwkv4.hpp"

using namespace mixlens;

namespace {

// RWKV-4's wkv formula as a direct ratio of sums, in long double (fine for the
// moderate keys used here; the stable form is checked separately).
template <class T>
matrix<T> naive_wkv(const rwkv4_operator<T>& op, const matrix<T>& v) {
  const index_t D = v.extent(0), L = v.extent(1);
  matrix<T> y(D, L);
  for (index_t d = 0; d < D; ++d)
    for (index_t t = 0; t < L; ++t) {
      long double num = 0, den = 0;
      for (index_t j = 0; j < t; ++j) {
        const long double e = std::exp(-static_cast<long double>(t - 1 - j) * op.w[d] + op.k(d, j));
        num += e * v(d, j);
        den += e;
      }
      const long double now = std::exp(static_cast<long double>(op.u[d]) + op.k(d, t));
      const long double g = is_empty(op.receptance) ? 1.0L : static_cast<long double>(op.receptance(d, t));
      y(d, t) = static_cast<T>(g * (num + now * v(d, t)) / (den + now));
    }
  return y;
}

template <class T>
void check_rwkv(index_t L, std::uint64_t seed, bool receptance) {
  const index_t D = 4;
  auto mixer = rwkv4_mixer<T>::init(D, seed, 1, 4);
  auto x = testing::random_matrix<T>(D, L, seed + 100);
  auto op = mixer.bind(x.view(), {.receptance = receptance});
  static_assert(linear_operator<rwkv4_operator<T>>);
  auto v = mixer.values(x.view());
  testing::check_linear_operator(op, v.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, v.view()), naive_wkv(op.view(), v));
  BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive) {
  for (index_t L : testing::test_lengths()) {
    check_rwkv<double>(L, 1, false);
    check_rwkv<double>(L, 2, true);
    check_rwkv<float>(L, 3, true);
  }
}

// Keys of ±1000 overflow every naive exp; the log-sum-exp form stays exact:
// with one dominant key the row is a one-hot at its position.
BOOST_AUTO_TEST_CASE(extreme_keys_stay_finite) {
  const index_t L = 32;
  matrix<float> k(1, L), v(1, L);
  for (index_t t = 0; t < L; ++t) {
    k(0, t) = t == 5 ? 1000.0f : -1000.0f;
    v(0, t) = float(t);
  }
  std::vector<float> w{0.1f}, u{0.0f};
  rwkv4_operator<float> op(k.view(), vector_view<const float>(w.data(), 1), vector_view<const float>(u.data(), 1));
  auto y = mix(op, v.view());
  auto m = materialize(op, 0, 0);
  for (index_t t = 5; t < L; ++t) {
    BOOST_TEST(y(0, t) == 5.0f);
    BOOST_TEST(m(t, 5) == 1.0f);
  }
  // Equal keys before 5: weights e^{−2w}, e^{−w}, 1 on v_0..v_2 and e^u = 1 on v_3.
  const double e1 = std::exp(-0.1), e2 = std::exp(-0.2);
  BOOST_TEST(std::abs(y(0, 3) - (e1 + 2 + 3) / (e2 + e1 + 2)) <= 1e-6);
}

// Rows are convex combinations (without receptance); the bonus sits on the diagonal.
BOOST_AUTO_TEST_CASE(rows_sum_to_one_and_bonus_on_diagonal) {
  const index_t L = 40;
  matrix<double> k(1, L);
  std::vector<double> w{0.3}, u{2.0};
  rwkv4_operator<double> op(k.view(), vector_view<const double>(w.data(), 1), vector_view<const double>(u.data(), 1));
  auto m = materialize(op, 0, 0);
  for (index_t t = 0; t < L; ++t) {
    double s = 0;
    for (index_t j = 0; j <= t; ++j) s += m(t, j);
    BOOST_TEST(std::abs(s - 1) <= 1e-14);
    if (t > 0) BOOST_TEST(std::abs(m(t, t) / m(t, t - 1) - std::exp(2.0)) <= 1e-12);  // e^u vs e^0
    if (t > 1) BOOST_TEST(std::abs(m(t, t - 2) / m(t, t - 1) - std::exp(-0.3)) <= 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  matrix<double> k(2, 4), r(2, 3);
  std::vector<double> w{0.5, -1.0}, u{0, 0}, u1{0};
  auto view = [](const std::vector<double>& a) { return vector_view<const double>(a.data(), a.size()); };
  testing::check_error([&] { rwkv4_operator<double>(k.view(), view(w), view(u)).validate(); },
                       {"'w'", "w > 0 at [1]", "-1"});
  w[1] = 1;
  testing::check_error([&] { rwkv4_operator<double>(k.view(), view(w), view(u1)); }, {"'u'", "size (= channels) = 2", "= 1"});
  testing::check_error([&] { rwkv4_operator<double>(k.view(), view(w), view(u), r.view()); },
                       {"'receptance'", "length (extent 1) = 4", "= 3"});
  rwkv4_operator<double> op(k.view(), view(w), view(u));
  matrix<double> m(4, 4);
  testing::check_error([&] { op.materialize(-1, 0, m.view()); }, {"'out'", "[0, 2)", "-1"});
  auto mixer = rwkv4_mixer<double>::init(3, 1);
  testing::check_error([&] { (void)mixer.bind(k.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { (void)rwkv4_mixer<double>::init(3, 1, 2, 2); }, {"'layer'", "[0, 2)", "2"});
  mixer.time_mix_v.pop_back();
  matrix<double> x(3, 4);
  testing::check_error([&] { (void)mixer.values(x.view()); }, {"time_mix", "size (= channels) = 3", "= 2"});
}
