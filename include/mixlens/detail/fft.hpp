// Host FFTs through FFTW3 (float and double), and the causal convolution built
// on them. FFTW's planner is not thread-safe, so planning is serialized.
#pragma once

#include <fftw3.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>

#include "mixlens/config.hpp"
#include "mixlens/detail/parallel.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::detail {

inline std::mutex& fftw_planner_mutex() {
  static std::mutex m;
  return m;
}

// Maps FFTW's float and double APIs onto one interface.
template <class T>
struct fftw;

#define MIXLENS_FFTW_API(T, prefix)                                                                          \
  template <>                                                                                                \
  struct fftw<T> {                                                                                           \
    using plan = prefix##_plan;                                                                              \
    using cplx = prefix##_complex;                                                                           \
    static void* malloc(std::size_t bytes) { return prefix##_malloc(bytes); }                                \
    static void free(void* p) { prefix##_free(p); }                                                          \
    static plan r2c(int n, T* in, cplx* out) { return prefix##_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE); } \
    static plan c2r(int n, cplx* in, T* out) { return prefix##_plan_dft_c2r_1d(n, in, out, FFTW_ESTIMATE); } \
    static plan c2c(int n, cplx* in, cplx* out, int sign) {                                                  \
      return prefix##_plan_dft_1d(n, in, out, sign, FFTW_ESTIMATE);                                          \
    }                                                                                                        \
    static void execute(plan p) { prefix##_execute(p); }                                                     \
    static void destroy(plan p) { prefix##_destroy_plan(p); }                                                \
  };
MIXLENS_FFTW_API(float, fftwf)
MIXLENS_FFTW_API(double, fftw)
#undef MIXLENS_FFTW_API

// FFTW-aligned buffer of n elements.
template <class E, class T>
class fftw_buffer {
 public:
  explicit fftw_buffer(index_t n) : n_(n), p_(static_cast<E*>(fftw<T>::malloc(sizeof(E) * static_cast<std::size_t>(std::max<index_t>(n, 1))))) {
    if (!p_) throw error("mixlens::fft: out of memory allocating " + std::to_string(n) + " elements");
    std::memset(static_cast<void*>(p_.get()), 0, sizeof(E) * static_cast<std::size_t>(n));
  }
  E* data() { return p_.get(); }
  E& operator[](index_t i) { return p_.get()[i]; }
  [[nodiscard]] index_t size() const { return n_; }

 private:
  struct deleter {
    void operator()(E* p) const { fftw<T>::free(p); }
  };
  index_t n_;
  std::unique_ptr<E, deleter> p_;
};

// A plan bound to its buffers; executes any number of times.
template <class T>
class fftw_plan {
 public:
  template <class Make>
  explicit fftw_plan(Make make) {
    std::lock_guard lock(fftw_planner_mutex());
    p_ = make();
  }
  ~fftw_plan() {
    std::lock_guard lock(fftw_planner_mutex());
    fftw<T>::destroy(p_);
  }
  fftw_plan(const fftw_plan&) = delete;
  fftw_plan& operator=(const fftw_plan&) = delete;
  void execute() const { fftw<T>::execute(p_); }

 private:
  typename fftw<T>::plan p_;
};

// Smallest power of two ≥ 2·length: the linear (not circular) convolution of two
// length-L sequences fits without wrap-around.
[[nodiscard]] inline index_t linear_fft_size(index_t length) {
  return static_cast<index_t>(std::bit_ceil(static_cast<std::uint64_t>(std::max<index_t>(2 * length, 2))));
}

// Causal convolution of many signals with their kernels, by FFT of size ≥ 2L:
// y(c, t) = Σ_{s ≤ t} k(c, t−s)·x(c, s). Kernels may be shorter than L (zero beyond).
// Channels [first, last) only; parallel_fft_causal_convolution splits them over threads.
template <class T>
void fft_causal_convolution(matrix_view<const T> k, matrix_view<const T> x, matrix_view<T> y, index_t first = 0,
                            index_t last = -1) {
  const index_t L = x.extent(1), n = linear_fft_size(L), bins = n / 2 + 1;
  if (last < 0) last = x.extent(0);
  using cplx = typename fftw<T>::cplx;
  fftw_buffer<T, T> real(n);
  fftw_buffer<cplx, T> kf(bins), xf(bins);
  fftw_plan<T> kernel_forward([&] { return fftw<T>::r2c(static_cast<int>(n), real.data(), kf.data()); });
  fftw_plan<T> signal_forward([&] { return fftw<T>::r2c(static_cast<int>(n), real.data(), xf.data()); });
  fftw_plan<T> backward([&] { return fftw<T>::c2r(static_cast<int>(n), xf.data(), real.data()); });
  const index_t taps = std::min(k.extent(1), L);
  for (index_t c = first; c < last; ++c) {
    std::fill(real.data(), real.data() + n, T(0));
    for (index_t t = 0; t < taps; ++t) real[t] = k(c, t);
    kernel_forward.execute();
    std::fill(real.data(), real.data() + n, T(0));
    for (index_t t = 0; t < L; ++t) real[t] = x(c, t);
    signal_forward.execute();
    for (index_t f = 0; f < bins; ++f) {  // pointwise product, in place in xf
      const T re = kf[f][0] * xf[f][0] - kf[f][1] * xf[f][1];
      const T im = kf[f][0] * xf[f][1] + kf[f][1] * xf[f][0];
      xf[f][0] = re;
      xf[f][1] = im;
    }
    backward.execute();  // unnormalized: divide by n
    for (index_t t = 0; t < L; ++t) y(c, t) = real[t] / static_cast<T>(n);
  }
}

// The same with the channels in `blocks` contiguous blocks, one per thread of
// parallel_for, each with its own buffers and plans (FFTW executes plans
// concurrently; planning is serialized): the results of one block bit for bit.
template <class T>
void parallel_fft_causal_convolution(matrix_view<const T> k, matrix_view<const T> x, matrix_view<T> y, index_t blocks) {
  const index_t channels = x.extent(0);
  blocks = std::max<index_t>(1, std::min(blocks, channels));
  parallel_for(blocks, blocks, [&](index_t b) {
    fft_causal_convolution(k, x, y, b * channels / blocks, (b + 1) * channels / blocks);
  });
}

// In-place complex DFT of `data` (sign −1 forward, +1 backward, unnormalized).
template <class T>
void dft(vector_view<complex<T>> data, int sign) {
  const index_t n = static_cast<index_t>(data.size());
  using cplx = typename fftw<T>::cplx;
  fftw_buffer<cplx, T> buf(n);
  std::memcpy(static_cast<void*>(buf.data()), data.data(), sizeof(cplx) * static_cast<std::size_t>(n));
  fftw_plan<T> plan([&] { return fftw<T>::c2c(static_cast<int>(n), buf.data(), buf.data(), sign); });
  plan.execute();
  std::memcpy(static_cast<void*>(data.data()), buf.data(), sizeof(cplx) * static_cast<std::size_t>(n));
}

}  // namespace mixlens::detail
