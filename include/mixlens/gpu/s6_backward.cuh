// mixlens::gpu::selective_scan_backward: the fused S6 (Mamba) selective-scan
// backward, the adjoint of selective_scan_forward with its conventions and
// layouts. Δ bias and softplus, the D skip and the z gate are fused; inputs
// fp32, fp16 or bf16, state and arithmetic fp32; 64-bit indexing; any L.
// Returns what Mamba's selective_scan backward returns: ∂u, ∂Δ (of the raw Δ),
// ∂z, ∂B and ∂C (summed over the channels of each group), ∂A, ∂D, ∂Δ-bias.
// Supported: real A, B and C varying in time, N ≤ 32 (complex A, constant B or
// C and larger states are the forward's only).
//
// One kernel per call (detail/s6_backward_kernel.cuh: a checkpointing forward
// sweep, then the tiles in reverse with their states recomputed), after the
// summed outputs are zeroed; the checkpoints live in stream-ordered scratch.
// For N ≤ 16 the kernel is the register form (two consecutive states per
// thread; params.states_per_thread picks 1, 2 or 4), for 16 < N ≤ 32 the
// 16-lane kernel with two states per lane.
// Long sequences with few channels are cut into chunks of time run side by
// side (see plan_selective_scan_backward): the forward's summary and carry
// passes give each chunk its incoming state, an adjoint summary and carry pass
// the adjoint arriving from its right.
//
// Layers: warp_reduce → s6_backward_kernel → dispatch (here) → selective_scan_backward.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string_view>

#include "mixlens/gpu/detail/s6_backward_kernel.cuh"
#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/s6.cuh"

namespace mixlens::gpu {

// How a backward call runs (pure, for tests).
struct selective_scan_backward_plan {
  int states_per_lane = 1;  // the 16-lane kernel: 1 (N ≤ 16) or 2 (N ≤ 32); the register form: 1
  int states_per_thread = 1;  // 1 or 2 (the 16-lane kernel), 2 or 4 (the register form, N ≤ 16)
  bool register_form = false;  // Q = states_per_thread consecutive states per thread (N ≤ 16)
  int resident_blocks = 6;     // blocks of the chosen kernel one SM holds (shared memory, registers)
  index_t tile_steps = 0;   // T: steps per tile and between checkpoints
  index_t tiles = 0;        // per sequence: ⌈L / T⌉
  index_t blocks = 0;       // batch · G · ⌈(D / G) / 8⌉ blocks of 8 channels
  std::size_t workspace_bytes = 0;  // checkpoints: batch · D · tiles · 16·S floats (none for one tile)
  bool time_parallel = false;       // chunks of time side by side (grid y)
  index_t chunks = 1;
  index_t chunk_length = 0;         // steps per chunk, a multiple of 64 (L when one chunk)
  std::size_t carry_bytes = 0;      // time-parallel: both carries, the adjoint summaries, the ΣΔ
};

// Smallest chunk the automatic time split makes (as the forward's).
inline constexpr index_t s6_backward_min_chunk = 1024;

// The register form's Q when states_per_thread is 0 (measured: bench/README.md).
inline constexpr int s6_backward_default_states_per_thread = 2;

namespace detail {
// Shared memory of one SM on sm_90 for blocks (228 KB, of which 227 KB per block).
inline constexpr std::size_t s6_backward_shared_per_sm = 228 * 1024;
}  // namespace detail

namespace detail {

template <class In>
void validate_backward(const selective_scan_backward_params<In>& p) {
  constexpr std::string_view where = "mixlens::gpu::selective_scan_backward";
  mixlens::detail::check_positive(where, "batch", p.batch);
  mixlens::detail::check_positive(where, "channels", p.channels);
  mixlens::detail::check_positive(where, "length", p.length);
  mixlens::detail::check_positive(where, "state_size", p.state_size);
  mixlens::detail::check_positive(where, "groups", p.groups);
  if (p.channels % p.groups != 0)
    mixlens::detail::fail(where, "groups", "a group count dividing the " + std::to_string(p.channels) + " channels",
                          p.groups);
  if (p.state_size > 32) mixlens::detail::fail(where, "state_size", "at most 32 states", p.state_size);
  if (p.chunk_length < -1)
    mixlens::detail::fail(where, "chunk_length", "-1 (never), 0 (automatic) or a positive length", p.chunk_length);
  if (p.states_per_thread != 0 && p.states_per_thread != 1 && p.states_per_thread != 2 && p.states_per_thread != 4)
    mixlens::detail::fail(where, "states_per_thread", "0 (automatic), 1, 2 or 4", p.states_per_thread);
  const auto need = [&](std::string_view name, const void* ptr) {
    if (!ptr) mixlens::detail::fail(where, name, "a device pointer", "null");
  };
  need("u", p.u);
  need("delta", p.delta);
  need("a", p.a);
  need("b", p.b);
  need("c", p.c);
  need("dout", p.dout);
  need("du", p.du);
  need("ddelta", p.ddelta);
  need("db", p.db);
  need("dc", p.dc);
  if (p.z) need("dz (z is given)", p.dz);
}

inline std::size_t align16(std::size_t bytes) { return (bytes + 15) / 16 * 16; }

template <int S, class In>
void launch_backward(const selective_scan_backward_params<In>& p, const selective_scan_backward_plan& plan,
                     cudaStream_t stream) {
  stream_workspace work(plan.workspace_bytes + plan.carry_bytes, stream);
  char* const base = static_cast<char*>(work.get());
  s6_backward_chunks ch;
  if (plan.time_parallel) {
    const index_t total = p.batch * p.channels, N = p.state_size, C = plan.chunks;
    const std::size_t states = align16(static_cast<std::size_t>(C * total * N) * sizeof(float));
    const std::size_t sums = align16(static_cast<std::size_t>(C * total) * sizeof(double));
    float* const h_in = reinterpret_cast<float*>(base + plan.workspace_bytes);
    float* const summary = reinterpret_cast<float*>(base + plan.workspace_bytes + states);
    float* const x_in = reinterpret_cast<float*>(base + plan.workspace_bytes + 2 * states);
    double* const dt_fwd = reinterpret_cast<double*>(base + plan.workspace_bytes + 3 * states);
    double* const dt_adj = reinterpret_cast<double*>(base + plan.workspace_bytes + 3 * states + sums);
    // The state entering each chunk: the forward's summary pass (chunks 0..C−2)
    // and its carry pass, on the same chunks.
    selective_scan_params<In, float> f;
    f.batch = p.batch, f.channels = p.channels, f.length = p.length, f.state_size = N, f.groups = p.groups;
    f.u = p.u, f.delta = p.delta, f.delta_bias = p.delta_bias, f.delta_softplus = p.delta_softplus;
    f.a = p.a, f.b = p.b, f.c = p.c;
    f.y = p.du;  // required by the forward's checks; the summary pass writes no output
    f.chunk_length = plan.chunk_length;
    const selective_scan_plan fplan = plan_selective_scan(f);
    if (!fplan.time_parallel || fplan.chunk_length != plan.chunk_length || fplan.chunks != C)
      mixlens::detail::fail("mixlens::gpu::selective_scan_backward", "chunk_length",
                            "a split the forward's summary pass makes the same way", plan.chunk_length);
    s6_chunks<float> fc;
    fc.length = plan.chunk_length;
    fc.carry = h_in;
    fc.dt_sum = dt_fwd;
    run_pass<s6_pass::summary>(f, fplan, fc, C - 1, stream);
    constexpr int threads = 256;
    s6_carry_kernel<<<grid_size((total * N + threads - 1) / threads), threads, 0, stream>>>(
        p.a, fc, static_cast<float*>(nullptr), total, p.channels, N, C, C - 1);
    MIXLENS_CUDA_CHECK_LAUNCH();
    // The adjoint arriving at each chunk from its right.
    s6_adjoint_summary_kernel<In, S><<<dim3(grid_size((total + 7) / 8), static_cast<unsigned>(C - 1)), 128, 0, stream>>>(
        p, plan.chunk_length, summary, dt_adj);
    MIXLENS_CUDA_CHECK_LAUNCH();
    s6_adjoint_carry_kernel<<<grid_size((total * N + threads - 1) / threads), threads, 0, stream>>>(
        p.a, summary, dt_adj, x_in, total, p.channels, N, C);
    MIXLENS_CUDA_CHECK_LAUNCH();
    ch.tiles = plan.chunk_length / plan.tile_steps;
    ch.h_in = h_in;
    ch.x_in = x_in;
  }
  const dim3 grid(grid_size(plan.blocks), static_cast<unsigned>(plan.chunks));
  if constexpr (S == 1) {
    if (plan.register_form) {
      const auto run = [&](auto kernel, std::size_t bytes) {
        // Above 48 KB a kernel must be allowed its dynamic shared memory; the
        // attribute is set on every call (cheap, and correct on any device).
        MIXLENS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(bytes)));
        kernel<<<grid, 128, bytes, stream>>>(p, reinterpret_cast<float*>(base), ch);
        MIXLENS_CUDA_CHECK_LAUNCH();
      };
      if (plan.states_per_thread == 2)
        run(selective_scan_backward_register_kernel<In, 2>, backward_register_shape<2>::bytes);
      else
        run(selective_scan_backward_register_kernel<In, 4>, backward_register_shape<4>::bytes);
      return;
    }
  }
  selective_scan_backward_kernel<In, S><<<grid, backward_shape<S>::threads, 0, stream>>>(
      p, reinterpret_cast<float*>(base), ch);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

// The decision for a device of `multiprocessors` SMs (pure, for tests). Time
// split heuristic (chunk_length == 0), as the forward's: when the grid of
// channel blocks fills at most half of the blocks the device holds at once
// (SMs × resident_blocks: 6 and 4 for the 16-lane kernel, by shared memory for
// the register form) and L ≥ 2·s6_backward_min_chunk, time is cut
// into chunks so that chunks × blocks ≈ two full waves, each chunk at least
// s6_backward_min_chunk steps, lengths multiples of 64. It costs the forward's
// summary pass and an adjoint summary pass (each about a third of the work of
// the main kernel's recompute and reverse) and a per-chunk forward sweep of no
// more than the chunk.
template <class In>
selective_scan_backward_plan plan_selective_scan_backward(const selective_scan_backward_params<In>& p,
                                                          int multiprocessors) {
  detail::validate_backward(p);
  selective_scan_backward_plan plan;
  plan.states_per_lane = p.state_size <= 16 ? 1 : 2;
  plan.states_per_thread = plan.states_per_lane;
  index_t T = plan.states_per_lane == 1 ? detail::backward_shape<1>::steps : detail::backward_shape<2>::steps;
  index_t C = detail::backward_shape<1>::channels;
  plan.resident_blocks = plan.states_per_lane == 1 ? 6 : 4;
  if (p.state_size <= 16 && p.states_per_thread != 1) {
    const int q = p.states_per_thread == 0 ? s6_backward_default_states_per_thread : p.states_per_thread;
    plan.register_form = true;
    plan.states_per_thread = q;
    T = q == 2 ? detail::backward_register_shape<2>::steps : detail::backward_register_shape<4>::steps;
    C = q == 2 ? detail::backward_register_shape<2>::channels : detail::backward_register_shape<4>::channels;
    const std::size_t bytes = q == 2 ? detail::backward_register_shape<2>::bytes : detail::backward_register_shape<4>::bytes;
    plan.resident_blocks = static_cast<int>(detail::s6_backward_shared_per_sm / (bytes + 1024));  // + the driver's 1 KB
  }
  plan.tile_steps = T;
  plan.tiles = (p.length + T - 1) / T;
  plan.blocks = p.batch * p.groups * ((p.channels / p.groups + C - 1) / C);
  if (plan.tiles > 1)
    plan.workspace_bytes = static_cast<std::size_t>(p.batch * p.channels) * static_cast<std::size_t>(plan.tiles) *
                           static_cast<std::size_t>(16 * plan.states_per_lane) * sizeof(float);
  const index_t L = p.length;
  const auto round64 = [](index_t x) { return (x + 63) / 64 * 64; };
  index_t length = 0;
  if (p.chunk_length > 0) {
    length = round64(p.chunk_length);
  } else if (p.chunk_length == 0) {
    const index_t resident = static_cast<index_t>(multiprocessors) * plan.resident_blocks;
    if (2 * plan.blocks <= resident && L >= 2 * s6_backward_min_chunk) {
      index_t want = 2 * resident / plan.blocks;
      if (want > L / s6_backward_min_chunk) want = L / s6_backward_min_chunk;
      if (want >= 2) length = round64((L + want - 1) / want);
    }
  }
  if (length > 0 && length < L) {  // one chunk of all of L is the one-pass kernel
    constexpr index_t max_chunks = 65535;  // grid y
    if ((L + length - 1) / length > max_chunks) length = round64((L + max_chunks - 1) / max_chunks);
    plan.time_parallel = true;
    plan.chunk_length = length;
    plan.chunks = (L + length - 1) / length;
    const index_t total = p.batch * p.channels, N = p.state_size;
    const std::size_t states = detail::align16(static_cast<std::size_t>(plan.chunks * total * N) * sizeof(float));
    const std::size_t sums = detail::align16(static_cast<std::size_t>(plan.chunks * total) * sizeof(double));
    plan.carry_bytes = 3 * states + 2 * sums;
  } else {
    plan.chunk_length = L;
  }
  return plan;
}

// The decision for the current device.
template <class In>
selective_scan_backward_plan plan_selective_scan_backward(const selective_scan_backward_params<In>& p) {
  detail::validate_backward(p);  // bad parameters are reported before any device query
  int device = 0, sms = 0;
  MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return plan_selective_scan_backward(p, sms);
}

// Runs the backward pass; asynchronous on `stream` (scratch memory and the
// zeroing of the summed outputs are stream-ordered). Throws mixlens::error for
// bad sizes or missing required pointers.
template <class In>
void selective_scan_backward(const selective_scan_backward_params<In>& p, cudaStream_t stream = nullptr) {
  const selective_scan_backward_plan plan = plan_selective_scan_backward(p);
  const auto zero = [&](float* q, index_t count) {
    if (q) MIXLENS_CUDA_CHECK(cudaMemsetAsync(q, 0, static_cast<std::size_t>(count) * sizeof(float), stream));
  };
  const index_t bc = p.batch * p.groups * p.state_size * p.length;
  zero(p.db, bc);
  zero(p.dc, bc);
  zero(p.da, p.channels * p.state_size);
  zero(p.dskip, p.channels);
  zero(p.ddelta_bias, p.channels);
  if (plan.states_per_lane == 1) detail::launch_backward<1>(p, plan, stream);
  else detail::launch_backward<2>(p, plan, stream);
}

}  // namespace mixlens::gpu
