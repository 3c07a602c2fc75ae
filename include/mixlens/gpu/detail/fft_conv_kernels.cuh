// Kernel level: the element-wise stages around cuFFT for a causal convolution
// by FFT of size n ≥ 2L (zero padding, so the circular product is the linear one).
#pragma once

#include <cufft.h>

#include "mixlens/tensor.hpp"

namespace mixlens::gpu::detail {

// dst (rows, n) ← src (rows, L) zero-padded; src row r is read at r % src_rows
// (the filter is shared by the batch when src_rows = D).
template <class T>
__global__ void pad_rows_kernel(const T* src, T* dst, index_t rows, index_t length, index_t n) {
  const index_t total = rows * n;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = k / n, t = k % n;
    dst[k] = t < length ? src[r * length + t] : T(0);
  }
}

// X[r][f] ← X[r][f] · K[r % channels][f] / n (the inverse FFT is unnormalized).
template <class C>
__global__ void spectral_product_kernel(C* x, const C* k, index_t rows, index_t channels,
                                        index_t bins, float scale) {
  const index_t total = rows * bins;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / bins, f = i % bins;
    const C a = x[i], b = k[(r % channels) * bins + f];
    x[i] = C{scale * (a.x * b.x - a.y * b.y), scale * (a.x * b.y + a.y * b.x)};
  }
}

// y[r][t] = (conv[r][t] + bias[d]·u[r][t]) · gate[r][t] for t < L (Hyena's
// long convolution with its skip term, then the gate when given).
template <class T>
__global__ void conv_epilogue_kernel(const T* conv, const T* u, const T* bias, const T* gate, T* y, index_t rows, index_t channels, index_t length, index_t n) {
  const index_t total = rows * length;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / length, t = i % length;
    T v = conv[r * n + t];
    if (bias) v += bias[r % channels] * u[i];
    if (gate) v *= gate[i];
    y[i] = v;
  }
}

// Direct causal convolution, one thread per output: the O(L²) baseline.
template <class T>
__global__ void direct_causal_conv_kernel(const T* u, const T* k, T* y, index_t rows, index_t channels,
                                          index_t length) {
  const index_t total = rows * length;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / length, t = i % length;
    const T* ur = u + r * length;
    const T* kr = k + (r % channels) * length;
    T acc = 0;
    for (index_t s = 0; s <= t; ++s) acc += kr[t - s] * ur[s];
    y[i] = acc;
  }
}

}  // namespace mixlens::gpu::detail
