#define BOOST_TEST_MODULE attention_maps
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/ops/s6.hpp"

using namespace mixlens;
using namespace mixlens::analysis;

namespace {

tensor<double, 3> sample(index_t D, index_t L, std::uint64_t seed) {
  tensor<double, 3> a(D, L, L);
  const auto r = testing::random_matrix<double>(D * L, L, seed);
  std::copy(r.data(), r.data() + r.size(), a.data());
  return a;
}

matrix<double> product(const matrix<double>& a, const matrix<double>& b) {
  const index_t L = a.extent(0);
  matrix<double> c(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j)
      for (index_t k = 0; k < L; ++k) c(i, j) += a(i, k) * b(k, j);
  return c;
}

matrix<double> augmented(const matrix<double>& m) {  // rownorm(I + m), written out again
  const index_t L = m.extent(0);
  matrix<double> out(L, L);
  for (index_t i = 0; i < L; ++i) {
    double sum = 0;
    for (index_t j = 0; j < L; ++j) sum += m(i, j) + (i == j);
    for (index_t j = 0; j < L; ++j) out(i, j) = (m(i, j) + (i == j)) / sum;
  }
  return out;
}

// An S6 operator with random signals (Δ in (0, dt_max], Re A < 0, B and C per
// group), its storage alongside.
template <class T, class State = T>
struct random_s6 {
  matrix<T> delta, gate;
  matrix<State> a;
  tensor<State, 3> b, c;
  std::vector<T> skip;
  s6_operator<T, State> op;

  random_s6(index_t D, index_t L, index_t N, index_t G, bool with_skip, bool with_gate, double dt_max, std::uint64_t seed)
      : delta(D, L), gate(with_gate ? D : 0, with_gate ? L : 0), a(D, N), b(G, N, L), c(G, N, L) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> unif(0, 1);
    std::normal_distribution<double> normal(0, 1);
    const auto draw = [&]() -> State {
      if constexpr (std::is_same_v<State, T>) return static_cast<T>(normal(gen));
      else return State(static_cast<T>(normal(gen)), static_cast<T>(normal(gen)));
    };
    for (index_t k = 0; k < delta.size(); ++k) delta.data()[k] = static_cast<T>(1e-3 + dt_max * unif(gen));
    for (index_t k = 0; k < gate.size(); ++k) gate.data()[k] = static_cast<T>(normal(gen));
    for (index_t d = 0; d < D; ++d)
      for (index_t n = 0; n < N; ++n) {
        const T re = static_cast<T>(-double(n + 1) * (0.5 + unif(gen)));
        if constexpr (std::is_same_v<State, T>) a(d, n) = re;
        else a(d, n) = State(re, static_cast<T>(normal(gen)));
      }
    for (index_t k = 0; k < b.size(); ++k) b.data()[k] = draw(), c.data()[k] = draw();
    if (with_skip)
      for (index_t d = 0; d < D; ++d) skip.push_back(static_cast<T>(normal(gen)));
    op = s6_operator<T, State>(delta.view(), a.view(), b.view(), c.view(), vector_view<const T>(skip.data(), skip.size()),
                               with_gate ? matrix_view<const T>(gate.view()) : matrix_view<const T>());
  }
};

// The host's aggregate straight from the signals against the materialized
// blocks reduced: the map's and the range's worst relative error.
template <class T, class State = T>
double s6_aggregate_error(const random_s6<T, State>& p, channel_reduction r, int threads) {
  const index_t D = p.op.in_channels(), L = p.op.length(), LL = L * L;
  const host_backend<T> be;
  std::vector<T> want(static_cast<std::size_t>(LL)), want_mm(3), got_mm(3);
  aggregate_materialized(be, p.op, r, want.data(), want_mm.data());
  std::vector<double> acc(static_cast<std::size_t>(LL), 0.0);
  be.reset_min_max(got_mm.data());
  s6_aggregate_channels(p.op, r, acc.data(), got_mm.data(), threads);
  double diff = 0, scale = 0;
  for (index_t e = 0; e < LL; ++e) {
    const double g = acc[static_cast<std::size_t>(e)] / double(D), w = want[static_cast<std::size_t>(e)];
    diff = std::max(diff, std::isnan(g) ? INFINITY : std::abs(g - w));
    scale = std::max(scale, std::abs(w));
  }
  const double range = std::max(std::abs(double(want_mm[0])), std::abs(double(want_mm[1])));
  BOOST_TEST(got_mm[2] == want_mm[2]);
  return std::max({scale > 0 ? diff / scale : diff, std::abs(double(got_mm[0] - want_mm[0])) / range,
                   std::abs(double(got_mm[1] - want_mm[1])) / range});
}

}  // namespace

BOOST_AUTO_TEST_CASE(channel_aggregation) {
  tensor<double, 3> a(2, 2, 2);
  const double v[] = {1, -2, 3, 4, -3, 2, 1, 0};
  std::copy(std::begin(v), std::end(v), a.data());
  const auto mean = aggregate_channels(tensor_view<const double, 3>(a.view()));
  const auto abs = aggregate_channels(tensor_view<const double, 3>(a.view()), channel_reduction::abs_mean);
  const auto relu = aggregate_channels(tensor_view<const double, 3>(a.view()), channel_reduction::relu_mean);
  const double want_mean[] = {-1, 0, 2, 2}, want_abs[] = {2, 2, 2, 2}, want_relu[] = {0.5, 1, 2, 2};
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST(mean.data()[i] == want_mean[i]);
    BOOST_TEST(abs.data()[i] == want_abs[i]);
    BOOST_TEST(relu.data()[i] == want_relu[i]);
  }
}

BOOST_AUTO_TEST_CASE(min_max_and_raw_attention) {
  auto m = testing::random_matrix<double>(5, 5, 3);
  normalize_min_max(m.view());
  BOOST_TEST(*std::min_element(m.data(), m.data() + m.size()) == 0.0);
  BOOST_TEST(*std::max_element(m.data(), m.data() + m.size()) == 1.0);
  matrix<double> flat(3, 3);
  std::fill(flat.data(), flat.data() + flat.size(), 7.0);
  normalize_min_max(flat.view());
  BOOST_TEST(*std::max_element(flat.data(), flat.data() + flat.size()) == 0.0);

  // Raw attention of a layer: the tensor normalized as a whole, then the channel mean.
  const auto a = sample(3, 4, 5);
  auto normalized = a;
  normalize_min_max(normalized.data(), normalized.size());
  const auto want = aggregate_channels(tensor_view<const double, 3>(normalized.view()));
  const auto got = raw_attention_layer(tensor_view<const double, 3>(a.view()));
  BOOST_TEST(testing::relative_error(got, want) <= 1e-15);

  const auto avg = average_maps(std::vector<matrix<double>>{want, got});
  BOOST_TEST(testing::relative_error(avg, want) <= 1e-15);
  testing::check_error([] { (void)average_maps(std::vector<matrix<double>>{}); }, {"maps", "at least one"});
  testing::check_error([&] { (void)average_maps(std::vector<matrix<double>>{want, matrix<double>(3, 3)}); },
                       {"maps[1]", "rows"});
}

BOOST_AUTO_TEST_CASE(rollout_is_the_ordered_product) {
  const index_t L = 6;
  std::vector<matrix<double>> maps;
  for (int k = 0; k < 4; ++k) {
    auto m = testing::random_matrix<double>(L, L, 10 + k, 0.3);
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < L; ++j) m(i, j) = j > i ? 0.0 : std::abs(m(i, j));  // causal, non-negative
    maps.push_back(m);
  }
  // Later layers on the left: ρ = Ã3·Ã2·Ã1 from start layer 1.
  const auto want = product(augmented(maps[3]), product(augmented(maps[2]), augmented(maps[1])));
  const auto got = rollout(maps, 1);
  BOOST_TEST(testing::relative_error(got, want) <= 1e-14);
  // Rows of a product of row-stochastic matrices sum to one; causality survives.
  for (index_t i = 0; i < L; ++i) {
    double sum = 0;
    for (index_t j = 0; j < L; ++j) sum += got(i, j);
    BOOST_TEST(std::abs(sum - 1) <= 1e-14);
    for (index_t j = i + 1; j < L; ++j) BOOST_TEST(got(i, j) == 0.0);
  }
  // The order matters: reversing the layers gives a different map.
  const auto reversed = product(augmented(maps[1]), product(augmented(maps[2]), augmented(maps[3])));
  BOOST_TEST(testing::relative_error(got, reversed) > 1e-6);
  // Zero maps leave the identity.
  const auto id = rollout(std::vector<matrix<double>>{matrix<double>(3, 3), matrix<double>(3, 3)});
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 3; ++j) BOOST_TEST(id(i, j) == (i == j ? 1.0 : 0.0));

  testing::check_error([&] { (void)rollout(maps, 4); }, {"start_layer", "[0, 4)"});
  testing::check_error([] { (void)rollout(std::vector<matrix<double>>{}); }, {"maps"});
  attention_rollout<double> r(L);
  testing::check_error([&] { r.add(matrix<double>(L + 1, L + 1).view()); }, {"layer_map", "rows"});
  testing::check_error([] { attention_rollout<double> bad(0); }, {"length"});
}

BOOST_AUTO_TEST_CASE(bidirectional_combination) {
  const index_t L = 4;
  auto f = testing::random_matrix<double>(L, L, 21), b = testing::random_matrix<double>(L, L, 22);
  const matrix_view<const double> fv(f.view()), bv(b.view());
  const auto sum = combine_bidirectional(fv, bv);
  const auto mean = combine_bidirectional(fv, bv, bidirectional_mode::mean);
  const auto splice = combine_bidirectional(fv, bv, bidirectional_mode::splice, 1);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) {
      const double flipped = b(L - 1 - i, L - 1 - j);
      BOOST_TEST(sum(i, j) == f(i, j) + flipped);
      BOOST_TEST(mean(i, j) == (f(i, j) + flipped) / 2);
      BOOST_TEST(splice(i, j) == (j <= 1 ? f(i, j) : flipped));
    }
  testing::check_error([&] { (void)combine_bidirectional(fv, bv, bidirectional_mode::splice); }, {"cls"});
  testing::check_error([&] { (void)combine_bidirectional(fv, bv, bidirectional_mode::splice, 4); }, {"cls", "[0, 4)"});
  matrix<double> small(3, 3);
  testing::check_error([&] { (void)combine_bidirectional(fv, matrix_view<const double>(small.view())); },
                       {"backward", "rows"});
}

BOOST_AUTO_TEST_CASE(aggregation_errors) {
  tensor<double, 3> empty(0, 2, 2), nonsquare(2, 2, 3);
  testing::check_error([&] { (void)aggregate_channels(tensor_view<const double, 3>(empty.view())); }, {"channels"});
  testing::check_error([&] { (void)aggregate_channels(tensor_view<const double, 3>(nonsquare.view())); }, {"columns"});
}

// One NaN or infinity must not turn a map into zeros (min / max scans skip NaN):
// the maps refuse it, naming the argument and the first bad index, and leave the
// data as it was.
BOOST_AUTO_TEST_CASE(non_finite_maps_are_refused) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto m = testing::random_matrix<double>(4, 5, 7);
  m(2, 3) = nan;
  const auto before = m;
  testing::check_error([&] { normalize_min_max(m.view()); }, {"normalize_min_max", "'m'", "finite", "NaN at [2][3]"});
  BOOST_TEST(m(0, 0) == before(0, 0));
  BOOST_TEST(std::isnan(m(2, 3)));
  testing::check_error([&] { normalize_min_max(m.data(), m.size()); }, {"'data'", "NaN at [13]"});
  m(2, 3) = 0;
  m(0, 1) = -inf;
  testing::check_error([&] { normalize_min_max(m.view()); }, {"'m'", "-inf at [0][1]"});

  auto a = sample(3, 4, 5);
  a(1, 2, 0) = nan;
  testing::check_error([&] { (void)raw_attention_layer(tensor_view<const double, 3>(a.view())); },
                       {"raw_attention_layer", "'a'", "finite", "NaN at [1][2][0]"});
  a(1, 2, 0) = 0;
  a(2, 3, 3) = inf;
  testing::check_error([&] { (void)raw_attention_layer(tensor_view<const double, 3>(a.view())); },
                       {"'a'", "+inf at [2][3][3]"});
  // The channel mean is not a min / max: NaN stays visible there.
  a(2, 3, 3) = nan;
  BOOST_TEST(std::isnan(aggregate_channels(tensor_view<const double, 3>(a.view()))(3, 3)));
}

// aggregate_operator's path without the tensor (ops/s6/aggregate.hpp): the same
// map and range as the materialized blocks, for every reduction, with D and
// the gate, groups, row tiles cut by L, complex states, one or two threads.
BOOST_AUTO_TEST_CASE(s6_aggregate_straight_from_the_signals) {
  struct c {
    index_t D, L, N, G;
    bool skip, gate;
  };
  std::uint64_t seed = 3;
  for (const c s : {c{1, 1, 4, 1, false, false}, c{3, 65, 16, 1, false, false}, c{4, 130, 5, 2, true, true},
                    c{2, 64, 3, 1, true, false}, c{5, 200, 8, 1, false, true}})
    for (const auto r : {channel_reduction::mean, channel_reduction::abs_mean, channel_reduction::relu_mean})
      for (const int threads : {1, 2}) {
        BOOST_TEST_INFO("D " << s.D << " L " << s.L << " N " << s.N << " reduction " << int(r) << " threads " << threads);
        const random_s6<double> pd(s.D, s.L, s.N, s.G, s.skip, s.gate, 0.1, seed);
        BOOST_TEST(s6_aggregate_error(pd, r, threads) < 1e-12);
        const random_s6<float> pf(s.D, s.L, s.N, s.G, s.skip, s.gate, 0.1, seed++);
        BOOST_TEST(s6_aggregate_error(pf, r, threads) < 1e-6);
      }
  // Large steps: cumulative sums in the hundreds (e^{−S} alone would overflow).
  BOOST_TEST(s6_aggregate_error(random_s6<float>(2, 300, 16, 1, true, true, 4.0, 11), channel_reduction::mean, 2) < 1e-6);
  const random_s6<double, complex<double>> cd(3, 150, 6, 1, true, true, 0.1, 12);
  BOOST_TEST(s6_aggregate_error(cd, channel_reduction::abs_mean, 2) < 1e-12);
  // A NaN in C reaches the same entries and the same NaN count.
  random_s6<float> bad(2, 90, 4, 1, false, false, 0.1, 13);
  bad.c(0, 1, 70) = std::numeric_limits<float>::quiet_NaN();
  const index_t LL = 90 * 90;
  std::vector<float> want(static_cast<std::size_t>(LL)), mm(3);
  aggregate_materialized(host_backend<float>{}, bad.op, channel_reduction::mean, want.data(), mm.data());
  std::vector<double> acc(static_cast<std::size_t>(LL), 0.0);
  std::vector<float> got_mm(3);
  host_backend<float>{}.reset_min_max(got_mm.data());
  s6_aggregate_channels(bad.op, channel_reduction::mean, acc.data(), got_mm.data(), 2);
  int mismatched = 0;
  for (index_t e = 0; e < LL; ++e) mismatched += std::isnan(acc[static_cast<std::size_t>(e)]) != std::isnan(want[static_cast<std::size_t>(e)]);
  BOOST_TEST(mismatched == 0);
  BOOST_TEST(got_mm[2] == mm[2]);
  BOOST_TEST(mm[2] > 0.0f);
}
