// GPU scan variants against the host sequential scan (in double).
#define BOOST_TEST_MODULE gpu_scan
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <complex>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/scan.cuh"
#include "mixlens/scan.hpp"

namespace {

using namespace mixlens;
using cf = complex<float>;
using cd = complex<double>;

double widen(float x) { return x; }
cd widen(cf x) { return {x.real(), x.imag()}; }

template <class T>
T random_decay(std::mt19937_64& gen) {
  std::uniform_real_distribution<double> mag(0.5, 0.999);
  if constexpr (std::is_same_v<T, float>) {
    return static_cast<float>(std::bernoulli_distribution(0.1)(gen) ? -mag(gen) : mag(gen));
  } else {
    std::uniform_real_distribution<double> phase(-3.14159, 3.14159);
    const double m = mag(gen), p = phase(gen);
    return cf(static_cast<float>(m * std::cos(p)), static_cast<float>(m * std::sin(p)));
  }
}

template <class T>
T random_input(std::mt19937_64& gen) {
  std::normal_distribution<double> n(0.0, 1.0);
  if constexpr (std::is_same_v<T, float>) return static_cast<float>(n(gen));
  else return cf(static_cast<float>(n(gen)), static_cast<float>(n(gen)));
}

// Runs `policy` on (count × length) random sequences and compares every state
// with the host sequential scan in double; returns the worst relative error of
// any sequence (max |diff| / max |ref| per sequence).
template <class A, class B, class Policy>
double scan_error(Policy policy, index_t count, index_t length, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  const auto n = static_cast<std::size_t>(count * length);
  std::vector<A> a(n);
  std::vector<B> b(n);
  for (auto& x : a) x = random_decay<A>(gen);
  for (auto& x : b) x = random_input<B>(gen);
  gpu::device_buffer<A> da(a);
  gpu::device_buffer<B> db(b);
  gpu::device_buffer<B> dh(count * length);
  dh.fill_bytes(0xff);  // poison: every state must be written
  gpu::linear_recurrence(matrix_view<const A>(da.data(), count, length), matrix_view<const B>(db.data(), count, length),
                         matrix_view<B>(dh.data(), count, length), policy);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  const auto h = dh.to_host();

  using WA = decltype(widen(A{}));
  using WB = decltype(widen(B{}));
  double worst = 0;
  std::vector<WA> wa(static_cast<std::size_t>(length));
  std::vector<WB> wb(static_cast<std::size_t>(length)), ref(static_cast<std::size_t>(length));
  for (index_t s = 0; s < count; ++s) {
    for (index_t t = 0; t < length; ++t) {
      wa[static_cast<std::size_t>(t)] = widen(a[static_cast<std::size_t>(s * length + t)]);
      wb[static_cast<std::size_t>(t)] = widen(b[static_cast<std::size_t>(s * length + t)]);
    }
    linear_recurrence(vector_view<const WA>(wa), vector_view<const WB>(wb), vector_view<WB>(ref), sequential_scan{});
    double diff = 0, scale = 0;
    for (index_t t = 0; t < length; ++t) {
      const WB got = widen(h[static_cast<std::size_t>(s * length + t)]);
      const double d = cuda::std::abs(got - ref[static_cast<std::size_t>(t)]);
      diff = std::isnan(d) ? INFINITY : std::max(diff, d);
      scale = std::max(scale, double(cuda::std::abs(ref[static_cast<std::size_t>(t)])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

template <class Policy>
void check_policy(Policy policy, bool long_sequences) {
  const std::vector<std::pair<index_t, index_t>> shapes = {
      {1, 1}, {1, 2}, {3, 7}, {2, 31}, {5, 33}, {4, 1000}, {2, 1023}, {2, 1024}, {3, 1025}, {64, 333},
      {7, 4097}, {1, 16385}, {2, 40000}, {1000, 17}};
  std::uint64_t seed = 1;
  for (auto [count, length] : shapes) {
    const double e1 = scan_error<float, float>(policy, count, length, seed++);
    const double e2 = scan_error<cf, cf>(policy, count, length, seed++);
    const double e3 = scan_error<float, cf>(policy, count, length, seed++);
    BOOST_TEST_INFO(Policy::name << " count " << count << " length " << length);
    BOOST_TEST(e1 < 1e-5);
    BOOST_TEST(e2 < 1e-5);
    BOOST_TEST(e3 < 1e-5);
  }
  // One sequence of 2^24 elements (left out under MIXLENS_GPU_TEST_SMALL, for
  // the slow memory checker).
  if (long_sequences && !std::getenv("MIXLENS_GPU_TEST_SMALL")) {
    const double e = scan_error<float, float>(policy, 1, index_t(1) << 24, 99);
    BOOST_TEST_INFO(Policy::name << " length 2^24");
    BOOST_TEST(e < 1e-5);
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_scan, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(sequential) { check_policy(gpu::sequential_policy{}, false); }
BOOST_AUTO_TEST_CASE(warp) { check_policy(gpu::warp_policy{}, false); }
BOOST_AUTO_TEST_CASE(blelloch) { check_policy(gpu::blelloch_policy{}, true); }
BOOST_AUTO_TEST_CASE(block) { check_policy(gpu::block_policy{}, true); }
BOOST_AUTO_TEST_CASE(device) { check_policy(gpu::device_policy{}, true); }
BOOST_AUTO_TEST_CASE(chunked) {
  check_policy(gpu::chunked_policy{}, true);
  check_policy(gpu::chunked_policy{1024}, false);
}

BOOST_AUTO_TEST_CASE(errors) {
  gpu::device_buffer<float> a(12), b(12), h(12);
  std::vector<float> host(12);
  auto av = matrix_view<const float>(a.data(), 3, 4);
  testing::check_error([&] { gpu::linear_recurrence(av, matrix_view<const float>(b.data(), 4, 3), matrix_view<float>(h.data(), 3, 4)); },
                       {"'b'", "rows = 3", "rows = 4"});
  testing::check_error([&] { gpu::linear_recurrence(av, matrix_view<const float>(b.data(), 3, 4), matrix_view<float>(h.data(), 2, 6)); },
                       {"'h'", "rows = 3"});
  testing::check_error([&] {
    gpu::linear_recurrence(matrix_view<const float>(a.data(), 3, 0), matrix_view<const float>(b.data(), 3, 0),
                           matrix_view<float>(h.data(), 3, 0));
  }, {"'a'", "positive"});
  testing::check_error([&] { gpu::linear_recurrence(av, matrix_view<const float>(host.data(), 3, 4), matrix_view<float>(h.data(), 3, 4)); },
                       {"'b'", "device pointer"});
  testing::check_error([&] {
    gpu::linear_recurrence(av, matrix_view<const float>(b.data(), 3, 4), matrix_view<float>(h.data(), 3, 4), gpu::chunked_policy{1000});
  }, {"'policy.chunk'", "1024"});
}

BOOST_AUTO_TEST_SUITE_END()
