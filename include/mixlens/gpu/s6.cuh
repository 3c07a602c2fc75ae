// mixlens::gpu::selective_scan_forward: the fused S6 (Mamba) selective scan on
// the GPU. Δ bias and softplus, the D skip and the z gate are fused; inputs may
// be fp32, fp16 or bf16 (state and arithmetic in fp32); A real or complex; B and
// C per group or constant in time; optional last state; 64-bit indexing; any L.
// Matches mixlens::s6_operator::apply per batch element (with Δ after softplus,
// gate = SiLU(z)).
//
// Layers: warp_reduce → s6_kernel → dispatch (here) → selective_scan_forward.
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <string_view>

#include "mixlens/gpu/detail/s6_kernel.cuh"
#include "mixlens/gpu/detail/s6_staged_kernel.cuh"
#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"

namespace mixlens::gpu {

namespace detail {

inline constexpr int s6_threads = 128;

template <int P, int S, class In, class State>
void launch_selective_scan(const selective_scan_params<In, State>& p, cudaStream_t stream) {
  constexpr int channels_per_block = s6_threads / P;
  const index_t blocks = (p.batch * p.channels + channels_per_block - 1) / channels_per_block;
  if (blocks > 0x7fffffff) mixlens::detail::fail("mixlens::gpu::selective_scan_forward", "batch·channels",
                                                 "fewer than 2^31 blocks of channels", blocks);
  // At most 80 registers for one state per lane keeps every channel of a
  // (4 × 1536)-channel problem resident at once; more states need more registers.
  constexpr int min_blocks = S == 1 && !is_complex_v<State> ? 6 : 3;
  selective_scan_kernel<P, S, s6_threads, min_blocks><<<static_cast<unsigned>(blocks), s6_threads, 0, stream>>>(p);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// The staged kernel with S states per lane needs: real A, N = 16, B and C
// varying in time, 8·S | D/G (a block never straddles a group or a batch
// element), rows of 16-byte multiples and 16-byte aligned signals.
template <class In, class State>
bool staged_applies(const selective_scan_params<In, State>& p, int states_per_lane) {
  if constexpr (is_complex_v<State>) {
    return false;
  } else {
    const auto aligned = [](const void* q) { return q == nullptr || (reinterpret_cast<std::uintptr_t>(q) & 15u) == 0; };
    return !p.generic_only && p.state_size == 16 && !p.b_constant && !p.c_constant &&
           (p.channels / p.groups) % (8 * states_per_lane) == 0 &&
           (p.length * static_cast<index_t>(sizeof(In))) % 16 == 0 && aligned(p.u) && aligned(p.delta) &&
           aligned(p.z) && aligned(p.b) && aligned(p.c);
  }
}

template <int S, class In>
void launch_staged(const selective_scan_params<In, float>& p, cudaStream_t stream) {
  const index_t blocks = p.batch * p.channels / staged_shape<S>::channels;
  selective_scan_staged_kernel<In, S><<<grid_size(blocks), 128, 0, stream>>>(p);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

template <class In, class State>
void validate(const selective_scan_params<In, State>& p) {
  constexpr std::string_view where = "mixlens::gpu::selective_scan_forward";
  mixlens::detail::check_positive(where, "batch", p.batch);
  mixlens::detail::check_positive(where, "channels", p.channels);
  mixlens::detail::check_positive(where, "length", p.length);
  mixlens::detail::check_positive(where, "state_size", p.state_size);
  mixlens::detail::check_positive(where, "groups", p.groups);
  if (p.states_per_lane < 0 || p.states_per_lane > 2)
    mixlens::detail::fail(where, "states_per_lane", "0 (automatic), 1 or 2", p.states_per_lane);
  if (p.channels % p.groups != 0)
    mixlens::detail::fail(where, "groups", "a group count dividing the " + std::to_string(p.channels) + " channels",
                          p.groups);
  if (p.state_size > 128) mixlens::detail::fail(where, "state_size", "at most 128 states", p.state_size);
  const auto need = [&](std::string_view name, const void* ptr) {
    if (!ptr) mixlens::detail::fail(where, name, "a device pointer", "null");
  };
  need("u", p.u);
  need("delta", p.delta);
  need("a", p.a);
  need("b", p.b);
  need("c", p.c);
  need("y", p.y);
}

}  // namespace detail

// Runs the forward pass; asynchronous on `stream`. Throws mixlens::error for bad
// sizes or missing required pointers.
template <class In, class State>
void selective_scan_forward(const selective_scan_params<In, State>& p, cudaStream_t stream = nullptr) {
  detail::validate(p);
  if constexpr (!detail::is_complex_v<State>) {
    // One state per lane unless asked: two measured slower on the H200 (more
    // work per thread did not make up for half the threads).
    const int wanted = p.states_per_lane != 0 ? p.states_per_lane : 1;
    if (wanted == 2 && detail::staged_applies(p, 2)) return detail::launch_staged<2>(p, stream);
    if (detail::staged_applies(p, 1)) return detail::launch_staged<1>(p, stream);
  }
  const index_t n = p.state_size;
  if (n <= 4) detail::launch_selective_scan<4, 1>(p, stream);
  else if (n <= 8) detail::launch_selective_scan<8, 1>(p, stream);
  else if (n <= 16) detail::launch_selective_scan<16, 1>(p, stream);
  else if (n <= 32) detail::launch_selective_scan<16, 2>(p, stream);
  else if (n <= 64) detail::launch_selective_scan<16, 4>(p, stream);
  else detail::launch_selective_scan<16, 8>(p, stream);
}

}  // namespace mixlens::gpu
