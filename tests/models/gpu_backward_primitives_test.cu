// The backward primitives of gpu::device_backend (models/mamba_backward.hpp)
// against host_backend<float> on the same random inputs.
#define BOOST_TEST_MODULE gpu_backward_primitives
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <span>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/gpu/backend.cuh"
#include "mixlens/ops/mamba_block.hpp"

namespace {

using namespace mixlens;

std::vector<float> random(index_t n, double lo, double hi, std::uint64_t seed) {
  mixlens::detail::splitmix64 rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.uniform(lo, hi));
  return v;
}

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return testing::relative_error(got.data(), want.data(), static_cast<index_t>(got.size()));
}

struct both {
  host_backend<float> host;
  gpu::device_backend dev;
  auto up(const std::vector<float>& v) const { return dev.upload(std::span<const float>(v)); }
  template <class A>
  std::vector<float> down(const A& a) const {
    return dev.download(a.data(), a.size());
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_backward_primitives, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(rms_norms) {
  both b;
  const index_t rows = 7, H = 300;  // H above the block size: the strided loop
  const auto x = random(rows * H, -2, 2, 1), dy = random(rows * H, -1, 1, 2), w = random(H, 0.5, 1.5, 3);
  for (const bool accumulate : {false, true}) {
    auto want = random(rows * H, -1, 1, 4);
    auto dx = b.up(want);
    const auto xd = b.up(x), dyd = b.up(dy), wd = b.up(w);
    b.host.rms_norm_backward(x.data(), rows, H, vector_view<const float>(w.data(), H), 1e-5, dy.data(), want.data(),
                             accumulate);
    b.dev.rms_norm_backward(xd.data(), rows, H, vector_view<const float>(wd.data(), H), 1e-5, dyd.data(), dx.data(),
                            accumulate);
    BOOST_TEST(rel(b.down(dx), want) <= 1e-5);
  }
  const index_t C = 12, L = 9, group = 4;
  const auto xc = random(C * L, -2, 2, 5);
  auto want = random(C * L, -1, 1, 6);
  auto grad = b.up(want);
  const auto xcd = b.up(xc);
  b.host.group_rms_norm_backward(xc.data(), C, L, group, 1e-3, want.data());
  b.dev.group_rms_norm_backward(xcd.data(), C, L, group, 1e-3, grad.data());
  BOOST_TEST(rel(b.down(grad), want) <= 1e-5);
}

BOOST_AUTO_TEST_CASE(conv_silu_softplus_silu) {
  both b;
  const index_t D = 5, L = 11, K = 4;
  const auto taps = random(D * K, -1, 1, 7), x = random(D * L, -2, 2, 8), dup = random(D * L, -1, 1, 9);
  const auto tapsd = b.up(taps), xd = b.up(x);
  std::vector<float> u(static_cast<std::size_t>(D * L)), sigma(u.size()), dx(u.size());
  auto ud = b.dev.alloc(D * L), sigmad = b.dev.alloc(D * L), dxd = b.dev.alloc(D * L);
  const causal_conv_operator<float, mamba_conv_kind> hc(matrix_view<const float>(taps.data(), D, K), {}, L),
      dc(matrix_view<const float>(tapsd.data(), D, K), {}, L);
  b.host.conv_silu(hc, {}, x.data(), u.data(), sigma.data());
  b.dev.conv_silu(dc, {}, xd.data(), ud.data(), sigmad.data());
  auto du = dup;
  auto dud = b.up(dup);
  b.host.conv_silu_backward(hc, u.data(), sigma.data(), du.data(), dx.data());
  b.dev.conv_silu_backward(dc, ud.data(), sigmad.data(), dud.data(), dxd.data());
  BOOST_TEST(rel(b.down(dud), du) <= 1e-5);
  BOOST_TEST(rel(b.down(dxd), dx) <= 1e-5);

  const auto delta = random(D * L, 0.001, 3, 10), z = random(D * L, -6, 6, 11);
  auto g1 = dup, g2 = dup;
  auto g1d = b.up(dup), g2d = b.up(dup);
  const auto deltad = b.up(delta), zd = b.up(z);
  b.host.softplus_backward(delta.data(), g1.data(), D * L);
  b.dev.softplus_backward(deltad.data(), g1d.data(), D * L);
  b.host.silu_backward(z.data(), g2.data(), D * L);
  b.dev.silu_backward(zd.data(), g2d.data(), D * L);
  BOOST_TEST(rel(b.down(g1d), g1) <= 1e-5);
  BOOST_TEST(rel(b.down(g2d), g2) <= 1e-5);
  auto copied = b.dev.alloc(D * L);
  b.dev.copy(zd.data(), D * L, copied.data());
  BOOST_TEST(b.down(copied) == z);
}

BOOST_AUTO_TEST_SUITE_END()
