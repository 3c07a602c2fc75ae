// Device-side min / max / NaN-count reductions into a {min, max, NaN count}
// triple in global memory, shared by the backend's aggregation kernels and the
// fused α aggregation.
#pragma once

#include <cuda_runtime.h>

namespace mixlens::gpu::detail {

// Float min / max through integer atomics: the order of non-negative floats is
// that of their bits as int, of negative floats the reverse order as unsigned.
__device__ inline void atomic_min_float(float* p, float v) {
  if (v == 0.0f) v = 0.0f;  // −0 would order below every negative value as int
  if (v >= 0.0f) atomicMin(reinterpret_cast<int*>(p), __float_as_int(v));
  else atomicMax(reinterpret_cast<unsigned*>(p), __float_as_uint(v));
}
__device__ inline void atomic_max_float(float* p, float v) {
  if (v == 0.0f) v = 0.0f;
  if (v >= 0.0f) atomicMax(reinterpret_cast<int*>(p), __float_as_int(v));
  else atomicMin(reinterpret_cast<unsigned*>(p), __float_as_uint(v));
}

// minmax = {min, max, count of NaN}: a warp's min and max, and its NaNs.
__device__ inline void merge_min_max(float* minmax, float lo, float hi, float nans) {
  for (int o = 16; o > 0; o /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    nans += __shfl_xor_sync(0xffffffffu, nans, o);
  }
  if (threadIdx.x % 32 != 0) return;
  if (lo <= hi) atomic_min_float(minmax, lo), atomic_max_float(minmax + 1, hi);
  if (nans > 0) atomicAdd(minmax + 2, nans);
}

}  // namespace mixlens::gpu::detail
