// Kernel level: the staged S6 forward, the fast path for the common Mamba shape
// (real A, N = 16, B and C varying in time, aligned rows).
//
// The generic kernel loads B and C row by row in every lane (16 rows per warp
// load) and waits on global memory at every 16-step tile. Here a block of 8
// channels of one (batch, group) copies 64-step tiles of B, C, u, Δ, z into
// shared memory with cp.async, double-buffered, so the next tile streams in
// while the current one is computed, and B and C are fetched once per block
// instead of once per channel.
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/detail/numeric.cuh"
#include "mixlens/gpu/detail/s6_kernel.cuh"
#include "mixlens/gpu/detail/warp_reduce.cuh"

namespace mixlens::gpu::detail {

// S states per lane: P = 16/S lanes per channel, 8·S channels per block of 128
// threads, tiles of 64/S steps (shared memory stays near 32 KB per block).
// More states per lane means more independent recurrences per thread and a
// reduce-scatter over fewer lanes.
template <int S>
struct staged_shape {
  static constexpr int lanes = 16 / S, channels = 8 * S, steps = 64 / S;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* global, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// Four consecutive shared-memory values as fp32 (one 16- or 8-byte load).
template <class In>
__device__ __forceinline__ void load4(const In* p, float (&out)[4]) {
  if constexpr (std::is_same_v<In, float>) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    const uint2 w = *reinterpret_cast<const uint2*>(p);
    In v[4];
    std::memcpy(&v[0], &w, sizeof(w));
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = to_float(v[k]);
  }
}

// Pass as in selective_scan_kernel: blockIdx.y is the chunk of a time-parallel
// pass (chunk lengths are multiples of 64, so every tile and every 16-byte copy
// stays inside one chunk).
template <class In, int S, s6_pass Pass>
__global__ void __launch_bounds__(128, 6)
    selective_scan_staged_kernel(const selective_scan_params<In, float> p, const s6_chunks<float> chunks) {
  using shape = staged_shape<S>;
  constexpr int P = shape::lanes, C = shape::channels, T = shape::steps, N = 16;
  constexpr bool output = Pass != s6_pass::summary;
  constexpr int per_chunk = 16 / static_cast<int>(sizeof(In));  // elements per 16-byte copy
  constexpr int copies = T / per_chunk;                          // copies per row and tile
  constexpr int stride = T + per_chunk;                          // padded B, C rows: fewer bank conflicts
  constexpr int prep = C * T / 128;                              // Δ values per thread and tile
  static_assert(C * T % 128 == 0 && 128 % T == 0);
  __shared__ __align__(16) In s_b[2][N][stride];
  __shared__ __align__(16) In s_c[output ? 2 : 1][N][output ? stride : per_chunk];
  __shared__ __align__(16) In s_u[2][C][T];
  __shared__ __align__(16) In s_raw[2][C][T];  // Δ before bias and softplus
  __shared__ __align__(16) In s_z[output ? 2 : 1][C][output ? T : per_chunk];
  __shared__ __align__(16) float s_dt[C][T];
  __shared__ __align__(16) float s_du[C][T];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % P, ch = tid / P;
  const index_t D = p.channels, L = p.length, total = p.batch * D;
  const index_t gc0 = static_cast<index_t>(blockIdx.x) * C;  // first channel of the block
  const index_t bi = gc0 / D, d0 = gc0 % D, g = d0 / (D / p.groups);
  const index_t gc = gc0 + ch, d = d0 + ch;
  const index_t chunk = blockIdx.y;
  const index_t t_begin = Pass == s6_pass::full ? 0 : chunk * chunks.length;
  const index_t t_end = Pass == s6_pass::full || L - t_begin < chunks.length ? L : t_begin + chunks.length;
  float* carry = Pass == s6_pass::full ? nullptr : chunks.carry + (chunk * total + gc) * N;
  const In* bg = p.b + (bi * p.groups + g) * N * L;
  const In* cg = p.c + (bi * p.groups + g) * N * L;
  float a2[S], h[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    a2[s] = p.a[d * N + lane + s * P] * log2e;
    h[s] = Pass == s6_pass::apply ? carry[lane + s * P] : 0.0f;
  }
  const float skip = p.skip ? p.skip[d] : 0.0f;
  const bool gate = output && p.z != nullptr;
  // This thread's Δ preparation covers step tid % T of channels tid / T + i·(128 / T).
  float bias[prep];
#pragma unroll
  for (int i = 0; i < prep; ++i) bias[i] = p.delta_bias ? p.delta_bias[d0 + tid / T + i * (128 / T)] : 0.0f;
  double dt_part = 0;  // summary: this lane's share of ΣΔ over the chunk

  const auto issue = [&](index_t t0, int buf) {
    for (int k = tid; k < N * copies; k += 128) {  // B and C: 16 rows
      const int row = k / copies, col = (k % copies) * per_chunk;
      const bool valid = t0 + col < t_end;
      const index_t off = row * L + (valid ? t0 + col : 0);
      cp_async16(&s_b[buf][row][col], bg + off, valid);
      if constexpr (output) cp_async16(&s_c[buf][row][col], cg + off, valid);
    }
    for (int k = tid; k < C * copies; k += 128) {  // u, Δ, z: one row per channel
      const int row = k / copies, col = (k % copies) * per_chunk;
      const bool valid = t0 + col < t_end;
      const index_t off = (gc0 + row) * L + (valid ? t0 + col : 0);
      cp_async16(&s_u[buf][row][col], p.u + off, valid);
      cp_async16(&s_raw[buf][row][col], p.delta + off, valid);
      if constexpr (output)
        if (gate) cp_async16(&s_z[buf][row][col], p.z + off, valid);
    }
    cp_async_commit();
  };

  issue(t_begin, 0);
  int buf = 0;
  for (index_t t0 = t_begin; t0 < t_end; t0 += T, buf ^= 1) {
    if (t0 + T < t_end) {
      issue(t0 + T, buf ^ 1);
      cp_async_wait<1>();  // this tile landed; the next may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < prep; ++i) {  // Δ: bias + softplus; Δ·u
      const int c = tid / T + i * (128 / T), s = tid % T;
      float dt = to_float(s_raw[buf][c][s]) + bias[i];
      if (p.delta_softplus) dt = softplus(dt);
      if (t0 + s >= t_end) dt = 0.0f;  // past the end: decay 1, input 0
      s_dt[c][s] = dt;
      s_du[c][s] = dt * to_float(s_u[buf][c][s]);
    }
    __syncthreads();
    if constexpr (!output)
      for (int j = lane; j < T; j += P) dt_part += s_dt[ch][j];
#pragma unroll 1
    for (int sub = 0; sub < T; sub += P) {
      float acc[P];
#pragma unroll
      for (int k = 0; k < P; ++k) acc[k] = 0.0f;
#pragma unroll
      for (int k0 = 0; k0 < P; k0 += 4) {
        const float4 dt4 = *reinterpret_cast<const float4*>(&s_dt[ch][sub + k0]);
        const float4 du4 = *reinterpret_cast<const float4*>(&s_du[ch][sub + k0]);
        const float dts[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, dus[4] = {du4.x, du4.y, du4.z, du4.w};
#pragma unroll
        for (int s = 0; s < S; ++s) {
          float bv[4], cv[4];
          load4(&s_b[buf][lane + s * P][sub + k0], bv);
          if constexpr (output) load4(&s_c[buf][lane + s * P][sub + k0], cv);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            h[s] = fast_exp2(dts[k] * a2[s]) * h[s] + dus[k] * bv[k];
            if constexpr (output) acc[k0 + k] += cv[k] * h[s];
          }
        }
      }
      if constexpr (output) {
        float y = group_reduce_scatter<P>(acc, lane);
        const index_t t = t0 + sub + lane;
        if (t < t_end) {
          y += skip * to_float(s_u[buf][ch][sub + lane]);
          if (gate) {
            const float z = to_float(s_z[buf][ch][sub + lane]);
            y *= p.z_silu ? silu(z) : z;
          }
          p.y[gc * L + t] = from_float<In>(y);
        }
      }
    }
    __syncthreads();  // buffers of this tile are refilled two tiles on
  }
  if constexpr (Pass == s6_pass::summary) {
#pragma unroll
    for (int m = P / 2; m > 0; m /= 2) dt_part += __shfl_xor_sync(full_mask, dt_part, m);
#pragma unroll
    for (int s = 0; s < S; ++s) carry[lane + s * P] = h[s];
    if (lane == 0) chunks.dt_sum[chunk * total + gc] = dt_part;
  }
  if (Pass == s6_pass::full && p.last_state) {
#pragma unroll
    for (int s = 0; s < S; ++s) p.last_state[gc * N + lane + s * P] = h[s];
  }
}

}  // namespace mixlens::gpu::detail
