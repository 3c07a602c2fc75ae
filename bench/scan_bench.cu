// Scan variants against each other and against the one-thread-per-sequence
// baseline, on memory-bound problems of 2^28 elements (fp32: 3.2 GB moved) and
// the S6-shaped batch (4·1536·16 sequences × 2048).
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/scan.cuh"

namespace {

using namespace mixlens;

template <class Policy>
void scan(benchmark::State& state) {
  const index_t count = state.range(0), length = state.range(1);
  const auto n = static_cast<std::size_t>(count * length);
  auto a = bench::device_random<float>(count * length, 1, 0.5f, 0.999f);
  auto b = bench::device_random<float>(count * length, 2, -1, 1);
  gpu::device_buffer<float> h(count * length);
  bench::time_launches(state, [&] {
    gpu::linear_recurrence(matrix_view<const float>(a.data(), count, length),
                           matrix_view<const float>(b.data(), count, length), matrix_view<float>(h.data(), count, length),
                           Policy{});
  });
  bench::set_counters(state, 12.0 * double(n), double(n));
  state.SetLabel(std::string(Policy::name));
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 65536})->Args({98304, 2048})->UseManualTime()->Unit(benchmark::kMillisecond);
}
void long_shapes(benchmark::internal::Benchmark* b) {
  b->Args({4096, 65536})->Args({98304, 2048})->Args({1, 1 << 28})->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(scan<gpu::sequential_policy>)->Apply(shapes)->Iterations(3);
BENCHMARK(scan<gpu::warp_policy>)->Apply(shapes);
BENCHMARK(scan<gpu::blelloch_policy>)->Apply(shapes);
BENCHMARK(scan<gpu::block_policy>)->Apply(shapes);
BENCHMARK(scan<gpu::device_policy>)->Apply(long_shapes);
BENCHMARK(scan<gpu::chunked_policy>)->Apply(long_shapes);
