// Hyena's long convolution (filter FFT + signal FFT + product + inverse + skip
// term, FFT size 2L) against a direct O(L²) causal convolution.
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/fft_conv.cuh"

namespace {

using namespace mixlens;

void fftconv(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), L = state.range(2);
  auto u = bench::device_random<float>(B * D * L, 1, -1, 1), k = bench::device_random<float>(D * L, 2, -1, 1),
       bias = bench::device_random<float>(D, 3, -1, 1);
  gpu::device_buffer<float> y(B * D * L);
  gpu::causal_fft_conv conv(B, D, L);
  bench::time_launches(state, [&] {
    conv.set_filter(k.data());
    conv.apply(u.data(), y.data(), bias.data());
  });
  bench::set_counters(state, 4.0 * double(2 * B * D * L + D * L + D), double(B * L));
}

void direct_conv(benchmark::State& state) {
  const index_t B = state.range(0), D = state.range(1), L = state.range(2);
  auto u = bench::device_random<float>(B * D * L, 1, -1, 1), k = bench::device_random<float>(D * L, 2, -1, 1);
  gpu::device_buffer<float> y(B * D * L);
  bench::time_launches(state, [&] {
    gpu::detail::direct_causal_conv_kernel<<<132 * 16, 256>>>(u.data(), k.data(), y.data(), B * D, D, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  });
  bench::set_counters(state, 4.0 * double(2 * B * D * L + D * L), double(B * L));
}

}  // namespace

BENCHMARK(fftconv)->Args({1, 768, 1024})->Args({1, 768, 4096})->Args({1, 768, 16384})->Args({1, 768, 65536})
    ->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(direct_conv)->Args({1, 768, 1024})->Args({1, 768, 4096})->Args({1, 768, 16384})
    ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
