// Scalar helpers shared by the operators: activations and real/complex glue.
#pragma once

#include <cmath>
#include <sstream>
#include <string>

#include "mixlens/config.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// The element math shared by host loops and device kernels (MIXLENS_HD: one
// definition each). std:: math functions have device overloads under nvcc.

// softplus as PyTorch computes it (threshold 20: linear above, avoids overflow).
template <class T>
[[nodiscard]] MIXLENS_HD T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

template <class T>
[[nodiscard]] MIXLENS_HD T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <class T>
[[nodiscard]] MIXLENS_HD T silu(T x) {
  return x * sigmoid(x);
}

// x clamped to [lo, hi]; a NaN stays NaN (fmin / fmax would drop it).
template <class T>
[[nodiscard]] MIXLENS_HD T clamp_keep_nan(T x, T lo, T hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

// Whether clamp_keep_nan's clamp to [lo, hi] held x, a result of the clamp, at a
// bound: x ≤ lo for lo > 0 (the default lo = 0 under softplus never binds) or
// x ≥ hi. The clamp's gradient is 0 there.
template <class T>
[[nodiscard]] MIXLENS_HD bool clamp_binds(T x, T lo, T hi) {
  return (lo > T(0) && x <= lo) || x >= hi;
}

template <class T>
[[nodiscard]] MIXLENS_HD T real_part(T x) {
  return x;
}
template <class T>
[[nodiscard]] MIXLENS_HD T real_part(complex<T> x) {
  return x.real();
}

// Finite real and imaginary parts (host checks).
template <class T>
[[nodiscard]] bool is_finite(T x) {
  return std::isfinite(x);
}
template <class T>
[[nodiscard]] bool is_finite(complex<T> x) {
  return std::isfinite(x.real()) && std::isfinite(x.imag());
}

// exp(Δ·a): the per-step decay of one state, real or complex.
template <class T>
[[nodiscard]] MIXLENS_HD T exp_scaled(T a, T dt) {
  return std::exp(dt * a);
}
template <class T>
[[nodiscard]] MIXLENS_HD complex<T> exp_scaled(complex<T> a, T dt) {
  return cuda::std::exp(dt * a);
}

// The real output of a state contraction: the conjugate partner of a complex
// state is implied, so its contribution doubles the real part.
template <class T>
[[nodiscard]] MIXLENS_HD T output_part(T x) {
  return x;
}
template <class T>
[[nodiscard]] MIXLENS_HD T output_part(complex<T> x) {
  return T(2) * x.real();
}

// exp(z) − 1 for std::complex or cuda::std::complex, without the cancellation of
// the naive form when |z| is small (Δ·A is often ~1e-3):
// Re = expm1(x)·cos y − 2 sin²(y/2), Im = e^x·sin y.
template <class C>
[[nodiscard]] C complex_expm1(C z) {
  const auto x = z.real(), y = z.imag(), half = std::sin(y / 2);
  return C(std::expm1(x) * std::cos(y) - 2 * half * half, std::exp(x) * std::sin(y));
}

// "a + bi" for error messages, at full precision.
template <class C>
[[nodiscard]] std::string format_complex(C z) {
  std::ostringstream os;
  os.precision(17);
  os << z.real() << (z.imag() < 0 ? " - " : " + ") << std::abs(z.imag()) << "i";
  return os.str();
}

}  // namespace mixlens::detail
