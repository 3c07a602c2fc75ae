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
//
// Layers: warp_reduce → s6_backward_kernel → dispatch (here) → selective_scan_backward.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string_view>

#include "mixlens/gpu/detail/s6_backward_kernel.cuh"
#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"

namespace mixlens::gpu {

// How a backward call runs (pure, for tests).
struct selective_scan_backward_plan {
  int states_per_lane = 1;  // 1 (N ≤ 16) or 2 (N ≤ 32)
  index_t tile_steps = 0;   // T: steps per tile and between checkpoints
  index_t tiles = 0;        // per sequence: ⌈L / T⌉
  index_t blocks = 0;       // batch · G · ⌈(D / G) / 8⌉ blocks of 8 channels
  std::size_t workspace_bytes = 0;  // checkpoints: batch · D · tiles · 16·S floats (none for one tile)
};

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

template <int S, class In>
void launch_backward(const selective_scan_backward_params<In>& p, const selective_scan_backward_plan& plan,
                     cudaStream_t stream) {
  stream_workspace work(plan.workspace_bytes, stream);
  selective_scan_backward_kernel<In, S><<<grid_size(plan.blocks), backward_shape<S>::threads, 0, stream>>>(
      p, static_cast<float*>(work.get()));
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

template <class In>
selective_scan_backward_plan plan_selective_scan_backward(const selective_scan_backward_params<In>& p) {
  detail::validate_backward(p);
  selective_scan_backward_plan plan;
  plan.states_per_lane = p.state_size <= 16 ? 1 : 2;
  const index_t T = plan.states_per_lane == 1 ? detail::backward_shape<1>::steps : detail::backward_shape<2>::steps;
  constexpr index_t C = detail::backward_shape<1>::channels;
  plan.tile_steps = T;
  plan.tiles = (p.length + T - 1) / T;
  plan.blocks = p.batch * p.groups * ((p.channels / p.groups + C - 1) / C);
  if (plan.tiles > 1)
    plan.workspace_bytes = static_cast<std::size_t>(p.batch * p.channels) * static_cast<std::size_t>(plan.tiles) *
                           static_cast<std::size_t>(16 * plan.states_per_lane) * sizeof(float);
  return plan;
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
