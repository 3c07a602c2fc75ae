// mixlens::gpu::linear_recurrence: the affine recurrence h_t = a_t·h_{t−1} + b_t
// over a batch of independent sequences on the GPU, with the scan algorithm
// chosen by a policy. Views hold device memory; each row is one sequence
// (batch × channels × states flattened into rows), any length.
//
// Layers: thread_scan → warp_scan → block_scan → scan_kernels → scan_dispatch → here.
#pragma once

#include <cuda_runtime.h>

#include <string_view>

#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/scan.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu {

// One thread runs one sequence from start to end (the baseline).
struct sequential_policy {
  static constexpr std::string_view name = "sequential";
};
// One warp per sequence, Kogge–Stone shuffles over 32-element steps.
struct warp_policy {
  static constexpr std::string_view name = "warp";
};
// One block per sequence, Blelloch up-/down-sweep in shared memory.
struct blelloch_policy {
  static constexpr std::string_view name = "blelloch";
};
// One block per sequence, CUB BlockScan tiles with the carry passed between tiles.
struct block_policy {
  static constexpr std::string_view name = "block";
};
// CUB DeviceScan with decoupled look-back over all elements (by key for batches):
// for one very long sequence.
struct device_policy {
  static constexpr std::string_view name = "device";
};
// Two levels: reduce each chunk, scan the chunk totals, rescan each chunk from its
// carry. Parallel in time, so it also suits one very long sequence.
struct chunked_policy {
  static constexpr std::string_view name = "chunked";
  index_t chunk = 16384;
};

namespace detail {

inline void check_device_pointer(std::string_view argument, const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    (void)cudaGetLastError();
    mixlens::detail::fail("mixlens::gpu::linear_recurrence", argument, "a device pointer", "an unknown pointer");
  }
  if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged)
    mixlens::detail::fail("mixlens::gpu::linear_recurrence", argument, "a device pointer", "host memory");
}

}  // namespace detail

// Scans every row of (a, b) into h (all count × length, device memory).
template <class A, class B, class Policy = block_policy>
void linear_recurrence(matrix_view<const A> a, matrix_view<const B> b, matrix_view<B> h, Policy policy = {},
                       cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::linear_recurrence";
  mixlens::detail::check_positive(where, "a", a.extent(0));
  mixlens::detail::check_positive(where, "a", a.extent(1));
  mixlens::detail::check_equal(where, "b", "rows", a.extent(0), b.extent(0));
  mixlens::detail::check_equal(where, "b", "length", a.extent(1), b.extent(1));
  mixlens::detail::check_equal(where, "h", "rows", a.extent(0), h.extent(0));
  mixlens::detail::check_equal(where, "h", "length", a.extent(1), h.extent(1));
  detail::check_device_pointer("a", a.data_handle());
  detail::check_device_pointer("b", b.data_handle());
  detail::check_device_pointer("h", h.data_handle());
  const index_t count = a.extent(0), length = a.extent(1);
  const A* pa = a.data_handle();
  const B* pb = b.data_handle();
  B* ph = h.data_handle();
  if constexpr (std::is_same_v<Policy, sequential_policy>) {
    detail::dispatch_sequential(pa, pb, ph, count, length, stream);
  } else if constexpr (std::is_same_v<Policy, warp_policy>) {
    detail::dispatch_warp(pa, pb, ph, count, length, stream);
  } else if constexpr (std::is_same_v<Policy, blelloch_policy>) {
    detail::dispatch_blelloch(pa, pb, ph, count, length, stream);
  } else if constexpr (std::is_same_v<Policy, block_policy>) {
    detail::dispatch_block<128, 8>(pa, pb, ph, count, length, stream);
  } else if constexpr (std::is_same_v<Policy, device_policy>) {
    detail::dispatch_device(pa, pb, ph, count, length, stream);
  } else {
    static_assert(std::is_same_v<Policy, chunked_policy>, "unknown GPU scan policy");
    constexpr index_t tile = 128 * 8;
    if (policy.chunk < tile || policy.chunk % tile != 0)
      mixlens::detail::fail(where, "policy.chunk", "a positive multiple of 1024", policy.chunk);
    detail::dispatch_chunked<128, 8>(pa, pb, ph, count, length, policy.chunk, stream);
  }
}

}  // namespace mixlens::gpu
