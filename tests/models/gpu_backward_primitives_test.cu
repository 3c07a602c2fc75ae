// The backward primitives of gpu::device_backend (models/mamba_backward.hpp)
// against host_backend<float> on the same random inputs.
#define BOOST_TEST_MODULE gpu_backward_primitives
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/gpu/backend.cuh"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/models/mamba2_attribution.hpp"
#include "mixlens/models/mamba2_backward.hpp"
#include "mixlens/models/mamba2_random.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/models/mamba_random.hpp"
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
  for (const bool accumulate : {false, true})
    for (const bool detach : {false, true}) {  // detach: LRP's rule
      auto want = random(rows * H, -1, 1, 4);
      auto dx = b.up(want);
      const auto xd = b.up(x), dyd = b.up(dy), wd = b.up(w);
      b.host.rms_norm_backward(x.data(), rows, H, vector_view<const float>(w.data(), H), 1e-5, dy.data(), want.data(),
                               accumulate, detach);
      b.dev.rms_norm_backward(xd.data(), rows, H, vector_view<const float>(wd.data(), H), 1e-5, dyd.data(), dx.data(),
                              accumulate, detach);
      BOOST_TEST(rel(b.down(dx), want) <= 1e-5, "accumulate " << accumulate << " detach " << detach);
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
  for (const bool detach : {false, true}) {
    auto du = dup;
    auto dud = b.up(dup);
    b.host.conv_silu_backward(hc, u.data(), sigma.data(), du.data(), dx.data(), detach);
    b.dev.conv_silu_backward(dc, ud.data(), sigmad.data(), dud.data(), dxd.data(), detach);
    BOOST_TEST(rel(b.down(dud), du) <= 1e-5, "detach " << detach);
    BOOST_TEST(rel(b.down(dxd), dx) <= 1e-5, "detach " << detach);
  }

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
  auto g3 = dup;
  auto g3d = b.up(dup);
  b.host.silu_backward(z.data(), g3.data(), D * L, true);
  b.dev.silu_backward(zd.data(), g3d.data(), D * L, true);
  BOOST_TEST(rel(b.down(g3d), g3) <= 1e-5);
  auto copied = b.dev.alloc(D * L);
  b.dev.copy(zd.data(), D * L, copied.data());
  BOOST_TEST(b.down(copied) == z);
}

// The fused scan backward behind device_backend::s6_backward against the host's
// on one S6 view: groups, D and the gate.
BOOST_AUTO_TEST_CASE(scan_backward) {
  const both b;
  const index_t D = 24, L = 150, N = 16, G = 2;
  const auto delta = random(D * L, 0.001, 0.1, 1), a = random(D * N, -2.0, -0.1, 2), bb = random(G * N * L, -1, 1, 3),
             cc = random(G * N * L, -1, 1, 4), skip = random(D, -1, 1, 5), gate = random(D * L, -1, 1, 6),
             u = random(D * L, -1, 1, 7), dy = random(D * L, -1, 1, 8);
  const s6_operator<float> host_op(matrix_view<const float>(delta.data(), D, L), matrix_view<const float>(a.data(), D, N),
                                   tensor_view<const float, 3>(bb.data(), G, N, L),
                                   tensor_view<const float, 3>(cc.data(), G, N, L),
                                   vector_view<const float>(skip.data(), skip.size()),
                                   matrix_view<const float>(gate.data(), D, L));
  auto want = s6_backward(host_op, matrix_view<const float>(u.data(), D, L), matrix_view<const float>(dy.data(), D, L));
  const auto dd = b.up(delta), da = b.up(a), db_ = b.up(bb), dc_ = b.up(cc), dsk = b.up(skip), dg = b.up(gate),
             du_in = b.up(u), ddy = b.up(dy);
  const s6_operator<float> dev_op(matrix_view<const float>(dd.data(), D, L), matrix_view<const float>(da.data(), D, N),
                                  tensor_view<const float, 3>(db_.data(), G, N, L),
                                  tensor_view<const float, 3>(dc_.data(), G, N, L),
                                  vector_view<const float>(dsk.data(), skip.size()),
                                  matrix_view<const float>(dg.data(), D, L));
  auto du = b.dev.alloc(D * L), ddelta = b.dev.alloc(D * L), dB = b.dev.alloc(G * N * L), dC = b.dev.alloc(G * N * L),
       dskip = b.dev.alloc(D), dgate = b.dev.alloc(D * L);
  b.dev.s6_backward(dev_op, du_in.data(), ddy.data(),
                    s6_gradient_views<float>{matrix_view<float>(du.data(), D, L), matrix_view<float>(ddelta.data(), D, L),
                                             tensor_view<float, 3>(dB.data(), G, N, L),
                                             tensor_view<float, 3>(dC.data(), G, N, L),
                                             vector_view<float>(dskip.data(), static_cast<std::size_t>(D)),
                                             matrix_view<float>(dgate.data(), D, L)});
  const auto flat = [](const auto& m) { return std::vector<float>(m.data(), m.data() + m.size()); };
  BOOST_TEST(rel(b.down(du), flat(want.du)) <= 1e-4);
  BOOST_TEST(rel(b.down(ddelta), flat(want.ddelta)) <= 1e-4);
  BOOST_TEST(rel(b.down(dB), flat(want.db)) <= 1e-4);
  BOOST_TEST(rel(b.down(dC), flat(want.dc)) <= 1e-4);
  BOOST_TEST(rel(b.down(dskip), want.dskip) <= 1e-4);
  BOOST_TEST(rel(b.down(dgate), flat(want.dgate)) <= 1e-4);
}

// mamba_gradients on the device against the host (the same code on both
// backends), Mamba and Falcon-Mamba random models, every per-layer gradient.
BOOST_AUTO_TEST_CASE(model_gradients_on_both_backends) {
  const both b;
  for (const bool falcon : {false, true})
  for (const auto rule : {models::propagation::gradient, models::propagation::lrp}) {
    const bool lrp = rule == models::propagation::lrp;
    models::mamba_config c;
    c.hidden_size = 32, c.intermediate_size = 64, c.state_size = 16, c.time_step_rank = 4, c.conv_kernel = 4;
    c.num_layers = 2, c.vocab_size = 50, c.bc_dt_norm = falcon, c.norm_eps = 1e-5;
    const auto m = models::random_mamba<float>(c, falcon ? 21 : 20);
    std::vector<index_t> tokens;
    for (index_t t = 0; t < 90; ++t) tokens.push_back((t * 7 + 3) % 50);
    const models::gradient_options all{.rule = rule, .embedding = true, .residual = true, .u = true, .delta = !lrp,
                                       .b = !lrp, .c = !lrp, .ssm_out = true};
    const auto host = models::mamba_gradients(m, std::span<const index_t>(tokens), {}, all);
    const auto w = gpu::to_device(m);
    const auto dev = models::mamba_gradients(b.dev, w.view(), std::span<const index_t>(tokens), {}, all);
    BOOST_TEST(dev.target.position == host.target.position);
    BOOST_TEST(dev.target.token == host.target.token);
    BOOST_TEST(std::abs(dev.value - host.value) <= 1e-4 * std::max(1.0, std::abs(host.value)));
    BOOST_TEST(rel(b.down(dev.embedding), host.embedding) <= 1e-4, (falcon ? "falcon" : "mamba") << " embedding");
    BOOST_REQUIRE_EQUAL(dev.layers.size(), host.layers.size());
    for (std::size_t k = 0; k < host.layers.size(); ++k) {
      const auto& d = dev.layers[k];
      const auto& h = host.layers[k];
      double e = std::max({rel(b.down(d.residual), h.residual), rel(b.down(d.u), h.u), rel(b.down(d.ssm_out), h.ssm_out)});
      if (!lrp) e = std::max({e, rel(b.down(d.delta), h.delta), rel(b.down(d.b), h.b), rel(b.down(d.c), h.c)});
      BOOST_TEST(e <= 1e-4, (falcon ? "falcon" : "mamba") << (lrp ? " lrp" : "") << " layer " << k << ": " << e);
    }
  }
}

// Mamba-2's additions: the gated norm's backward with its scale detached (LRP)
// and the softplus backward where the time-step clamp binds.
BOOST_AUTO_TEST_CASE(mamba2_primitives) {
  both b;
  const index_t C = 12, L = 9, group = 4;
  const auto xc = random(C * L, -2, 2, 15);
  auto want = random(C * L, -1, 1, 16);
  auto grad = b.up(want);
  const auto xcd = b.up(xc);
  b.host.group_rms_norm_backward(xc.data(), C, L, group, 1e-3, want.data(), true);
  b.dev.group_rms_norm_backward(xcd.data(), C, L, group, 1e-3, grad.data(), true);
  BOOST_TEST(rel(b.down(grad), want) <= 1e-5);
  const auto delta = random(C * L, 0.001, 3, 17), dup = random(C * L, -1, 1, 18);
  auto g = dup;
  auto gd = b.up(dup);
  const auto deltad = b.up(delta);
  b.host.softplus_backward(delta.data(), g.data(), C * L, 0.5f, 2.0f);
  b.dev.softplus_backward(deltad.data(), gd.data(), C * L, 0.5f, 2.0f);
  BOOST_TEST(rel(b.down(gd), g) <= 1e-5);
  BOOST_TEST(std::count(g.begin(), g.end(), 0.0f) > 0);
}

// mamba2_gradients and the Mamba-2 attribution methods on the device against
// the host: a gated-MLP part, groups, a norm over groups and a binding limit,
// or 40 states (the SSD backward in slices of ssd_backward_state_slice).
BOOST_AUTO_TEST_CASE(mamba2_gradients_on_both_backends) {
  const both b;
  for (const bool wide : {false, true})
  for (const auto rule : {models::propagation::gradient, models::propagation::lrp}) {
    const bool lrp = rule == models::propagation::lrp;
    models::mamba2_config c;
    c.hidden_size = 32, c.num_layers = 2, c.vocab_size = 50, c.conv_kernel = 4, c.chunk_size = 16, c.norm_eps = 1e-5;
    c.num_heads = 8, c.head_dim = 8, c.state_size = wide ? 40 : 16, c.n_groups = wide ? 1 : 2, c.d_mlp = wide ? 0 : 16;
    c.norm_group_size = wide ? 64 : 32, c.use_conv_bias = true, c.use_bias = !wide;
    if (!wide) c.dt_min = 0.005, c.dt_max = 0.05;
    const auto m = models::random_mamba2<float>(c, wide ? 31 : 30);
    std::vector<index_t> tokens;
    for (index_t t = 0; t < 70; ++t) tokens.push_back((t * 7 + 3) % 50);
    const models::gradient_options all{.rule = rule, .embedding = true, .residual = true, .u = true, .delta = !lrp,
                                       .b = !lrp, .c = !lrp, .ssm_out = true};
    const auto host = models::mamba2_gradients(m, std::span<const index_t>(tokens), {}, all);
    const auto w = gpu::to_device(m);
    const auto dev = models::mamba2_gradients(b.dev, w.view(), std::span<const index_t>(tokens), {}, all);
    BOOST_TEST(dev.target.position == host.target.position);
    BOOST_TEST(dev.target.token == host.target.token);
    BOOST_TEST(std::abs(dev.value - host.value) <= 1e-4 * std::max(1.0, std::abs(host.value)));
    BOOST_TEST(rel(b.down(dev.embedding), host.embedding) <= 1e-4, (wide ? "wide" : "mlp") << " embedding");
    BOOST_REQUIRE_EQUAL(dev.layers.size(), host.layers.size());
    for (std::size_t k = 0; k < host.layers.size(); ++k) {
      const auto& d = dev.layers[k];
      const auto& h = host.layers[k];
      double e = std::max({rel(b.down(d.residual), h.residual), rel(b.down(d.u), h.u), rel(b.down(d.ssm_out), h.ssm_out)});
      if (!lrp) e = std::max({e, rel(b.down(d.delta), h.delta), rel(b.down(d.b), h.b), rel(b.down(d.c), h.c)});
      BOOST_TEST(e <= 1e-4, (wide ? "wide" : "mlp") << (lrp ? " lrp" : "") << " layer " << k << ": " << e);
    }
    // The methods: the same recipes on both backends.
    const std::span<const index_t> t(tokens);
    const auto hw = models::host_weights(m);
    const auto scores = [](const models::attribution_result& r) { return std::vector<float>(r.scores.begin(), r.scores.end()); };
    if (lrp) {
      BOOST_TEST(rel(scores(models::lrp(b.dev, w.view(), t)), scores(models::lrp(b.host, hw.view(), t))) <= 1e-4);
    } else {
      BOOST_TEST(rel(scores(models::grad_input(b.dev, w.view(), t)), scores(models::grad_input(b.host, hw.view(), t))) <= 1e-4);
      BOOST_TEST(rel(scores(models::mamba_attr(b.dev, w.view(), t)), scores(models::mamba_attr(b.host, hw.view(), t))) <= 1e-4);
      BOOST_TEST(rel(scores(models::attn_grad(b.dev, w.view(), t)), scores(models::attn_grad(b.host, hw.view(), t))) <= 1e-4);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
