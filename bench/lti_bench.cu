// LTI operators on the device against the host library in the same binary:
// S4D kernel generation (H = 768, N = 64) and S5 applied by a parallel scan
// (H = 512, P = 256 stored states under conjugate symmetry, L = 4096).
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/lti.cuh"

namespace {

using namespace mixlens;

// Host benchmarks report the same rates as the device ones (no copy bandwidth).
void set_host_counters(benchmark::State& state, double bytes, double tokens) {
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens_per_second"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
}

s4d_mixer<float> s4d_layer(index_t H, index_t N) { return s4d_mixer<float>::init(H, N, s4d_init::lin, 1); }

// Bytes: the kernel written once (fp32) and the modes read once (two complex doubles each).
double s4d_bytes(index_t H, index_t N, index_t L) { return 4.0 * double(H * L) + 32.0 * double(H * N / 2); }

void s4d_kernel_gpu(benchmark::State& state) {
  const index_t H = state.range(0), N = state.range(1), L = state.range(2);
  const gpu::device_s4d d(s4d_layer(H, N));
  gpu::device_buffer<float> k(H * L);
  bench::time_launches(state, [&] { d.kernel(L, k.data()); });
  bench::set_counters(state, s4d_bytes(H, N, L), double(L));
}

void s4d_kernel_host(benchmark::State& state) {
  const index_t H = state.range(0), N = state.range(1), L = state.range(2);
  const auto m = s4d_layer(H, N);
  for (auto _ : state) {
    auto k = m.kernel(L);
    benchmark::DoNotOptimize(k.data());
  }
  set_host_counters(state, s4d_bytes(H, N, L), double(L));
}

// S5 with state_size = 2P (conjugate symmetry keeps P) in 8 HiPPO-N blocks, as
// the S5 paper initializes large state sizes, bound to length L.
bound_s5<float> s5_layer(index_t H, index_t P, index_t L) {
  s5_init init;
  init.state_size = 2 * P;
  init.blocks = 8;
  init.conj_sym = true;
  init.seed = 2;
  return s5_mixer<float>::init(H, init).bind(L);
}

// Bytes: x read and y written once, the parameters read once.
double s5_bytes(index_t H, index_t P, index_t L) { return 4.0 * double(2 * H * L) + 8.0 * double(2 * P * H + P) + 4.0 * double(H); }

template <class Policy>
void s5_apply_gpu(benchmark::State& state) {
  const index_t H = state.range(0), P = state.range(1), L = state.range(2);
  const auto layer = s5_layer(H, P, L);
  gpu::device_s5 d(layer.view());
  auto x = bench::device_random<float>(H * L, 3, -1, 1);
  gpu::device_buffer<float> y(H * L);
  Policy policy{};
  if constexpr (std::is_same_v<Policy, gpu::chunked_policy>) policy.chunk = 1024;
  bench::time_launches(state, [&] { d.apply(x.data(), y.data(), policy); });
  bench::set_counters(state, s5_bytes(H, P, L), double(L));
}

void s5_apply_host(benchmark::State& state) {
  const index_t H = state.range(0), P = state.range(1), L = state.range(2);
  const auto layer = s5_layer(H, P, L);
  const auto xs = bench::random_host<float>(static_cast<std::size_t>(H * L), 3, -1, 1);
  matrix<float> x(H, L), y(H, L);
  std::copy(xs.begin(), xs.end(), x.data());
  for (auto _ : state) {
    layer.view().apply(x.view(), y.view());
    benchmark::DoNotOptimize(y.data());
  }
  set_host_counters(state, s5_bytes(H, P, L), double(L));
}

}  // namespace

BENCHMARK(s4d_kernel_gpu)->Args({768, 64, 4096})->Args({768, 64, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s4d_kernel_host)->Args({768, 64, 4096})->Iterations(2)->Unit(benchmark::kMillisecond);
BENCHMARK(s4d_kernel_host)->Args({768, 64, 65536})->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(s5_apply_gpu<gpu::block_policy>)->Name("s5_apply_gpu/block")->Args({512, 256, 4096})->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(s5_apply_gpu<gpu::chunked_policy>)->Name("s5_apply_gpu/chunked")->Args({512, 256, 4096})->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(s5_apply_host)->Args({512, 256, 4096})->Iterations(1)->Unit(benchmark::kMillisecond);
