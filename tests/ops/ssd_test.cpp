#define BOOST_TEST_MODULE ssd
#include <boost/test/unit_test.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/ssd.hpp"

using namespace mixlens;

namespace {

// ssd_minimal's definition summed term by term in long double:
// y_i = Σ_{j≤i} ⟨C_i, B_j⟩ exp(a Σ_{k=j+1..i} Δ_k) Δ_j x_j + D x_i.
template <class T>
matrix<T> naive_ssd(const ssd_operator<T>& op, const matrix<T>& x) {
  const index_t L = op.length();
  matrix<T> y(x.extent(0), L);
  for (index_t ch = 0; ch < x.extent(0); ++ch) {
    const index_t h = ch / op.head_dim, g = op.group_of(h);
    for (index_t i = 0; i < L; ++i) {
      long double acc = op.skip.empty() ? 0.0L : static_cast<long double>(op.skip[h]) * x(ch, i);
      for (index_t j = 0; j <= i; ++j) {
        long double seg = 0, cb = 0;
        for (index_t k = j + 1; k <= i; ++k) seg += op.delta(h, k);
        for (index_t n = 0; n < op.state_size(); ++n) cb += static_cast<long double>(op.c(g, n, i)) * op.b(g, n, j);
        acc += cb * std::exp(static_cast<long double>(op.a[h]) * seg) * op.delta(h, j) * x(ch, j);
      }
      y(ch, i) = static_cast<T>(acc);
    }
  }
  return y;
}

template <class T>
void check_ssd(index_t L, std::uint64_t seed, index_t groups, bool skip, index_t chunk) {
  const index_t H = 2, P = 2, N = 3;
  auto mixer = ssd_mixer<T>::init(H, P, N, seed, groups);
  mixer.chunk = chunk;
  auto x = testing::random_matrix<T>(H * P, L, seed + 100);
  auto op = mixer.bind(x.view(), {.skip = skip});
  static_assert(linear_operator<ssd_operator<T>>);
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  auto chunked = mix(op, x.view());
  matrix<T> recurrent(H * P, L);
  op->apply_recurrent(x.view(), recurrent.view());
  BOOST_TEST(testing::relative_error(chunked, recurrent) <= testing::tolerance<T>(), "chunk " << chunk << " L=" << L);
  if (L <= 257) {
    const double err = testing::relative_error(chunked, naive_ssd(op.view(), x));
    BOOST_TEST(err <= 10 * testing::tolerance<T>(), "naive reference at L=" << L << ": " << err);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(chunked_recurrent_and_quadratic_forms_agree) {
  for (index_t L : testing::test_lengths()) {
    check_ssd<double>(L, 1, 1, false, 64);
    check_ssd<double>(L, 2, 2, true, 7);
    check_ssd<float>(L, 3, 1, true, 64);
  }
  for (index_t chunk : {1, 3, 16, 300}) check_ssd<double>(257, 4, 1, false, chunk);
}

// Heads split over threads (5 heads on 2 and 3): the single-threaded results
// bit for bit, with per-head and per-channel skip and a gate; and through the
// host backend's apply.
BOOST_AUTO_TEST_CASE(head_parallel_apply_is_bit_identical) {
  const index_t H = 5, P = 3, N = 4, L = 203;
  for (index_t groups : {1, 5}) {
    auto mixer = ssd_mixer<double>::init(H, P, N, 30 + groups, groups);
    mixer.chunk = 32;
    const auto x = testing::random_matrix<double>(H * P, L, 31);
    const auto op = mixer.bind(x.view(), {.skip = true});
    testing::check_threaded_apply(op, x.view(), "groups " + std::to_string(groups));
    const auto gate = testing::random_matrix<double>(H * P, L, 32);
    const auto skip = testing::random_vector<double>(H * P, 33, -1, 1);
    auto gated = op.view();
    gated.gate = gate.view();
    gated.skip = vector_view<const double>(skip.data(), skip.size());
    testing::check_threaded_apply(gated, x.view(), "gate, per-channel skip, groups " + std::to_string(groups));
  }
  auto mixer = ssd_mixer<float>::init(H, P, N, 34);
  const auto x = testing::random_matrix<float>(H * P, 130, 35);
  testing::check_threaded_apply(mixer.bind(x.view()), x.view(), "float");
}

// Long sequences with strong decay: exp(a·ΣΔ) for the far corner is e^{−thousands};
// every entry must stay finite (no exp of large positive prefix sums).
BOOST_AUTO_TEST_CASE(strong_decay_stays_finite) {
  const index_t L = 2048;
  auto mixer = ssd_mixer<float>::init(1, 1, 2, 7);
  mixer.a_log[0] = std::log(16.0f);
  mixer.dt_bias[0] = 3.0f;  // Δ ≈ 3: Σ a·Δ reaches −10^5
  auto x = testing::random_matrix<float>(1, L, 8);
  auto op = mixer.bind(x.view());
  auto m = materialize(op, 0, 0);
  auto finite = [](const matrix<float>& a) { return std::all_of(a.data(), a.data() + a.size(), [](float e) { return std::isfinite(e); }); };
  BOOST_TEST(finite(m));
  BOOST_TEST(finite(mix(op, x.view())));
  testing::check_linear_operator(op, x.view(), 1e-5);
}

// M = L ∘ (C Bᵀ): strictly lower blocks have rank ≤ N (and = N for generic data).
BOOST_AUTO_TEST_CASE(semiseparable_rank_at_most_state_size) {
  const index_t L = 64, N = 4;
  auto mixer = ssd_mixer<double>::init(1, 8, N, 11);  // 8 input channels: B, C span all N states
  auto x = testing::random_matrix<double>(8, L, 12);
  auto m = materialize(mixer.bind(x.view()), 0, 0);
  for (index_t r : {16, 32, 48}) {
    Eigen::MatrixXd block(L - r, r);
    for (index_t i = r; i < L; ++i)
      for (index_t j = 0; j < r; ++j) block(i - r, j) = m(i, j);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(block);
    const auto s = svd.singularValues();
    BOOST_TEST(s(N - 1) > 1e-12 * s(0));
    BOOST_TEST(s(N) <= 1e-12 * s(0));
  }
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  matrix<double> delta(2, 4);
  for (index_t i = 0; i < delta.size(); ++i) delta.data()[i] = 0.1;
  std::vector<double> a{-1.0, 0.5}, a1{-1.0};
  tensor<double, 3> b(1, 3, 4), c(1, 3, 4), c5(1, 3, 5), b3(3, 3, 4);
  auto view = [](const std::vector<double>& v) { return vector_view<const double>(v.data(), v.size()); };
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b.view(), c.view(), 2).validate(); },
                       {"'a'", "a <= 0", "[1]", "0.5"});
  a[1] = -2;
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a1), b.view(), c.view(), 2); },
                       {"'a'", "size (= heads) = 2", "= 1"});
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b.view(), c5.view(), 2); },
                       {"'c'", "length (extent 2) = 4", "= 5"});
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b3.view(), c.view(), 2); },
                       {"'b'", "dividing the 2 heads", "3"});
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b.view(), c.view(), 2, {}, 0); },
                       {"chunk", "positive", "0"});
  delta(1, 2) = -0.5;
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b.view(), c.view(), 2).validate(); },
                       {"'delta'", "delta >= 0 at [1][2]"});
  // Δ = 0 (no update) and a = 0 (no decay) are valid; non-finite values are refused as such.
  delta(1, 2) = 0;
  const std::vector<double> a0 = {0.0, a[1]};
  const ssd_operator<double> zero(delta.view(), view(a0), b.view(), c.view(), 2);
  zero.validate();
  matrix<double> chunked(4, 4), recurrent(4, 4), u4(4, 4);
  for (index_t i = 0; i < u4.size(); ++i) u4.data()[i] = 0.25 * double(i % 5) - 0.5;
  zero.apply(u4.view(), chunked.view());
  zero.apply_recurrent(u4.view(), recurrent.view());
  BOOST_TEST(testing::relative_error(chunked.data(), recurrent.data(), chunked.size()) <= 1e-12);
  delta(1, 2) = std::numeric_limits<double>::infinity();
  testing::check_error([&] { ssd_operator<double>(delta.view(), view(a), b.view(), c.view(), 2).validate(); },
                       {"'delta'", "finite values at [1][2]", "inf"});
  delta(1, 2) = 0.1;
  ssd_operator<double> op(delta.view(), view(a), b.view(), c.view(), 2);
  matrix<double> x(3, 4), y(4, 4);
  testing::check_error([&] { op.apply(x.view(), y.view()); }, {"'x'", "channels (extent 0) = 4", "= 3"});
  testing::check_error([&] { op.apply_recurrent(x.view(), y.view()); }, {"apply_recurrent", "'x'"});
  testing::check_error([&] { (void)ssd_mixer<double>::init(3, 2, 4, 1, 2); }, {"'groups'", "divisor of the 3 heads", "2"});
  auto mixer = ssd_mixer<double>::init(2, 2, 4, 1);
  testing::check_error([&] { (void)mixer.bind(x.view()); }, {"'x'", "channels (extent 0) = 4", "= 3"});
  mixer.dt_bias.pop_back();
  testing::check_error([&] { (void)mixer.bind(y.view()); }, {"'dt_bias'", "size (= heads) = 2", "= 1"});
}
