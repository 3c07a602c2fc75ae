// The shared operator oracle on the device, for every operator of the registry:
// the same body as on the host (apply ≡ materialize·x, causality, rows, Toeplitz
// for LTI), then host ≡ device, over odd lengths and L = 1.
#define BOOST_TEST_MODULE device_oracle
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/s6.hpp"
#include "mixlens/ops/s6/device.cuh"

using namespace mixlens;

BOOST_AUTO_TEST_SUITE(device_oracle, *testing::requires_device())

BOOST_AUTO_TEST_CASE(s6_float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto x = testing::random_matrix<float>(8, L, 3);
    const auto mixer = s6_mixer<float>::init(8, 16, 1, 0);
    const auto z = testing::random_matrix<float>(8, L, 4);
    const auto op = mixer.bind(x.view(), s6_fold{.skip = true, .gate = true}, z.view());
    testing::check_host_device(op, x.view(), 1e-4);
    const auto xd = testing::random_matrix<double>(4, L, 3);
    const auto md = s6_mixer<double>::init(4, 8, 1, 0);
    testing::check_host_device(md.bind(xd.view()), xd.view(), 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(causal_conv) {
  for (index_t L : {1, 7, 100, 257}) {
    const auto k = testing::random_matrix<float>(3, L, 5);
    const auto x = testing::random_matrix<float>(3, L, 6);
    std::vector<float> skip = {0.5f, -1.f, 2.f};
    const causal_conv_operator<float, short_conv_kind> op(k.view(), vector_view<const float>(skip), L);
    testing::check_host_device(op, x.view(), 1e-4);
  }
}

BOOST_AUTO_TEST_SUITE_END()
