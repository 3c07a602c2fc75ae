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

template <class In, int S>
__global__ void __launch_bounds__(128, 6) selective_scan_staged_kernel(const selective_scan_params<In, float> p) {
  using shape = staged_shape<S>;
  constexpr int P = shape::lanes, C = shape::channels, T = shape::steps, N = 16;
  constexpr int per_chunk = 16 / static_cast<int>(sizeof(In));  // elements per 16-byte copy
  constexpr int chunks = T / per_chunk;                          // copies per row and tile
  constexpr int stride = T + per_chunk;                          // padded B, C rows: fewer bank conflicts
  __shared__ __align__(16) In s_b[2][N][stride];
  __shared__ __align__(16) In s_c[2][N][stride];
  __shared__ __align__(16) In s_u[2][C][T];
  __shared__ __align__(16) In s_raw[2][C][T];  // Δ before bias and softplus
  __shared__ __align__(16) In s_z[2][C][T];
  __shared__ __align__(16) float s_dt[C][T];
  __shared__ __align__(16) float s_du[C][T];

  const int tid = static_cast<int>(threadIdx.x), lane = tid % P, ch = tid / P;
  const index_t D = p.channels, L = p.length;
  const index_t gc0 = static_cast<index_t>(blockIdx.x) * C;  // first channel of the block
  const index_t bi = gc0 / D, d0 = gc0 % D, g = d0 / (D / p.groups);
  const index_t gc = gc0 + ch, d = d0 + ch;
  const In* bg = p.b + (bi * p.groups + g) * N * L;
  const In* cg = p.c + (bi * p.groups + g) * N * L;
  float a2[S], h[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    a2[s] = p.a[d * N + lane + s * P] * log2e;
    h[s] = 0.0f;
  }
  const float skip = p.skip ? p.skip[d] : 0.0f;
  const bool gate = p.z != nullptr;

  const auto issue = [&](index_t t0, int buf) {
    for (int k = tid; k < N * chunks; k += 128) {  // B and C: 16 rows
      const int row = k / chunks, col = (k % chunks) * per_chunk;
      const bool valid = t0 + col < L;
      const index_t off = row * L + (valid ? t0 + col : 0);
      cp_async16(&s_b[buf][row][col], bg + off, valid);
      cp_async16(&s_c[buf][row][col], cg + off, valid);
    }
    for (int k = tid; k < C * chunks; k += 128) {  // u, Δ, z: one row per channel
      const int row = k / chunks, col = (k % chunks) * per_chunk;
      const bool valid = t0 + col < L;
      const index_t off = (gc0 + row) * L + (valid ? t0 + col : 0);
      cp_async16(&s_u[buf][row][col], p.u + off, valid);
      cp_async16(&s_raw[buf][row][col], p.delta + off, valid);
      if (gate) cp_async16(&s_z[buf][row][col], p.z + off, valid);
    }
    cp_async_commit();
  };

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
      float dt = to_float(s_raw[buf][c][s]) + (p.delta_bias ? p.delta_bias[d0 + c] : 0.0f);
      if (p.delta_softplus) dt = softplus(dt);
      if (t0 + s >= L) dt = 0.0f;  // past the end: decay 1, input 0
      s_dt[c][s] = dt;
      s_du[c][s] = dt * to_float(s_u[buf][c][s]);
    }
    __syncthreads();
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
          load4(&s_c[buf][lane + s * P][sub + k0], cv);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            h[s] = fast_exp2(dts[k] * a2[s]) * h[s] + dus[k] * bv[k];
            acc[k0 + k] += cv[k] * h[s];
          }
        }
      }
      float y = group_reduce_scatter<P>(acc, lane);
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
  if (p.last_state) {
#pragma unroll
    for (int s = 0; s < S; ++s) p.last_state[gc * N + lane + s * P] = h[s];
  }
}

}  // namespace mixlens::gpu::detail
