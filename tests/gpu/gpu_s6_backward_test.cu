// The fused GPU S6 backward against an independent naive reference in double:
// the forward per channel with every state kept, then the adjoint loop written
// out. The reference itself is checked against central finite differences of
// the forward (no device needed for that part).
//
// Errors are relative per output: max |GPU − reference| over the whole output
// divided by its largest reference magnitude. Tolerances: fp32 1e-3 (the
// kernel's exp2 approximation, fp32 sums over up to ~4000 steps and over the
// channels of a group, in atomic order); fp16 inputs 3e-3 and bf16 1.5e-2, the
// reference computed from the rounded inputs, so the rounding of ∂u, ∂Δ, ∂z to
// 16 bits and the fp32 internals dominate. A wrong term gives errors of order 1.
#define BOOST_TEST_MODULE gpu_s6_backward
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/s6_backward.cuh"

namespace {

using namespace mixlens;

// Every size and offset of the backward is index_t: 64-bit by construction.
static_assert(std::is_same_v<index_t, std::int64_t>);
static_assert(std::is_same_v<decltype(gpu::selective_scan_backward_params<float>{}.length), index_t>);

struct shape {
  index_t batch, channels, length, states, groups;
};

struct options {
  bool bias = true, softplus = true, skip = true, gate = true, z_silu = true;
  bool reductions = true;  // ∂A, ∂D, ∂Δ-bias asked for
  index_t chunk_length = 0;  // 0 automatic, −1 one pass over time, > 0 forced chunks
  int states_per_thread = 0;  // the work split for N ≤ 16: 0 automatic, 1 (16 lanes), 2 or 4 (register form)
};

std::string describe(const shape& s, const options& o) {
  std::ostringstream os;
  os << "B " << s.batch << " D " << s.channels << " L " << s.length << " N " << s.states << " G " << s.groups
     << " bias " << o.bias << " softplus " << o.softplus << " skip " << o.skip << " gate " << o.gate << " silu "
     << o.z_silu << " reductions " << o.reductions << " chunk_length " << o.chunk_length << " states_per_thread "
     << o.states_per_thread;
  return os.str();
}

double softplus(double x) { return x <= 20 ? std::log1p(std::exp(x)) : x; }
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// A problem in double (the values the device sees, after rounding to its input type).
struct problem {
  shape sh;
  options opt;
  std::vector<double> u, delta, z, dout, b, c, a, skip, bias;
};

struct grads {
  std::vector<double> du, ddelta, dz, db, dc, da, dskip, dbias;
};

double delta_of(const problem& p, index_t d, index_t k) {
  const double raw = p.delta[k] + (p.opt.bias ? p.bias[d] : 0.0);
  return p.opt.softplus ? softplus(raw) : raw;
}
double gate_of(const problem& p, index_t k) {
  if (!p.opt.gate) return 1;
  const double z = p.z[k];
  return p.opt.z_silu ? z * sigmoid(z) : z;
}

// The forward output (after the gate), for the finite differences.
std::vector<double> reference_forward(const problem& p) {
  const auto [B, D, L, N, G] = p.sh;
  std::vector<double> out(B * D * L);
  for (index_t bi = 0; bi < B; ++bi)
    for (index_t d = 0; d < D; ++d) {
      const index_t g = d / (D / G);
      std::vector<double> h(N, 0.0);
      for (index_t t = 0; t < L; ++t) {
        const index_t k = (bi * D + d) * L + t;
        const double dt = delta_of(p, d, k);
        double y = 0;
        for (index_t n = 0; n < N; ++n) {
          const index_t bc = ((bi * G + g) * N + n) * L + t;
          h[n] = std::exp(dt * p.a[d * N + n]) * h[n] + dt * p.b[bc] * p.u[k];
          y += p.c[bc] * h[n];
        }
        if (p.opt.skip) y += p.skip[d] * p.u[k];
        out[k] = y * gate_of(p, k);
      }
    }
  return out;
}

// The naive backward: per channel, every state of the forward kept, then the
// adjoint x_t = exp(Δ_{t+1}A)·x_{t+1} + C_t·g_t from the end.
grads reference_backward(const problem& p) {
  const auto [B, D, L, N, G] = p.sh;
  grads r;
  r.du.assign(B * D * L, 0), r.ddelta.assign(B * D * L, 0), r.dz.assign(B * D * L, 0);
  r.db.assign(B * G * N * L, 0), r.dc.assign(B * G * N * L, 0);
  r.da.assign(D * N, 0), r.dskip.assign(D, 0), r.dbias.assign(D, 0);
  for (index_t bi = 0; bi < B; ++bi)
    for (index_t d = 0; d < D; ++d) {
      const index_t g = d / (D / G);
      const auto bc = [&](index_t n, index_t t) { return ((bi * G + g) * N + n) * L + t; };
      const auto at = [&](index_t t) { return (bi * D + d) * L + t; };
      std::vector<double> h((L + 1) * N, 0.0);  // h[(t + 1)·N + n]: the state after step t
      std::vector<double> dt(L), y(L);
      for (index_t t = 0; t < L; ++t) {
        dt[t] = delta_of(p, d, at(t));
        y[t] = p.opt.skip ? p.skip[d] * p.u[at(t)] : 0.0;
        for (index_t n = 0; n < N; ++n) {
          h[(t + 1) * N + n] = std::exp(dt[t] * p.a[d * N + n]) * h[t * N + n] + dt[t] * p.b[bc(n, t)] * p.u[at(t)];
          y[t] += p.c[bc(n, t)] * h[(t + 1) * N + n];
        }
      }
      std::vector<double> x(N, 0.0);
      for (index_t t = L - 1; t >= 0; --t) {
        const index_t k = at(t);
        double gt = p.dout[k];
        if (p.opt.gate) {
          const double z = p.z[k];
          const double dgate = p.opt.z_silu ? sigmoid(z) * (1 + z * (1 - sigmoid(z))) : 1.0;
          r.dz[k] = p.dout[k] * y[t] * dgate;
          gt = p.dout[k] * gate_of(p, k);
        }
        double ddt = 0, du = 0;
        for (index_t n = 0; n < N; ++n) {
          const double an = p.a[d * N + n];
          const double next = t + 1 < L ? std::exp(dt[t + 1] * an) : 0.0;
          x[n] = next * x[n] + p.c[bc(n, t)] * gt;
          const double hp = h[t * N + n], ht = h[(t + 1) * N + n], e = std::exp(dt[t] * an);
          ddt += x[n] * (an * e * hp + p.b[bc(n, t)] * p.u[k]);
          du += x[n] * dt[t] * p.b[bc(n, t)];
          r.da[d * N + n] += x[n] * dt[t] * e * hp;
          r.db[bc(n, t)] += x[n] * dt[t] * p.u[k];
          r.dc[bc(n, t)] += gt * ht;
        }
        if (p.opt.skip) du += p.skip[d] * gt;
        r.dskip[d] += gt * p.u[k];
        const double raw = p.delta[k] + (p.opt.bias ? p.bias[d] : 0.0);
        const double dd = ddt * (p.opt.softplus ? (raw <= 20 ? sigmoid(raw) : 1.0) : 1.0);
        r.du[k] = du;
        r.ddelta[k] = dd;
        r.dbias[d] += dd;
      }
    }
  return r;
}

template <class In>
In to_input(double x) {
  if constexpr (std::is_same_v<In, double>) return x;  // the finite-difference problems
  else if constexpr (std::is_same_v<In, float>) return static_cast<float>(x);
  else return In(static_cast<float>(x));
}
template <class In>
double from_input(In x) {
  if constexpr (std::is_same_v<In, double>) return x;
  else return static_cast<double>(static_cast<float>(x));
}
template <class In>
double round_to(double x) {
  return from_input(to_input<In>(x));
}

template <class In>
problem draw(shape sh, options opt, std::uint64_t seed) {
  const auto [B, D, L, N, G] = sh;
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> unif(0.5, 1.5);
  problem p{sh, opt, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  const auto fill = [&](std::vector<double>& v, index_t n, auto&& f) {
    v.resize(n);
    for (auto& x : v) x = round_to<In>(f());
  };
  fill(p.u, B * D * L, [&] { return normal(gen); });
  // With softplus, Δ around softplus(−2 ± …); without it, small positive steps.
  fill(p.delta, B * D * L, [&] { return opt.softplus ? 0.5 * normal(gen) : 0.001 + 0.1 * unif(gen); });
  fill(p.z, B * D * L, [&] { return normal(gen); });
  fill(p.dout, B * D * L, [&] { return normal(gen); });
  fill(p.b, B * G * N * L, [&] { return normal(gen); });
  fill(p.c, B * G * N * L, [&] { return normal(gen); });
  // fp32 parameters
  p.a.resize(D * N);
  for (index_t d = 0; d < D; ++d)
    for (index_t n = 0; n < N; ++n) p.a[d * N + n] = static_cast<float>(-double(n + 1) * unif(gen));
  p.skip.resize(D), p.bias.resize(D);
  for (auto& x : p.skip) x = static_cast<float>(normal(gen));
  for (auto& x : p.bias) x = static_cast<float>(opt.softplus ? -2.0 + 0.5 * normal(gen) : 0.05 * unif(gen));
  return p;
}

// max |got − ref| / max |ref| (NaN: infinity).
double rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::isnan(got[i]) ? INFINITY : std::abs(got[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = from_input(v[i]);
  return out;
}
template <class In>
std::vector<In> narrow(const std::vector<double>& v) {
  std::vector<In> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = to_input<In>(v[i]);
  return out;
}
std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Runs the GPU backward `runs` times on a drawn problem (same buffers); the
// relative error of each output after the last run.
template <class In>
std::map<std::string, double> backward_errors(shape sh, options opt, std::uint64_t seed, int runs = 1) {
  const auto [B, D, L, N, G] = sh;
  const problem prob = draw<In>(sh, opt, seed);
  const grads ref = reference_backward(prob);

  gpu::device_buffer<In> u(narrow<In>(prob.u)), delta(narrow<In>(prob.delta)), z(narrow<In>(prob.z)),
      dout(narrow<In>(prob.dout)), b(narrow<In>(prob.b)), c(narrow<In>(prob.c));
  gpu::device_buffer<float> a(to_float(prob.a)), skip(to_float(prob.skip)), bias(to_float(prob.bias));
  gpu::device_buffer<In> du(B * D * L), ddelta(B * D * L), dz(B * D * L);
  gpu::device_buffer<float> db(B * G * N * L), dc(B * G * N * L), da(D * N), dskip(D), dbias(D);
  // NaN everywhere: an entry left unwritten (or a sum not zeroed first) shows.
  for (auto* q : {&du, &ddelta, &dz}) q->fill_bytes(0xff);
  for (auto* q : {&db, &dc, &da, &dskip, &dbias}) q->fill_bytes(0xff);

  gpu::selective_scan_backward_params<In> p;
  p.batch = B, p.channels = D, p.length = L, p.state_size = N, p.groups = G;
  p.u = u.data(), p.delta = delta.data(), p.a = a.data(), p.b = b.data(), p.c = c.data(), p.dout = dout.data();
  if (opt.bias) p.delta_bias = bias.data();
  p.delta_softplus = opt.softplus;
  if (opt.skip) p.skip = skip.data();
  if (opt.gate) p.z = z.data(), p.z_silu = opt.z_silu, p.dz = dz.data();
  p.du = du.data(), p.ddelta = ddelta.data(), p.db = db.data(), p.dc = dc.data();
  if (opt.reductions) p.da = da.data(), p.dskip = dskip.data(), p.ddelta_bias = dbias.data();
  p.chunk_length = opt.chunk_length;
  p.states_per_thread = opt.states_per_thread;
  for (int i = 0; i < runs; ++i) gpu::selective_scan_backward(p);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());

  std::map<std::string, double> e;
  e["du"] = rel_error(widen(du.to_host()), ref.du);
  e["ddelta"] = rel_error(widen(ddelta.to_host()), ref.ddelta);
  if (opt.gate) e["dz"] = rel_error(widen(dz.to_host()), ref.dz);
  e["dB"] = rel_error(widen(db.to_host()), ref.db);
  e["dC"] = rel_error(widen(dc.to_host()), ref.dc);
  if (opt.reductions) {
    e["dA"] = rel_error(widen(da.to_host()), ref.da);
    e["dD"] = rel_error(widen(dskip.to_host()), ref.dskip);
    e["ddelta_bias"] = rel_error(widen(dbias.to_host()), ref.dbias);
  } else {
    // Not asked for: the buffers were never handed over, so they keep the poison.
    const auto untouched = [](const std::vector<float>& v) {
      for (float x : v)
        if (!std::isnan(x)) return false;
      return true;
    };
    e["untouched reductions (0 = yes)"] =
        untouched(da.to_host()) && untouched(dskip.to_host()) && untouched(dbias.to_host()) ? 0.0 : INFINITY;
  }
  return e;
}

template <class In>
void check(shape sh, options opt, std::uint64_t seed, double tol, int runs = 1) {
  const auto e = backward_errors<In>(sh, opt, seed, runs);
  std::ostringstream all;
  double worst = 0;
  for (const auto& [name, v] : e) {
    all << ' ' << name << ' ' << v;
    worst = std::max(worst, v);
  }
  BOOST_TEST_INFO(describe(sh, opt) << "; relative errors:" << all.str() << "; tolerance " << tol);
  BOOST_TEST(worst < tol);
}

// L = 1, tails of the 32- and 16-step tiles, one tile exactly, groups > 1,
// groups whose channel count is not a multiple of the 8 channels of a block,
// N below 16 and between 16 and 32 (two states per lane), many tiles.
const std::vector<shape> shapes = {
    {1, 1, 1, 16, 1},    {2, 3, 7, 16, 1},    {1, 8, 32, 16, 1},   {1, 8, 33, 16, 1},   {2, 4, 100, 16, 2},
    {1, 8, 2049, 16, 4}, {3, 24, 136, 16, 3}, {2, 15, 77, 16, 3},  {1, 9, 33, 8, 3},    {2, 12, 65, 4, 1},
    {1, 2, 17, 13, 1},   {1, 4, 70, 32, 2},   {1, 2, 40, 20, 1},   {2, 3, 16, 32, 1},   {1, 5, 1, 32, 1},
    {2, 48, 300, 16, 1}, {1, 8, 4100, 16, 1}, {4, 64, 256, 16, 1}, {1, 16, 1000, 32, 2}, {1, 2, 4, 1, 1}};

// Finite differences of loss = Σ dout · out with respect to every input value.
void check_reference_against_finite_differences(options opt, std::uint64_t seed) {
  problem p = draw<double>({2, 4, 6, 3, 2}, opt, seed);
  const grads r = reference_backward(p);
  const auto loss = [&] {
    const auto out = reference_forward(p);
    double s = 0;
    for (std::size_t i = 0; i < out.size(); ++i) s += p.dout[i] * out[i];
    return s;
  };
  const double eps = 1e-5;
  const auto fd = [&](std::vector<double>& v) {
    std::vector<double> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const double keep = v[i];
      v[i] = keep + eps;
      const double up = loss();
      v[i] = keep - eps;
      const double down = loss();
      v[i] = keep;
      out[i] = (up - down) / (2 * eps);
    }
    return out;
  };
  std::map<std::string, double> e;
  e["du"] = rel_error(fd(p.u), r.du);
  e["ddelta"] = rel_error(fd(p.delta), r.ddelta);
  if (opt.gate) e["dz"] = rel_error(fd(p.z), r.dz);
  e["dB"] = rel_error(fd(p.b), r.db);
  e["dC"] = rel_error(fd(p.c), r.dc);
  e["dA"] = rel_error(fd(p.a), r.da);
  if (opt.skip) e["dD"] = rel_error(fd(p.skip), r.dskip);
  if (opt.bias) e["ddelta_bias"] = rel_error(fd(p.bias), r.dbias);
  for (const auto& [name, v] : e) {
    BOOST_TEST_INFO(describe(p.sh, opt) << ": " << name);
    BOOST_TEST(v < 1e-6);
  }
}

}  // namespace

// The reference, on the host: no device needed.
BOOST_AUTO_TEST_CASE(reference_matches_finite_differences) {
  std::uint64_t seed = 1;
  check_reference_against_finite_differences(options{}, seed++);
  check_reference_against_finite_differences(options{false, false, false, false, true, true}, seed++);
  check_reference_against_finite_differences(options{true, false, true, true, false, true}, seed++);
  check_reference_against_finite_differences(options{false, true, false, true, true, true}, seed++);
}

// The pure launch plan, at sizes no test allocates: 64-bit products throughout.
BOOST_AUTO_TEST_CASE(backward_plan_sizes) {
  gpu::selective_scan_backward_params<float> p;
  const auto fake = reinterpret_cast<float*>(std::uintptr_t(256));  // only looked at
  p.u = p.delta = p.a = p.b = p.c = p.dout = fake;
  p.du = p.ddelta = p.db = p.dc = fake;
  p.batch = 8, p.channels = 3 * 5000, p.length = (index_t(1) << 20) + 3, p.state_size = 16, p.groups = 3;
  p.states_per_thread = 1;  // the 16-lane kernel
  auto plan = gpu::plan_selective_scan_backward(p, 132);  // batch·D·L ≈ 1.3·10^11
  BOOST_TEST(!plan.register_form);
  BOOST_TEST(plan.states_per_lane == 1);
  BOOST_TEST(plan.tile_steps == 32);
  BOOST_TEST(plan.tiles == (index_t(1) << 15) + 1);
  BOOST_TEST(plan.blocks == 8 * 3 * 625);
  BOOST_TEST(plan.workspace_bytes == std::size_t(8) * 15000 * ((std::size_t(1) << 15) + 1) * 16 * 4);
  BOOST_TEST(!plan.time_parallel);  // 15000 blocks fill the device
  BOOST_TEST(plan.chunk_length == p.length);
  for (const int q : {0, 2, 4}) {  // the register form: 128 / (16 / Q) channels per block
    p.states_per_thread = q;
    const int qq = q == 0 ? gpu::s6_backward_default_states_per_thread : q;
    plan = gpu::plan_selective_scan_backward(p, 132);
    BOOST_TEST(plan.register_form);
    BOOST_TEST(plan.states_per_thread == qq);
    BOOST_TEST(plan.tile_steps == (qq == 2 ? 32 : 16));
    BOOST_TEST(plan.blocks == 8 * 3 * ((5000 + 8 * qq - 1) / (8 * qq)));
    BOOST_TEST(plan.workspace_bytes == std::size_t(8) * 15000 * std::size_t(plan.tiles) * 16 * 4);
    BOOST_TEST(plan.resident_blocks >= 1);
  }
  p.state_size = 17, p.groups = 1, p.length = 16, p.channels = 7;
  plan = gpu::plan_selective_scan_backward(p, 132);
  BOOST_TEST(!plan.register_form);  // N > 16: two states per lane, whatever states_per_thread asks
  BOOST_TEST(plan.states_per_lane == 2);
  BOOST_TEST(plan.tiles == 1);
  BOOST_TEST(plan.blocks == 8);
  BOOST_TEST(plan.workspace_bytes == 0u);  // one tile: no checkpoints
  BOOST_TEST(!plan.time_parallel);
}

// The time split: automatic where the channel blocks leave the device idle.
BOOST_AUTO_TEST_CASE(backward_plan_time_split) {
  gpu::selective_scan_backward_params<float> p;
  const auto fake = reinterpret_cast<float*>(std::uintptr_t(256));
  p.u = p.delta = p.a = p.b = p.c = p.dout = fake;
  p.du = p.ddelta = p.db = p.dc = fake;
  p.batch = 1, p.channels = 1536, p.length = 65536, p.state_size = 16, p.states_per_thread = 1;
  auto plan = gpu::plan_selective_scan_backward(p, 132);  // 192 blocks of 792 resident: 8 chunks
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.blocks == 192);
  BOOST_TEST(plan.chunks == 8);
  BOOST_TEST(plan.chunk_length == 8192);
  BOOST_TEST(plan.carry_bytes == 3u * 8 * 1536 * 16 * 4 + 2u * 8 * 1536 * 8);
  p.batch = 4, p.length = 2048;  // 768 blocks: one pass
  BOOST_TEST(!gpu::plan_selective_scan_backward(p, 132).time_parallel);
  p.batch = 1, p.length = 2047;  // too short to split
  BOOST_TEST(!gpu::plan_selective_scan_backward(p, 132).time_parallel);
  p.length = 65536, p.chunk_length = -1;
  BOOST_TEST(!gpu::plan_selective_scan_backward(p, 132).time_parallel);
  p.chunk_length = 100;  // forced, rounded up to 128
  plan = gpu::plan_selective_scan_backward(p, 132);
  BOOST_TEST(plan.time_parallel);
  BOOST_TEST(plan.chunk_length == 128);
  BOOST_TEST(plan.chunks == 512);
  p.chunk_length = 65536;  // one chunk of everything: the one-pass kernel
  BOOST_TEST(!gpu::plan_selective_scan_backward(p, 132).time_parallel);
}

BOOST_AUTO_TEST_CASE(invalid_parameters) {
  gpu::selective_scan_backward_params<float> p;
  const auto fake = reinterpret_cast<float*>(std::uintptr_t(256));
  p.batch = 1, p.channels = 4, p.length = 4, p.state_size = 2, p.groups = 1;
  p.u = p.delta = p.a = p.b = p.c = p.dout = fake;
  p.du = p.ddelta = p.db = p.dc = fake;
  auto q = p;
  q.length = 0;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"selective_scan_backward", "'length'", "positive"});
  q = p;
  q.groups = 3;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'groups'", "dividing", "got 3"});
  q = p;
  q.state_size = 33;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'state_size'", "32"});
  q = p;
  q.dout = nullptr;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'dout'", "null"});
  q = p;
  q.dc = nullptr;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'dc'", "null"});
  q = p;
  q.z = fake;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'dz", "null"});
  q = p;
  q.chunk_length = -2;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'chunk_length'", "got -2"});
  q = p;
  q.states_per_thread = 3;
  testing::check_error([&] { gpu::selective_scan_backward(q); }, {"'states_per_thread'", "1, 2 or 4", "got 3"});
}

BOOST_AUTO_TEST_SUITE(gpu_s6_backward, *mixlens::testing::requires_device())

// Automatic dispatch (the longer single sequences split in time) and one pass over time.
BOOST_AUTO_TEST_CASE(fp32_shapes) {
  std::uint64_t seed = 100;
  for (const auto& sh : shapes)
    for (int q : {1, 2, 4})
      for (index_t chunk : {0, -1}) {
        options o;
        o.chunk_length = chunk, o.states_per_thread = q;
        check<float>(sh, o, seed++, 1e-3);
      }
}

// Forced chunks of time: chunk boundaries inside, at and just past tiles and L.
BOOST_AUTO_TEST_CASE(fp32_time_parallel) {
  std::uint64_t seed = 500;
  for (const shape sh : {shape{1, 8, 1000, 16, 1}, shape{2, 15, 777, 16, 3}, shape{1, 4, 300, 32, 2},
                         shape{1, 8, 512, 16, 1}, shape{1, 8, 513, 16, 1}, shape{1, 3, 65, 4, 1},
                         shape{2, 16, 2000, 20, 2}})
    for (index_t chunk : {64, 128, 320}) {
      options o;
      o.chunk_length = chunk;
      for (int q : {1, 2, 4}) {
        o.states_per_thread = q;
        check<float>(sh, o, seed++, 1e-3);
      }
      o.bias = o.gate = false, o.softplus = chunk != 128, o.z_silu = false, o.reductions = chunk == 64;
      o.states_per_thread = 0;
      check<float>(sh, o, seed++, 1e-3);
    }
  options gate_only;
  gate_only.chunk_length = 64, gate_only.z_silu = false, gate_only.skip = false;
  check<float>({1, 8, 1000, 16, 1}, gate_only, seed++, 1e-3);
}

BOOST_AUTO_TEST_CASE(fp32_option_combinations) {
  std::uint64_t seed = 200;
  for (const shape sh : {shape{2, 16, 77, 16, 2}, shape{1, 12, 50, 24, 3}})
    for (int mask = 0; mask < 32; ++mask) {
      options o;
      o.bias = mask & 1, o.softplus = mask & 2, o.skip = mask & 4, o.gate = mask & 8, o.z_silu = mask & 16;
      o.reductions = mask % 3 != 0;
      o.states_per_thread = mask % 2 ? 4 : 0;
      check<float>(sh, o, seed++, 1e-3);
    }
}

BOOST_AUTO_TEST_CASE(half_precision_inputs) {
  std::uint64_t seed = 300;
  for (const shape sh : {shape{2, 16, 1000, 16, 2}, shape{1, 8, 33, 16, 1}, shape{1, 1, 1, 16, 1},
                         shape{2, 15, 77, 16, 3}, shape{1, 4, 70, 32, 2}, shape{1, 8, 4100, 16, 1}}) {
    for (int q : {1, 2, 4}) {
      options o;
      o.states_per_thread = q;
      check<__nv_bfloat16>(sh, o, seed++, 1.5e-2);
      check<__half>(sh, o, seed++, 3e-3);
    }
  }
  options plain;
  plain.bias = plain.softplus = plain.gate = false;
  check<__nv_bfloat16>({2, 16, 300, 16, 1}, plain, seed++, 1.5e-2);
  options split;
  split.chunk_length = 128;
  check<__nv_bfloat16>({2, 16, 1000, 16, 2}, split, seed++, 1.5e-2);
  check<__half>({1, 4, 300, 32, 2}, split, seed++, 3e-3);
}

// Three calls on the same buffers: the zeroing of the summed outputs is part of
// the call (without it ∂B, ∂C, ∂A, ∂D, ∂Δ-bias would come out tripled).
BOOST_AUTO_TEST_CASE(repeated_calls) { check<float>({2, 24, 130, 16, 3}, options{}, 400, 1e-3, 3); }

BOOST_AUTO_TEST_SUITE_END()
