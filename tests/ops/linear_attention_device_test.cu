// Linear attention (elu + 1) on the device through the generic path (View::row, one thread per
// row): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/operator_classes binds.
#define BOOST_TEST_MODULE linear_attention_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/linear_attention.hpp"

using namespace mixlens;

BOOST_AUTO_TEST_SUITE(linear_attention_device, *testing::requires_device())

// D = 8 model channels, H = 2 heads of key and value width 4; normalized in
// both precisions, unnormalized in double too. The operator mixes the values W_v x.
BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto mf = linear_attention_mixer<float>::init(8, 2, 4, 4, 0);
    const auto xf = testing::random_matrix<float>(8, L, 3);
    const auto vf = mf.values(xf.view());
    testing::check_host_device(mf.bind(xf.view()), vf.view(), 1e-4);
    const auto md = linear_attention_mixer<double>::init(8, 2, 4, 4, 0);
    const auto xd = testing::random_matrix<double>(8, L, 4);
    const auto vd = md.values(xd.view());
    testing::check_host_device(md.bind(xd.view()), vd.view(), 1e-12);
    const auto raw = linear_attention_mixer<double>::init(8, 2, 4, 4, 0, false);
    testing::check_host_device(raw.bind(xd.view()), vd.view(), 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
