// Warp level: Kogge–Stone (Hillis–Steele) inclusive scan by shuffles, log2(32)
// steps, each lane composing with the lane `d` below it. Order matters: the
// lower lane's element is applied first.
#pragma once

#include "mixlens/gpu/detail/shuffle.cuh"
#include "mixlens/scan.hpp"

namespace mixlens::gpu::detail {

template <class E>
__device__ __forceinline__ E warp_inclusive_scan(E x, int lane) {
  affine_compose op;
#pragma unroll
  for (unsigned d = 1; d < 32; d *= 2) {
    const E lower = shuffle<E>::up(x, d);
    if (lane >= static_cast<int>(d)) x = op(lower, x);
  }
  return x;
}

template <class E>
__device__ __forceinline__ E warp_broadcast(const E& x, int lane) {
  return shuffle<E>::idx(x, lane);
}

}  // namespace mixlens::gpu::detail
