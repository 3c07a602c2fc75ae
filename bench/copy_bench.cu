// The ceiling every GPU benchmark is set against: a device-to-device copy.
#include "gpu_bench_common.cuh"

namespace {

void copy(benchmark::State& state) {
  const std::size_t bytes = std::size_t(state.range(0)) << 20;
  mixlens::gpu::device_buffer<char> a(bytes), b(bytes);
  a.fill_bytes(1);
  mixlens::bench::time_launches(state, [&] {
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice));
  });
  mixlens::bench::set_counters(state, 2.0 * double(bytes), 0);
}

}  // namespace

BENCHMARK(copy)->Arg(2048)->UseManualTime()->Unit(benchmark::kMillisecond);
