// Kernel level: the fused S6 selective-scan backward, in two work splits: the
// register form (further below; N ≤ 16, the default there) and the 16-lane
// kernel (N ≤ 32), described first.
//
// Work split as in the forward: 16 lanes per channel (lane = state n, S states
// per lane when N > 16), and a block of 8 channels of one (batch, group), so
// that B and C are loaded once per block and ∂B, ∂C are summed over the
// block's channels before they reach global memory. Time is cut into tiles of
// T steps (backward_shape). One kernel, two passes over time:
//
//   1. forward sweep over tiles 0..K−2: the recurrence alone (no C·h, no
//      output), writing the state entering every tile (a checkpoint) to a
//      global workspace; the same thread reads it back in pass 2.
//   2. tiles in reverse order: the tile's states are recomputed from its
//      checkpoint into shared memory, with y (before the gate, for ∂z); then
//      the adjoint recurrence runs backwards over the tile,
//        x_t = exp(Δ_{t+1}A)·x_{t+1} + C_t·g_t,  g_t = dout_t·gate(z_t),
//      x carried in registers from tile to tile. With q_t = x_t·exp(Δ_t A)·h_{t−1}:
//        ∂Δ_t = Σ_n A_n q_t,n + u_t Σ_n x_t,n B_t,n   (then × softplus′)
//        ∂u_t = Δ_t Σ_n x_t,n B_t,n + D·g_t
//        ∂A_n = Σ_t Δ_t q_t,n,  ∂B_t,n = Σ_d x_t,n Δ_t u_t,  ∂C_t,n = Σ_d g_t h_t,n.
//      The per-step sums over states go through the forward's reduce-scatter
//      (lane l ends with step l of a 16-step run); ∂B and ∂C are combined over
//      the two channels of a warp by one shuffle, over the four warps in shared
//      memory, and added with one atomicAdd per block per (group, state, step).
//      ∂A, ∂D, ∂Δ-bias are register sums, one atomicAdd per lane or channel.
//
// Time-parallel form (long sequences, few channels): blockIdx.y is a chunk of
// whole tiles; the chunk starts from the forward's carried state (the
// forward's summary and carry passes) and from the adjoint arriving from the
// chunks to its right (s6_adjoint_summary_kernel, s6_adjoint_carry_kernel).
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/detail/numeric.cuh"
#include "mixlens/gpu/detail/shuffle.cuh"
#include "mixlens/gpu/detail/warp_reduce.cuh"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu {

// Arguments of the fused backward: the forward's inputs with its conventions
// (selective_scan_params: signals (batch, D, L), A (D, N) real, B and C
// (batch, G, N, L) varying in time), the output gradient, and the gradients.
// Pointers are device memory.
template <class Input>
struct selective_scan_backward_params {
  using input_type = Input;

  index_t batch = 0, channels = 0, length = 0, state_size = 0, groups = 1;
  // Forward inputs.
  const Input* u = nullptr;
  const Input* delta = nullptr;       // before bias and softplus
  const float* delta_bias = nullptr;  // (D) or null
  bool delta_softplus = false;
  const float* a = nullptr;           // (D, N)
  const Input* b = nullptr;           // (batch, G, N, L)
  const Input* c = nullptr;           // (batch, G, N, L)
  const float* skip = nullptr;        // (D) or null
  const Input* z = nullptr;           // (batch, D, L) or null
  bool z_silu = true;                 // gate = SiLU(z); false: z itself
  // ∂loss/∂y, y the forward's output (after the gate).
  const Input* dout = nullptr;        // (batch, D, L)
  // Gradients; all are overwritten. ∂Δ is with respect to the raw Δ input
  // (before bias and softplus). ∂B, ∂C, ∂A, ∂D, ∂Δ-bias are sums (over the
  // channels of a group, over batch and time) accumulated in fp32 with atomics,
  // so their last bits depend on the order of the additions.
  Input* du = nullptr;                // (batch, D, L)
  Input* ddelta = nullptr;            // (batch, D, L)
  Input* dz = nullptr;                // (batch, D, L); required when z is given
  float* db = nullptr;                // (batch, G, N, L)
  float* dc = nullptr;                // (batch, G, N, L)
  float* da = nullptr;                // (D, N) or null: not computed
  float* dskip = nullptr;             // (D) or null: not computed
  float* ddelta_bias = nullptr;       // (D) or null: not computed
  // Time-parallel path: 0 chooses, −1 never (one pass over time), > 0 forces
  // chunks of this many steps (rounded up to a multiple of 64).
  index_t chunk_length = 0;
  // The work split for N ≤ 16 (plan_selective_scan_backward): 0 chooses; 1 one
  // state per thread (16 lanes per channel); 2 or 4 that many consecutive states
  // per thread (the register form). N > 16 always takes two states per lane.
  int states_per_thread = 0;
};

namespace detail {

// S states per lane: 16·S padded states per channel, tiles of T steps (shared
// memory near 34–39 KB per block: the tile's states take 128·S·T floats).
template <int S>
struct backward_shape {
  static constexpr int lanes = 16, channels = 8, threads = 128, states = 16 * S, steps = S == 1 ? 32 : 16;
};

// The time split: chunks of `tiles` whole tiles (0: one chunk, the whole
// sequence); per (chunk, batch·D, N), the state entering the chunk and the
// adjoint arriving from its right (exp(Δ_{t+1}A)·x_{t+1} at its last step t).
struct s6_backward_chunks {
  index_t tiles = 0;
  const float* h_in = nullptr;
  const float* x_in = nullptr;
};

// One step's inputs as both kernels keep them in shared memory: Δ (after bias
// and softplus), Δ·u, softplus′ at Δ (1 without softplus), g = dout·gate(z)
// (∂y before the gate) and dout·gate′(z) (∂z = y·that). Outside the sequence
// or the block's channels (`inside` false) every value is that of a no-op step
// (callers read `bias` only for channels inside the block).
struct backward_step {
  float dt = 0.0f, du = 0.0f, sig = 1.0f, g = 0.0f, gz = 0.0f;
};
template <class In>
__device__ __forceinline__ backward_step prepare_step(const selective_scan_backward_params<In>& p, bool inside,
                                                      float raw_delta, float bias, float u, float dout, float z) {
  backward_step r;
  if (!inside) return r;
  const float raw = raw_delta + bias;
  r.dt = raw;
  if (p.delta_softplus) {
    r.dt = softplus(raw);
    r.sig = raw <= 20.0f ? 1.0f / (1.0f + expf(-raw)) : 1.0f;  // the derivative of softplus as defined
  }
  r.du = r.dt * u;
  if (!p.z) {
    r.g = dout;
  } else if (p.z_silu) {
    const float sg = 1.0f / (1.0f + expf(-z));
    r.g = dout * z * sg;
    r.gz = dout * sg * (1.0f + z * (1.0f - sg));
  } else {
    r.g = dout * z;
    r.gz = dout;
  }
  return r;
}

template <class In, int S>
__global__ void __launch_bounds__(128, S == 1 ? 6 : 4)
    selective_scan_backward_kernel(const selective_scan_backward_params<In> p, float* const checkpoints,
                                   const s6_backward_chunks chunks) {
  using shape = backward_shape<S>;
  constexpr int P = shape::lanes, C = shape::channels, NS = shape::states, T = shape::steps, R = 16;
  constexpr int W = shape::threads / 32;  // warps; each holds two channels
  static_assert(T % R == 0 && shape::threads == C * P);
  // B, C rows padded by one: lanes read one column of many rows (distinct
  // banks). Channel rows padded by four: Δ and Δ·u rows stay 16-byte aligned
  // for the forward steps' float4 reads (a broadcast to the channel's lanes).
  constexpr int TP = T + 4;
  static_assert(TP % 4 == 0 && T % 4 == 0);  // float4 reads of channel rows
  __shared__ float s_b[NS][T + 1], s_c[NS][T + 1];
  __shared__ __align__(16) float s_dt[C][TP];
  __shared__ __align__(16) float s_du[C][TP];
  __shared__ float s_g[C][TP];  // g = dout·gate(z): ∂y before the gate
  __shared__ float s_u[C][TP];
  __shared__ float s_sig[C][TP];  // softplus′ of Δ + bias (1 without softplus)
  __shared__ float s_gz[C][TP];   // dout·gate′(z): ∂z = y·s_gz
  __shared__ float s_h[T][S][shape::threads];
  __shared__ float s_red[2][W][R][NS];  // ∂B, ∂C of a 16-step run, per warp (two channels)

  const int tid = static_cast<int>(threadIdx.x), lane = tid % P, ch = tid / P, warp = tid / 32;
  const index_t D = p.channels, L = p.length, N = p.state_size, G = p.groups, Dg = D / G;
  const index_t per_group = (Dg + C - 1) / C;  // blocks per (batch, group)
  const index_t blk = blockIdx.x;
  const index_t bg = blk / per_group;  // bi·G + g
  const index_t bi = bg / G;
  const index_t first = (blk % per_group) * C;  // first channel of the block within its group
  const index_t d0 = (bg % G) * Dg + first;
  const index_t present = Dg - first < C ? Dg - first : C;
  const bool valid = ch < present;
  // Absent channels (a group's last block) read channel d0's parameters, see
  // only zeros (Δ = 0, g = 0), contribute zeros and store nothing.
  const index_t d = valid ? d0 + ch : d0;
  const index_t row = (bi * D + d) * L;
  const index_t K = (L + T - 1) / T;
  const index_t chunk = blockIdx.y;
  const index_t k_begin = chunks.tiles > 0 ? chunk * chunks.tiles : 0;
  const index_t k_end = chunks.tiles > 0 && K - k_begin > chunks.tiles ? k_begin + chunks.tiles : K;
  const index_t slot = (chunk * (p.batch * D) + bi * D + d) * N;  // this channel's carries of the chunk
  float* const ck = checkpoints + (bi * D + d) * K * NS;
  const In* const bgp = p.b + bg * N * L;
  const In* const cgp = p.c + bg * N * L;
  float* const dbg = p.db + bg * N * L;
  float* const dcg = p.dc + bg * N * L;

  float a[S], a2[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const index_t n = lane + s * P;
    a[s] = n < N ? p.a[d * N + n] : 0.0f;  // padded states: A = 0, B = C = 0, so h = x = 0
    a2[s] = a[s] * log2e;
  }
  const float skip = p.skip ? p.skip[d] : 0.0f;
  // Steps j0..j0+3 (j0 a multiple of 4) of this channel's row.
  const auto four = [&](const float (*rows)[TP], int j0, float (&out)[4]) {
    const float4 v = *reinterpret_cast<const float4*>(&rows[ch][j0]);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  };

  // Tile loads: B (and C) rows of the group, zero past L and past N.
  const auto load_bc = [&](index_t t0, bool with_c) {
    for (int i = tid; i < NS * T; i += shape::threads) {
      const int n = i / T, j = i % T;
      const bool in = n < N && t0 + j < L;
      const index_t off = n * L + t0 + j;
      s_b[n][j] = in ? to_float(bgp[off]) : 0.0f;
      if (with_c) s_c[n][j] = in ? to_float(cgp[off]) : 0.0f;
    }
  };
  // The channels' signals; past L and in absent channels Δ = u = g = 0 (a
  // no-op step: decay 1, no input, no adjoint source).
  const auto load_signals = [&](index_t t0, bool all) {
    for (int i = tid; i < C * T; i += shape::threads) {
      const int cc = i / T, j = i % T;
      const index_t t = t0 + j;
      const bool in = cc < present && t < L;
      const index_t off = (bi * D + d0 + cc) * L + t;
      const float u = in ? to_float(p.u[off]) : 0.0f;
      const backward_step st =
          prepare_step(p, in, in ? to_float(p.delta[off]) : 0.0f, in && p.delta_bias ? p.delta_bias[d0 + cc] : 0.0f, u,
                       in && all ? to_float(p.dout[off]) : 0.0f, in && all && p.z ? to_float(p.z[off]) : 0.0f);
      s_dt[cc][j] = st.dt;
      s_du[cc][j] = st.du;
      if (all) {
        s_u[cc][j] = u;
        s_sig[cc][j] = st.sig;
        s_g[cc][j] = st.g;
        s_gz[cc][j] = st.gz;
      }
    }
  };

  // ---- pass 1: checkpoints -------------------------------------------------
  float h[S], h_start[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const index_t n = lane + s * P;
    h_start[s] = chunk > 0 && valid && n < N ? chunks.h_in[slot + n] : 0.0f;
    h[s] = h_start[s];
  }
  for (index_t k = k_begin; k + 1 < k_end; ++k) {
    const index_t t0 = k * T;
    __syncthreads();  // the previous tile is no longer read
    load_bc(t0, false);
    load_signals(t0, false);
    __syncthreads();
#pragma unroll
    for (int j0 = 0; j0 < T; j0 += 4) {
      float dt[4], du[4];
      four(s_dt, j0, dt);
      four(s_du, j0, du);
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int s = 0; s < S; ++s) h[s] = fast_exp2(dt[q] * a2[s]) * h[s] + du[q] * s_b[lane + s * P][j0 + q];
    }
    if (valid) {
#pragma unroll
      for (int s = 0; s < S; ++s) ck[(k + 1) * NS + lane + s * P] = h[s];
    }
  }

  // ---- pass 2: tiles in reverse ---------------------------------------------
  float x[S], decay_next[S], da[S];
  const bool last_chunk = chunk + 1 == static_cast<index_t>(gridDim.y);
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const index_t n = lane + s * P;
    x[s] = !last_chunk && valid && n < N ? chunks.x_in[slot + n] : 0.0f;  // decay already applied
    decay_next[s] = 1.0f;
    da[s] = 0.0f;
  }
  float dskip_part = 0.0f, dbias_part = 0.0f;  // this lane's steps of its channel
  for (index_t k = k_end - 1; k >= k_begin; --k) {
    const index_t t0 = k * T;
    __syncthreads();
    load_bc(t0, true);
    load_signals(t0, true);
    float h_in[S];
#pragma unroll
    for (int s = 0; s < S; ++s) h_in[s] = k > k_begin && valid ? ck[k * NS + lane + s * P] : h_start[s];
    __syncthreads();

    // Recompute the tile's states (each thread keeps its own column of s_h)
    // and y at step sub + lane, for ∂z and ∂D.
#pragma unroll
    for (int s = 0; s < S; ++s) h[s] = h_in[s];
#pragma unroll 1
    for (int sub = 0; sub < T; sub += R) {
      float acc[R], dt4[4], du4[4];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int j = sub + r;
        if (r % 4 == 0) four(s_dt, j, dt4), four(s_du, j, du4);
        const float dt = dt4[r % 4], du = du4[r % 4];
        acc[r] = 0.0f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const int n = lane + s * P;
          h[s] = fast_exp2(dt * a2[s]) * h[s] + du * s_b[n][j];
          s_h[j][s][tid] = h[s];
          acc[r] += s_c[n][j] * h[s];
        }
      }
      const float y0 = group_reduce_scatter<R>(acc, lane);
      const int j = sub + lane;
      const index_t t = t0 + j;
      if (valid && t < L) {
        const float y = y0 + skip * s_u[ch][j];
        if (p.z) p.dz[row + t] = from_float<In>(y * s_gz[ch][j]);
        dskip_part += s_g[ch][j] * s_u[ch][j];
      }
    }

    // The adjoint backwards over the tile.
    float h_cur[S];
#pragma unroll
    for (int s = 0; s < S; ++s) h_cur[s] = s_h[T - 1][s][tid];
#pragma unroll 1
    for (int sub = T - R; sub >= 0; sub -= R) {
      float acc_q[R], acc_xb[R];  // per step: Σ_n A·q and Σ_n x·B over this lane's states
#pragma unroll
      for (int r = R - 1; r >= 0; --r) {
        const int j = sub + r;
        const float dt = s_dt[ch][j], du = s_du[ch][j], g = s_g[ch][j];
        acc_q[r] = 0.0f;
        acc_xb[r] = 0.0f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const int n = lane + s * P;
          const float h_prev = j > 0 ? s_h[j > 0 ? j - 1 : 0][s][tid] : h_in[s];  // no read before the array
          x[s] = decay_next[s] * x[s] + s_c[n][j] * g;
          const float decay = fast_exp2(dt * a2[s]);
          const float q = x[s] * decay * h_prev;
          acc_q[r] += a[s] * q;
          acc_xb[r] += x[s] * s_b[n][j];
          da[s] += dt * q;
          float vb = x[s] * du, vc = g * h_cur[s];
          vb += __shfl_xor_sync(full_mask, vb, 16);  // the warp's other channel
          vc += __shfl_xor_sync(full_mask, vc, 16);
          // Both halves of the warp hold the same sums (a + b = b + a) and store
          // them to the same word: no branch.
          s_red[0][warp][r][n] = vb;
          s_red[1][warp][r][n] = vc;
          decay_next[s] = decay;
          h_cur[s] = h_prev;
        }
      }
      const float sq = group_reduce_scatter<R>(acc_q, lane);
      const float sxb = group_reduce_scatter<R>(acc_xb, lane);
      {
        const int j = sub + lane;
        const index_t t = t0 + j;
        if (valid && t < L) {
          const float g = s_g[ch][j];
          const float ddt = (sq + s_u[ch][j] * sxb) * s_sig[ch][j];
          p.du[row + t] = from_float<In>(s_dt[ch][j] * sxb + skip * g);
          p.ddelta[row + t] = from_float<In>(ddt);
          dbias_part += ddt;
        }
      }
      __syncthreads();  // s_red complete
      for (int i = tid; i < 2 * R * NS; i += shape::threads) {
        const int which = i / (R * NS), r = (i / NS) % R, n = i % NS;
        const index_t t = t0 + sub + r;
        if (n < N && t < L) {
          float v = 0.0f;
#pragma unroll
          for (int w = 0; w < W; ++w) v += s_red[which][w][r][n];
          atomicAdd((which == 0 ? dbg : dcg) + n * L + t, v);
        }
      }
      __syncthreads();  // s_red is rewritten by the next run
    }
  }

  if (valid && p.da) {
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (lane + s * P < N) atomicAdd(&p.da[d * N + lane + s * P], da[s]);
  }
#pragma unroll
  for (int m = P / 2; m > 0; m /= 2) {
    dskip_part += __shfl_xor_sync(full_mask, dskip_part, m);
    dbias_part += __shfl_xor_sync(full_mask, dbias_part, m);
  }
  if (valid && lane == 0) {
    if (p.dskip) atomicAdd(&p.dskip[d], dskip_part);
    if (p.ddelta_bias) atomicAdd(&p.ddelta_bias[d], dbias_part);
  }
}

// ---- the register form (N ≤ 16): Q states per thread -------------------------
//
// The same two passes with another work split: a thread holds Q consecutive
// states of one channel (16 / Q lanes per channel, 128 / (16 / Q) channels per
// block), so that most of each step's sums over states are register additions
// and B, C, the states and the ∂B, ∂C terms move between registers and shared
// memory as Q-float vectors. On the H200 it issues a third fewer instructions
// per step and state than the 16-lane kernel above (whose sums over states and
// over the block's channels dominate its count); each tile's inputs are fetched
// into registers one tile ahead, which hides the loads the fewer resident warps
// would otherwise wait on (bench/README.md). What changes:
//   - the per-step sums over states: Q in registers, then a reduce-scatter over
//     the 16 / Q lanes of the channel (lane l ends with step l of the run);
//   - ∂B, ∂C: each thread stores its Q terms per step into shared memory, and
//     every RUN steps the block sums them over its channels and adds them to
//     global memory (one atomicAdd per block, state and step).
// Shared memory is dynamic (above the 48 KB of static arrays).
template <int Q>
struct backward_register_shape {
  static_assert(Q == 2 || Q == 4);
  static constexpr int states = 16, lanes = 16 / Q, threads = 128, channels = threads / lanes;
  static constexpr int steps = Q == 2 ? 32 : 16;  // T: a tile, and the checkpoint interval
  static constexpr int run = 8;                    // steps per ∂B, ∂C sum over the block's channels
  static constexpr int bc_stride = 36;             // B, C rows (time-major): (B, C) pairs of 16 states, aligned
  static constexpr int row = steps + 4;            // channel rows: float4-aligned
  // ∂B, ∂C terms: [2][run][channels][16], each (kind, step) block padded by 16
  // floats so that the two halves of a warp summing adjacent blocks hit other banks.
  static constexpr int red_block = channels * 16 + 16;
  static constexpr std::size_t floats = std::size_t(steps) * bc_stride + std::size_t(6) * channels * row +
                                        std::size_t(steps) * threads * Q + std::size_t(2) * run * red_block;
  static constexpr std::size_t bytes = floats * sizeof(float);
};

template <int Q>
struct float_vector;
template <>
struct float_vector<2> {
  using type = float2;
};
template <>
struct float_vector<4> {
  using type = float4;
};

// Q consecutive floats of shared memory (16-byte aligned for Q = 4, 8 for Q = 2).
template <int Q>
__device__ __forceinline__ void load_vector(const float* from, float (&out)[Q]) {
  const auto v = *reinterpret_cast<const typename float_vector<Q>::type*>(from);
  if constexpr (Q == 2) out[0] = v.x, out[1] = v.y;
  else out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
template <int Q>
__device__ __forceinline__ void store_vector(float* to, const float (&in)[Q]) {
  using V = typename float_vector<Q>::type;
  if constexpr (Q == 2) *reinterpret_cast<V*>(to) = V{in[0], in[1]};
  else *reinterpret_cast<V*>(to) = V{in[0], in[1], in[2], in[3]};
}

// B and C of Q consecutive states, stored as (B, C) pairs: one or two float4.
template <int Q>
__device__ __forceinline__ void load_bc_pairs(const float* from, float (&b)[Q], float (&c)[Q]) {
#pragma unroll
  for (int h = 0; h < Q / 2; ++h) {
    const float4 v = *reinterpret_cast<const float4*>(from + 4 * h);
    b[2 * h] = v.x, c[2 * h] = v.y, b[2 * h + 1] = v.z, c[2 * h + 1] = v.w;
  }
}

template <class In, int Q>
__global__ void __launch_bounds__(128)
    selective_scan_backward_register_kernel(const selective_scan_backward_params<In> p, float* const checkpoints,
                                            const s6_backward_chunks chunks) {
  using shape = backward_register_shape<Q>;
  constexpr int P = shape::lanes, C = shape::channels, T = shape::steps, RUN = shape::run, BS = shape::bc_stride,
                TP = shape::row, NS = shape::states, RB = shape::red_block, threads = shape::threads;
  static_assert(T % RUN == 0 && RUN % P == 0 && P % 4 == 0 && T % 4 == 0);
  extern __shared__ float4 smem4[];
  float* const smem = reinterpret_cast<float*>(smem4);
  float* const s_bc = smem;                // [T][BS]: (B, C) of state n at 2n, 2n + 1
  float* const s_dt = s_bc + T * BS;       // [C][TP] each
  float* const s_du = s_dt + C * TP;
  float* const s_g = s_du + C * TP;        // g = dout·gate(z): ∂y before the gate
  float* const s_u = s_g + C * TP;
  float* const s_sig = s_u + C * TP;       // softplus′ of Δ + bias (1 without softplus)
  float* const s_gz = s_sig + C * TP;      // dout·gate′(z): ∂z = y·s_gz
  float* const s_h = s_gz + C * TP;        // [T][threads][Q]: each thread's states of the tile
  float* const s_red = s_h + T * threads * Q;  // [2][RUN] blocks of [C][16] (+ 16 padding)

  const int tid = static_cast<int>(threadIdx.x), lane = tid % P, ch = tid / P, n0 = lane * Q;
  const index_t D = p.channels, L = p.length, N = p.state_size, G = p.groups, Dg = D / G;
  const index_t per_group = (Dg + C - 1) / C;  // blocks per (batch, group)
  const index_t blk = blockIdx.x;
  const index_t bg = blk / per_group;  // bi·G + g
  const index_t bi = bg / G;
  const index_t first = (blk % per_group) * C;
  const index_t d0 = (bg % G) * Dg + first;
  const index_t present = Dg - first < C ? Dg - first : C;
  const bool valid = ch < present;
  // Absent channels read channel d0's parameters, see Δ = 0 and g = 0, add zeros.
  const index_t d = valid ? d0 + ch : d0;
  const index_t row = (bi * D + d) * L;
  const index_t K = (L + T - 1) / T;
  const index_t chunk = blockIdx.y;
  const index_t k_begin = chunks.tiles > 0 ? chunk * chunks.tiles : 0;
  const index_t k_end = chunks.tiles > 0 && K - k_begin > chunks.tiles ? k_begin + chunks.tiles : K;
  const index_t slot = (chunk * (p.batch * D) + bi * D + d) * N;
  float* const ck = checkpoints + (bi * D + d) * K * NS;
  const In* const bgp = p.b + bg * N * L;
  const In* const cgp = p.c + bg * N * L;
  float* const dbg = p.db + bg * N * L;
  float* const dcg = p.dc + bg * N * L;

  float a[Q], a2[Q];
#pragma unroll
  for (int s = 0; s < Q; ++s) {
    const index_t n = n0 + s;
    a[s] = n < N ? p.a[d * N + n] : 0.0f;  // padded states: A = 0, B = C = 0, so h = x = 0
    a2[s] = a[s] * log2e;
  }
  const float skip = p.skip ? p.skip[d] : 0.0f;
  const float* const my_dt = s_dt + ch * TP;
  const float* const my_du = s_du + ch * TP;
  const float* const my_g = s_g + ch * TP;
  const auto four = [](const float* from, float (&out)[4]) {
    const float4 v = *reinterpret_cast<const float4*>(from);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  };

  // A tile's inputs, fetched into registers one tile ahead of their use (the
  // loads are in flight while the previous tile computes), then put into shared
  // memory: B and C rows (16·T values), the channels' u, Δ, dout, z (C·T).
  constexpr int per_bc = NS * T / threads, per_signal = C * T / threads;
  static_assert(NS * T % threads == 0 && C * T % threads == 0);
  struct tile_inputs {
    float b[per_bc], c[per_bc], u[per_signal], delta[per_signal], dout[per_signal], z[per_signal];
  };
  const auto fetch = [&](index_t t0, bool all, tile_inputs& in) {
#pragma unroll
    for (int e = 0; e < per_bc; ++e) {
      const int i = tid + e * threads, n = i / T, j = i % T;
      const bool inside = n < N && t0 + j < L;
      const index_t off = n * L + t0 + j;
      in.b[e] = inside ? to_float(bgp[off]) : 0.0f;
      in.c[e] = inside && all ? to_float(cgp[off]) : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < per_signal; ++e) {
      const int i = tid + e * threads, cc = i / T, j = i % T;
      const bool inside = cc < present && t0 + j < L;
      const index_t off = (bi * D + d0 + cc) * L + t0 + j;
      in.u[e] = inside ? to_float(p.u[off]) : 0.0f;
      in.delta[e] = inside ? to_float(p.delta[off]) : 0.0f;
      in.dout[e] = inside && all ? to_float(p.dout[off]) : 0.0f;
      in.z[e] = inside && all && p.z ? to_float(p.z[off]) : 0.0f;
    }
  };
  // Past L and in absent channels Δ = u = g = 0: a no-op step (decay 1, no
  // input, no adjoint source).
  const auto put = [&](index_t t0, bool all, const tile_inputs& in) {
#pragma unroll
    for (int e = 0; e < per_bc; ++e) {
      const int i = tid + e * threads, n = i / T, j = i % T;
      s_bc[j * BS + 2 * n] = in.b[e];
      if (all) s_bc[j * BS + 2 * n + 1] = in.c[e];
    }
#pragma unroll
    for (int e = 0; e < per_signal; ++e) {
      const int i = tid + e * threads, cc = i / T, j = i % T;
      const bool inside = cc < present && t0 + j < L;
      const backward_step st = prepare_step(p, inside, in.delta[e], inside && p.delta_bias ? p.delta_bias[d0 + cc] : 0.0f,
                                            in.u[e], in.dout[e], in.z[e]);
      s_dt[cc * TP + j] = st.dt;
      s_du[cc * TP + j] = st.du;
      if (all) {
        s_u[cc * TP + j] = in.u[e];
        s_sig[cc * TP + j] = st.sig;
        s_g[cc * TP + j] = st.g;
        s_gz[cc * TP + j] = st.gz;
      }
    }
  };

  // ---- pass 1: checkpoints -------------------------------------------------
  float h[Q], h_start[Q];
#pragma unroll
  for (int s = 0; s < Q; ++s) {
    const index_t n = n0 + s;
    h_start[s] = chunk > 0 && valid && n < N ? chunks.h_in[slot + n] : 0.0f;
    h[s] = h_start[s];
  }
  tile_inputs next;
  if (k_begin + 1 < k_end) fetch(k_begin * T, false, next);
  for (index_t k = k_begin; k + 1 < k_end; ++k) {
    const index_t t0 = k * T;
    __syncthreads();
    put(t0, false, next);
    __syncthreads();
    if (k + 2 < k_end) fetch(t0 + T, false, next);
#pragma unroll
    for (int j0 = 0; j0 < T; j0 += 4) {
      float dt[4], du[4];
      four(my_dt + j0, dt);
      four(my_du + j0, du);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float b[Q], c[Q];  // (C unused here)
        load_bc_pairs<Q>(s_bc + (j0 + q) * BS + 2 * n0, b, c);
#pragma unroll
        for (int s = 0; s < Q; ++s) h[s] = fast_exp2(dt[q] * a2[s]) * h[s] + du[q] * b[s];
      }
    }
    if (valid) {
#pragma unroll
      for (int s = 0; s < Q; ++s)
        if (n0 + s < N) ck[(k + 1) * NS + n0 + s] = h[s];
    }
  }

  // ---- pass 2: tiles in reverse ---------------------------------------------
  float x[Q], decay_next[Q], da[Q];
  const bool last_chunk = chunk + 1 == static_cast<index_t>(gridDim.y);
#pragma unroll
  for (int s = 0; s < Q; ++s) {
    const index_t n = n0 + s;
    x[s] = !last_chunk && valid && n < N ? chunks.x_in[slot + n] : 0.0f;  // decay already applied
    decay_next[s] = 1.0f;
    da[s] = 0.0f;
  }
  float dskip_part = 0.0f, dbias_part = 0.0f;
  // The tile's entering state: its checkpoint (fetched with the tile's inputs).
  const auto entering = [&](index_t k, float (&out)[Q]) {
#pragma unroll
    for (int s = 0; s < Q; ++s)
      out[s] = k > k_begin && valid && n0 + s < N ? ck[k * NS + n0 + s] : (k > k_begin ? 0.0f : h_start[s]);
  };
  float h_next[Q];
  fetch((k_end - 1) * T, true, next);
  entering(k_end - 1, h_next);
  for (index_t k = k_end - 1; k >= k_begin; --k) {
    const index_t t0 = k * T;
    __syncthreads();
    put(t0, true, next);
    float h_in[Q];
#pragma unroll
    for (int s = 0; s < Q; ++s) h_in[s] = h_next[s];
    __syncthreads();
    if (k > k_begin) fetch(t0 - T, true, next), entering(k - 1, h_next);

    // Recompute the tile's states into s_h, and y at step sub + lane (∂z, ∂D).
#pragma unroll
    for (int s = 0; s < Q; ++s) h[s] = h_in[s];
#pragma unroll 1
    for (int sub = 0; sub < T; sub += P) {
      float acc[P], dt4[4], du4[4];
#pragma unroll
      for (int r = 0; r < P; ++r) {
        const int j = sub + r;
        if (r % 4 == 0) four(my_dt + j, dt4), four(my_du + j, du4);
        float b[Q], c[Q];
        load_bc_pairs<Q>(s_bc + j * BS + 2 * n0, b, c);
        acc[r] = 0.0f;
#pragma unroll
        for (int s = 0; s < Q; ++s) {
          h[s] = fast_exp2(dt4[r % 4] * a2[s]) * h[s] + du4[r % 4] * b[s];
          acc[r] += c[s] * h[s];
        }
        store_vector<Q>(s_h + (j * threads + tid) * Q, h);
      }
      const float y0 = group_reduce_scatter<P>(acc, lane);
      const int j = sub + lane;
      const index_t t = t0 + j;
      if (valid && t < L) {
        const float y = y0 + skip * s_u[ch * TP + j];
        if (p.z) p.dz[row + t] = from_float<In>(y * s_gz[ch * TP + j]);
        dskip_part += s_g[ch * TP + j] * s_u[ch * TP + j];
      }
    }

    // The adjoint backwards over the tile, RUN steps at a time.
    float h_cur[Q];
    load_vector<Q>(s_h + ((T - 1) * threads + tid) * Q, h_cur);
#pragma unroll 1
    for (int sub = T - RUN; sub >= 0; sub -= RUN) {
#pragma unroll
      for (int sp = RUN - P; sp >= 0; sp -= P) {
        float acc_q[P], acc_xb[P];  // per step: Σ A·q and Σ x·B over this thread's states
        float dt4[4], du4[4], g4[4];
#pragma unroll
        for (int r = P - 1; r >= 0; --r) {
          const int j = sub + sp + r;
          if (r % 4 == 3) four(my_dt + j - 3, dt4), four(my_du + j - 3, du4), four(my_g + j - 3, g4);
          const float dt = dt4[r % 4], du = du4[r % 4], g = g4[r % 4];
          float b[Q], c[Q], h_prev[Q], vb[Q], vc[Q];
          load_bc_pairs<Q>(s_bc + j * BS + 2 * n0, b, c);
          if (j > 0) load_vector<Q>(s_h + ((j - 1) * threads + tid) * Q, h_prev);
          else
#pragma unroll
            for (int s = 0; s < Q; ++s) h_prev[s] = h_in[s];
          acc_q[r] = 0.0f;
          acc_xb[r] = 0.0f;
#pragma unroll
          for (int s = 0; s < Q; ++s) {
            x[s] = decay_next[s] * x[s] + c[s] * g;
            const float decay = fast_exp2(dt * a2[s]);
            const float q = x[s] * decay * h_prev[s];
            acc_q[r] += a[s] * q;
            acc_xb[r] += x[s] * b[s];
            da[s] += dt * q;
            vb[s] = x[s] * du;
            vc[s] = g * h_cur[s];
            decay_next[s] = decay;
            h_cur[s] = h_prev[s];
          }
          const int rr = sp + r;
          store_vector<Q>(s_red + rr * RB + ch * 16 + n0, vb);
          store_vector<Q>(s_red + (RUN + rr) * RB + ch * 16 + n0, vc);
        }
        const float sq = group_reduce_scatter<P>(acc_q, lane);
        const float sxb = group_reduce_scatter<P>(acc_xb, lane);
        const int j = sub + sp + lane;
        const index_t t = t0 + j;
        if (valid && t < L) {
          const float g = s_g[ch * TP + j];
          const float ddt = (sq + s_u[ch * TP + j] * sxb) * s_sig[ch * TP + j];
          p.du[row + t] = from_float<In>(s_dt[ch * TP + j] * sxb + skip * g);
          p.ddelta[row + t] = from_float<In>(ddt);
          dbias_part += ddt;
        }
      }
      __syncthreads();  // the run's ∂B, ∂C terms complete
      for (int i = tid; i < 2 * RUN * NS; i += threads) {
        const int block = i / NS, n = i % NS;  // block: kind · RUN + step of the run
        const int rr = block % RUN;
        const index_t t = t0 + sub + rr;
        if (n < N && t < L) {
          const float* from = s_red + block * RB + n;
          float v = 0.0f;
#pragma unroll
          for (int cc = 0; cc < C; ++cc) v += from[cc * 16];
          atomicAdd((block < RUN ? dbg : dcg) + n * L + t, v);
        }
      }
      __syncthreads();  // s_red is rewritten by the next run
    }
  }

  if (valid && p.da) {
#pragma unroll
    for (int s = 0; s < Q; ++s)
      if (n0 + s < N) atomicAdd(&p.da[d * N + n0 + s], da[s]);
  }
#pragma unroll
  for (int m = P / 2; m > 0; m /= 2) {
    dskip_part += __shfl_xor_sync(full_mask, dskip_part, m);
    dbias_part += __shfl_xor_sync(full_mask, dbias_part, m);
  }
  if (valid && lane == 0) {
    if (p.dskip) atomicAdd(&p.dskip[d], dskip_part);
    if (p.ddelta_bias) atomicAdd(&p.ddelta_bias[d], dbias_part);
  }
}

// Adjoint summary of chunk c ≥ 1 (blockIdx.y + 1), per (batch·D, state): the
// adjoint recurrence backwards over the chunk from zero, giving what the chunk
// passes to its left neighbour, exp(Δ_first·A)·x_first, and ΣΔ over the chunk
// (double). 16 lanes per channel; lane l prepares Δ and g of step t0 + l of a
// 16-step run and the run's steps are broadcast by shuffles.
template <class In, int S>
__global__ void __launch_bounds__(128)
    s6_adjoint_summary_kernel(const selective_scan_backward_params<In> p, index_t chunk_length, float* out,
                              double* dt_sum) {
  constexpr int P = 16, R = 16;
  const int tid = static_cast<int>(threadIdx.x), lane = tid % P;
  const index_t D = p.channels, L = p.length, N = p.state_size, G = p.groups, total = p.batch * D;
  index_t gc = static_cast<index_t>(blockIdx.x) * (128 / P) + tid / P;
  const bool valid = gc < total;
  if (!valid) gc = total - 1;  // idle channels still take part in the shuffles
  const index_t bi = gc / D, d = gc % D, g = d / (D / G);
  const index_t c = static_cast<index_t>(blockIdx.y) + 1;
  const index_t t_begin = c * chunk_length;
  const index_t t_end = L - t_begin < chunk_length ? L : t_begin + chunk_length;
  const float bias = p.delta_bias ? p.delta_bias[d] : 0.0f;
  float a2[S], x[S], decay_next[S];
  const In* crow[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const index_t n = lane + s * P;
    a2[s] = n < N ? p.a[d * N + n] * log2e : 0.0f;
    crow[s] = n < N ? p.c + ((bi * G + g) * N + n) * L : nullptr;
    x[s] = 0.0f;
    decay_next[s] = 1.0f;
  }
  double dt_part = 0;
  for (index_t t0 = t_begin + (t_end - 1 - t_begin) / R * R; t0 >= t_begin; t0 -= R) {
    const index_t t = t0 + lane;
    float dt = 0.0f, gv = 0.0f;
    if (t < t_end) {
      const index_t k = gc * L + t;
      const float raw = to_float(p.delta[k]) + bias;
      dt = p.delta_softplus ? softplus(raw) : raw;
      gv = to_float(p.dout[k]);
      if (p.z) {
        const float zv = to_float(p.z[k]);
        gv *= p.z_silu ? zv / (1.0f + expf(-zv)) : zv;
      }
    }
    dt_part += dt;
#pragma unroll
    for (int r = R - 1; r >= 0; --r) {
      const float dtr = __shfl_sync(full_mask, dt, r, P), gr = __shfl_sync(full_mask, gv, r, P);
      const bool in = t0 + r < t_end;
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const float cv = crow[s] && in ? to_float(crow[s][t0 + r]) : 0.0f;
        x[s] = decay_next[s] * x[s] + cv * gr;
        decay_next[s] = fast_exp2(dtr * a2[s]);
      }
    }
  }
#pragma unroll
  for (int m = P / 2; m > 0; m /= 2) dt_part += __shfl_xor_sync(full_mask, dt_part, m);
  if (valid) {
#pragma unroll
    for (int s = 0; s < S; ++s)
      if (lane + s * P < N) out[(c * total + gc) * N + lane + s * P] = decay_next[s] * x[s];
    if (lane == 0) dt_sum[c * total + gc] = dt_part;
  }
}

// The adjoint carries, per (batch·D, state), from the last chunk to the first
// in double: R_{C−1} = 0, R_{c−1} = s_c + exp(A·ΣΔ_c)·R_c, with s_c the
// summary of chunk c; x_in of chunk c is R_c.
template <class A>  // a template, so that the header may enter several translation units
__global__ void s6_adjoint_carry_kernel(const A* a, const float* summary, const double* dt_sum, float* x_in,
                                        index_t total, index_t D, index_t N, index_t count) {
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total * N) return;
  const index_t gc = i / N, n = i % N, d = gc % D;
  const double an = a[d * N + n];
  double r = 0;
  x_in[(count - 1) * total * N + i] = 0.0f;
  for (index_t c = count - 1; c >= 1; --c) {
    r = double(summary[c * total * N + i]) + exp(an * dt_sum[c * total + gc]) * r;
    x_in[(c - 1) * total * N + i] = static_cast<float>(r);
  }
}

}  // namespace detail
}  // namespace mixlens::gpu
