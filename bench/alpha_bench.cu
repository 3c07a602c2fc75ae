// Hidden attention α: the tiled kernel against a straightforward
// one-thread-per-element kernel, full matrices (fp32 and bf16 output) and last-row
// maps.
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/alpha.cuh"

namespace {

using namespace mixlens;

// The straightforward baseline: one thread per element, N exps each, no
// tiling. Benchmark-only, so it lives here rather than in the library.
template <class Out>
__global__ void alpha_naive_kernel(const float* delta, const double* cums, const float* a, const float* b,
                                   const float* c, Out* out, index_t D, index_t L, index_t N, index_t G) {
  const index_t total = D * L * L;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t j = k % L, i = (k / L) % L, d = k / (L * L);
    const index_t g = d / (D / G);
    float sum = 0;
    if (j <= i) {
      const float gap = static_cast<float>(cums[d * L + i] - cums[d * L + j]);
      for (index_t n = 0; n < N; ++n)
        sum += c[(g * N + n) * L + i] * __expf(a[d * N + n] * gap) * b[(g * N + n) * L + j];
      sum *= delta[d * L + j];
    }
    out[k] = gpu::detail::from_float<Out>(sum);
  }
}

struct inputs {
  index_t D, L, N = 16;
  gpu::device_buffer<float> delta, a, b, c;
  inputs(index_t D_, index_t L_) : D(D_), L(L_) {
    delta = gpu::device_buffer<float>(bench::random_host<float>(D * L, 1, 0.001f, 0.1f));
    std::vector<float> ah(D * N);
    for (index_t i = 0; i < D * N; ++i) ah[i] = -float(i % N + 1);
    a = gpu::device_buffer<float>(ah);
    b = gpu::device_buffer<float>(bench::random_host<float>(N * L, 2, -1, 1));
    c = gpu::device_buffer<float>(bench::random_host<float>(N * L, 3, -1, 1));
  }
  gpu::hidden_attention_params<float> params() const {
    gpu::hidden_attention_params<float> p;
    p.batch = 1, p.channels = D, p.length = L, p.state_size = N, p.groups = 1;
    p.delta = delta.data(), p.a = a.data(), p.b = b.data(), p.c = c.data();
    return p;
  }
};

template <class Out>
void alpha_full(benchmark::State& state) {
  const index_t D = state.range(0), L = state.range(1);
  inputs in(D, L);
  gpu::device_buffer<Out> out(D * L * L);
  bench::time_launches(state, [&] { gpu::hidden_attention(in.params(), out.data()); });
  bench::set_counters(state, double(sizeof(Out)) * double(D * L * L), double(L));
}

void alpha_full_naive(benchmark::State& state) {
  const index_t D = state.range(0), L = state.range(1);
  inputs in(D, L);
  gpu::device_buffer<float> out(D * L * L);
  gpu::device_buffer<double> cums(D * L);
  const auto p = in.params();
  bench::time_launches(state, [&] {
    gpu::detail::cumsum_kernel<256><<<static_cast<unsigned>(D), 256>>>(p.delta, cums.data(), L);
    alpha_naive_kernel<<<132 * 16, 256>>>(p.delta, cums.data(), p.a, p.b, p.c, out.data(), D, L, p.state_size,
                                                       index_t(1));
    MIXLENS_CUDA_CHECK_LAUNCH();
  });
  bench::set_counters(state, 4.0 * double(D * L * L), double(L));
}

void alpha_last_row(benchmark::State& state) {
  const index_t D = state.range(0), L = state.range(1);
  inputs in(D, L);
  gpu::device_buffer<float> out(D * L);
  const std::vector<index_t> rows = {L - 1};
  bench::time_launches(state, [&] { gpu::hidden_attention_rows(in.params(), vector_view<const index_t>(rows), out.data()); });
  bench::set_counters(state, 4.0 * double(D * L), double(L));
}

}  // namespace

BENCHMARK(alpha_full<float>)->Name("alpha_full_fp32")->Args({1536, 1024})->Args({1536, 512})->UseManualTime()->Unit(
    benchmark::kMillisecond);
BENCHMARK(alpha_full<__nv_bfloat16>)->Name("alpha_full_bf16")->Args({1536, 1024})->UseManualTime()->Unit(
    benchmark::kMillisecond);
BENCHMARK(alpha_full_naive)->Args({1536, 1024})->Args({1536, 512})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK(alpha_last_row)->Args({1536, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
