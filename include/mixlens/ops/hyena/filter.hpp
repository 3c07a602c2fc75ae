// Pieces of the Hyena implicit long filter that do not depend on learned
// weights (positional embedding grid, decay rates), and a causal Toeplitz
// product by FFT that reuses one kernel spectrum for many signals.
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/fft.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

// n points from `start` to `end` inclusive; a single point is `start` (as torch.linspace).
inline std::vector<double> linspace(double start, double end, index_t n) {
  std::vector<double> out(static_cast<std::size_t>(n));
  if (n == 1) out[0] = start;
  for (index_t i = 0; n > 1 && i < n; ++i)
    out[static_cast<std::size_t>(i)] = start + (end - start) * static_cast<double>(i) / static_cast<double>(n - 1);
  return out;
}

// Hyena's positional embedding on the grid of `l_max` steps: z(t, :) =
// [t_norm, cos(f_b·w_t) for each band b, −sin(f_b·w_t) for each band b] (the real
// and imaginary parts of exp(−i·f·w)), with t_norm = t/(l_max−1),
// w_t = 2π·t/l_max and f = linspace(1e-4, bands−1, bands), bands = (emb_dim−1)/2.
// Shorter sequences use the first L rows, so filters do not depend on L.
template <class T>
void hyena_positional_embedding(index_t emb_dim, index_t l_max, matrix<T>& z, std::vector<T>& t_norm) {
  const index_t bands = (emb_dim - 1) / 2;
  const auto t = linspace(0.0, 1.0, l_max);
  const auto f = linspace(1e-4, static_cast<double>(bands - 1), bands);
  z = matrix<T>(l_max, emb_dim);
  t_norm.assign(static_cast<std::size_t>(l_max), T(0));
  for (index_t i = 0; i < l_max; ++i) {
    const double w = 2 * std::numbers::pi * static_cast<double>(i) / static_cast<double>(l_max);
    z(i, 0) = static_cast<T>(t[static_cast<std::size_t>(i)]);
    t_norm[static_cast<std::size_t>(i)] = static_cast<T>(t[static_cast<std::size_t>(i)]);
    for (index_t b = 0; b < bands; ++b) {
      const double phase = f[static_cast<std::size_t>(b)] * w;
      z(i, 1 + b) = static_cast<T>(std::cos(phase));
      z(i, 1 + bands + b) = static_cast<T>(-std::sin(phase));
    }
  }
}

// Decay rates of the exponential window, one per filter channel, from the
// slowest (reaches `target` at t_norm = slow_pct) to the fastest (at fast_pct).
template <class T>
std::vector<T> hyena_decay_rates(index_t channels, double fast_pct, double slow_pct, double target) {
  const auto d = linspace(std::log(target) / slow_pct, std::log(target) / fast_pct, channels);
  return std::vector<T>(d.begin(), d.end());
}

// y = (T_k + b·I)·x for one causal kernel k of length L and many length-L
// signals: the kernel spectrum and the FFTW plans are made once. FFT size ≥ 2L.
template <class T>
class fft_toeplitz {
 public:
  fft_toeplitz(const T* kernel, index_t length)
      : L_(length), n_(linear_fft_size(length)), real_(n_), kf_(n_ / 2 + 1), xf_(n_ / 2 + 1),
        forward_([&] { return fftw<T>::r2c(static_cast<int>(n_), real_.data(), xf_.data()); }),
        backward_([&] { return fftw<T>::c2r(static_cast<int>(n_), xf_.data(), real_.data()); }) {
    for (index_t t = 0; t < L_; ++t) real_[t] = kernel[t];
    forward_.execute();
    for (index_t f = 0; f < n_ / 2 + 1; ++f) {
      kf_[f][0] = xf_[f][0];
      kf_[f][1] = xf_[f][1];
    }
  }

  // in and out may alias. Entries before `first` are known to be zero (and stay
  // zero in the output, by causality).
  void apply(const T* in, T* out, T skip, index_t first = 0) {
    std::fill(real_.data(), real_.data() + n_, T(0));
    for (index_t t = first; t < L_; ++t) real_[t] = in[t];
    forward_.execute();
    for (index_t f = 0; f < n_ / 2 + 1; ++f) {
      const T re = kf_[f][0] * xf_[f][0] - kf_[f][1] * xf_[f][1];
      const T im = kf_[f][0] * xf_[f][1] + kf_[f][1] * xf_[f][0];
      xf_[f][0] = re;
      xf_[f][1] = im;
    }
    backward_.execute();
    const T scale = T(1) / static_cast<T>(n_);
    for (index_t t = 0; t < first; ++t) out[t] = T(0);
    for (index_t t = first; t < L_; ++t) out[t] = real_[t] * scale + skip * in[t];
  }

 private:
  using cplx = typename fftw<T>::cplx;
  index_t L_, n_;
  fftw_buffer<T, T> real_;
  fftw_buffer<cplx, T> kf_, xf_;
  fftw_plan<T> forward_, backward_;
};

}  // namespace mixlens::detail
