// The unified Mamba block on the device: the shared oracle body through
// mixlens::gpu (the fp32 specialization of ops/mamba_block/device.cuh, double
// generic), then host ≡ device, over odd lengths and L = 1, in float and double.
#define BOOST_TEST_MODULE mamba_block_device
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/mamba_block/device.cuh"
#include "mixlens/ops/s6/device.cuh"

using namespace mixlens;

namespace {

// A Mamba block as initialized for training: S6 by s6_mixer::init (N = 16,
// dt_rank = ⌈D/16⌉), the depthwise conv1d (K = 4) and its bias ~ U(±1/√K) as
// PyTorch's Conv1d default; x and z are the two halves of in_proj's output.
template <class T>
void check(index_t L, double tol) {
  const index_t D = 8, N = 16, K = 4;
  const auto mixer = s6_mixer<T>::init(D, N, 1, 3);
  const double bound = 1 / std::sqrt(double(K));
  matrix<T> conv_w(D, K);
  const auto w = testing::random_vector<T>(D * K, 21, -bound, bound);
  for (index_t i = 0; i < conv_w.size(); ++i) conv_w.data()[i] = w[static_cast<std::size_t>(i)];
  const auto conv_b = testing::random_vector<T>(D, 22, -bound, bound);
  const auto x = testing::random_matrix<T>(D, L, 23 + L), z = testing::random_matrix<T>(D, L, 24 + L);
  const auto op = bind_mamba_block(mixer, conv_w.view(), vector_view<const T>(conv_b), x.view(), z.view());
  testing::check_host_device(op, x.view(), tol);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mamba_block_device, *testing::requires_device())

BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    check<float>(L, 1e-4);
    check<double>(L, 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()
