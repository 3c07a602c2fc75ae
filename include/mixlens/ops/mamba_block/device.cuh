// The unified Mamba block on the device (fp32, real state):
//   apply                 the conv (gpu::detail::lti_apply), the activation factor,
//                         then the S6 part through its fused scan
//   materialize_channels  the S6 part's tiled α, then D, the gate, the conv and
//                         the activation folded into every row in one pass, one
//                         warp per row, in place
// rows stay generic (mamba_block_operator::row).
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/operator.cuh"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/s6/device.cuh"

namespace mixlens::gpu {

namespace detail {

inline constexpr int block_fold_warps = 8;  // rows per block: one warp each

// Row t of channel d0 + c, from the raw α in place, in one pass:
//   r[s] = g_t·Σ_{lag < taps, s+lag ≤ t} (r[s+lag] + [s+lag = t]·D)·σ[s+lag]·taps[lag]
// (D and the gate g may be null). One warp per row, so that short rows leave
// no threads idle and steps need only warp barriers: a step reads columns ≥ its
// first and writes only its own 32 after the barrier, so what later steps read
// is still α.
static __global__ void __launch_bounds__(block_fold_warps * 32)
    mamba_block_fold_kernel(float* m, index_t rows, index_t L, const float* activation, const float* kernel,
                            index_t taps, const float* skip, const float* gate) {
  const index_t row = static_cast<index_t>(blockIdx.x) * block_fold_warps + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp
  const index_t lane = threadIdx.x % 32, c = row / L, t = row % L;
  float* r = m + row * L;
  const float* sg = activation + c * L;
  const float* w = kernel + c * taps;
  const float d = skip ? skip[c] : 0.0f, g = gate ? gate[c * L + t] : 1.0f;
  // Entries right of the diagonal stay as α left them: zero.
  for (index_t s0 = 0; s0 <= t; s0 += 32) {
    const index_t s = s0 + lane;
    float acc = 0;
    if (s <= t)
      for (index_t lag = 0; lag < taps && s + lag <= t; ++lag)
        acc += (r[s + lag] + (s + lag == t ? d : 0.0f)) * sg[s + lag] * w[lag];
    __syncwarp();
    if (s <= t) r[s] = acc * g;
    __syncwarp();
  }
}

static __global__ void multiply_kernel(float* v, const float* factor, index_t n) {
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < n; k += index_t(gridDim.x) * blockDim.x)
    v[k] *= factor[k];
}

}  // namespace detail

template <>
struct device_path<mamba_block_operator<float, float>> {
  using view = mamba_block_operator<float, float>;

  static void apply(const view& op, matrix_view<const float> x, matrix_view<float> y, cudaStream_t stream) {
    const index_t D = op.in_channels(), L = op.length();
    detail::stream_workspace v(static_cast<std::size_t>(D * L) * sizeof(float), stream);
    auto* pv = static_cast<float*>(v.get());
    detail::lti_apply(op.conv, x.data_handle(), pv, nullptr, stream);
    detail::multiply_kernel<<<detail::generic_grid(D * L), detail::generic_threads, 0, stream>>>(
        pv, op.activation.data_handle(), D * L);
    MIXLENS_CUDA_CHECK_LAUNCH();
    gpu::apply(op.ssm, matrix_view<const float>(pv, D, L), y, stream);
  }

  static void materialize(const view& op, index_t out, index_t in, matrix_view<float> m, cudaStream_t stream) {
    if (out != in) {
      const auto bytes = static_cast<std::size_t>(op.length() * op.length()) * sizeof(float);
      MIXLENS_CUDA_CHECK(cudaMemsetAsync(m.data_handle(), 0, bytes, stream));
      return;
    }
    materialize_channels(op, out, 1, m.data_handle(), stream);
  }

  static void materialize_channels(const view& op, index_t d0, index_t count, float* out, cudaStream_t stream) {
    const index_t L = op.length(), taps = op.conv.taps();
    detail::s6_alpha_channels(op.ssm, d0, count, out, stream);  // α alone: D and the gate join the fold
    const float* skip = op.ssm.skip.empty() ? nullptr : op.ssm.skip.data() + d0;
    const float* gate = is_empty(op.ssm.gate) ? nullptr : op.ssm.gate.data_handle() + d0 * L;
    const index_t rows = count * L;
    detail::mamba_block_fold_kernel<<<detail::grid_size((rows + detail::block_fold_warps - 1) / detail::block_fold_warps),
                                      detail::block_fold_warps * 32, 0, stream>>>(
        out, rows, L, op.activation.data_handle() + d0 * L, op.conv.kernel.data_handle() + d0 * taps, taps, skip, gate);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace mixlens::gpu
