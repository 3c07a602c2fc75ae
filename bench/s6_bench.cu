// Fused S6 forward (Mamba configuration: Δ bias + softplus, D skip, SiLU(z)
// gate, variable B and C) against a straightforward one-thread-per-channel kernel,
// and the fused backward in the same configuration.
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/gpu/s6_backward.cuh"

namespace {

using namespace mixlens;

constexpr index_t chunk_sweep = -2;

// Baseline: one thread per (batch, channel) carrying all 16 states through time.
template <class In>
__global__ void naive_s6_kernel(gpu::selective_scan_params<In, float> p) {
  const index_t gc = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gc >= p.batch * p.channels) return;
  const index_t D = p.channels, L = p.length, bi = gc / D, d = gc % D;
  float h[16] = {};
  for (index_t t = 0; t < L; ++t) {
    const float dt = gpu::detail::softplus(gpu::detail::to_float(p.delta[gc * L + t]) + p.delta_bias[d]);
    const float u = gpu::detail::to_float(p.u[gc * L + t]);
    float y = 0;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      const index_t k = (bi * 16 + n) * L + t;
      h[n] = __expf(dt * p.a[d * 16 + n]) * h[n] + dt * u * gpu::detail::to_float(p.b[k]);
      y += gpu::detail::to_float(p.c[k]) * h[n];
    }
    y = (y + p.skip[d] * u) * gpu::detail::silu(gpu::detail::to_float(p.z[gc * L + t]));
    p.y[gc * L + t] = gpu::detail::from_float<In>(y);
  }
}

// Mode: -1 generic kernel, 0 automatic, 1/2 states per lane. Chunk: the time
// split (0 automatic, −1 one pass over time, > 0 chunk length; `chunk_sweep`
// takes it from the fourth argument).
template <class In, bool Naive, int Mode = 0, index_t Chunk = 0>
void s6_forward(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), L = state.range(2), N = 16;
  const index_t chunk = Chunk == chunk_sweep ? state.range(3) : Chunk;
  const auto sig = static_cast<std::size_t>(B * D * L);
  auto u = bench::device_random<In>(B * D * L, 1, -1, 1), delta = bench::device_random<In>(B * D * L, 2, -1, 1),
       z = bench::device_random<In>(B * D * L, 3, -1, 1);
  gpu::device_buffer<In> y(B * D * L);
  auto b = bench::device_random<In>(B * N * L, 4, -1, 1), c = bench::device_random<In>(B * N * L, 5, -1, 1);
  std::vector<float> a_host(D * N);
  for (index_t i = 0; i < D * N; ++i) a_host[i] = -float(i % N + 1);
  gpu::device_buffer<float> a(a_host), bias(bench::random_host<float>(D, 6, -4, -2)),
      skip(bench::random_host<float>(D, 7, 0, 1));
  gpu::selective_scan_params<In, float> p;
  p.batch = B, p.channels = D, p.length = L, p.state_size = N, p.groups = 1;
  p.u = u.data(), p.delta = delta.data(), p.delta_bias = bias.data(), p.delta_softplus = true;
  p.a = a.data(), p.b = b.data(), p.c = c.data(), p.skip = skip.data(), p.z = z.data(), p.y = y.data();
  p.generic_only = Mode < 0;
  p.states_per_lane = Mode > 0 ? Mode : 0;
  p.chunk_length = chunk;
  if constexpr (!Naive) {
    const auto plan = gpu::plan_selective_scan(p);
    state.counters["chunks"] = double(plan.chunks);
    state.counters["staged"] = plan.staged ? 1.0 : 0.0;
  }
  bench::time_launches(state, [&] {
    if constexpr (Naive) {
      naive_s6_kernel<<<static_cast<unsigned>((B * D + 127) / 128), 128>>>(p);
      MIXLENS_CUDA_CHECK_LAUNCH();
    } else {
      gpu::selective_scan_forward(p);
    }
  });
  // u, Δ, z read and y written once; B and C read once per batch element.
  bench::set_counters(state, double(sizeof(In)) * (4.0 * double(sig) + 2.0 * double(B * N * L)), double(B * L));
}

// The backward with every gradient Mamba's selective-scan backward returns (∂u,
// ∂Δ, ∂z, ∂B, ∂C, ∂A, ∂D, ∂Δ-bias), including the zeroing of the summed outputs
// and the checkpoint scratch, as a training step would call it.
template <class In, index_t Chunk = 0, int StatesPerThread = 0>
void s6_backward(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), L = state.range(2), N = 16;
  const auto sig = static_cast<std::size_t>(B * D * L);
  auto u = bench::device_random<In>(B * D * L, 1, -1, 1), delta = bench::device_random<In>(B * D * L, 2, -1, 1),
       z = bench::device_random<In>(B * D * L, 3, -1, 1), dout = bench::device_random<In>(B * D * L, 8, -1, 1);
  auto b = bench::device_random<In>(B * N * L, 4, -1, 1), c = bench::device_random<In>(B * N * L, 5, -1, 1);
  std::vector<float> a_host(D * N);
  for (index_t i = 0; i < D * N; ++i) a_host[i] = -float(i % N + 1);
  gpu::device_buffer<float> a(a_host), bias(bench::random_host<float>(D, 6, -4, -2)),
      skip(bench::random_host<float>(D, 7, 0, 1));
  gpu::device_buffer<In> du(B * D * L), ddelta(B * D * L), dz(B * D * L);
  gpu::device_buffer<float> db(B * N * L), dc(B * N * L), da(D * N), dskip(D), dbias(D);
  gpu::selective_scan_backward_params<In> p;
  p.batch = B, p.channels = D, p.length = L, p.state_size = N, p.groups = 1;
  p.u = u.data(), p.delta = delta.data(), p.delta_bias = bias.data(), p.delta_softplus = true;
  p.a = a.data(), p.b = b.data(), p.c = c.data(), p.skip = skip.data(), p.z = z.data(), p.dout = dout.data();
  p.du = du.data(), p.ddelta = ddelta.data(), p.dz = dz.data(), p.db = db.data(), p.dc = dc.data();
  p.da = da.data(), p.dskip = dskip.data(), p.ddelta_bias = dbias.data();
  p.chunk_length = Chunk == chunk_sweep ? state.range(3) : Chunk;
  p.states_per_thread = StatesPerThread;
  const auto plan = gpu::plan_selective_scan_backward(p);
  state.counters["tiles"] = double(plan.tiles);
  state.counters["blocks"] = double(plan.blocks);
  state.counters["chunks"] = double(plan.chunks);
  bench::time_launches(state, [&] { gpu::selective_scan_backward(p); });
  // u, Δ, z, dout, B, C read once; ∂u, ∂Δ, ∂z and the fp32 ∂B, ∂C written once.
  bench::set_counters(state,
                      double(sizeof(In)) * (7.0 * double(sig) + 2.0 * double(B * N * L)) + 4.0 * 2.0 * double(B * N * L),
                      double(B * L));
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({4, 1536, 2048})->Args({4, 1536, 8192})->Args({1, 1536, 65536})->UseManualTime()->Unit(
      benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(s6_forward<float, false>)->Name("s6_forward_fp32")->Apply(shapes);
BENCHMARK(s6_backward<float>)->Name("s6_backward_fp32")->Apply(shapes);
// The work splits side by side: one state per thread (16 lanes per channel), 2 and 4 per thread.
BENCHMARK(s6_backward<float, 0, 1>)->Name("s6_backward_fp32_q1")->Apply(shapes);
BENCHMARK(s6_backward<float, 0, 2>)->Name("s6_backward_fp32_q2")->Apply(shapes);
BENCHMARK(s6_backward<float, 0, 4>)->Name("s6_backward_fp32_q4")->Apply(shapes);
BENCHMARK(s6_backward<__nv_bfloat16, 0, 1>)->Name("s6_backward_bf16_q1")->Args({4, 1536, 2048})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_backward<__nv_bfloat16>)->Name("s6_backward_bf16")->Args({4, 1536, 2048})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_backward<float, -1>)->Name("s6_backward_fp32_onepass")->Args({1, 1536, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_backward<float, chunk_sweep>)
    ->Name("s6_backward_fp32_chunk")
    ->ArgsProduct({{1}, {1536}, {65536}, {2048, 4096, 8192, 16384}})
    ->ArgsProduct({{4}, {1536}, {2048}, {256, 512, 1024}})
    ->ArgsProduct({{4}, {1536}, {8192}, {1024, 2048, 4096}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(s6_forward<__nv_bfloat16, false>)->Name("s6_forward_bf16")->Apply(shapes);
BENCHMARK(s6_forward<__half, false>)->Name("s6_forward_fp16")->Args({4, 1536, 2048})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_forward<float, false, -1>)->Name("s6_forward_fp32_generic")->Apply(shapes);
BENCHMARK(s6_forward<float, false, 1>)->Name("s6_forward_fp32_staged1")->Apply(shapes);
BENCHMARK(s6_forward<float, false, 2>)->Name("s6_forward_fp32_staged2")->Apply(shapes);
BENCHMARK(s6_forward<__nv_bfloat16, false, 1>)->Name("s6_forward_bf16_staged1")->Apply(shapes);
BENCHMARK(s6_forward<__nv_bfloat16, false, 2>)->Name("s6_forward_bf16_staged2")->Apply(shapes);
BENCHMARK(s6_forward<float, true>)->Name("s6_forward_fp32_naive")->Apply(shapes)->Iterations(5);
// Before and after the time-parallel path: the one-pass kernels on the long
// single sequence, and the chunk length swept around the automatic choice.
BENCHMARK(s6_forward<float, false, 0, -1>)->Name("s6_forward_fp32_onepass")->Args({1, 1536, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_forward<__nv_bfloat16, false, 0, -1>)->Name("s6_forward_bf16_onepass")->Args({1, 1536, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_forward<float, false, 0, chunk_sweep>)
    ->Name("s6_forward_fp32_chunk")
    ->ArgsProduct({{1}, {1536}, {65536}, {1024, 2048, 4096, 8192, 16384}})
    ->ArgsProduct({{1}, {1536}, {8192}, {1024, 2048, 4096}})
    ->ArgsProduct({{2}, {1536}, {16384}, {1024, 2048, 4096, 8192}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
