// LTI operators on the GPU: S4D and S4 kernels generated on the device against the
// host kernels (double), the LTI apply against the host operator, and S5 by a
// parallel scan against the host s5_operator (device_s5 and the view's
// gpu::apply run the same kernels).
#define BOOST_TEST_MODULE gpu_lti
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/lti.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/ops/s5/device.cuh"

namespace {

using namespace mixlens;

// Under the memory checker: leave out the longest sequences.
bool small_mode() { return std::getenv("MIXLENS_GPU_TEST_SMALL") != nullptr; }

// max |got − ref| / max |ref| (a NaN in got counts as infinite).
template <class R>
double relative_to_max(const std::vector<float>& got, const R* ref, std::size_t n) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double g = got[i], r = static_cast<double>(ref[i]);
    diff = std::max(diff, std::isfinite(g) ? std::abs(g - r) : INFINITY);
    scale = std::max(scale, std::abs(r));
  }
  return scale == 0 ? diff : diff / scale;
}

template <class T>
double s4d_error(const s4d_mixer<T>& m, index_t L) {
  gpu::device_buffer<float> k(m.channels() * L);
  k.fill_bytes(0xff);
  gpu::s4d_kernel(m, L, k.data());
  const auto ref = m.kernel(L);
  return relative_to_max(k.to_host(), ref.data(), static_cast<std::size_t>(ref.size()));
}

template <class T>
double s4_error(const s4_mixer<T>& m, index_t L) {
  gpu::device_buffer<float> k(m.channels() * L);
  k.fill_bytes(0xff);
  gpu::s4_kernel(m, L, k.data());
  const auto ref = m.kernel(L);
  return relative_to_max(k.to_host(), ref.data(), static_cast<std::size_t>(ref.size()));
}

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(normal(gen));
  return v;
}

constexpr double kernel_tol = 1e-5;  // relative to max |K|, fp32 output

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_lti, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(s4d_kernels_against_host) {
  std::uint64_t seed = 1;
  for (auto init : {s4d_init::lin, s4d_init::inv, s4d_init::real})
    for (auto disc : {ssm_discretization::zoh, ssm_discretization::bilinear}) {
      const auto m = s4d_mixer<double>::init(3, 64, init, seed++, disc);
      for (index_t L : {1, 2, 7, 100, 1000, 2049, 4096}) {
        const double e = s4d_error(m, L);
        BOOST_TEST_INFO(to_string(init) << (disc == ssm_discretization::zoh ? " ZOH" : " bilinear") << " L " << L);
        BOOST_TEST(e < kernel_tol);
      }
      // Long kernels: the phase l·Im log Ā reaches ~10⁷ rad here (S4D-Inv).
      if (!small_mode()) {
        const auto wide = s4d_mixer<double>::init(2, 64, init, seed++, disc, 1e-3, 1e-1);
        const double e = s4d_error(wide, 65536);
        BOOST_TEST_MESSAGE("S4D " << to_string(init) << " L 65536: relative error " << e);
        BOOST_TEST_INFO(to_string(init) << " L 65536");
        BOOST_TEST(e < kernel_tol);
      }
    }
}

BOOST_AUTO_TEST_CASE(s4d_many_modes_float_mixer_and_reuse) {
  // 256 modes: more than one shared-memory tile of modes per block.
  const auto big = s4d_mixer<double>::init(2, 512, s4d_init::inv, 11, ssm_discretization::zoh);
  BOOST_TEST(s4d_error(big, 1000) < kernel_tol);
  const auto mf = s4d_mixer<float>::init(3, 16, s4d_init::lin, 12, ssm_discretization::bilinear);
  BOOST_TEST(s4d_error(mf, 3000) < kernel_tol);

  // One upload, kernels for several lengths; the skip term comes along.
  const auto m = s4d_mixer<double>::init(4, 32, s4d_init::lin, 13);
  const gpu::device_s4d d(m);
  BOOST_TEST(d.channels() == 4);
  BOOST_TEST(d.modes() == 16);
  BOOST_REQUIRE(d.skip() != nullptr);
  std::vector<float> skip(4);
  MIXLENS_CUDA_CHECK(cudaMemcpy(skip.data(), d.skip(), 4 * sizeof(float), cudaMemcpyDeviceToHost));
  for (index_t h = 0; h < 4; ++h) BOOST_TEST(skip[h] == static_cast<float>(m.skip[h]));
  for (index_t L : {5, 640, 2048}) {
    gpu::device_buffer<float> k(4 * L);
    d.kernel(L, k.data());
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
    const auto ref = m.kernel(L);
    BOOST_TEST_INFO("L " << L);
    BOOST_TEST(relative_to_max(k.to_host(), ref.data(), static_cast<std::size_t>(ref.size())) < kernel_tol);
  }
  auto no_skip = m;
  no_skip.skip.clear();
  BOOST_TEST(gpu::device_s4d(no_skip).skip() == nullptr);
}

BOOST_AUTO_TEST_CASE(s4_kernels_against_host) {
  std::vector<index_t> lengths = {1, 2, 3, 7, 64, 1000, 4096};
  if (!small_mode()) lengths.push_back(16384);
  std::uint64_t seed = 21;
  for (index_t L : lengths) {
    const auto m1 = s4_mixer<double>::init(2, 64, seed++, 1);
    const double e1 = s4_error(m1, L);
    BOOST_TEST_MESSAGE("S4 rank 1 N 64 L " << L << ": relative error " << e1);
    BOOST_TEST_INFO("rank 1, L " << L);
    BOOST_TEST(e1 < kernel_tol);
    const auto m2 = s4_mixer<double>::init(2, 16, seed++, 2);
    BOOST_TEST_INFO("rank 2, L " << L);
    BOOST_TEST(s4_error(m2, L) < kernel_tol);
  }
}

BOOST_AUTO_TEST_CASE(s4_general_dplr_and_float_mixer) {
  // Q ≠ P (a perturbed low-rank part, rank 2) and a float layer.
  auto m = s4_mixer<double>::init(3, 32, 31, 2, 1e-2, 1e-1);
  std::mt19937_64 gen(32);
  std::normal_distribution<double> normal(0, 0.01);
  for (index_t r = 0; r < 2; ++r)
    for (index_t h = 0; h < 3; ++h)
      for (index_t n = 0; n < 16; ++n) m.q(r, h, n) += complex<double>(normal(gen), normal(gen));
  for (index_t L : {1, 5, 333, 2048}) {
    BOOST_TEST_INFO("L " << L);
    BOOST_TEST(s4_error(m, L) < kernel_tol);
  }
  const auto mf = s4_mixer<float>::init(2, 16, 33, 1);
  BOOST_TEST(s4_error(mf, 1024) < kernel_tol);
  // More modes than one shared-memory tile (N/2 = 160 > 128).
  const auto big = s4_mixer<double>::init(1, 320, 34, 1);
  BOOST_TEST(s4_error(big, 512) < kernel_tol);
}

BOOST_AUTO_TEST_CASE(lti_apply_against_host) {
  std::uint64_t seed = 41;
  for (index_t L : {1, 7, 1000, 4096}) {
    const index_t B = 2, H = 3;
    const auto m = s4d_mixer<double>::init(H, 16, s4d_init::lin, seed++);
    const auto x = random_floats(static_cast<std::size_t>(B * H * L), seed++);
    gpu::device_s4d d(m);
    gpu::device_buffer<float> k(H * L), dx(x), dy(B * H * L), dy2(B * H * L);
    d.kernel(L, k.data());
    dy.fill_bytes(0xff);
    gpu::lti_apply(k.data(), d.skip(), dx.data(), dy.data(), B, H, L);
    // The same through a held plan object.
    gpu::causal_fft_conv conv(B, H, L);
    conv.set_filter(k.data());
    conv.apply(dx.data(), dy2.data(), d.skip());
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
    const auto y = dy.to_host(), y2 = dy2.to_host();
    const auto op = m.bind(L);
    double err = 0;
    for (index_t b = 0; b < B; ++b) {
      matrix<double> xb(H, L);
      for (index_t i = 0; i < H * L; ++i) xb.data()[i] = x[static_cast<std::size_t>(b * H * L + i)];
      const auto ref = mix(op, xb.view());
      std::vector<float> got(y.begin() + b * H * L, y.begin() + (b + 1) * H * L);
      err = std::max(err, relative_to_max(got, ref.data(), static_cast<std::size_t>(H * L)));
    }
    BOOST_TEST_MESSAGE("LTI apply L " << L << ": relative error " << err);
    BOOST_TEST_INFO("L " << L);
    BOOST_TEST(err < 2e-5);  // fp32 FFT of size 2L
    BOOST_TEST(relative_to_max(y2, y.data(), y.size()) < 1e-6);  // same path, separate plans
  }
}

namespace {

struct s5_case {
  index_t channels, state_size;
  bool conj_sym;
  s5_discretization disc;
};

// The GPU S5 apply over `batch` inputs against (1) the host operator in double
// over the same fp32 parameters (the exact answer for what the device computes
// with) and (2) the host float operator.
template <class Policy>
std::pair<double, double> s5_error(const s5_case& c, index_t L, index_t batch, Policy policy, std::uint64_t seed) {
  s5_init init;
  init.state_size = c.state_size;
  init.conj_sym = c.conj_sym;
  init.discretization = c.disc;
  init.seed = seed;
  const auto mixer = s5_mixer<float>::init(c.channels, init);
  const auto bound = mixer.bind(L);
  const auto& opf = bound.view();
  const index_t H = c.channels, P = opf.states();

  std::vector<complex<double>> lambda(static_cast<std::size_t>(P));
  matrix<complex<double>> b(P, H), ct(H, P);
  std::vector<double> skip(static_cast<std::size_t>(H));
  for (index_t p = 0; p < P; ++p) {
    lambda[static_cast<std::size_t>(p)] = detail::widen(opf.lambda_bar[static_cast<std::size_t>(p)]);
    for (index_t h = 0; h < H; ++h) {
      b(p, h) = detail::widen(opf.b_bar(p, h));
      ct(h, p) = detail::widen(opf.c_tilde(h, p));
    }
  }
  for (index_t h = 0; h < H; ++h) skip[static_cast<std::size_t>(h)] = opf.skip[static_cast<std::size_t>(h)];
  const s5_operator<double> opd(vector_view<const complex<double>>(lambda.data(), lambda.size()), b.view(), ct.view(),
                                vector_view<const double>(skip.data(), skip.size()), L, c.conj_sym);

  const auto x = random_floats(static_cast<std::size_t>(batch * H * L), seed + 1000);
  gpu::device_s5 d(opf, batch);
  BOOST_TEST(d.states() == P);
  gpu::device_buffer<float> dx(x), dy(batch * H * L);
  dy.fill_bytes(0xff);
  d.apply(dx.data(), dy.data(), policy);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  const auto y = dy.to_host();

  double e_double = 0, e_float = 0;
  for (index_t bi = 0; bi < batch; ++bi) {
    matrix<double> xd(H, L);
    matrix<float> xf(H, L);
    for (index_t i = 0; i < H * L; ++i) {
      xf.data()[i] = x[static_cast<std::size_t>(bi * H * L + i)];
      xd.data()[i] = xf.data()[i];
    }
    matrix<double> yd(H, L);
    matrix<float> yf(H, L);
    opd.apply(xd.view(), yd.view());
    opf.apply(xf.view(), yf.view());
    const std::vector<float> got(y.begin() + bi * H * L, y.begin() + (bi + 1) * H * L);
    e_double = std::max(e_double, relative_to_max(got, yd.data(), static_cast<std::size_t>(H * L)));
    e_float = std::max(e_float, relative_to_max(got, yf.data(), static_cast<std::size_t>(H * L)));
  }
  return {e_double, e_float};
}

}  // namespace

BOOST_AUTO_TEST_CASE(s5_apply_against_host) {
  const s5_case cases[] = {
      {4, 16, true, s5_discretization::zoh},
      {3, 8, false, s5_discretization::bilinear},
      {16, 64, true, s5_discretization::bilinear},
      {33, 70, false, s5_discretization::zoh},  // P = 70, H = 33: partial tiles everywhere
  };
  std::uint64_t seed = 51;
  for (const auto& c : cases)
    for (index_t L : {1, 7, 1000, 4097}) {
      const auto [ed, ef] = s5_error(c, L, 1, gpu::block_policy{}, seed++);
      BOOST_TEST_MESSAGE("S5 H " << c.channels << " P " << c.state_size << (c.conj_sym ? " conj" : "") << " L " << L
                                 << ": relative error " << ed << " (vs double), " << ef << " (vs float host)");
      BOOST_TEST_INFO("H " << c.channels << " state_size " << c.state_size << " L " << L);
      BOOST_TEST(ed < 1e-4);
      BOOST_TEST(ef < 1e-4);
    }
}

BOOST_AUTO_TEST_CASE(s5_batch_and_policies) {
  const s5_case c{8, 32, true, s5_discretization::zoh};
  const index_t L = small_mode() ? 2500 : 5000;
  auto check = [](std::pair<double, double> e, const char* what) {
    BOOST_TEST_INFO(what);
    BOOST_TEST(e.first < 1e-4);
    BOOST_TEST(e.second < 1e-4);
  };
  check(s5_error(c, L, 3, gpu::chunked_policy{1024}, 61), "chunked, batch 3");
  check(s5_error(c, L, 2, gpu::warp_policy{}, 62), "warp, batch 2");
  check(s5_error(c, 300, 2, gpu::sequential_policy{}, 63), "sequential, batch 2");

  // The one-shot facade equals the held object.
  s5_init init;
  init.state_size = 16;
  init.seed = 64;
  const auto bound = s5_mixer<float>::init(5, init).bind(777);
  const auto x = random_floats(5 * 777, 65);
  gpu::device_buffer<float> dx(x), y1(5 * 777), y2(5 * 777);
  gpu::s5_apply(bound.view(), dx.data(), y1.data());
  gpu::device_s5 d(bound.view());
  d.apply(dx.data(), y2.data());
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  BOOST_TEST(y1.to_host() == y2.to_host());
}

// gpu::apply on the device-resident view (ops/s5/device.cuh) and device_s5 share
// s5_scan_apply with the same policy: the outputs agree bit for bit.
BOOST_AUTO_TEST_CASE(s5_view_apply_is_device_s5) {
  for (const bool conj : {true, false})
    for (index_t L : {1, 7, 1000}) {
      s5_init init;
      init.state_size = 16;
      init.conj_sym = conj;
      init.seed = 70 + static_cast<std::uint64_t>(L);
      const auto bound = s5_mixer<float>::init(6, init).bind(L);
      const auto x = random_floats(static_cast<std::size_t>(6 * L), 71 + static_cast<std::uint64_t>(L));
      gpu::device_buffer<float> dx(x), y1(6 * L), y2(6 * L);
      y1.fill_bytes(0xff);
      y2.fill_bytes(0xff);
      gpu::device_s5 d(bound.view());
      d.apply(dx.data(), y1.data());
      const auto on_device = gpu::to_device(bound);
      gpu::apply(on_device, matrix_view<const float>(dx.data(), 6, L), matrix_view<float>(y2.data(), 6, L));
      MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
      BOOST_TEST_INFO("L " << L << (conj ? " conj" : ""));
      BOOST_TEST(y1.to_host() == y2.to_host());
    }
}

BOOST_AUTO_TEST_CASE(errors) {
  const auto m = s4d_mixer<double>::init(2, 8, s4d_init::lin, 1);
  const gpu::device_s4d d(m);
  gpu::device_buffer<float> buf(64);
  testing::check_error([&] { d.kernel(0, buf.data()); }, {"'length'", "positive"});
  testing::check_error([&] { d.kernel(4, nullptr); }, {"'out'", "null"});
  testing::check_error([&] { gpu::s4d_kernel(m, -1, buf.data()); }, {"'length'", "positive"});

  const auto s4 = s4_mixer<double>::init(1, 8, 1, 1);
  testing::check_error([&] { gpu::s4_kernel(s4, 0, buf.data()); }, {"'length'", "positive"});
  testing::check_error([&] { gpu::s4_kernel(s4, 4, nullptr); }, {"'out'", "null"});
  const auto s4_rank5 = s4_mixer<double>::init(1, 8, 1, 5);
  testing::check_error([&] { gpu::s4_kernel(s4_rank5, 4, buf.data()); }, {"'rank'", "at most 4", "5"});

  testing::check_error([&] { gpu::lti_apply(nullptr, nullptr, buf.data(), buf.data(), 1, 2, 4); }, {"'kernel'", "null"});
  testing::check_error([&] { gpu::lti_apply(buf.data(), nullptr, nullptr, buf.data(), 1, 2, 4); }, {"'x'", "null"});
  testing::check_error([&] { gpu::lti_apply(buf.data(), nullptr, buf.data(), buf.data(), 1, 0, 4); }, {"'channels'", "positive"});

  s5_init init;
  init.state_size = 8;
  const auto bound = s5_mixer<float>::init(2, init).bind(4);
  testing::check_error([&] { gpu::device_s5 bad(bound.view(), 0); }, {"'batch'", "positive"});
  gpu::device_s5 s5(bound.view());
  testing::check_error([&] { s5.apply(nullptr, buf.data()); }, {"'x'", "null"});
  testing::check_error([&] { s5.apply(buf.data(), nullptr); }, {"'y'", "null"});
  testing::check_error([&] { s5.apply(buf.data(), buf.data() + 32, gpu::chunked_policy{1000}); },
                       {"'policy.chunk'", "1024"});
  testing::check_error([&] { gpu::device_s5 bad(s5_operator<float>{}); }, {"'op (length)'", "positive"});
}

BOOST_AUTO_TEST_SUITE_END()
