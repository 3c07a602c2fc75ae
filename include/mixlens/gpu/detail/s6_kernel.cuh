// Kernel level: the fused S6 selective-scan forward.
//
// Work split: P lanes per channel (lane = state n, S states per lane when
// N > P), channels of all batch elements side by side; each lane runs its
// state's recurrence sequentially in time, so no scan across threads is needed
// and the work stays exactly one exp per (batch, channel, step, state). Time
// advances in tiles of P steps: lane l loads step t0+l of u, Δ, z, fuses bias
// and softplus, and shares Δ and Δ·u through shared memory; every lane then
// accumulates its state's C·h for the P steps, and a reduce-scatter over the
// P lanes leaves lane l with y at step t0+l, which it finishes (D skip, gate) and
// stores.
//
// Time-parallel form (long sequences, few channels): the same kernel runs over
// one chunk of steps per blockIdx.y, either summarizing it (end state from zero
// and ΣΔ, no output) or applying it from a carried incoming state.
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/detail/numeric.cuh"
#include "mixlens/gpu/detail/warp_reduce.cuh"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu {

// Arguments of the fused forward. Layouts follow the reference Mamba kernel:
// signals (batch, D, L); A (D, N); B and C (batch, G, N, L), channel d reading
// group d / (D / G), or (D, N) when constant in time. Pointers are device memory;
// the optional ones are null when absent.
template <class Input, class State = float>
struct selective_scan_params {
  using input_type = Input;
  using state_type = State;
  // B and C: the input type for a real state, complex<float> for a complex one.
  using weight_type = std::conditional_t<detail::is_complex_v<State>, complex<float>, Input>;

  index_t batch = 0, channels = 0, length = 0, state_size = 0, groups = 1;
  const Input* u = nullptr;
  const Input* delta = nullptr;          // before bias and softplus
  const float* delta_bias = nullptr;     // (D) or null
  bool delta_softplus = false;
  const State* a = nullptr;              // (D, N), Re < 0
  const weight_type* b = nullptr;
  const weight_type* c = nullptr;
  bool b_constant = false, c_constant = false;
  const float* skip = nullptr;           // (D) or null: y += D·u
  const Input* z = nullptr;              // (batch, D, L) or null: y ⊙= gate
  bool z_silu = true;                    // gate = SiLU(z) as in Mamba; false: z itself
  Input* y = nullptr;                    // (batch, D, L)
  State* last_state = nullptr;           // (batch, D, N) or null: h at step L−1
  bool generic_only = false;             // skip the staged fast path (tests, benchmarks)
  int states_per_lane = 0;               // staged path: 1 or 2 states per lane; 0 chooses
  // Time-parallel path: 0 chooses, −1 never (one pass over time), > 0 forces
  // chunks of this many steps (rounded up to a multiple of 64).
  index_t chunk_length = 0;
};

namespace detail {

// full: the whole sequence from zero; summary: each chunk from zero, writing its
// end state and ΣΔ; apply: each chunk from its carried incoming state, writing y.
enum class s6_pass { full, summary, apply };

// Workspace of the time-parallel path. carry (chunks, batch·D, N): the summary
// pass writes chunk end states, the carry pass replaces them by incoming states.
template <class State>
struct s6_chunks {
  index_t length = 0;  // steps per chunk, a multiple of 64
  State* carry = nullptr;
  double* dt_sum = nullptr;  // (chunks, batch·D)
};

template <class State>
struct s6_math;

template <>
struct s6_math<float> {
  // a2 = A·log2 e, so exp(Δ·A) = 2^(Δ·a2).
  __device__ static float scale(float a) { return a * log2e; }
  __device__ static float decay(float a2, float dt) { return fast_exp2(dt * a2); }
  __device__ static float output(float c, float h) { return c * h; }
};

template <>
struct s6_math<complex<float>> {
  __device__ static complex<float> scale(complex<float> a) { return {a.real() * log2e, a.imag()}; }
  __device__ static complex<float> decay(complex<float> a2, float dt) {
    const float m = fast_exp2(dt * a2.real());
    float s, c;
    sincosf(dt * a2.imag(), &s, &c);
    return {m * c, m * s};
  }
  // The conjugate partner is implied: 2·Re(c·h).
  __device__ static float output(complex<float> c, complex<float> h) {
    return 2.0f * (c.real() * h.real() - c.imag() * h.imag());
  }
};

template <int P, int S, int Threads, int MinBlocks, s6_pass Pass, class In, class State>
__global__ void __launch_bounds__(Threads, MinBlocks)
    selective_scan_kernel(const selective_scan_params<In, State> p, const s6_chunks<State> chunks) {
  using W = typename selective_scan_params<In, State>::weight_type;
  using WV = std::conditional_t<is_complex_v<State>, complex<float>, float>;  // B, C in fp32
  using math = s6_math<State>;
  constexpr bool output = Pass != s6_pass::summary;
  constexpr int channels_per_block = Threads / P;
  __shared__ __align__(16) float s_dt[Threads];
  __shared__ __align__(16) float s_du[Threads];

  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid % P, group = tid - lane;
  const index_t D = p.channels, L = p.length, N = p.state_size;
  const index_t total = p.batch * D;
  index_t gc = static_cast<index_t>(blockIdx.x) * channels_per_block + tid / P;
  const bool valid = gc < total;
  if (!valid) gc = total - 1;  // idle groups still take part in the shuffles
  const index_t bi = gc / D, d = gc % D, g = d / (D / p.groups);
  const index_t row = gc * L;
  const index_t chunk = blockIdx.y;
  const index_t t_begin = Pass == s6_pass::full ? 0 : chunk * chunks.length;
  const index_t t_end = Pass == s6_pass::full || L - t_begin < chunks.length ? L : t_begin + chunks.length;
  State* carry = Pass == s6_pass::full ? nullptr : chunks.carry + (chunk * total + gc) * N;

  State a2[S], h[S];
  WV bconst[S], cconst[S];
  const W* brow[S];
  const W* crow[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const index_t n = lane + s * P;
    const bool live = n < N;
    a2[s] = live ? math::scale(p.a[d * N + n]) : State(0);
    h[s] = State(0);
    if constexpr (Pass == s6_pass::apply)
      if (live) h[s] = carry[n];
    const index_t bc = ((bi * p.groups + g) * N + (live ? n : 0)) * L;
    brow[s] = p.b + bc;
    crow[s] = p.c + bc;
    bconst[s] = WV(0);
    cconst[s] = WV(0);
    if (live && p.b_constant) bconst[s] = WV(p.b[d * N + n]);
    if (live && p.c_constant) cconst[s] = WV(p.c[d * N + n]);
    if (!live) brow[s] = crow[s] = nullptr;
  }
  const float bias = p.delta_bias ? p.delta_bias[d] : 0.0f;
  const float skip = p.skip ? p.skip[d] : 0.0f;
  double dt_part = 0;  // summary: this lane's share of ΣΔ over the chunk

  for (index_t t0 = t_begin; t0 < t_end; t0 += P) {
    const index_t t = t0 + lane;
    const bool in = t < t_end;
    const int valid_steps = t_end - t0 < P ? static_cast<int>(t_end - t0) : P;
    const float u = in ? to_float(p.u[row + t]) : 0.0f;
    float dt = in ? to_float(p.delta[row + t]) + bias : 0.0f;
    if (p.delta_softplus) dt = softplus(dt);
    if (!in) dt = 0.0f;  // a no-op step: decay 1, input 0
    if constexpr (!output) dt_part += dt;
    __syncwarp();
    s_dt[tid] = dt;
    s_du[tid] = dt * u;
    __syncwarp();
    float acc[P];
#pragma unroll
    for (int k = 0; k < P; ++k) acc[k] = 0.0f;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      WV bv[P], cv[P];
      if (p.b_constant || !brow[s]) {
#pragma unroll
        for (int k = 0; k < P; ++k) bv[k] = bconst[s];
      } else {
        load_run<P>(brow[s] + t0, valid_steps, bv);
      }
      if constexpr (output) {
        if (p.c_constant || !crow[s]) {
#pragma unroll
          for (int k = 0; k < P; ++k) cv[k] = cconst[s];
        } else {
          load_run<P>(crow[s] + t0, valid_steps, cv);
        }
      }
#pragma unroll
      for (int k0 = 0; k0 < P; k0 += 4) {  // Δ and Δ·u four steps per shared load
        const float4 dt4 = *reinterpret_cast<const float4*>(&s_dt[group + k0]);
        const float4 du4 = *reinterpret_cast<const float4*>(&s_du[group + k0]);
        const float dts[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, dus[4] = {du4.x, du4.y, du4.z, du4.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          h[s] = math::decay(a2[s], dts[k]) * h[s] + dus[k] * bv[k0 + k];
          if constexpr (output) acc[k0 + k] += math::output(cv[k0 + k], h[s]);
        }
      }
    }
    if constexpr (output) {
      float y = group_reduce_scatter<P>(acc, lane);
      y += skip * u;
      if (p.z && in) {
        const float z = to_float(p.z[row + t]);
        y *= p.z_silu ? silu(z) : z;
      }
      if (valid && in) p.y[row + t] = from_float<In>(y);
    }
  }
  if constexpr (Pass == s6_pass::summary) {
#pragma unroll
    for (int m = P / 2; m > 0; m /= 2) dt_part += __shfl_xor_sync(full_mask, dt_part, m);
    if (valid) {
#pragma unroll
      for (int s = 0; s < S; ++s)
        if (lane + s * P < N) carry[lane + s * P] = h[s];
      if (lane == 0) chunks.dt_sum[chunk * total + gc] = dt_part;
    }
  }
  if (Pass == s6_pass::full && p.last_state && valid) {
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (lane + s * P < N) p.last_state[gc * N + lane + s * P] = h[s];
  }
}

// The carry pass: per (batch, channel, state), the incoming state of every
// chunk by the affine recurrence over chunks, h_in(c+1) = exp(A·ΣΔ_c)·h_in(c) +
// h_end(c), in double; the final state goes to last_state. Chunks at or past
// `summarized` have no summary (the last one when no last state is asked).
template <class State>
__global__ void s6_carry_kernel(const State* a, s6_chunks<State> chunks, State* last_state, index_t total, index_t D,
                                index_t N, index_t count, index_t summarized) {
  using SD = std::conditional_t<is_complex_v<State>, complex<double>, double>;
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total * N) return;
  const index_t gc = i / N, n = i % N, d = gc % D;
  const State an = a[d * N + n];
  SD h(0);
  for (index_t c = 0; c < count; ++c) {
    State* slot = chunks.carry + c * total * N + i;
    const State local = c < summarized ? *slot : State(0);
    *slot = State(h);
    if (c < summarized) {
      const double sum = chunks.dt_sum[c * total + gc];
      if constexpr (is_complex_v<State>) {
        const double m = exp(double(an.real()) * sum);
        double sn, cs;
        sincos(double(an.imag()) * sum, &sn, &cs);
        h = SD(m * cs, m * sn) * h + SD(local.real(), local.imag());
      } else {
        h = exp(double(an) * sum) * h + double(local);
      }
    }
  }
  if (last_state) last_state[i] = State(h);
}

}  // namespace detail
}  // namespace mixlens::gpu
