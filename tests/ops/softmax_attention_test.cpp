#define BOOST_TEST_MODULE softmax_attention
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/softmax_attention.hpp"

using namespace mixlens;

namespace {

// softmax(q·k/√E) v written out directly in long double: the independent oracle.
template <class T>
matrix<T> naive_attention(const softmax_attention_operator<T>& op, const matrix<T>& v) {
  const index_t L = op.length(), E = op.key_size();
  matrix<T> y(v.extent(0), L);
  std::vector<long double> w(static_cast<std::size_t>(L));
  for (index_t c = 0; c < v.extent(0); ++c) {
    const index_t h = c / op.head_dim;
    for (index_t i = 0; i < L; ++i) {
      long double z = 0, acc = 0;
      for (index_t j = 0; j <= i; ++j) {
        long double s = 0;
        for (index_t e = 0; e < E; ++e) s += static_cast<long double>(op.q(h, e, i)) * op.k(h, e, j);
        w[j] = std::exp(s / std::sqrt(static_cast<long double>(E)));
        z += w[j];
      }
      for (index_t j = 0; j <= i; ++j) acc += w[j] / z * v(c, j);
      y(c, i) = static_cast<T>(acc);
    }
  }
  return y;
}

template <class T>
void check_attention(index_t L, std::uint64_t seed) {
  const index_t D = 3, H = 2, E = 3, P = 2;
  auto mixer = softmax_attention_mixer<T>::init(D, H, E, P, seed);
  auto x = testing::random_matrix<T>(D, L, seed + 100);
  auto op = mixer.bind(x.view());
  static_assert(linear_operator<softmax_attention_operator<T>>);
  auto v = mixer.values(x.view());
  BOOST_TEST_REQUIRE(v.extent(0) == H * P);
  testing::check_linear_operator(op, v.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, v.view()), naive_attention(op.view(), v));
  BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
  // Rows are probability distributions; heads share one matrix across their channels.
  auto m0 = materialize(op, 0, 0), m1 = materialize(op, 1, 1);
  BOOST_TEST(testing::relative_error(m0, m1) == 0.0);
  for (index_t t = 0; t < L; t += std::max<index_t>(1, L / 7)) {
    double s = 0;
    for (index_t j = 0; j <= t; ++j) s += m0(t, j);
    BOOST_TEST(std::abs(s - 1) <= 10 * testing::tolerance<T>());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive) {
  for (index_t L : testing::test_lengths(1024))
    for (std::uint64_t seed : {1u, 2u}) {
      check_attention<double>(L, seed);
      check_attention<float>(L, seed + 7);
    }
  check_attention<double>(2048, 3);
}

// Query rows split over threads (blocks of 32 rows dealt out in turn; 101 and
// 7 rows, 3 heads, on 2 and 3 threads): the single-threaded results bit for
// bit; and through the host backend's apply.
BOOST_AUTO_TEST_CASE(row_parallel_apply_is_bit_identical) {
  for (index_t L : {7, 101}) {
    const auto mixer = softmax_attention_mixer<double>::init(4, 3, 3, 2, 50 + L);
    const auto x = testing::random_matrix<double>(4, L, 51 + L);
    const auto v = mixer.values(x.view());
    testing::check_threaded_apply(mixer.bind(x.view()), v.view(), "double L=" + std::to_string(L));
    const auto mf = softmax_attention_mixer<float>::init(4, 3, 3, 2, 52 + L);
    const auto xf = testing::random_matrix<float>(4, L, 53 + L);
    const auto vf = mf.values(xf.view());
    testing::check_threaded_apply(mf.bind(xf.view()), vf.view(), "float L=" + std::to_string(L));
  }
}

// Huge scores (|s| ≫ 700) would overflow a naive exp; the stable form stays finite.
BOOST_AUTO_TEST_CASE(large_scores_stay_finite) {
  const index_t L = 64;
  tensor<double, 3> q(1, 1, L), k(1, 1, L);
  for (index_t t = 0; t < L; ++t) {
    q(0, 0, t) = 1e3;
    k(0, 0, t) = double(t);  // the latest key dominates
  }
  softmax_attention_operator<double> op(q.view(), k.view(), 1);
  auto m = materialize(op, 0, 0);
  for (index_t t = 0; t < L; ++t) {
    BOOST_TEST(std::isfinite(m(t, t)));
    BOOST_TEST(std::abs(m(t, t) - 1.0) <= 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(bad_shapes_throw) {
  tensor<double, 3> q(2, 3, 8), k(2, 4, 8), k2(2, 3, 8);
  testing::check_error([&] { softmax_attention_operator<double>(q.view(), k.view(), 2); },
                       {"'k'", "features (extent 1) = 3", "= 4"});
  testing::check_error([&] { softmax_attention_operator<double>(q.view(), k2.view(), 0); }, {"head_dim", "positive"});
  softmax_attention_operator<double> op(q.view(), k2.view(), 2);
  matrix<double> v(3, 8), y(4, 8), m(8, 8);
  testing::check_error([&] { op.apply(v.view(), y.view()); }, {"'v'", "channels (extent 0) = 4", "= 3"});
  testing::check_error([&] { op.materialize(4, 0, m.view()); }, {"'out'", "[0, 4)"});
  std::vector<double> r(7);
  testing::check_error([&] { op.row(0, 0, 2, vector_view<double>(r.data(), r.size())); }, {"'row'", "size = 8"});
  auto mixer = softmax_attention_mixer<double>::init(3, 2, 3, 2, 1);
  matrix<double> x(5, 8);
  testing::check_error([&] { (void)mixer.bind(x.view()); }, {"'x'", "channels (extent 0) = 3", "= 5"});
  mixer.proj.heads = 4;
  matrix<double> x3(3, 8);
  testing::check_error([&] { (void)mixer.bind(x3.view()); }, {"w_q", "divisible by the 4 heads", "6"});
  testing::check_error([&] { (void)softmax_attention_mixer<double>::init(3, 0, 3, 2, 1); }, {"heads", "positive"});
}
