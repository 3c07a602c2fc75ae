// The operator concept on the device against the facades it dispatches to, in
// the same binary: gpu::apply on an S6 view (the fused scan) next to
// selective_scan_forward with the same arguments, gpu::materialize_channels on
// an S6 view (the tiled α) next to hidden_attention, and the generic row-based
// paths that any conforming view gets, next to them. Batch b of the facades is
// the view's channel range b·D.. with B and C as group b, so the work is the same.
#include "gpu_bench_common.cuh"
#include "mixlens/gpu/alpha.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/ops/s6/device.cuh"

namespace {

using namespace mixlens;

// S6 signals of B batch elements as one view of B·D channels in B groups:
// Δ after softplus, gate = SiLU(z) precomputed (the view's semantics).
struct s6_inputs {
  index_t B, D, L, N = 16;
  gpu::device_buffer<float> u, delta, gate, y, a, b, c, skip;
  s6_inputs(index_t B_, index_t D_, index_t L_) : B(B_), D(D_), L(L_) {
    u = bench::device_random<float>(B * D * L, 1, -1, 1);
    delta = gpu::device_buffer<float>(bench::random_host<float>(B * D * L, 2, 0.001f, 0.1f));
    gate = bench::device_random<float>(B * D * L, 3, -1, 1);
    y = gpu::device_buffer<float>(B * D * L);
    std::vector<float> ah(B * D * N);
    for (index_t i = 0; i < B * D * N; ++i) ah[i] = -float(i % N + 1);
    a = gpu::device_buffer<float>(ah);
    b = bench::device_random<float>(B * N * L, 4, -1, 1);
    c = bench::device_random<float>(B * N * L, 5, -1, 1);
    skip = gpu::device_buffer<float>(bench::random_host<float>(B * D, 6, 0, 1));
  }
  [[nodiscard]] s6_operator<float> view(bool folded) const {
    return s6_operator<float>(matrix_view<const float>(delta.data(), B * D, L), matrix_view<const float>(a.data(), B * D, N),
                              tensor_view<const float, 3>(b.data(), B, N, L), tensor_view<const float, 3>(c.data(), B, N, L),
                              folded ? vector_view<const float>(skip.data(), B * D) : vector_view<const float>{},
                              folded ? matrix_view<const float>(gate.data(), B * D, L) : matrix_view<const float>{});
  }
  [[nodiscard]] gpu::selective_scan_params<float, float> params() {
    gpu::selective_scan_params<float, float> p;
    p.batch = B, p.channels = D, p.length = L, p.state_size = N, p.groups = 1;
    p.u = u.data(), p.delta = delta.data(), p.a = a.data(), p.b = b.data(), p.c = c.data();
    p.skip = skip.data(), p.z = gate.data(), p.z_silu = false, p.y = y.data();
    return p;
  }
};

// Mode 0: the facade; 1: gpu::apply on the view.
template <int Mode>
void s6_apply(benchmark::State& state) {
  s6_inputs in(state.range(0), state.range(1), state.range(2));
  const auto op = in.view(true);
  auto p = in.params();
  const index_t channels = in.B * in.D;
  bench::time_launches(state, [&] {
    if constexpr (Mode == 0) gpu::selective_scan_forward(p);
    else gpu::apply(op, matrix_view<const float>(in.u.data(), channels, in.L), matrix_view<float>(in.y.data(), channels, in.L));
  });
  const double sig = double(channels * in.L);
  bench::set_counters(state, 4.0 * (4.0 * sig + 2.0 * double(in.B * in.N * in.L)), double(in.B * in.L));
}

// Mode 0: hidden_attention; 1: gpu::materialize_channels on the view (fast path);
// 2: the generic row-per-thread path (a view without a specialization).
template <int Mode>
void s6_alpha(benchmark::State& state) {
  const index_t D = state.range(0), L = state.range(1);
  s6_inputs in(1, D, L);
  const auto op = in.view(false);
  gpu::device_buffer<float> out(D * L * L);
  gpu::hidden_attention_params<float> p;
  p.batch = 1, p.channels = D, p.length = L, p.state_size = in.N, p.groups = 1;
  p.delta = in.delta.data(), p.a = in.a.data(), p.b = in.b.data(), p.c = in.c.data();
  bench::time_launches(state, [&] {
    if constexpr (Mode == 0) {
      gpu::hidden_attention(p, out.data());
    } else if constexpr (Mode == 1) {
      gpu::materialize_channels(op, 0, D, out.data());
    } else {
      gpu::detail::generic_channels_kernel<<<gpu::detail::generic_grid(D * L), gpu::detail::generic_threads>>>(
          op, 0, D, out.data());
      MIXLENS_CUDA_CHECK_LAUNCH();
    }
  });
  bench::set_counters(state, 4.0 * double(D * L * L), double(L));
}

void apply_shapes(benchmark::internal::Benchmark* b) {
  b->Args({4, 1536, 2048})->Args({4, 1536, 8192})->Args({1, 1536, 65536})->UseManualTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(s6_apply<0>)->Name("concept_s6_apply_facade")->Apply(apply_shapes);
BENCHMARK(s6_apply<1>)->Name("concept_s6_apply_view")->Apply(apply_shapes);
BENCHMARK(s6_alpha<0>)->Name("concept_alpha_facade")->Args({1536, 1024})->Args({1536, 512})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_alpha<1>)->Name("concept_alpha_view")->Args({1536, 1024})->Args({1536, 512})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(s6_alpha<2>)->Name("concept_alpha_generic")->Args({1536, 1024})->Args({1536, 512})->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(3);
