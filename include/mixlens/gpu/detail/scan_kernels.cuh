// Kernel level: one kernel per scan variant. Every kernel scans `count`
// independent sequences of `length` elements stored back to back
// (a[s·length + t]); h receives the states h_t = a_t·h_{t−1} + b_t, h_{−1} = 0.
#pragma once

#include "mixlens/gpu/detail/block_scan.cuh"
#include "mixlens/gpu/detail/thread_scan.cuh"
#include "mixlens/gpu/detail/warp_scan.cuh"
#include "mixlens/scan.hpp"

namespace mixlens::gpu::detail {

// One thread runs one whole sequence: the baseline every variant is timed against.
template <class A, class B>
__global__ void sequential_scan_kernel(const A* a, const B* b, B* h, index_t count, index_t length) {
  const index_t s = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= count) return;
  const index_t base = s * length;
  B state(0);
  for (index_t t = 0; t < length; ++t) {
    state = a[base + t] * state + b[base + t];
    h[base + t] = state;
  }
}

// One warp per sequence, 32 elements per step: Kogge–Stone in registers, the
// carry broadcast from lane 31.
template <int Warps, class A, class B>
__global__ void __launch_bounds__(Warps * 32) warp_scan_kernel(const A* a, const B* b, B* h, index_t count,
                                                               index_t length) {
  using E = affine<A, B>;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const index_t s = static_cast<index_t>(blockIdx.x) * Warps + (threadIdx.x >> 5);
  if (s >= count) return;  // whole warps leave together
  const index_t base = s * length;
  affine_compose op;
  E carry = E::identity();
  for (index_t t0 = 0; t0 < length; t0 += 32) {
    const index_t t = t0 + lane;
    E x = t < length ? E{a[base + t], b[base + t]} : E::identity();
    x = op(carry, warp_inclusive_scan(x, lane));
    if (t < length) h[base + t] = x.b;
    carry = warp_broadcast(x, 31);
  }
}

// One block per sequence, tiles of 2·Threads elements scanned by Blelloch's
// up-/down-sweep in shared memory.
template <int Threads, class A, class B>
__global__ void __launch_bounds__(Threads) blelloch_scan_kernel(const A* a, const B* b, B* h, index_t length) {
  using E = affine<A, B>;
  __shared__ E s[2 * Threads];
  const int tid = static_cast<int>(threadIdx.x);
  const index_t base = static_cast<index_t>(blockIdx.x) * length;
  affine_compose op;
  E carry = E::identity();
  for (index_t t0 = 0; t0 < length; t0 += 2 * Threads) {
    __syncthreads();  // the previous tile's carry has been read
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const index_t t = t0 + tid + k * Threads;
      s[tid + k * Threads] = t < length ? E{a[base + t], b[base + t]} : E::identity();
    }
    blelloch_block_scan<Threads>(s);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const index_t t = t0 + tid + k * Threads;
      if (t < length) h[base + t] = op(carry, s[tid + k * Threads]).b;
    }
    carry = op(carry, s[2 * Threads - 1]);
  }
}

// One block per sequence: CUB BlockScan over Threads·Items-element tiles with
// the running prefix carried between tiles.
template <int Threads, int Items, class A, class B>
__global__ void __launch_bounds__(Threads) block_scan_kernel(const A* a, const B* b, B* h, index_t length) {
  const index_t base = static_cast<index_t>(blockIdx.x) * length;
  split_io<A, B> io{a + base, b + base, h + base};
  block_scan_range<Threads, Items, true>(io, 0, length, affine<A, B>::identity());
}

// Two-level scan, step 1: the total of every chunk (block per chunk).
template <int Threads, int Items, class A, class B>
__global__ void __launch_bounds__(Threads)
    chunk_reduce_kernel(const A* a, const B* b, affine<A, B>* totals, index_t length, index_t chunk, index_t chunks) {
  const index_t s = static_cast<index_t>(blockIdx.x) / chunks, c = static_cast<index_t>(blockIdx.x) % chunks;
  const index_t base = s * length;
  const index_t begin = c * chunk, end = begin + chunk < length ? begin + chunk : length;
  split_io<A, B> io{a + base, b + base, nullptr};
  const auto total = block_scan_range<Threads, Items, false>(io, begin, end, affine<A, B>::identity());
  if (threadIdx.x == 0) totals[blockIdx.x] = total;
}

// Step 2: inter-chunk state passing, an inclusive scan of each sequence's chunk
// totals in place (block per sequence).
template <int Threads, int Items, class E>
__global__ void __launch_bounds__(Threads) chunk_carry_kernel(E* totals, index_t chunks) {
  element_io<E> io{totals + static_cast<index_t>(blockIdx.x) * chunks};
  block_scan_range<Threads, Items, true>(io, 0, chunks, E::identity());
}

// Step 3: fix-up, each chunk rescanned from the carry of the chunks before it.
template <int Threads, int Items, class A, class B>
__global__ void __launch_bounds__(Threads) chunk_fixup_kernel(const A* a, const B* b, B* h, const affine<A, B>* totals,
                                                              index_t length, index_t chunk, index_t chunks) {
  const index_t s = static_cast<index_t>(blockIdx.x) / chunks, c = static_cast<index_t>(blockIdx.x) % chunks;
  const index_t base = s * length;
  const index_t begin = c * chunk, end = begin + chunk < length ? begin + chunk : length;
  const auto carry = c > 0 ? totals[blockIdx.x - 1] : affine<A, B>::identity();
  split_io<A, B> io{a + base, b + base, h + base};
  block_scan_range<Threads, Items, true>(io, begin, end, carry);
}

// Fancy-iterator functors for the device-wide CUB scan.
template <class A, class B>
struct make_element {
  const A* a;
  const B* b;
  __host__ __device__ affine<A, B> operator()(index_t i) const { return {a[i], b[i]}; }
};

template <class A, class B>
struct take_state {
  __host__ __device__ B operator()(const affine<A, B>& e) const { return e.b; }
};

struct sequence_of {
  index_t length;
  __host__ __device__ index_t operator()(index_t i) const { return i / length; }
};

}  // namespace mixlens::gpu::detail
