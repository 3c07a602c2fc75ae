// The shared operator oracle on the device for every operator of the registry
// (mixlens/ops/registry.hpp): the same body as on the host (apply ≡
// materialize·x, causality, rows, Toeplitz for LTI), then host ≡ device, in
// float and double, over odd lengths and L = 1; and a layer with D·L·L > 2^32
// entries, through the fast and the generic device paths, 64-bit indexing.
#define BOOST_TEST_MODULE device_oracle
#include <boost/test/unit_test.hpp>

#include <cstdio>

#include <cstdlib>
#include <string>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/mixlens.cuh"

using namespace mixlens;

namespace {

// The same S6 view under another type: no device_path specialization, so the
// device takes the generic row-per-thread path.
struct generic_s6 : s6_operator<float> {};

}  // namespace

template <>
struct mixlens::operator_traits<generic_s6> : operator_traits<s6_operator<float>> {};

BOOST_AUTO_TEST_SUITE(device_oracle, *testing::requires_device())

template <class T>
void check_registry(double tol) {
  const operator_options options{.channels = 4, .state = 8, .heads = 2, .max_length = 257, .seed = 5};
  for_each_operator<T>([&](auto entry) {
    using E = decltype(entry);
    const auto mixer = E::init(options);
    double worst = 0;
    for (index_t L : {1, 7, 64, 257}) {
      const auto x = testing::random_matrix<T>(options.channels, L, 100 + static_cast<std::uint64_t>(L));
      const auto op = E::bind(mixer, x.view());
      BOOST_TEST_CONTEXT(E::key << " (" << (sizeof(T) == 4 ? "float" : "double") << ")") {
        const double e = testing::check_host_device(op, x.view(), tol);
        worst = std::isnan(e) ? e : std::max(worst, e);
      }
    }
    // The table of the closing note: the largest host-vs-device error per operator.
    std::printf("host vs device %-18s %-6s %.2e\n", std::string(E::key).c_str(), sizeof(T) == 4 ? "float" : "double",
                worst);
  });
}

// float: the fp32 fast kernels (exp2 approximations, FFT convolutions) against
// the host's float arithmetic; relative to each operator's scale.
BOOST_AUTO_TEST_CASE(every_registry_operator_float) { check_registry<float>(2e-4); }
BOOST_AUTO_TEST_CASE(every_registry_operator_double) { check_registry<double>(1e-11); }

// α of a layer with D·L·L > 2^32 (18.9 GB in fp32): every channel through the
// tiled kernel and through the generic path, sampled rows against the host.
BOOST_AUTO_TEST_CASE(more_than_2_to_32_entries) {
  if (std::getenv("MIXLENS_GPU_TEST_SMALL")) return;  // too big for the memory checker
  const index_t D = 1125, L = 2048, N = 16;
  static_assert(index_t(1125) * 2048 * 2048 > (index_t(1) << 32));
  const auto x = testing::random_matrix<float>(D, L, 9);
  const auto mixer = s6_mixer<float>::init(D, N, 4, 3);
  const auto op = mixer.bind(x.view());
  const auto dev = gpu::to_device(op);
  generic_s6 generic{dev.view()};
  gpu::device_buffer<float> out(D * L * L);
  const index_t probes[][2] = {{0, 0}, {D / 2, L - 1}, {D - 1, L - 1}, {D - 1, 1234}, {777, 2047}};
  for (const bool fast : {true, false}) {
    out.fill_bytes(0xff);
    if (fast) gpu::materialize_channels(dev, 0, D, out.data());
    else gpu::materialize_channels(generic, 0, D, out.data());
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
    for (const auto& [d, t] : probes) {
      std::vector<float> got(static_cast<std::size_t>(L));
      MIXLENS_CUDA_CHECK(cudaMemcpy(got.data(), out.data() + (d * L + t) * L, L * sizeof(float), cudaMemcpyDeviceToHost));
      const auto want = row(op, d, d, t);
      const double e = testing::relative_error(got.data(), want.data(), L);
      BOOST_TEST(e <= 1e-4, (fast ? "tiled" : "generic") << " channel " << d << " row " << t << ": " << e);
    }
  }
}

BOOST_AUTO_TEST_CASE(device_arguments_are_checked) {
  const auto x = testing::random_matrix<float>(4, 16, 1);
  const auto op = s6_mixer<float>::init(4, 8, 1, 0).bind(x.view());
  const auto dev = gpu::to_device(op);
  gpu::device_buffer<float> y(4 * 16), m(16 * 16);
  testing::check_error([&] { gpu::apply(dev, matrix_view<const float>(y.data(), 3, 16), matrix_view<float>(y.data(), 4, 16)); },
                       {"mixlens::gpu::apply", "'x'", "channels (extent 0) = 4", "= 3"});
  testing::check_error([&] { gpu::materialize(dev, 4, 0, matrix_view<float>(m.data(), 16, 16)); }, {"'out'", "[0, 4)"});
  testing::check_error([&] { gpu::materialize(dev, 0, 0, matrix_view<float>(nullptr, 16, 16)); }, {"'m'", "device pointer"});
  const index_t bad[] = {16};
  testing::check_error([&] { gpu::rows(dev, 0, 0, vector_view<const index_t>(bad, 1), matrix_view<float>(m.data(), 1, 16)); },
                       {"positions", "[0, 16)"});
  // Values are checked on the host before the upload.
  auto delta = op->delta;
  matrix<float> bad_delta(4, 16);
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 16; ++t) bad_delta(i, t) = delta(i, t);
  bad_delta(2, 3) = -1.0f;
  const s6_operator<float> bad_op(bad_delta.view(), op->a, op->b, op->c);
  testing::check_error([&] { (void)gpu::to_device(bad_op); }, {"'delta'", "delta >= 0 at [2][3]"});
}

BOOST_AUTO_TEST_CASE(to_host_round_trip) {
  const auto x = testing::random_matrix<double>(4, 33, 2);
  const auto op = registry::mamba_block<double>::bind(registry::mamba_block<double>::init({.channels = 4}), x.view());
  const auto back = gpu::to_host(gpu::to_device(op));
  BOOST_TEST(testing::relative_error(materialize_full(back), materialize_full(op)) == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
