// S5 on the device: the shared oracle body through mixlens::gpu (fp32 apply by
// the parallel scan of ops/s5/device.cuh, double and rows / blocks generic), then
// host ≡ device, over odd lengths and L = 1, in float and double.
#define BOOST_TEST_MODULE s5_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/s5.hpp"
#include "mixlens/ops/s5/device.cuh"

using namespace mixlens;

namespace {

// As examples/operator_classes initializes it: D channels, state size N (N/2
// stored states under conjugate symmetry), HiPPO-N Λ.
template <class T>
void check(index_t L, double tol) {
  const index_t D = 8, N = 16;
  const auto mixer = s5_mixer<T>::init(D, {.state_size = N, .seed = 5});
  const auto x = testing::random_matrix<T>(D, L, 13 + L);
  testing::check_host_device(mixer.bind(x.view()), x.view(), tol);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(s5_device, *testing::requires_device())

BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    check<float>(L, 1e-4);
    check<double>(L, 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
