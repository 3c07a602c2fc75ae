// RWKV-4 time mixing on the device through the generic path (View::row, one thread per
// row): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/operator_classes binds.
#define BOOST_TEST_MODULE rwkv4_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/rwkv4.hpp"

using namespace mixlens;

BOOST_AUTO_TEST_SUITE(rwkv4_device, *testing::requires_device())

// Layer 1 of 4 of RWKV-4's initialization, D = 8, with the receptance gate
// (and without it in double); the operator mixes the values W_v x̃.
BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto mf = rwkv4_mixer<float>::init(8, 0, 1, 4);
    const auto xf = testing::random_matrix<float>(8, L, 3);
    const auto vf = mf.values(xf.view());
    testing::check_host_device(mf.bind(xf.view(), {.receptance = true}), vf.view(), 1e-4);
    const auto md = rwkv4_mixer<double>::init(8, 0, 1, 4);
    const auto xd = testing::random_matrix<double>(8, L, 4);
    const auto vd = md.values(xd.view());
    testing::check_host_device(md.bind(xd.view(), {.receptance = true}), vd.view(), 1e-12);
    testing::check_host_device(md.bind(xd.view()), vd.view(), 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
