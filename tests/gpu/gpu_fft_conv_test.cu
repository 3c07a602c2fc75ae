// cuFFT causal convolution against a direct convolution in double.
#define BOOST_TEST_MODULE gpu_fft_conv
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/fft_conv.cuh"

namespace {

using namespace mixlens;

double conv_error(index_t B, index_t D, index_t L, bool with_bias, bool with_gate, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<float> u(B * D * L), k(D * L), bias(D), gate(B * D * L);
  for (auto& x : u) x = static_cast<float>(normal(gen));
  for (index_t d = 0; d < D; ++d)  // a decaying filter, as Hyena's windowed filters
    for (index_t t = 0; t < L; ++t) k[d * L + t] = static_cast<float>(normal(gen) * std::exp(-0.01 * double(t)));
  for (auto& x : bias) x = static_cast<float>(normal(gen));
  for (auto& x : gate) x = static_cast<float>(normal(gen));
  gpu::device_buffer<float> du(u), dk(k), dbias(bias), dgate(gate), dy(B * D * L);
  dy.fill_bytes(0xff);
  gpu::causal_fft_conv conv(B, D, L);
  BOOST_TEST(conv.fft_size() >= 2 * L);
  conv.set_filter(dk.data());
  conv.apply(du.data(), dy.data(), with_bias ? dbias.data() : nullptr, with_gate ? dgate.data() : nullptr);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  const auto y = dy.to_host();
  double diff = 0, scale = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        const index_t r = (b * D + d) * L;
        double ref = 0;
        for (index_t s = 0; s <= t; ++s) ref += double(k[d * L + t - s]) * double(u[r + s]);
        if (with_bias) ref += double(bias[d]) * double(u[r + t]);
        if (with_gate) ref *= double(gate[r + t]);
        const double got = y[r + t];
        diff = std::max(diff, std::isnan(got) ? INFINITY : std::abs(got - ref));
        scale = std::max(scale, std::abs(ref));
      }
  return diff / scale;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_fft_conv, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(against_direct_convolution) {
  std::uint64_t seed = 1;
  for (index_t L : {1, 2, 7, 64, 100, 1000, 1025, 4096}) {
    const double e1 = conv_error(1, 3, L, false, false, seed++);
    const double e2 = conv_error(2, 3, L, true, true, seed++);
    BOOST_TEST_INFO("L " << L);
    BOOST_TEST(e1 < 1e-5);
    BOOST_TEST(e2 < 1e-5);
  }
}

BOOST_AUTO_TEST_CASE(errors) {
  testing::check_error([] { gpu::causal_fft_conv(1, 0, 4); }, {"'channels'", "positive"});
  testing::check_error([] { gpu::causal_fft_conv(1, 2, 0); }, {"'length'", "positive"});
  gpu::causal_fft_conv c(1, 2, 4);
  testing::check_error([&] { c.set_filter(nullptr); }, {"'k'", "null"});
  gpu::device_buffer<float> b(8);
  testing::check_error([&] { c.apply(nullptr, b.data()); }, {"'u'", "null"});
}

BOOST_AUTO_TEST_SUITE_END()
