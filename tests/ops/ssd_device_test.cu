// Mamba-2 SSD on the device through the generic path (View::row, one thread per
// row): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/operator_classes binds.
#define BOOST_TEST_MODULE ssd_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/ssd.hpp"

using namespace mixlens;

BOOST_AUTO_TEST_SUITE(ssd_device, *testing::requires_device())

// H = 2 heads of P = 4 channels, N = 16 states; D folded in for float.
BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto mf = ssd_mixer<float>::init(2, 4, 16, 0);
    const auto xf = testing::random_matrix<float>(8, L, 3);
    testing::check_host_device(mf.bind(xf.view(), {.skip = true}), xf.view(), 1e-4);
    const auto md = ssd_mixer<double>::init(2, 4, 16, 0, 2);  // two groups of B, C
    const auto xd = testing::random_matrix<double>(8, L, 4);
    testing::check_host_device(md.bind(xd.view()), xd.view(), 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
