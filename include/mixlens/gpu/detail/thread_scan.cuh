// Thread level: a scan and a reduction over the items one thread holds in
// registers (the items are consecutive in time).
#pragma once

#include "mixlens/scan.hpp"

namespace mixlens::gpu::detail {

template <int Items, class E>
__device__ __forceinline__ void thread_inclusive_scan(E (&items)[Items]) {
  affine_compose op;
#pragma unroll
  for (int k = 1; k < Items; ++k) items[k] = op(items[k - 1], items[k]);
}

template <int Items, class E>
__device__ __forceinline__ E thread_reduce(const E (&items)[Items]) {
  affine_compose op;
  E total = items[0];
#pragma unroll
  for (int k = 1; k < Items; ++k) total = op(total, items[k]);
  return total;
}

// Applies a carried-in prefix to every item: items[k] = prefix ∘ items[k].
template <int Items, class E>
__device__ __forceinline__ void thread_apply_prefix(const E& prefix, E (&items)[Items]) {
  affine_compose op;
#pragma unroll
  for (int k = 0; k < Items; ++k) items[k] = op(prefix, items[k]);
}

}  // namespace mixlens::gpu::detail
