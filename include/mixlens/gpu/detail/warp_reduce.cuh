// Warp level: reduce-scatter over groups of P lanes. Each lane holds P partial
// sums (one per time step of a tile); afterwards lane l of the group holds the
// group's total for step l. P − 1 shuffles per lane instead of P·log2 P for P
// separate reductions.
#pragma once

#include "mixlens/gpu/detail/shuffle.cuh"

namespace mixlens::gpu::detail {

// One butterfly round over the first Len values: lanes with bit M set keep the
// upper half, the others the lower half, each adding its partner's copy; the
// kept half moves to the front. Recurses until one value is left.
template <int Len, int M, int P>
__device__ __forceinline__ void reduce_scatter_round(float (&v)[P], int lane_in_group) {
  const bool upper = (lane_in_group & M) != 0;
#pragma unroll
  for (int i = 0; i < Len / 2; ++i) {
    const float send = upper ? v[i] : v[i + Len / 2];
    const float keep = upper ? v[i + Len / 2] : v[i];
    v[i] = keep + __shfl_xor_sync(full_mask, send, M);
  }
  if constexpr (M > 1) reduce_scatter_round<Len / 2, M / 2>(v, lane_in_group);
}

template <int P>
__device__ __forceinline__ float group_reduce_scatter(float (&v)[P], int lane_in_group) {
  if constexpr (P > 1) reduce_scatter_round<P, P / 2>(v, lane_in_group);
  return v[0];
}

}  // namespace mixlens::gpu::detail
