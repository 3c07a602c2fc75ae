// GSS on the device: the shared oracle body through mixlens::gpu (apply by the
// gated DSS convolution of ops/gss/device.cuh, rows and blocks generic), then
// host ≡ device, over odd lengths and L = 1, in float and double.
#define BOOST_TEST_MODULE gss_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/gss.hpp"
#include "mixlens/ops/gss/device.cuh"

using namespace mixlens;

namespace {

// As examples/operator_classes initializes it: D channels in and out, state N.
template <class T>
void check(index_t L, double tol) {
  const index_t D = 8, N = 16;
  const auto mixer = gss_mixer<T>::init(D, D, N, dss_variant::exp, {.seed = 7});
  const auto x = testing::random_matrix<T>(D, L, 11 + L);
  const auto op = mixer.bind(x.view());
  const auto v = mixer.value(x.view());  // the signal the operator mixes
  testing::check_host_device(op, v.view(), tol);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gss_device, *testing::requires_device())

BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    check<float>(L, 1e-4);
    check<double>(L, 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
