// Scalar helpers shared by the operators: activations and real/complex glue.
#pragma once

#include <cmath>

#include "mixlens/config.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// softplus as PyTorch computes it (threshold 20: linear above, avoids overflow).
template <class T>
[[nodiscard]] T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

template <class T>
[[nodiscard]] T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <class T>
[[nodiscard]] T silu(T x) {
  return x * sigmoid(x);
}

template <class T>
[[nodiscard]] T real_part(T x) {
  return x;
}
template <class T>
[[nodiscard]] T real_part(complex<T> x) {
  return x.real();
}

}  // namespace mixlens::detail
