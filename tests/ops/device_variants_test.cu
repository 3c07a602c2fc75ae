// Operator variants on the device beyond the registry's default configurations
// (tests/ops/device_oracle_test.cu runs every registry operator): the same
// shared oracle body and host ≡ device, over odd lengths and L = 1, for SSD with
// D folded in and with groups, RWKV-4 with and without its receptance, the
// attention-like operators on their value signals, unnormalized linear
// attention, Hyena of order 3, and the Mamba block bound from PyTorch-layout
// conv weights. One namespace per operator.
#define BOOST_TEST_MODULE device_variants
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "common/device_oracle.cuh"
#include "common/gpu_testing.cuh"
#include "mixlens/mixlens.cuh"

using namespace mixlens;

// ---- ssd -------------------------------------------------------------------
// Mamba-2 SSD on the device (apply by the recurrence kernel of ops/ssd/device.cuh,
// rows and matrices by the generic path): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/01_operator_classes binds.
namespace ssd_variants {

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

}  // namespace ssd_variants

// ---- rwkv4 -----------------------------------------------------------------
// RWKV-4 time mixing on the device through the generic path (View::row, one thread per
// row): the shared oracle body, then host ≡ device, over odd lengths and L = 1,
// with the initialization examples/01_operator_classes binds.
namespace rwkv4_variants {

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

}  // namespace rwkv4_variants

// ---- the attention-like operators on their values ----------------------------
// Linear attention (elu + 1), RetNet retention and causal softmax attention: D = 8
// model channels, H = 2 heads of key and value width 4; each operator mixes the
// values W_v x (generic device path). Linear attention also unnormalized.
namespace attention_variants {

template <template <class> class Mixer>
void check_on_values(index_t L) {
  const auto mf = Mixer<float>::init(8, 2, 4, 4, 0);
  const auto xf = testing::random_matrix<float>(8, L, 3);
  testing::check_host_device(mf.bind(xf.view()), mf.values(xf.view()).view(), 1e-4);
  const auto md = Mixer<double>::init(8, 2, 4, 4, 0);
  const auto xd = testing::random_matrix<double>(8, L, 4);
  testing::check_host_device(md.bind(xd.view()), md.values(xd.view()).view(), 1e-12);
}

BOOST_AUTO_TEST_SUITE(attention_device, *testing::requires_device())

BOOST_AUTO_TEST_CASE(on_values_float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    BOOST_TEST_CONTEXT("linear attention") { check_on_values<linear_attention_mixer>(L); }
    BOOST_TEST_CONTEXT("RetNet") { check_on_values<retnet_mixer>(L); }
    BOOST_TEST_CONTEXT("softmax attention") { check_on_values<softmax_attention_mixer>(L); }
    const auto raw = linear_attention_mixer<double>::init(8, 2, 4, 4, 0, {.normalized = false});
    const auto xd = testing::random_matrix<double>(8, L, 4);
    testing::check_host_device(raw.bind(xd.view()), raw.values(xd.view()).view(), 1e-12);
  }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace attention_variants

// ---- hyena -----------------------------------------------------------------
// Hyena on the device: the shared oracle body through mixlens::gpu (every path
// generic, from the in-place row), then host ≡ device, over odd lengths and
// L = 1, in float and double, for order 2 (as examples/01_operator_classes) and 3.
namespace hyena_variants {

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

}  // namespace hyena_variants

// ---- mamba_block -----------------------------------------------------------
// The unified Mamba block on the device: the shared oracle body through
// mixlens::gpu (the fp32 specialization of ops/mamba_block/device.cuh, double
// generic), then host ≡ device, over odd lengths and L = 1, in float and double.
namespace mamba_block_variants {

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

}  // namespace mamba_block_variants

// ---- bidirectional LTI -------------------------------------------------------
// The bidirectional forms on the device: a two-sided S4D convolution (both
// halves by the FFT or direct path, the backward one in reversed time) and S5
// with a reverse scan (the fp32 scan twice); double through the generic rows.
// The shared oracle body (both triangles), then host ≡ device.
namespace bidirectional_variants {

BOOST_AUTO_TEST_SUITE(bidirectional_device, *testing::requires_device())

template <class T>
two_sided_mixer<s4d_mixer<T>> two_sided_s4d() {
  two_sided_mixer<s4d_mixer<T>> m{s4d_mixer<T>::init(4, 8, s4d_init::lin, 1), s4d_mixer<T>::init(4, 8, s4d_init::inv, 2)};
  m.backward.skip.clear();
  return m;
}

template <class T>
s5_mixer<T> bidirectional_s5() {
  const auto f = s5_mixer<T>::init(4, {.state_size = 8, .seed = 3});
  return s5_mixer<T>(f.lambda(), f.b_tilde(), f.c_tilde(), f.log_step(), f.skip(), f.discretization(), f.conj_sym(),
                     false, s5_mixer<T>::init(4, {.state_size = 8, .seed = 4}).c_tilde());
}

BOOST_AUTO_TEST_CASE(two_sided_conv_float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto xf = testing::random_matrix<float>(4, L, 5);
    testing::check_host_device(two_sided_s4d<float>().bind(xf.view()), xf.view(), 2e-4);
    const auto xd = testing::random_matrix<double>(4, L, 6);
    testing::check_host_device(two_sided_s4d<double>().bind(xd.view()), xd.view(), 1e-11);
  }
}

BOOST_AUTO_TEST_CASE(s5_reverse_scan_float_and_double) {
  for (index_t L : {1, 7, 64, 257}) {
    const auto xf = testing::random_matrix<float>(4, L, 7);
    testing::check_host_device(bidirectional_s5<float>().bind(xf.view()), xf.view(), 2e-4);
    const auto xd = testing::random_matrix<double>(4, L, 8);
    testing::check_host_device(bidirectional_s5<double>().bind(xd.view()), xd.view(), 1e-11);
  }
  // The persistent fp32 class runs the forward scan only: it refuses.
  testing::check_error([] { gpu::device_s5 d(bidirectional_s5<float>().bind(16).view()); },
                       {"device_s5", "a bidirectional S5"});
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace bidirectional_variants
