// Hyena on the device: the shared oracle body through mixlens::gpu (every path
// generic, from the in-place row), then host ≡ device, over odd lengths and
// L = 1, in float and double, for order 2 (as examples/operator_classes) and 3.
#define BOOST_TEST_MODULE hyena_device
#include <boost/test/unit_test.hpp>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/ops/hyena.hpp"

using namespace mixlens;

namespace {

template <class T>
void check(index_t L, index_t order, double tol) {
  hyena_config cfg;
  cfg.d_model = 8;
  cfg.l_max = L;
  cfg.order = order;
  cfg.seed = 9;
  const auto mixer = hyena_mixer<T>::init(cfg);
  const auto u = testing::random_matrix<T>(cfg.d_model, L, 31 + L);
  const auto op = mixer.bind(u.view());
  BOOST_TEST_CONTEXT("order " << order) { testing::check_host_device(op, op.storage().value.view(), tol); }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hyena_device, *testing::requires_device())

BOOST_AUTO_TEST_CASE(float_and_double) {
  for (index_t order : {2, 3})
    for (index_t L : {1, 7, 64, 257}) {
      check<float>(L, order, 1e-4);
      check<double>(L, order, 1e-12);
    }
}

BOOST_AUTO_TEST_SUITE_END()
