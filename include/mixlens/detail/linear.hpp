// Dense products of the host model code: rows of a time-major signal times a
// PyTorch Linear weight (out × in).
#pragma once

#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// Σ a[i]·b[i] with eight independent partial sums, which the compiler vectorizes
// without reassociating a single running sum.
template <class T>
[[nodiscard]] T dot(const T* a, const T* b, index_t n) {
  T acc[8] = {};
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  T tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// y (rows × out, row-major) = x (rows × in, row stride ldx) · wᵀ + bias, w (out × in).
template <class T>
void linear(const T* x, index_t ldx, index_t rows, const matrix<T>& w, const std::vector<T>& bias, T* y) {
  const index_t out = w.extent(0), in = w.extent(1);
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * ldx;
    T* yr = y + r * out;
    for (index_t o = 0; o < out; ++o) yr[o] = dot(xr, w.data() + o * in, in) + (bias.empty() ? T(0) : bias[static_cast<std::size_t>(o)]);
  }
}

}  // namespace mixlens::detail
