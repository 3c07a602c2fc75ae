#define BOOST_TEST_MODULE attention_maps
#include <boost/test/unit_test.hpp>

#include <limits>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/analysis/attention_maps.hpp"

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
