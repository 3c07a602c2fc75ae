#define BOOST_TEST_MODULE linear_attention
#include <boost/test/unit_test.hpp>

#include <Eigen/Dense>

#include <cmath>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/linear_attention.hpp"

using namespace mixlens;

namespace {

// Σ_{j≤i} ⟨φq_i, φk_j⟩ v_j / Σ_{j≤i} ⟨φq_i, φk_j⟩, summed directly in long double.
template <class T>
matrix<T> naive_linear_attention(const linear_attention_operator<T>& op, const matrix<T>& v) {
  const index_t L = op.length(), E = op.key_size();
  matrix<T> y(v.extent(0), L);
  for (index_t c = 0; c < v.extent(0); ++c) {
    const index_t h = c / op.head_dim;
    for (index_t i = 0; i < L; ++i) {
      long double num = 0, den = 0;
      for (index_t j = 0; j <= i; ++j) {
        long double s = 0;
        for (index_t e = 0; e < E; ++e) s += static_cast<long double>(op.q(h, e, i)) * op.k(h, e, j);
        num += s * v(c, j);
        den += s;
      }
      y(c, i) = static_cast<T>(op.normalized ? num / den : num);
    }
  }
  return y;
}

template <class T>
void check_linear(index_t L, std::uint64_t seed, bool normalized) {
  const index_t D = 3, H = 2, E = 3, P = 2;
  auto mixer = linear_attention_mixer<T>::init(D, H, E, P, seed, {.normalized = normalized});
  auto x = testing::random_matrix<T>(D, L, seed + 100);
  auto op = mixer.bind(x.view());
  static_assert(linear_operator<linear_attention_operator<T>>);
  auto v = mixer.values(x.view());
  testing::check_linear_operator(op, v.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, v.view()), naive_linear_attention(op.view(), v));
  BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive) {
  for (index_t L : testing::test_lengths())
    for (bool normalized : {true, false}) {
      check_linear<double>(L, 1, normalized);
      check_linear<double>(L, 2, normalized);
      check_linear<float>(L, 3, normalized);
    }
}

// Value channels split over threads (3 heads of 3 channels: blocks cut through
// heads on 2 threads): the single-threaded results bit for bit, normalized or
// not; and through the host backend's apply.
BOOST_AUTO_TEST_CASE(channel_parallel_apply_is_bit_identical) {
  for (bool normalized : {true, false}) {
    const auto mixer = linear_attention_mixer<double>::init(4, 3, 3, 3, 60, {.normalized = normalized});
    const auto x = testing::random_matrix<double>(4, 157, 61);
    const auto v = mixer.values(x.view());
    testing::check_threaded_apply(mixer.bind(x.view()), v.view(), normalized ? "normalized" : "unnormalized");
  }
  const auto mixer = linear_attention_mixer<float>::init(4, 3, 3, 3, 62);
  const auto x = testing::random_matrix<float>(4, 157, 63);
  const auto v = mixer.values(x.view());
  testing::check_threaded_apply(mixer.bind(x.view()), v.view(), "float");
}

// Without the normalizer M = tril(φQ φKᵀ): every strictly lower block has rank ≤ E.
BOOST_AUTO_TEST_CASE(off_diagonal_rank_is_at_most_key_size) {
  const index_t L = 64, E = 3;
  auto mixer = linear_attention_mixer<double>::init(4, 1, E, 1, 5, {.normalized = true});
  auto x = testing::random_matrix<double>(4, L, 6);
  auto m = materialize(mixer.bind(x.view()), 0, 0);
  Eigen::MatrixXd block(L / 2, L / 2);
  for (index_t i = 0; i < L / 2; ++i)
    for (index_t j = 0; j < L / 2; ++j) block(i, j) = m(L / 2 + i, j);
  Eigen::JacobiSVD<Eigen::MatrixXd> svd(block);
  const auto s = svd.singularValues();
  BOOST_TEST(s(E - 1) > 1e-10 * s(0));
  BOOST_TEST(s(E) <= 1e-12 * s(0));
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  tensor<double, 3> q(1, 2, 4), k(1, 2, 4);
  for (index_t i = 0; i < q.size(); ++i) q.data()[i] = k.data()[i] = 1;
  k(0, 1, 3) = -0.5;
  testing::check_error([&] { linear_attention_operator<double>(q.view(), k.view(), 1, true).validate(); },
                       {"'k'", "positive features", "[0][1][3]", "-0.5"});
  linear_attention_operator<double> raw(q.view(), k.view(), 1, false);  // signed features are fine unnormalized
  BOOST_CHECK_NO_THROW(raw.validate());
  matrix<double> v(1, 5), y(1, 4);
  testing::check_error([&] { raw.apply(v.view(), y.view()); }, {"'v'", "length (extent 1) = 4", "= 5"});
  tensor<double, 3> k3(1, 2, 5);
  testing::check_error([&] { linear_attention_operator<double>(q.view(), k3.view(), 1, false); },
                       {"'k'", "length (extent 2) = 4", "= 5"});
  auto mixer = linear_attention_mixer<double>::init(3, 1, 2, 2, 1);
  matrix<double> x(2, 4);
  testing::check_error([&] { (void)mixer.values(x.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  matrix<double> x0(3, 0);
  testing::check_error([&] { (void)mixer.bind(x0.view()); }, {"length", "positive"});
}
