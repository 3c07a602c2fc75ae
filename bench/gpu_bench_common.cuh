// Shared pieces of the GPU benchmarks: CUDA-event timing with manual time, the
// device's copy bandwidth measured by this binary, and the counters every
// benchmark reports (bytes/s, tokens/s, fraction of copy bandwidth).
#pragma once

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mixlens/gpu/error.cuh"

namespace mixlens::bench {

// Times one launch per iteration with CUDA events (manual time).
template <class Launch>
void time_launches(benchmark::State& state, Launch&& launch) {
  cudaEvent_t start, stop;
  MIXLENS_CUDA_CHECK(cudaEventCreate(&start));
  MIXLENS_CUDA_CHECK(cudaEventCreate(&stop));
  launch();  // warm-up: module load, pool growth
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  for (auto _ : state) {
    MIXLENS_CUDA_CHECK(cudaEventRecord(start));
    launch();
    MIXLENS_CUDA_CHECK(cudaEventRecord(stop));
    MIXLENS_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MIXLENS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3);
  }
  MIXLENS_CUDA_CHECK(cudaEventDestroy(start));
  MIXLENS_CUDA_CHECK(cudaEventDestroy(stop));
}

// Device-to-device copy bandwidth (bytes read + written per second), median of
// 20 copies of 2 GiB; measured once per process.
inline double copy_bandwidth() {
  static const double bw = [] {
    const std::size_t bytes = std::size_t(1) << 31;
    void *a = nullptr, *b = nullptr;
    MIXLENS_CUDA_CHECK(cudaMalloc(&a, bytes));
    MIXLENS_CUDA_CHECK(cudaMalloc(&b, bytes));
    MIXLENS_CUDA_CHECK(cudaMemset(a, 1, bytes));
    cudaEvent_t start, stop;
    MIXLENS_CUDA_CHECK(cudaEventCreate(&start));
    MIXLENS_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> ms(20);
    MIXLENS_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    for (auto& m : ms) {
      MIXLENS_CUDA_CHECK(cudaEventRecord(start));
      MIXLENS_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
      MIXLENS_CUDA_CHECK(cudaEventRecord(stop));
      MIXLENS_CUDA_CHECK(cudaEventSynchronize(stop));
      MIXLENS_CUDA_CHECK(cudaEventElapsedTime(&m, start, stop));
    }
    std::sort(ms.begin(), ms.end());
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) / (ms[ms.size() / 2] * 1e-3);
  }();
  return bw;
}

// bytes: the fewest bytes the work must move (each input read once, each
// output written once); tokens: sequence positions processed per iteration.
inline void set_counters(benchmark::State& state, double bytes, double tokens) {
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens_per_second"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["copy_bw"] = copy_bandwidth();
  // fraction of copy bandwidth = (bytes / time) / copy_bw, derived from the rate above.
  state.counters["fraction_of_copy_bw"] =
      benchmark::Counter(bytes / copy_bandwidth(), benchmark::Counter::kIsIterationInvariantRate);
}

// Uniform values in [lo, hi) drawn on the device (a counter hash), so that large
// benchmark inputs cost no host time.
template <class T>
__global__ void fill_uniform_kernel(T* p, index_t n, std::uint64_t seed, float lo, float hi) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    std::uint64_t x = (static_cast<std::uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xD1B54A32D192ED03ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    p[i] = T(lo + (hi - lo) * static_cast<float>(x >> 40) * (1.0f / 16777216.0f));
  }
}

template <class T>
gpu::device_buffer<T> device_random(index_t n, std::uint64_t seed, float lo, float hi) {
  gpu::device_buffer<T> b(n);
  fill_uniform_kernel<<<1024, 256>>>(b.data(), n, seed, lo, hi);
  MIXLENS_CUDA_CHECK_LAUNCH();
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  return b;
}

template <class T>
std::vector<T> random_host(std::size_t n, std::uint64_t seed, float lo, float hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(d(gen));
  return v;
}

}  // namespace mixlens::bench
