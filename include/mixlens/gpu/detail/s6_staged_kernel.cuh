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

inline constexpr int staged_channels = 8;   // per block: 8 × 16 lanes
inline constexpr int staged_steps = 64;     // time steps per shared-memory tile

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

template <class In>
struct staged_layout {
  static constexpr int per_chunk = 16 / static_cast<int>(sizeof(In));      // elements per 16-byte copy
  static constexpr int chunks = staged_steps / per_chunk;                   // copies per row and tile
  static constexpr int bc_stride = staged_steps + per_chunk;                // padded: fewer bank conflicts
};

template <class In>
__global__ void __launch_bounds__(128, 6) selective_scan_staged_kernel(const selective_scan_params<In, float> p) {
  using lay = staged_layout<In>;
  constexpr int T = staged_steps, C = staged_channels, N = 16;
  __shared__ __align__(16) In s_b[2][N][lay::bc_stride];
  __shared__ __align__(16) In s_c[2][N][lay::bc_stride];
  __shared__ __align__(16) In s_u[2][C][T];
  __shared__ __align__(16) In s_raw[2][C][T];  // Δ before bias and softplus
  __shared__ __align__(16) In s_z[2][C][T];
  __shared__ __align__(16) float s_dt[C][T];
  __shared__ __align__(16) float s_du[C][T];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % N, ch = tid / N;
  const index_t D = p.channels, L = p.length;
  const index_t gc0 = static_cast<index_t>(blockIdx.x) * C;  // first channel of the block
  const index_t bi = gc0 / D, d0 = gc0 % D, g = d0 / (D / p.groups);
  const index_t gc = gc0 + ch, d = d0 + ch;
  const In* bg = p.b + (bi * p.groups + g) * N * L;
  const In* cg = p.c + (bi * p.groups + g) * N * L;
  const float a2 = p.a[d * N + lane] * log2e;
  const float skip = p.skip ? p.skip[d] : 0.0f;
  const bool gate = p.z != nullptr;

  const auto issue = [&](index_t t0, int buf) {
    for (int k = tid; k < N * lay::chunks; k += 128) {  // B and C: 16 rows
      const int row = k / lay::chunks, col = (k % lay::chunks) * lay::per_chunk;
      const bool valid = t0 + col < L;
      const index_t off = row * L + (valid ? t0 + col : 0);
      cp_async16(&s_b[buf][row][col], bg + off, valid);
      cp_async16(&s_c[buf][row][col], cg + off, valid);
    }
    for (int k = tid; k < C * lay::chunks; k += 128) {  // u, Δ, z: 8 channel rows
      const int row = k / lay::chunks, col = (k % lay::chunks) * lay::per_chunk;
      const bool valid = t0 + col < L;
      const index_t off = (gc0 + row) * L + (valid ? t0 + col : 0);
      cp_async16(&s_u[buf][row][col], p.u + off, valid);
      cp_async16(&s_raw[buf][row][col], p.delta + off, valid);
      if (gate) cp_async16(&s_z[buf][row][col], p.z + off, valid);
    }
    cp_async_commit();
  };

  float h = 0.0f;
  issue(0, 0);
  int buf = 0;
  for (index_t t0 = 0; t0 < L; t0 += T, buf ^= 1) {
    if (t0 + T < L) {
      issue(t0 + T, buf ^ 1);
      cp_async_wait<1>();  // this tile landed; the next may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    for (int k = tid; k < C * T; k += 128) {  // Δ: bias + softplus; Δ·u
      const int c = k / T, s = k % T;
      const index_t dc = d0 + c;
      float dt = to_float(s_raw[buf][c][s]) + (p.delta_bias ? p.delta_bias[dc] : 0.0f);
      if (p.delta_softplus) dt = softplus(dt);
      if (t0 + s >= L) dt = 0.0f;  // past the end: decay 1, input 0
      s_dt[c][s] = dt;
      s_du[c][s] = dt * to_float(s_u[buf][c][s]);
    }
    __syncthreads();
#pragma unroll 1
    for (int sub = 0; sub < T; sub += N) {
      float acc[N];
#pragma unroll
      for (int k0 = 0; k0 < N; k0 += 4) {
        const float4 dt4 = *reinterpret_cast<const float4*>(&s_dt[ch][sub + k0]);
        const float4 du4 = *reinterpret_cast<const float4*>(&s_du[ch][sub + k0]);
        const float dts[4] = {dt4.x, dt4.y, dt4.z, dt4.w}, dus[4] = {du4.x, du4.y, du4.z, du4.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const int s = sub + k0 + k;
          h = fast_exp2(dts[k] * a2) * h + dus[k] * to_float(s_b[buf][lane][s]);
          acc[k0 + k] = to_float(s_c[buf][lane][s]) * h;
        }
      }
      float y = group_reduce_scatter<N>(acc, lane);
      const index_t t = t0 + sub + lane;
      if (t < L) {
        y += skip * to_float(s_u[buf][ch][sub + lane]);
        if (gate) {
          const float z = to_float(s_z[buf][ch][sub + lane]);
          y *= p.z_silu ? silu(z) : z;
        }
        p.y[gc * L + t] = from_float<In>(y);
      }
    }
    __syncthreads();  // buffers of this tile are refilled two tiles on
  }
  if (p.last_state) p.last_state[gc * N + lane] = h;
}

}  // namespace mixlens::gpu::detail
