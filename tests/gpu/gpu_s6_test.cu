// The fused GPU S6 forward against the host s6_operator (double) and an
// independent recurrence for the last state: the one-pass kernels, the
// time-parallel (chunked) path, and the dispatch between them.
#define BOOST_TEST_MODULE gpu_s6
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/ops/s6.hpp"

namespace {

using namespace mixlens;
using cf = complex<float>;
using cd = complex<double>;

struct shape {
  index_t batch, channels, length, states, groups;
};

struct options {
  bool bias_softplus = true, skip = true, gate = true, b_constant = false, c_constant = false, last_state = true;
  bool z_silu = true;
  bool generic_only = false;
  int states_per_lane = 0;
  index_t chunk_length = 0;  // 0 automatic, −1 one pass over time, > 0 forced chunks
};

template <class In>
In to_input(double x) {
  if constexpr (std::is_same_v<In, float>) return static_cast<float>(x);
  else return In(static_cast<float>(x));
}
template <class In>
double from_input(In x) {
  return static_cast<double>(static_cast<float>(x));
}
double softplus(double x) { return x <= 20 ? std::log1p(std::exp(x)) : x; }
double silu(double x) { return x / (1 + std::exp(-x)); }

template <class State>
constexpr bool is_complex = !std::is_same_v<State, float>;

// Draws a random problem, runs the GPU kernel, and returns the relative error
// of y against the host operator applied per batch element (max |Δ| / max |ref|
// over the whole output), and of the last state against a direct recurrence.
template <class In, class State>
std::pair<double, double> s6_error(shape sh, options opt, std::uint64_t seed) {
  using W = typename gpu::selective_scan_params<In, State>::weight_type;
  using SD = std::conditional_t<is_complex<State>, cd, double>;
  const auto [B, D, L, N, G] = sh;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> unif(0.5, 1.5);

  std::vector<In> u(B * D * L), delta(B * D * L), z(B * D * L);
  for (auto& x : u) x = to_input<In>(normal(gen));
  for (auto& x : delta) x = to_input<In>(opt.bias_softplus ? 0.5 * normal(gen) : 0.001 + 0.1 * unif(gen));
  for (auto& x : z) x = to_input<In>(normal(gen));
  std::vector<float> bias(D), skip(D);
  for (auto& x : bias) x = static_cast<float>(-2.0 + 0.5 * normal(gen));
  for (auto& x : skip) x = static_cast<float>(normal(gen));
  std::vector<State> a(D * N);
  for (index_t d = 0; d < D; ++d)
    for (index_t n = 0; n < N; ++n) {
      const double re = -double(n + 1) * unif(gen);
      if constexpr (is_complex<State>) a[d * N + n] = cf(static_cast<float>(re), static_cast<float>(3.14159 * n * unif(gen)));
      else a[d * N + n] = static_cast<float>(re);
    }
  const auto draw_weight = [&]() -> W {
    if constexpr (is_complex<State>) return cf(static_cast<float>(normal(gen)), static_cast<float>(normal(gen)));
    else return to_input<In>(normal(gen));
  };
  std::vector<W> bw(opt.b_constant ? D * N : B * G * N * L), cw(opt.c_constant ? D * N : B * G * N * L);
  for (auto& x : bw) x = draw_weight();
  for (auto& x : cw) x = draw_weight();

  gpu::device_buffer<In> du(u), ddelta(delta), dz(z), dy(B * D * L);
  gpu::device_buffer<float> dbias(bias), dskip(skip);
  gpu::device_buffer<State> da(a), dlast(B * D * N);
  gpu::device_buffer<W> db(bw), dc(cw);
  dy.fill_bytes(0xff);
  dlast.fill_bytes(0xff);
  gpu::selective_scan_params<In, State> p;
  p.batch = B, p.channels = D, p.length = L, p.state_size = N, p.groups = G;
  p.u = du.data(), p.delta = ddelta.data(), p.a = da.data(), p.b = db.data(), p.c = dc.data(), p.y = dy.data();
  if (opt.bias_softplus) p.delta_bias = dbias.data(), p.delta_softplus = true;
  if (opt.skip) p.skip = dskip.data();
  if (opt.gate) p.z = dz.data(), p.z_silu = opt.z_silu;
  p.b_constant = opt.b_constant, p.c_constant = opt.c_constant;
  if (opt.last_state) p.last_state = dlast.data();
  p.generic_only = opt.generic_only;
  p.states_per_lane = opt.states_per_lane;
  p.chunk_length = opt.chunk_length;
  gpu::selective_scan_forward(p);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  const auto y = dy.to_host();
  const auto last = dlast.to_host();

  const auto widen_w = [](W x) -> SD {
    if constexpr (is_complex<State>) return cd(x.real(), x.imag());
    else return from_input(x);
  };
  double y_diff = 0, y_scale = 0, h_diff = 0, h_scale = 0;
  for (index_t bi = 0; bi < B; ++bi) {
    // Host operator in double with one group per channel, so constant and
    // grouped B, C share one layout.
    matrix<double> hdelta(D, L), hu(D, L), hgate(D, L), hy(D, L);
    matrix<SD> ha(D, N);
    tensor<SD, 3> hb(D, N, L), hc(D, N, L);
    std::vector<double> hskip(skip.begin(), skip.end());
    for (index_t d = 0; d < D; ++d) {
      const index_t g = d / (D / G);
      for (index_t n = 0; n < N; ++n) {
        const State an = a[d * N + n];
        if constexpr (is_complex<State>) ha(d, n) = cd(an.real(), an.imag());
        else ha(d, n) = an;
        for (index_t t = 0; t < L; ++t) {
          hb(d, n, t) = widen_w(opt.b_constant ? bw[d * N + n] : bw[((bi * G + g) * N + n) * L + t]);
          hc(d, n, t) = widen_w(opt.c_constant ? cw[d * N + n] : cw[((bi * G + g) * N + n) * L + t]);
        }
      }
      for (index_t t = 0; t < L; ++t) {
        const index_t k = (bi * D + d) * L + t;
        const double raw = from_input(delta[k]);
        hdelta(d, t) = opt.bias_softplus ? softplus(raw + bias[d]) : raw;
        hu(d, t) = from_input(u[k]);
        hgate(d, t) = opt.z_silu ? silu(from_input(z[k])) : from_input(z[k]);
      }
    }
    s6_operator<double, SD> op(hdelta.view(), ha.view(), hb.view(), hc.view(),
                               opt.skip ? vector_view<const double>(hskip) : vector_view<const double>(),
                               opt.gate ? matrix_view<const double>(hgate.view()) : matrix_view<const double>());
    op.apply(hu.view(), hy.view());
    for (index_t d = 0; d < D; ++d) {
      for (index_t t = 0; t < L; ++t) {
        const double got = from_input(y[(bi * D + d) * L + t]);
        y_diff = std::max(y_diff, std::isnan(got) ? INFINITY : std::abs(got - hy(d, t)));
        y_scale = std::max(y_scale, std::abs(hy(d, t)));
      }
      // Independent reference for the last state: the recurrence written out.
      if (opt.last_state)
        for (index_t n = 0; n < N; ++n) {
          SD h(0);
          for (index_t t = 0; t < L; ++t)
            h = cuda::std::exp(hdelta(d, t) * ha(d, n)) * h + hdelta(d, t) * hb(d, n, t) * hu(d, t);
          const State got = last[(bi * D + d) * N + n];
          double diff;
          if constexpr (is_complex<State>) diff = cuda::std::abs(cd(got.real(), got.imag()) - h);
          else diff = std::abs(double(got) - h);
          h_diff = std::max(h_diff, std::isnan(diff) ? INFINITY : diff);
          h_scale = std::max(h_scale, double(cuda::std::abs(h)));
        }
    }
  }
  return {y_diff / y_scale, opt.last_state ? h_diff / h_scale : 0.0};
}

const std::vector<shape> shapes = {
    {1, 1, 1, 16, 1},  {2, 3, 7, 16, 1},   {2, 4, 1000, 16, 2}, {1, 8, 2049, 16, 4}, {3, 6, 333, 4, 3},
    {1, 2, 517, 8, 1}, {1, 4, 100, 32, 2}, {1, 3, 50, 64, 1},   {1, 2, 40, 128, 1},  {1, 2, 10, 5, 1},
    {1, 2, 17, 13, 1}, {8, 512, 64, 16, 1}, {1, 2, 4, 1, 1},
    // shapes of the staged fast path (N = 16, 8 | D/G, aligned rows), with tails
    {2, 16, 1000, 16, 2}, {1, 8, 64, 16, 1}, {3, 24, 136, 16, 3}, {1, 8, 8, 16, 1}, {2, 32, 2048, 16, 1},
    {2, 32, 200, 16, 2}, {1, 16, 1000, 16, 1}, {1, 16, 24, 16, 1}};

template <class In, class State>
void check_all(double tol) {
  std::uint64_t seed = 7;
  for (const auto& sh : shapes)
    for (int spl : {0, 1, 2}) {  // every kernel the dispatch may pick
      options o;
      o.states_per_lane = spl;
      const auto [ey, eh] = s6_error<In, State>(sh, o, seed++);
      BOOST_TEST_INFO("B " << sh.batch << " D " << sh.channels << " L " << sh.length << " N " << sh.states << " G "
                           << sh.groups << " states per lane " << spl);
      BOOST_TEST(ey < tol);
      BOOST_TEST(eh < tol);
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_s6, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(fp32_real) { check_all<float, float>(1e-4); }
BOOST_AUTO_TEST_CASE(fp32_complex) { check_all<float, cf>(1e-4); }
// Inputs rounded to 16 bits, reference from the rounded inputs: the output
// rounding dominates.
BOOST_AUTO_TEST_CASE(fp16_real) { check_all<__half, float>(2e-3); }
BOOST_AUTO_TEST_CASE(bf16_real) { check_all<__nv_bfloat16, float>(1e-2); }

BOOST_AUTO_TEST_CASE(option_combinations) {
  std::uint64_t seed = 100;
  for (int mask = 0; mask < 64; ++mask) {
    options o;
    o.bias_softplus = mask & 1, o.skip = mask & 2, o.gate = mask & 4, o.b_constant = mask & 8, o.c_constant = mask & 16;
    o.z_silu = mask & 32, o.last_state = true;
    const auto [ey, eh] = s6_error<float, float>({2, 4, 77, 16, 2}, o, seed++);
    BOOST_TEST_INFO("option mask " << mask);
    BOOST_TEST(ey < 1e-4);
    BOOST_TEST(eh < 1e-4);
  }
  for (int mask = 0; mask < 64; ++mask) {  // the same on a staged-path shape, both kernels
    options o;
    o.bias_softplus = mask & 1, o.skip = mask & 2, o.gate = mask & 4, o.generic_only = mask & 8,
    o.last_state = mask & 16, o.z_silu = mask & 32;
    o.states_per_lane = 1 + (mask & 1);
    const auto [ey, eh] = s6_error<float, float>({2, 32, 200, 16, 2}, o, seed++);
    BOOST_TEST_INFO("staged shape, option mask " << mask);
    BOOST_TEST(ey < 1e-4);
    BOOST_TEST(eh < 1e-4);
  }
  const auto [ey, eh] = s6_error<float, cf>({2, 4, 77, 16, 2}, options{true, true, true, true, true, true, true}, 5);
  BOOST_TEST(ey < 1e-4);
  BOOST_TEST(eh < 1e-4);
}

BOOST_AUTO_TEST_CASE(long_sequence) {
  for (const index_t chunk : {-1, 0}) {  // one pass over time; the dispatch's choice (time-parallel here)
    BOOST_TEST_INFO("chunk_length " << chunk);
    options o;
    o.chunk_length = chunk;
    const auto [ey, eh] = s6_error<float, float>({1, 2, 65537, 16, 1}, o, 11);
    BOOST_TEST(ey < 1e-4);
    BOOST_TEST(eh < 1e-4);
    options two = o;
    two.states_per_lane = 2;
    const auto [sy, sh] = s6_error<float, float>({1, 16, 65536, 16, 1}, two, 12);  // staged
    BOOST_TEST(sy < 1e-4);
    BOOST_TEST(sh < 1e-4);
    const auto [by, bh] = s6_error<__nv_bfloat16, float>({1, 8, 65536, 16, 1}, o, 13);
    BOOST_TEST(by < 1e-2);
    BOOST_TEST(bh < 1e-2);
  }
}

// The time-parallel path against the host operator: batch 1, lengths from 1 to
// past 10^5 (none a multiple of the chunk but some), small and large D, N 16
// (staged kernel where the shape allows) and 4 (generic kernel), all options on
// or off, the last state asked for or not (then the last chunk is not
// summarized), forced chunk lengths and the automatic choice.
template <class In>
void check_time_parallel(double tol) {
  const bool small = std::getenv("MIXLENS_GPU_TEST_SMALL") != nullptr;
  std::uint64_t seed = 300;
  for (const index_t L : {1, 2, 1000, 4097, 65536, 100003}) {
    if (small && L > 65536) continue;  // memory checker: keep the run short
    std::vector<index_t> ds = {2, 8};
    if (L <= 4097 && !small) ds.push_back(256);
    for (const index_t D : ds)
      for (const index_t N : {16, 4})
        for (const bool all : {true, false}) {
          options o;
          o.bias_softplus = o.skip = o.gate = all;
          o.last_state = all || L % 2 == 0;
          o.chunk_length = L <= 1000 ? 64 : L <= 4097 ? (D == 256 ? 1024 : 256) : all ? 8192 : 0;
          if (L > 4097 && D == 2) o.chunk_length = 4096;
          const auto [ey, eh] = s6_error<In, float>({1, D, L, N, 1}, o, seed++);
          BOOST_TEST_INFO("D " << D << " L " << L << " N " << N << " options " << all << " last state "
                               << o.last_state << " chunk_length " << o.chunk_length);
          BOOST_TEST(ey < tol);
          BOOST_TEST(eh < tol);
        }
  }
}

// Shapes the one-pass dispatch would not split, forced through the three passes.
BOOST_AUTO_TEST_CASE(time_parallel_fp32) { check_time_parallel<float>(1e-4); }
BOOST_AUTO_TEST_CASE(time_parallel_bf16) { check_time_parallel<__nv_bfloat16>(1e-2); }

BOOST_AUTO_TEST_CASE(time_parallel_options) {
  std::uint64_t seed = 500;
  for (int mask = 0; mask < 64; ++mask) {  // generic kernel: constant B, C, groups, batch > 1
    options o;
    o.bias_softplus = mask & 1, o.skip = mask & 2, o.gate = mask & 4, o.b_constant = mask & 8, o.c_constant = mask & 16;
    o.last_state = mask & 32, o.chunk_length = mask % 3 == 0 ? 64 : 128;
    const auto [ey, eh] = s6_error<float, float>({2, 4, 1000, 16, 2}, o, seed++);
    BOOST_TEST_INFO("option mask " << mask);
    BOOST_TEST(ey < 1e-4);
    BOOST_TEST(eh < 1e-4);
  }
  for (int mask = 0; mask < 16; ++mask) {  // staged kernel, 1 and 2 states per lane, groups, batch > 1
    options o;
    o.bias_softplus = o.skip = o.gate = mask & 1;
    o.states_per_lane = 1 + (mask >> 1 & 1);
    o.last_state = mask & 4, o.z_silu = mask & 8;
    o.chunk_length = 64 * (1 + (mask & 3));
    const auto [ey, eh] = s6_error<float, float>({2, 32, 1000, 16, 2}, o, seed++);
    BOOST_TEST_INFO("staged shape, option mask " << mask);
    BOOST_TEST(ey < 1e-4);
    BOOST_TEST(eh < 1e-4);
  }
  for (const index_t N : {16, 32, 5, 128}) {  // complex A; several states per lane
    options o;
    o.chunk_length = 64;
    const auto [cy, ch] = s6_error<float, cf>({1, 4, 1000, N, 2}, o, seed++);
    BOOST_TEST_INFO("complex, N " << N);
    BOOST_TEST(cy < 1e-4);
    BOOST_TEST(ch < 1e-4);
    const auto [ry, rh] = s6_error<float, float>({1, 4, 333, N, 1}, o, seed++);
    BOOST_TEST_INFO("real, N " << N);
    BOOST_TEST(ry < 1e-4);
    BOOST_TEST(rh < 1e-4);
  }
  const auto [hy, hh] = s6_error<__half, float>({1, 16, 4096, 16, 1}, options{}, seed++);  // automatic: split
  BOOST_TEST(hy < 2e-3);
  BOOST_TEST(hh < 2e-3);
}

BOOST_AUTO_TEST_CASE(plan_on_device) {
  gpu::selective_scan_params<float, float> p;
  p.batch = 1, p.channels = 1536, p.length = 65536, p.state_size = 16;
  p.u = p.delta = p.a = p.b = p.c = p.y = reinterpret_cast<float*>(std::uintptr_t(256));  // only looked at
  int device = 0, sms = 0;
  MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const auto here = gpu::plan_selective_scan(p), expected = gpu::plan_selective_scan(p, sms);
  BOOST_TEST(here.time_parallel == expected.time_parallel);
  BOOST_TEST(here.chunks == expected.chunks);
  BOOST_TEST_MESSAGE("B 1, D 1536, L 65536 on " << sms << " SMs: " << here.chunks << " chunks of " << here.chunk_length);
}

BOOST_AUTO_TEST_CASE(errors) {
  gpu::device_buffer<float> buf(64);
  gpu::selective_scan_params<float, float> p;
  p.batch = 1, p.channels = 4, p.length = 4, p.state_size = 2, p.groups = 1;
  p.u = p.delta = p.a = p.b = p.c = buf.data();
  p.y = buf.data();
  auto q = p;
  q.length = 0;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'length'", "positive"});
  q = p;
  q.groups = 3;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'groups'", "dividing", "got 3"});
  q = p;
  q.state_size = 129;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'state_size'", "128"});
  q = p;
  q.states_per_lane = 3;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'states_per_lane'", "got 3"});
  q = p;
  q.c = nullptr;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'c'", "null"});
  q = p;
  q.chunk_length = -2;
  testing::check_error([&] { gpu::selective_scan_forward(q); }, {"'chunk_length'", "got -2"});
}

BOOST_AUTO_TEST_SUITE_END()

// The dispatch decision on a device of a given size: no device needed.
BOOST_AUTO_TEST_CASE(dispatch_plan) {
  const auto params = [](index_t B, index_t D, index_t L, index_t N) {
    gpu::selective_scan_params<float, float> p;
    p.batch = B, p.channels = D, p.length = L, p.state_size = N;
    p.u = p.delta = p.a = p.b = p.c = p.y = reinterpret_cast<float*>(std::uintptr_t(256));  // only looked at
    return p;
  };
  constexpr int h200 = 132;  // 132 SMs × 6 blocks = 792 resident blocks of either real kernel
  auto p = params(4, 1536, 2048, 16);  // 768 blocks: one pass
  auto plan = gpu::plan_selective_scan(p, h200);
  BOOST_TEST(plan.staged);
  BOOST_TEST(plan.states_per_lane == 1);
  BOOST_TEST(plan.blocks == 768);
  BOOST_TEST(!plan.time_parallel);
  BOOST_TEST(plan.chunks == 1);
  BOOST_TEST(!gpu::plan_selective_scan(params(4, 1536, 65536, 16), h200).time_parallel);

  p = params(1, 1536, 65536, 16);  // 192 blocks: two waves of 8 chunks
  plan = gpu::plan_selective_scan(p, h200);
  BOOST_TEST(plan.staged);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunks == 8);
  BOOST_TEST(plan.chunk_length == 8192);
  p.chunk_length = -1;  // never split
  plan = gpu::plan_selective_scan(p, h200);
  BOOST_TEST(!plan.time_parallel);
  BOOST_TEST(plan.chunks == 1);
  p.chunk_length = 100;  // forced, rounded up to 64
  plan = gpu::plan_selective_scan(p, h200);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunk_length == 128);
  BOOST_TEST(plan.chunks == 512);
  p.states_per_lane = 2;
  BOOST_TEST(gpu::plan_selective_scan(p, h200).states_per_lane == 2);

  BOOST_TEST(!gpu::plan_selective_scan(params(1, 1536, 2047, 16), h200).time_parallel);  // shorter than 2 chunks
  plan = gpu::plan_selective_scan(params(1, 1536, 2048, 16), h200);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunks == 2);
  plan = gpu::plan_selective_scan(params(1, 1536, 4000, 16), h200);  // not a multiple of 64
  BOOST_TEST(plan.chunks == 3);
  BOOST_TEST(plan.chunk_length == 1344);

  plan = gpu::plan_selective_scan(params(1, 64, 8192, 4), h200);  // generic kernel, 2 blocks
  BOOST_TEST(!plan.staged);
  BOOST_TEST(plan.blocks == 2);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunks == 8);
  BOOST_TEST(plan.chunk_length == 1024);
  auto odd = params(1, 1536, 65536, 16);  // unaligned length: generic kernel
  odd.length = 65535;
  plan = gpu::plan_selective_scan(odd, h200);
  BOOST_TEST(!plan.staged);
  BOOST_TEST(plan.blocks == 192);
  BOOST_TEST(plan.chunks == 8);

  gpu::selective_scan_params<float, cf> c;  // complex: generic, 3 blocks per SM
  c.batch = 1, c.channels = 1536, c.length = 65536, c.state_size = 16;
  c.u = c.delta = c.y = reinterpret_cast<float*>(std::uintptr_t(256));
  c.a = c.b = c.c = reinterpret_cast<cf*>(std::uintptr_t(256));
  plan = gpu::plan_selective_scan(c, h200);
  BOOST_TEST(!plan.staged);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunks == 4);
  BOOST_TEST(!gpu::plan_selective_scan(c, 64).time_parallel);  // 192 blocks fill more than half of 64 × 3

  auto huge = params(1, 8, index_t(1) << 24, 16);  // forced tiny chunks: at most 65535 of them
  huge.chunk_length = 64;
  plan = gpu::plan_selective_scan(huge, h200);
  BOOST_TEST(plan.chunks <= 65535);
  BOOST_TEST(plan.chunk_length == 320);
  BOOST_TEST(plan.chunks * plan.chunk_length >= huge.length);
}
