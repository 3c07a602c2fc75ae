#define BOOST_TEST_MODULE causal_conv
#include <boost/test/unit_test.hpp>

#include "common/oracles.hpp"
#include "mixlens/ops/causal_conv.hpp"

using namespace mixlens;

namespace {

template <class T>
void check_conv(index_t L, index_t taps, bool with_skip) {
  const index_t C = 3;
  auto k = testing::random_matrix<T>(C, taps, 10 + L);
  auto x = testing::random_matrix<T>(C, L, 20 + L);
  std::vector<T> d = with_skip ? testing::random_vector<T>(C, 5, -1, 1) : std::vector<T>{};
  causal_conv_operator<T, short_conv_kind> op(k.view(), vector_view<const T>(d.data(), d.size()), L);
  static_assert(linear_operator<decltype(op)>);
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  auto y = mix(op, x.view());
  BOOST_TEST(testing::relative_error(y, testing::direct_convolution(
                                       x, [&](index_t c) { return std::vector<T>(&k(c, 0), &k(c, 0) + k.extent(1)); }, d)) <= 10 * testing::tolerance<T>(), "L=" << L);
}
}  // namespace

BOOST_AUTO_TEST_CASE(direct_and_fft_paths_match_naive) {
  for (index_t L : testing::test_lengths(1024)) {
    check_conv<double>(L, std::min<index_t>(L, 4), true);  // short: direct
    check_conv<double>(L, L, false);                        // long: FFT when L > 64
    check_conv<float>(L, L, true);
  }
}

BOOST_AUTO_TEST_CASE(bad_shapes_throw) {
  matrix<double> k(2, 5), x(2, 4), y(2, 4);
  {  // taps beyond L never reach an output: 5 taps at L = 4 equal the first 4
    auto k5 = testing::random_matrix<double>(2, 5, 1);
    matrix<double> k4(2, 4);
    for (index_t c = 0; c < 2; ++c)
      for (index_t j = 0; j < 4; ++j) k4(c, j) = k5(c, j);
    const causal_conv_operator<double, short_conv_kind> long_op(k5.view(), {}, 4), short_op(k4.view(), {}, 4);
    BOOST_TEST(testing::relative_error(materialize_full(long_op), materialize_full(short_op)) == 0.0);
    const auto xs = testing::random_matrix<double>(2, 4, 2);
    BOOST_TEST(testing::relative_error(mix(long_op, xs.view()), mix(short_op, xs.view())) == 0.0);
  }
  causal_conv_operator<double, short_conv_kind> op(k.view(), {}, 8);
  testing::check_error([&] { op.apply(x.view(), y.view()); }, {"'x'", "length (extent 1) = 8", "= 4"});
  matrix<double> m(8, 8);
  testing::check_error([&] { op.materialize(2, 0, m.view()); }, {"'out'", "[0, 2)", "2"});
  std::vector<double> d(3);
  testing::check_error([&] { causal_conv_operator<double, short_conv_kind>(k.view(), d, 8); }, {"skip", "size = 2"});
}
