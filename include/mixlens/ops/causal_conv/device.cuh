// The causal depthwise convolution on the device: the fast apply behind every
// LTI operator (S4D, S4, DSS, short convolutions) and GSS. Long fp32 kernels go
// through the cuFFT convolution (FFT size 2L, gpu/fft_conv.cuh); short kernels
// and double run a direct convolution; the two-sided (bidirectional) form runs
// both halves so. materialize and rows stay generic (a Toeplitz row is a copy
// of the kernel).
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/fft_conv.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/ops/causal_conv.hpp"

namespace mixlens::gpu {

namespace detail {

// y(c, t) = (Σ_k K(c, k)·x(c, t − k) + D(c)·x(c, t))·gate(c, t); skip and gate may be null.
template <class T>
__global__ void direct_conv_kernel(const T* kernel, index_t taps, const T* skip, const T* x, const T* gate, T* y,
                                   index_t channels, index_t L) {
  const index_t total = channels * L;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total; e += index_t(gridDim.x) * blockDim.x) {
    const index_t c = e / L, t = e % L;
    const T* k = kernel + c * taps;
    const T* xc = x + c * L;
    T acc = skip ? skip[c] * xc[t] : T(0);
    const index_t n = taps < t + 1 ? taps : t + 1;
    for (index_t j = 0; j < n; ++j) acc += k[j] * xc[t - j];
    y[e] = gate ? acc * gate[e] : acc;
  }
}

// y = (K ∗ x + D·x) ⊙ gate for a convolution view over device memory; gate
// (channels × L) may be null.
template <class T, class Kind>
void lti_apply(const causal_conv_operator<T, Kind>& op, const T* x, T* y, std::type_identity_t<const T*> gate,
               cudaStream_t stream) {
  const index_t C = op.in_channels(), L = op.length(), taps = op.taps();
  const T* skip = op.skip.empty() ? nullptr : op.skip.data();
  if constexpr (std::is_same_v<T, float>) {
    if (taps > causal_conv_operator<T, Kind>::direct_taps && taps <= L) {
      causal_fft_conv conv(1, C, L);
      if (taps == L) {
        conv.set_filter(op.kernel.data_handle(), stream);
      } else {  // zero-padded to L taps
        stream_workspace padded(static_cast<std::size_t>(C * L) * sizeof(float), stream);
        auto* p = static_cast<float*>(padded.get());
        MIXLENS_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<std::size_t>(C * L) * sizeof(float), stream));
        MIXLENS_CUDA_CHECK(cudaMemcpy2DAsync(p, L * sizeof(float), op.kernel.data_handle(), taps * sizeof(float),
                                             taps * sizeof(float), C, cudaMemcpyDeviceToDevice, stream));
        conv.set_filter(p, stream);
      }
      conv.apply(x, y, skip, gate, stream);
      // The plans and buffers die with conv: wait for the work that uses them.
      MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
      return;
    }
  }
  direct_conv_kernel<<<generic_grid(C * L), generic_threads, 0, stream>>>(op.kernel.data_handle(), taps, skip, x, gate,
                                                                         y, C, L);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

template <class T, class Kind>
struct device_path<causal_conv_operator<T, Kind>> {
  static void apply(const causal_conv_operator<T, Kind>& op, matrix_view<const T> x, matrix_view<T> y,
                    cudaStream_t stream) {
    detail::lti_apply(op, x.data_handle(), y.data_handle(), nullptr, stream);
  }
};

// The bidirectional form: the forward convolution, then the backward one in
// reversed time, each by the path above.
template <class T, class Kind>
struct device_path<two_sided_conv_operator<T, Kind>> {
  static void apply(const two_sided_conv_operator<T, Kind>& op, matrix_view<const T> x, matrix_view<T> y,
                    cudaStream_t stream) {
    detail::lti_apply(op.forward, x.data_handle(), y.data_handle(), nullptr, stream);
    detail::add_time_reversed(
        x.data_handle(), y.data_handle(), op.in_channels(), op.length(),
        [&](const T* xr, T* yr) { detail::lti_apply(op.backward, xr, yr, nullptr, stream); }, stream);
  }
};

}  // namespace mixlens::gpu
