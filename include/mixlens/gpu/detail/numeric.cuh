// Device numerics shared by the GPU kernels: conversions of the input types
// (float, half, bfloat16) to the fp32 compute type, fast exp2, SiLU, softplus.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <type_traits>

#include "mixlens/tensor.hpp"

namespace mixlens::gpu::detail {

template <class T>
inline constexpr bool is_complex_v = false;
template <class T>
inline constexpr bool is_complex_v<complex<T>> = true;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(x);
  else return __float2bfloat16_rn(x);
}

// 2^x in one SFU instruction (relative error ~2^-22, flushes subnormals to 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

inline constexpr float log2e = 1.4426950408889634f;

__device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }
// Mamba's softplus: the identity above 20, where log1p(exp(x)) rounds to x.
__device__ __forceinline__ float softplus(float x) { return x <= 20.0f ? log1pf(expf(x)) : x; }

// Loads `Count` consecutive values from p[0..valid) as fp32 (or complex<float>),
// zero past `valid`; 16-byte vector loads when the whole run is there and aligned.
template <int Count, class In, class Out>
__device__ __forceinline__ void load_run(const In* p, int valid, Out (&out)[Count]) {
  constexpr bool vectorizable = (sizeof(In) * Count) % 16 == 0;
  if (vectorizable && valid >= Count && (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0) {
    constexpr int words = static_cast<int>(sizeof(In) * Count / 16) > 0 ? static_cast<int>(sizeof(In) * Count / 16) : 1;
    float4 w[words];
    const float4* q = reinterpret_cast<const float4*>(p);
#pragma unroll
    for (int i = 0; i < words; ++i) w[i] = q[i];
    In raw[Count];
    std::memcpy(&raw[0], &w[0], sizeof(raw));
#pragma unroll
    for (int k = 0; k < Count; ++k) {
      if constexpr (is_complex_v<In>) out[k] = raw[k];
      else out[k] = to_float(raw[k]);
    }
  } else {
#pragma unroll
    for (int k = 0; k < Count; ++k) {
      if constexpr (is_complex_v<In>) out[k] = k < valid ? p[k] : In(0);
      else out[k] = k < valid ? to_float(p[k]) : 0.0f;
    }
  }
}

}  // namespace mixlens::gpu::detail
