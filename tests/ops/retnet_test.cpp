#define BOOST_TEST_MODULE retnet
#include <boost/test/unit_test.hpp>

#include <Eigen/Dense>

#include <cmath>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/retnet.hpp"

using namespace mixlens;

namespace {

// Σ_{j≤i} γ^{i−j} ⟨q_i, k_j⟩ v_j with γ^{i−j} from std::pow, in long double.
template <class T>
matrix<T> naive_retention(const retnet_operator<T>& op, const matrix<T>& v) {
  const index_t L = op.length(), E = op.key_size();
  matrix<T> y(v.extent(0), L);
  for (index_t c = 0; c < v.extent(0); ++c) {
    const index_t h = c / op.head_dim;
    const long double g = op.gamma[static_cast<std::size_t>(h)];
    for (index_t i = 0; i < L; ++i) {
      long double acc = 0;
      for (index_t j = 0; j <= i; ++j) {
        long double s = 0;
        for (index_t e = 0; e < E; ++e) s += static_cast<long double>(op.q(h, e, i)) * op.k(h, e, j);
        acc += std::pow(g, static_cast<long double>(i - j)) * s * v(c, j);
      }
      y(c, i) = static_cast<T>(acc);
    }
  }
  return y;
}

template <class T>
void check_retnet(index_t L, std::uint64_t seed) {
  const index_t D = 3, H = 3, E = 2, P = 1;
  auto mixer = retnet_mixer<T>::init(D, H, E, P, seed);
  auto x = testing::random_matrix<T>(D, L, seed + 100);
  auto op = mixer.bind(x.view());
  static_assert(linear_operator<retnet_operator<T>>);
  auto v = mixer.values(x.view());
  testing::check_linear_operator(op, v.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, v.view()), naive_retention(op.view(), v));
  BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive) {
  for (index_t L : testing::test_lengths()) {
    check_retnet<double>(L, 1);
    check_retnet<double>(L, 2);
    check_retnet<float>(L, 3);
  }
}

// Value channels split over threads (3 heads of 3 channels: blocks cut through
// heads on 2 threads): the single-threaded results bit for bit; and through the
// host backend's apply.
BOOST_AUTO_TEST_CASE(channel_parallel_apply_is_bit_identical) {
  const auto mixer = retnet_mixer<double>::init(4, 3, 2, 3, 70);
  const auto x = testing::random_matrix<double>(4, 157, 71);
  const auto v = mixer.values(x.view());
  testing::check_threaded_apply(mixer.bind(x.view()), v.view(), "double");
  const auto mf = retnet_mixer<float>::init(4, 3, 2, 3, 72);
  const auto xf = testing::random_matrix<float>(4, 157, 73);
  const auto vf = mf.values(xf.view());
  testing::check_threaded_apply(mf.bind(xf.view()), vf.view(), "float");
}

BOOST_AUTO_TEST_CASE(gammas_follow_retnet) {
  auto g = retnet_gammas<double>(4);
  BOOST_TEST(g[0] == 1 - 1.0 / 32);
  BOOST_TEST(g[3] == 1 - 1.0 / 256);
}

// With unit scores the matrix is the fixed decay γ^{i−j} (Toeplitz); with data
// the strictly lower blocks have rank ≤ E.
BOOST_AUTO_TEST_CASE(structure) {
  const index_t L = 48;
  tensor<double, 3> q(1, 1, L), k(1, 1, L);
  for (index_t t = 0; t < L; ++t) q(0, 0, t) = k(0, 0, t) = 1;
  std::vector<double> g{0.9};
  retnet_operator<double> fixed(q.view(), k.view(), vector_view<const double>(g.data(), 1), 1);
  auto m = materialize(fixed, 0, 0);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) BOOST_TEST(std::abs(m(i, j) - std::pow(0.9, double(i - j))) <= 1e-14);

  const index_t E = 2;
  auto mixer = retnet_mixer<double>::init(4, 1, E, 1, 9);
  auto x = testing::random_matrix<double>(4, L, 10);
  auto md = materialize(mixer.bind(x.view()), 0, 0);
  Eigen::MatrixXd block(L / 2, L / 2);
  for (index_t i = 0; i < L / 2; ++i)
    for (index_t j = 0; j < L / 2; ++j) block(i, j) = md(L / 2 + i, j);
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(block);
  BOOST_TEST(svd.singularValues()(E - 1) > 1e-8 * svd.singularValues()(0));
  BOOST_TEST(svd.singularValues()(E) <= 1e-12 * svd.singularValues()(0));
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  tensor<double, 3> q(2, 2, 4), k(2, 2, 4);
  std::vector<double> g{0.5, 1.0}, g1{0.5};
  testing::check_error(
      [&] { retnet_operator<double>(q.view(), k.view(), vector_view<const double>(g.data(), 2), 1).validate(); },
      {"'gamma'", "(0, 1) at [1]", "1"});
  testing::check_error([&] { retnet_operator<double>(q.view(), k.view(), vector_view<const double>(g1.data(), 1), 1); },
                       {"'gamma'", "size (= heads) = 2", "= 1"});
  g[1] = 0.25;
  retnet_operator<double> op(q.view(), k.view(), vector_view<const double>(g.data(), 2), 3);
  matrix<double> m(4, 5);
  testing::check_error([&] { op.materialize(0, 0, m.view()); }, {"'m'", "columns = 4", "= 5"});
  testing::check_error([&] { op.materialize(0, 6, m.view()); }, {"'in'", "[0, 6)", "6"});
  auto mixer = retnet_mixer<double>::init(3, 2, 2, 2, 1);
  mixer.gamma.pop_back();
  matrix<double> x(3, 4);
  testing::check_error([&] { (void)mixer.bind(x.view()); }, {"'gamma'", "size (= heads) = 2", "= 1"});
}
