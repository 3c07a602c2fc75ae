// Dispatch level: launch configuration and workspace for each scan variant.
#pragma once

#include <cub/device/device_scan.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/iterator/transform_output_iterator.h>

#include <cstddef>

#include "mixlens/gpu/detail/scan_kernels.cuh"
#include "mixlens/gpu/error.cuh"

namespace mixlens::gpu::detail {

inline unsigned grid_size(index_t blocks) {
  if (blocks > 0x7fffffff) mixlens::detail::fail("mixlens::gpu", "grid", "at most 2^31 - 1 blocks", blocks);
  return static_cast<unsigned>(blocks);
}

// Stream-ordered scratch memory, freed on the same stream.
class stream_workspace {
 public:
  stream_workspace(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) MIXLENS_CUDA_CHECK(cudaMallocAsync(&data_, bytes, stream));
  }
  stream_workspace(const stream_workspace&) = delete;
  stream_workspace& operator=(const stream_workspace&) = delete;
  stream_workspace(stream_workspace&& other) noexcept : data_(other.data_), stream_(other.stream_) {
    other.data_ = nullptr;
  }
  stream_workspace& operator=(stream_workspace&&) = delete;
  ~stream_workspace() {
    if (data_) cudaFreeAsync(data_, stream_);
  }
  [[nodiscard]] void* get() const { return data_; }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

template <class A, class B>
void dispatch_sequential(const A* a, const B* b, B* h, index_t count, index_t length, cudaStream_t stream) {
  constexpr int threads = 128;
  sequential_scan_kernel<<<grid_size((count + threads - 1) / threads), threads, 0, stream>>>(a, b, h, count, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

template <class A, class B>
void dispatch_warp(const A* a, const B* b, B* h, index_t count, index_t length, cudaStream_t stream) {
  constexpr int warps = 4;
  warp_scan_kernel<warps><<<grid_size((count + warps - 1) / warps), warps * 32, 0, stream>>>(a, b, h, count, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

template <class A, class B>
void dispatch_blelloch(const A* a, const B* b, B* h, index_t count, index_t length, cudaStream_t stream) {
  constexpr int threads = 256;
  blelloch_scan_kernel<threads><<<grid_size(count), threads, 0, stream>>>(a, b, h, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

template <int Threads, int Items, class A, class B>
void dispatch_block(const A* a, const B* b, B* h, index_t count, index_t length, cudaStream_t stream) {
  block_scan_kernel<Threads, Items><<<grid_size(count), Threads, 0, stream>>>(a, b, h, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

template <int Threads, int Items, class A, class B>
void dispatch_chunked(const A* a, const B* b, B* h, index_t count, index_t length, index_t chunk,
                      cudaStream_t stream) {
  using E = affine<A, B>;
  const index_t chunks = (length + chunk - 1) / chunk;
  stream_workspace totals(static_cast<std::size_t>(count * chunks) * sizeof(E), stream);
  E* t = static_cast<E*>(totals.get());
  const unsigned blocks = grid_size(count * chunks);
  chunk_reduce_kernel<Threads, Items><<<blocks, Threads, 0, stream>>>(a, b, t, length, chunk, chunks);
  MIXLENS_CUDA_CHECK_LAUNCH();
  chunk_carry_kernel<Threads, 4><<<grid_size(count), Threads, 0, stream>>>(t, chunks);
  MIXLENS_CUDA_CHECK_LAUNCH();
  chunk_fixup_kernel<Threads, Items><<<blocks, Threads, 0, stream>>>(a, b, h, t, length, chunk, chunks);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// CUB DeviceScan (single-pass, decoupled look-back). Several sequences become one
// scan by key, the key being the sequence index.
template <class A, class B>
void dispatch_device(const A* a, const B* b, B* h, index_t count, index_t length, cudaStream_t stream) {
  auto in = thrust::make_transform_iterator(thrust::counting_iterator<index_t>(0), make_element<A, B>{a, b});
  auto out = thrust::make_transform_output_iterator(h, take_state<A, B>{});
  const index_t n = count * length;
  std::size_t bytes = 0;
  if (count == 1) {
    MIXLENS_CUDA_CHECK(cub::DeviceScan::InclusiveScan(nullptr, bytes, in, out, affine_compose{}, n, stream));
    stream_workspace temp(bytes, stream);
    MIXLENS_CUDA_CHECK(cub::DeviceScan::InclusiveScan(temp.get(), bytes, in, out, affine_compose{}, n, stream));
  } else {
    auto keys = thrust::make_transform_iterator(thrust::counting_iterator<index_t>(0), sequence_of{length});
    MIXLENS_CUDA_CHECK(cub::DeviceScan::InclusiveScanByKey(nullptr, bytes, keys, in, out, affine_compose{}, n,
                                                           cuda::std::equal_to<>{}, stream));
    stream_workspace temp(bytes, stream);
    MIXLENS_CUDA_CHECK(cub::DeviceScan::InclusiveScanByKey(temp.get(), bytes, keys, in, out, affine_compose{}, n,
                                                           cuda::std::equal_to<>{}, stream));
  }
}

}  // namespace mixlens::gpu::detail
