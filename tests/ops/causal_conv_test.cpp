#define BOOST_TEST_MODULE causal_conv
#include <boost/test/unit_test.hpp>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/s4d.hpp"

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
  for (int threads : {2, 3, 0}) {  // channels over threads: bit for bit
    matrix<T> yt(C, L);
    op.apply(x.view(), yt.view(), sequence_parallel_scan{.threads = threads, .grain = 1});
    BOOST_TEST(std::equal(yt.data(), yt.data() + yt.size(), y.data()), "threads " << threads << " L=" << L);
  }
  BOOST_TEST(testing::relative_error(y, testing::direct_convolution(
                                       x, [&](index_t c) { return std::vector<T>(&k(c, 0), &k(c, 0) + k.extent(1)); }, d)) <= 10 * testing::tolerance<T>(), "L=" << L);
}
// y(c, t) = Σ_{s ≤ t} kf(c, t − s)·x(c, s) + Σ_{s ≥ t} kb(c, s − t)·x(c, s) + d·x,
// summed directly in double: the two-sided convolution's definition.
template <class T>
matrix<T> two_sided_reference(const matrix<T>& x, const matrix<T>& kf, const matrix<T>& kb, const std::vector<T>& d) {
  const index_t C = x.extent(0), L = x.extent(1);
  matrix<T> y(C, L);
  for (index_t c = 0; c < C; ++c)
    for (index_t t = 0; t < L; ++t) {
      double acc = d.empty() ? 0.0 : double(d[c]) * double(x(c, t));
      for (index_t s = 0; s < L; ++s) {
        if (s <= t && t - s < kf.extent(1)) acc += double(kf(c, t - s)) * double(x(c, s));
        if (s >= t && s - t < kb.extent(1)) acc += double(kb(c, s - t)) * double(x(c, s));
      }
      y(c, t) = static_cast<T>(acc);
    }
  return y;
}

template <class T>
void check_two_sided(index_t L, index_t taps) {
  const index_t C = 3;
  const auto kf = testing::random_matrix<T>(C, taps, 30 + L), kb = testing::random_matrix<T>(C, taps, 40 + L);
  const auto x = testing::random_matrix<T>(C, L, 50 + L);
  const std::vector<T> d = testing::random_vector<T>(C, 6, -1, 1);
  using conv = causal_conv_operator<T, short_conv_kind>;
  const two_sided_conv_operator<T, short_conv_kind> op(conv(kf.view(), vector_view<const T>(d.data(), d.size()), L),
                                                       conv(kb.view(), {}, L));
  static_assert(linear_operator<std::remove_const_t<decltype(op)>>);
  BOOST_TEST(!is_causal(op));
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  BOOST_TEST(testing::relative_error(mix(op, x.view()), two_sided_reference(x, kf, kb, d)) <=
                 10 * testing::tolerance<T>(),
             "L=" << L << " taps=" << taps);
}
}  // namespace

BOOST_AUTO_TEST_CASE(two_sided_matches_its_definition) {
  for (index_t L : testing::test_lengths(512)) {
    check_two_sided<double>(L, std::min<index_t>(L, 3));  // direct
    check_two_sided<double>(L, L);                        // FFT past 64 taps
    check_two_sided<float>(L, L);
  }
  // The causal view answers is_causal with true by default.
  const auto k = testing::random_matrix<double>(2, 4, 1);
  BOOST_TEST(is_causal(causal_conv_operator<double, short_conv_kind>(k.view(), {}, 8)));
}

// Both halves' channels split over threads (5 channels on 2 and 3), direct and
// FFT paths: the single-threaded results bit for bit; and through the host
// backend's apply.
BOOST_AUTO_TEST_CASE(two_sided_channel_parallel_apply_is_bit_identical) {
  using conv = causal_conv_operator<double, short_conv_kind>;
  const index_t C = 5, L = 301;
  const auto x = testing::random_matrix<double>(C, L, 90);
  const std::vector<double> d = testing::random_vector<double>(C, 91, -1, 1);
  for (index_t taps : {4, 150}) {
    const auto kf = testing::random_matrix<double>(C, taps, 92), kb = testing::random_matrix<double>(C, taps, 93);
    const two_sided_conv_operator<double, short_conv_kind> op(
        conv(kf.view(), vector_view<const double>(d.data(), d.size()), L), conv(kb.view(), {}, L));
    testing::check_threaded_apply(op, x.view(), "taps " + std::to_string(taps));
  }
}

// two_sided_mixer: the backward mixer's kernel moved to lags ≥ backward_lag, the
// forward one's with its D; a bidirectional S4D against the definition.
BOOST_AUTO_TEST_CASE(two_sided_mixer_shifts_the_backward_kernel) {
  const index_t H = 3, N = 4;
  for (index_t lag : {0, 1, 2})
    for (index_t L : {1, 2, 7, 100}) {
      two_sided_mixer<s4d_mixer<double>> m{s4d_mixer<double>::init(H, N, s4d_init::lin, 1),
                                           s4d_mixer<double>::init(H, N, s4d_init::inv, 2), lag};
      m.backward.skip.clear();
      const auto x = testing::random_matrix<double>(H, L, 3);
      const auto op = m.bind(x.view());
      const auto kf = m.forward.kernel(L), k1 = m.backward.kernel(L);
      matrix<double> kb(H, L);
      for (index_t c = 0; c < H; ++c)
        for (index_t j = lag; j < L; ++j) kb(c, j) = k1(c, j - lag);
      BOOST_TEST(testing::relative_error(mix(op, x.view()), two_sided_reference(x, kf, kb, m.forward.skip)) <= 1e-13,
                 "lag " << lag << " L " << L);
      testing::check_linear_operator(op, x.view(), 1e-12);
    }
  two_sided_mixer<s4d_mixer<double>> bad{s4d_mixer<double>::init(H, N, s4d_init::lin, 1),
                                         s4d_mixer<double>::init(H + 1, N, s4d_init::lin, 2)};
  const auto x = testing::random_matrix<double>(H, 5, 3);
  testing::check_error([&] { (void)bad.bind(x.view()); }, {"x", "channels"});
}

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
