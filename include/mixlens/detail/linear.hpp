// The dot product under the host's dense products (detail/gemm.hpp).
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

}  // namespace mixlens::detail
