// mixlens::gpu::selective_scan_forward: the fused S6 (Mamba) selective scan on
// the GPU. Δ bias and softplus, the D skip and the z gate are fused; inputs may
// be fp32, fp16 or bf16 (state and arithmetic in fp32); A real or complex; B and
// C per group or constant in time; optional last state; 64-bit indexing; any L.
// Matches mixlens::s6_operator::apply per batch element (with Δ after softplus,
// gate = SiLU(z)).
//
// Long sequences with few channels take a time-parallel path (three passes:
// chunk summaries, carries over chunks, chunks again from their carries); see
// plan_selective_scan for when.
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

// Blocks per multiprocessor the launch bounds promise: the generic kernel with
// one real state per lane keeps every channel of a (4 × 1536)-channel problem
// resident at once; more states need more registers.
template <int S, class State>
inline constexpr int generic_min_blocks = S == 1 && !is_complex_v<State> ? 6 : 3;
inline constexpr int staged_min_blocks = 6;

template <int P, int S, s6_pass Pass, class In, class State>
void launch_selective_scan(const selective_scan_params<In, State>& p, const s6_chunks<State>& ch, index_t chunks,
                           cudaStream_t stream) {
  constexpr int channels_per_block = s6_threads / P;
  const index_t blocks = (p.batch * p.channels + channels_per_block - 1) / channels_per_block;
  if (blocks > 0x7fffffff) mixlens::detail::fail("mixlens::gpu::selective_scan_forward", "batch·channels",
                                                 "fewer than 2^31 blocks of channels", blocks);
  selective_scan_kernel<P, S, s6_threads, generic_min_blocks<S, State>, Pass>
      <<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(chunks)), s6_threads, 0, stream>>>(p, ch);
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

template <int S, s6_pass Pass, class In>
void launch_staged(const selective_scan_params<In, float>& p, const s6_chunks<float>& ch, index_t chunks,
                   cudaStream_t stream) {
  const index_t blocks = p.batch * p.channels / staged_shape<S>::channels;
  selective_scan_staged_kernel<In, S, Pass>
      <<<dim3(grid_size(blocks), static_cast<unsigned>(chunks)), 128, 0, stream>>>(p, ch);
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
  if (p.chunk_length < -1)
    mixlens::detail::fail(where, "chunk_length", "-1 (never), 0 (automatic) or a positive length", p.chunk_length);
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

// Which kernel runs and how time is split.
struct selective_scan_plan {
  bool staged = false;      // the staged fast path (else the generic kernel)
  int states_per_lane = 1;  // staged: 1 or 2; generic: states per lane (N > 16)
  index_t blocks = 0;       // blocks of channels in one pass over time
  index_t chunks = 1;       // > 1 or forced: the time-parallel path
  index_t chunk_length = 0;
  bool time_parallel = false;
};

// Smallest chunk the automatic time split makes: below it the second pass of
// exps and the two extra launches cost more than the idle multiprocessors.
inline constexpr index_t s6_min_chunk = 1024;

// The dispatch decision for a device of `multiprocessors` SMs (pure, for tests).
//
// Time split heuristic (chunk_length == 0): the one-pass kernels run each state's
// steps in sequence, so their parallelism is batch·D·N lanes; when the grid of
// channel blocks fills at most half of the blocks the device holds at once (SMs ×
// the blocks per SM its launch bounds promise) and L ≥ 2·s6_min_chunk, time is
// cut into chunks so that chunks × blocks ≈ two full waves, each chunk at least
// s6_min_chunk steps, lengths multiples of 64. It costs a second pass of exps
// (the summary pass: about half the work of a full pass, no C·h and no output),
// so it pays only where the one-pass grid leaves the device mostly idle (B 1,
// D 1536, L 65536 on 132 SMs: 192 blocks of 792 → 8 chunks of 8192 steps).
template <class In, class State>
selective_scan_plan plan_selective_scan(const selective_scan_params<In, State>& p, int multiprocessors) {
  detail::validate(p);
  selective_scan_plan plan;
  int min_blocks = 0;
  if constexpr (!detail::is_complex_v<State>) {
    // One state per lane unless asked: two measured slower on the H200 (more
    // work per thread did not make up for half the threads).
    const int wanted = p.states_per_lane != 0 ? p.states_per_lane : 1;
    if (wanted == 2 && detail::staged_applies(p, 2)) plan.staged = true, plan.states_per_lane = 2;
    else if (detail::staged_applies(p, 1)) plan.staged = true, plan.states_per_lane = 1;
  }
  const index_t total = p.batch * p.channels;
  if (plan.staged) {
    plan.blocks = total / detail::staged_shape<1>::channels / plan.states_per_lane;
    min_blocks = detail::staged_min_blocks;
  } else {
    const index_t n = p.state_size;
    plan.states_per_lane = n <= 16 ? 1 : n <= 32 ? 2 : n <= 64 ? 4 : 8;  // as run_pass picks
    const index_t lanes = n <= 4 ? 4 : n <= 8 ? 8 : 16;
    const index_t per_block = detail::s6_threads / lanes;
    plan.blocks = (total + per_block - 1) / per_block;
    min_blocks = plan.states_per_lane == 1 ? detail::generic_min_blocks<1, State> : detail::generic_min_blocks<2, State>;
  }
  const index_t L = p.length;
  const auto round64 = [](index_t x) { return (x + 63) / 64 * 64; };
  index_t length = 0;
  if (p.chunk_length > 0) {
    length = round64(p.chunk_length);
  } else if (p.chunk_length == 0) {
    const index_t resident = static_cast<index_t>(multiprocessors) * min_blocks;
    if (2 * plan.blocks <= resident && L >= 2 * s6_min_chunk) {
      index_t want = 2 * resident / plan.blocks;
      if (want > L / s6_min_chunk) want = L / s6_min_chunk;
      if (want >= 2) length = round64((L + want - 1) / want);
    }
  }
  if (length > 0) {
    constexpr index_t max_chunks = 65535;  // grid y
    if ((L + length - 1) / length > max_chunks) length = round64((L + max_chunks - 1) / max_chunks);
    plan.time_parallel = true;
    plan.chunk_length = length;
    plan.chunks = (L + length - 1) / length;
  } else {
    plan.chunk_length = L;
  }
  return plan;
}

// The decision for the current device.
template <class In, class State>
selective_scan_plan plan_selective_scan(const selective_scan_params<In, State>& p) {
  int device = 0, sms = 0;
  MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return plan_selective_scan(p, sms);
}

namespace detail {

template <s6_pass Pass, class In, class State>
void run_pass(const selective_scan_params<In, State>& p, const selective_scan_plan& plan, const s6_chunks<State>& ch,
              index_t chunks, cudaStream_t stream) {
  if constexpr (!is_complex_v<State>) {
    if (plan.staged) {
      if (plan.states_per_lane == 2) return launch_staged<2, Pass>(p, ch, chunks, stream);
      return launch_staged<1, Pass>(p, ch, chunks, stream);
    }
  }
  const index_t n = p.state_size;
  if (n <= 4) launch_selective_scan<4, 1, Pass>(p, ch, chunks, stream);
  else if (n <= 8) launch_selective_scan<8, 1, Pass>(p, ch, chunks, stream);
  else if (n <= 16) launch_selective_scan<16, 1, Pass>(p, ch, chunks, stream);
  else if (n <= 32) launch_selective_scan<16, 2, Pass>(p, ch, chunks, stream);
  else if (n <= 64) launch_selective_scan<16, 4, Pass>(p, ch, chunks, stream);
  else launch_selective_scan<16, 8, Pass>(p, ch, chunks, stream);
}

}  // namespace detail

// Runs the forward pass; asynchronous on `stream` (the time-parallel path takes
// stream-ordered scratch memory). Throws mixlens::error for bad sizes or missing
// required pointers.
template <class In, class State>
void selective_scan_forward(const selective_scan_params<In, State>& p, cudaStream_t stream = nullptr) {
  const selective_scan_plan plan = plan_selective_scan(p);
  if (!plan.time_parallel) return detail::run_pass<detail::s6_pass::full>(p, plan, {}, 1, stream);
  const index_t total = p.batch * p.channels, N = p.state_size, chunks = plan.chunks;
  // Without a last state the final chunk needs no summary.
  const index_t summarized = p.last_state ? chunks : chunks - 1;
  const std::size_t carry_bytes = (static_cast<std::size_t>(chunks * total * N) * sizeof(State) + 15) / 16 * 16;
  detail::stream_workspace work(carry_bytes + static_cast<std::size_t>(chunks * total) * sizeof(double), stream);
  detail::s6_chunks<State> ch;
  ch.length = plan.chunk_length;
  ch.carry = static_cast<State*>(work.get());
  ch.dt_sum = reinterpret_cast<double*>(static_cast<char*>(work.get()) + carry_bytes);
  if (summarized > 0) detail::run_pass<detail::s6_pass::summary>(p, plan, ch, summarized, stream);
  constexpr int threads = 256;
  detail::s6_carry_kernel<<<detail::grid_size((total * N + threads - 1) / threads), threads, 0, stream>>>(
      p.a, ch, p.last_state, total, p.channels, N, chunks, summarized);
  MIXLENS_CUDA_CHECK_LAUNCH();
  detail::run_pass<detail::s6_pass::apply>(p, plan, ch, chunks, stream);
}

}  // namespace mixlens::gpu
