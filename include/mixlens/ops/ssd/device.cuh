// Mamba-2's SSD on the device: apply by the recurrence, one thread per channel
// (head h, value p) carrying its N states in double through the sequence, D
// and the gate applied on the way out. O(channels·L·N) work instead of the
// generic path's O(channels·L²·N); materialize and rows stay generic (the row
// is MIXLENS_HD). State sizes above max_state fall back to the generic apply.
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/ops/ssd.hpp"

namespace mixlens::gpu {

namespace detail {

inline constexpr index_t ssd_max_state = 256;

template <class T>
__global__ void ssd_recurrent_kernel(ssd_operator<T> op, const T* x, T* y) {
  const index_t channels = op.in_channels(), L = op.length(), N = op.state_size();
  for (index_t ch = blockIdx.x * index_t(blockDim.x) + threadIdx.x; ch < channels;
       ch += index_t(gridDim.x) * blockDim.x) {
    const index_t h = op.head_of(ch), g = op.group_of(h);
    const double a = op.a[static_cast<std::size_t>(h)];
    const double d = op.skip.empty() ? 0.0 : double(op.skip_of(ch));
    double state[ssd_max_state];
    for (index_t n = 0; n < N; ++n) state[n] = 0;
    for (index_t t = 0; t < L; ++t) {
      const double dt = op.delta(h, t), decay = exp(a * dt), xt = x[ch * L + t], in = dt * xt;
      double acc = 0;
      for (index_t n = 0; n < N; ++n) {
        state[n] = decay * state[n] + double(op.b(g, n, t)) * in;
        acc += double(op.c(g, n, t)) * state[n];
      }
      acc += d * xt;
      if (!is_empty(op.gate)) acc *= double(op.gate(ch, t));
      y[ch * L + t] = static_cast<T>(acc);
    }
  }
}

}  // namespace detail

template <class T>
struct device_path<ssd_operator<T>> {
  static void apply(const ssd_operator<T>& op, matrix_view<const T> x, matrix_view<T> y, cudaStream_t stream) {
    if (op.state_size() > detail::ssd_max_state) return detail::generic_apply(op, x, y, stream);
    constexpr int threads = 64;
    const index_t channels = op.in_channels();
    detail::ssd_recurrent_kernel<<<detail::grid_size((channels + threads - 1) / threads), threads, 0, stream>>>(
        op, x.data_handle(), y.data_handle());
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace mixlens::gpu
