// RG-LRU on the device through the generic path (View::row, one thread per
// row): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/operator_classes binds.
#define BOOST_TEST_MODULE rg_lru_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/rg_lru.hpp"

using namespace mixlens;

BOOST_AUTO_TEST_SUITE(rg_lru_device, *testing::requires_device())

// Griffin's initialization, D = 8 channels.
BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto mf = rg_lru_mixer<float>::init(8, 0);
    const auto xf = testing::random_matrix<float>(8, L, 3);
    testing::check_host_device(mf.bind(xf.view()), xf.view(), 1e-4);
    const auto md = rg_lru_mixer<double>::init(8, 0);
    const auto xd = testing::random_matrix<double>(8, L, 4);
    testing::check_host_device(md.bind(xd.view()), xd.view(), 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
