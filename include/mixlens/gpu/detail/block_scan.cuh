// Block level: the work-efficient Blelloch scan in shared memory, and the tile
// agent that scans one sequence tile by tile with CUB's BlockScan, carrying the
// running prefix from tile to tile (the design of the reference Mamba kernel).
#pragma once

#include <cub/block/block_scan.cuh>

#include <cstdint>
#include <cstring>

#include "mixlens/gpu/detail/thread_scan.cuh"
#include "mixlens/scan.hpp"

namespace mixlens::gpu::detail {

// Inclusive Blelloch scan of the 2·Threads elements in `s` (shared memory):
// an up-sweep of partial compositions, a down-sweep of exclusive prefixes, then
// each element composed with its exclusive prefix. Ends with a barrier.
template <int Threads, class E>
__device__ void blelloch_block_scan(E* s) {
  constexpr int n = 2 * Threads;
  const int tid = static_cast<int>(threadIdx.x);
  affine_compose op;
  const E own0 = s[tid], own1 = s[tid + Threads];
  for (int stride = 1; stride < n; stride *= 2) {  // up-sweep
    __syncthreads();
    const int i = (tid + 1) * 2 * stride - 1;
    if (i < n) s[i] = op(s[i - stride], s[i]);
  }
  __syncthreads();
  if (tid == 0) s[n - 1] = E::identity();
  for (int stride = n / 2; stride >= 1; stride /= 2) {  // down-sweep
    __syncthreads();
    const int i = (tid + 1) * 2 * stride - 1;
    if (i < n) {
      const E left = s[i - stride];
      s[i - stride] = s[i];
      s[i] = op(s[i], left);
    }
  }
  __syncthreads();
  s[tid] = op(s[tid], own0);  // exclusive -> inclusive
  s[tid + Threads] = op(s[tid + Threads], own1);
  __syncthreads();
}

// Blocked vector access: a thread's Items consecutive values moved as 16-byte
// words when they fill whole words; `p` must then be 16-byte aligned.
template <int Items, class T>
__device__ __forceinline__ void load_vector(const T* p, T (&v)[Items]) {
  if constexpr ((sizeof(T) * Items) % 16 == 0) {
    constexpr int words = static_cast<int>(sizeof(T) * Items / 16);
    float4 w[words];
    const float4* q = reinterpret_cast<const float4*>(p);
#pragma unroll
    for (int i = 0; i < words; ++i) w[i] = q[i];
    std::memcpy(&v[0], &w[0], sizeof(v));
  } else {
#pragma unroll
    for (int k = 0; k < Items; ++k) v[k] = p[k];
  }
}

template <int Items, class T>
__device__ __forceinline__ void store_vector(T* p, const T (&v)[Items]) {
  if constexpr ((sizeof(T) * Items) % 16 == 0) {
    constexpr int words = static_cast<int>(sizeof(T) * Items / 16);
    float4 w[words];
    std::memcpy(&w[0], &v[0], sizeof(v));
    float4* q = reinterpret_cast<float4*>(p);
#pragma unroll
    for (int i = 0; i < words; ++i) q[i] = w[i];
  } else {
#pragma unroll
    for (int k = 0; k < Items; ++k) p[k] = v[k];
  }
}

// Where a tile agent reads elements and writes states: separate a and b arrays
// in, the b part of the scanned element out (the state h_t).
template <class A, class B>
struct split_io {
  using element = affine<A, B>;
  const A* a;
  const B* b;
  B* h;

  template <int Items>
  __device__ __forceinline__ void load(index_t begin, index_t valid, element (&items)[Items]) const {
    const index_t first = begin + static_cast<index_t>(threadIdx.x) * Items;
    A av[Items];
    B bv[Items];
    if (valid >= static_cast<index_t>(blockDim.x) * Items && aligned(a + begin) && aligned(b + begin)) {
      load_vector<Items>(a + first, av);
      load_vector<Items>(b + first, bv);
    } else {
#pragma unroll
      for (int k = 0; k < Items; ++k) {
        const bool in = first + k < begin + valid;
        av[k] = in ? a[first + k] : A(1);
        bv[k] = in ? b[first + k] : B(0);
      }
    }
#pragma unroll
    for (int k = 0; k < Items; ++k) items[k] = {av[k], bv[k]};
  }

  template <int Items>
  __device__ __forceinline__ void store(index_t begin, index_t valid, const element (&items)[Items]) const {
    const index_t first = begin + static_cast<index_t>(threadIdx.x) * Items;
    B hv[Items];
#pragma unroll
    for (int k = 0; k < Items; ++k) hv[k] = items[k].b;
    if (valid >= static_cast<index_t>(blockDim.x) * Items && aligned(h + begin)) {
      store_vector<Items>(h + first, hv);
    } else {
#pragma unroll
      for (int k = 0; k < Items; ++k)
        if (first + k < begin + valid) h[first + k] = hv[k];
    }
  }

  __device__ static bool aligned(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }
};

// Elements stored whole (the chunk totals of the two-level scan), scanned in place.
template <class E>
struct element_io {
  using element = E;
  E* e;

  template <int Items>
  __device__ __forceinline__ void load(index_t begin, index_t valid, E (&items)[Items]) const {
    const index_t first = begin + static_cast<index_t>(threadIdx.x) * Items;
#pragma unroll
    for (int k = 0; k < Items; ++k) items[k] = first + k < begin + valid ? e[first + k] : E::identity();
  }
  template <int Items>
  __device__ __forceinline__ void store(index_t begin, index_t valid, const E (&items)[Items]) const {
    const index_t first = begin + static_cast<index_t>(threadIdx.x) * Items;
#pragma unroll
    for (int k = 0; k < Items; ++k)
      if (first + k < begin + valid) e[first + k] = items[k];
  }
};

// The running prefix handed to BlockScan: returns the carry before this tile
// and folds the tile's aggregate into it.
template <class E>
struct running_prefix {
  E total;
  __device__ E operator()(const E& tile_aggregate) {
    const E before = total;
    total = affine_compose{}(total, tile_aggregate);
    return before;
  }
};

// Scans elements [begin, end) of one sequence with the whole block, starting from
// `carry` (identity for a fresh sequence); with Store = false only the aggregate
// is computed. Returns the aggregate carry ∘ e[begin] ∘ … ∘ e[end−1] (valid in
// every thread).
template <int Threads, int Items, bool Store, class IO>
__device__ typename IO::element block_scan_range(const IO& io, index_t begin, index_t end,
                                                 typename IO::element carry) {
  using E = typename IO::element;
  using block_scan = cub::BlockScan<E, Threads, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ typename block_scan::TempStorage temp;
  __shared__ E total;
  constexpr index_t tile = static_cast<index_t>(Threads) * Items;
  running_prefix<E> prefix{carry};
  for (index_t t0 = begin; t0 < end; t0 += tile) {
    const index_t valid = end - t0 < tile ? end - t0 : tile;
    E items[Items];
    io.template load<Items>(t0, valid, items);
    block_scan(temp).InclusiveScan(items, items, affine_compose{}, prefix);
    if constexpr (Store) io.template store<Items>(t0, valid, items);
    if (threadIdx.x == Threads - 1) total = items[Items - 1];
    __syncthreads();  // temp storage is reused by the next tile
  }
  __syncthreads();
  if (begin >= end) return carry;
  return total;
}

}  // namespace mixlens::gpu::detail
