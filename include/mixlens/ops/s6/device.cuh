// S6 on the device: the fast kernels behind gpu::apply / materialize / rows for
// fp32 views (real or complex state). Double views take the generic path.
//
//   apply        the fused selective scan (gpu/s6.cuh), Δ already after softplus,
//                D as the skip, the view's gate as a plain (non-SiLU) gate
//   materialize  the tiled α kernel for one channel (gpu/alpha.cuh), then D and
//                the gate folded in
//   rows         the α rows kernel, then the same fold
//   materialize_channels  the tiled α kernel over many channels at once
//   aggregate_channels    the same tiles reduced over the channels in registers
//                         (the maps without the D × L × L tensor)
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "mixlens/gpu/alpha.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/ops/s6.hpp"

namespace mixlens::gpu {

namespace detail {

// For `channels` consecutive channels c (rows × L each):
// r(c, k, s) = gate_c(t_k)·(r(c, k, s) + [s = t_k]·skip_c) for rows t_k =
// positions[k] (or k when positions is null); skip (per channel) and gate
// (channels × L) may be null.
template <class T>
__global__ void s6_fold_kernel(T* r, index_t channels, index_t rows, index_t L, const index_t* positions,
                               const T* skip, const T* gate) {
  const index_t total = channels * rows * L;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total; e += index_t(gridDim.x) * blockDim.x) {
    const index_t c = e / (rows * L), k = (e / L) % rows, s = e % L, t = positions ? positions[k] : k;
    T v = r[e];
    if (skip && s == t) v += skip[c];
    if (gate) v *= gate[c * L + t];
    r[e] = v;
  }
}

// α's inputs for channels [d0, d0 + count), all in one group of B and C.
template <class State>
hidden_attention_params<State> alpha_params(const s6_operator<float, State>& op, index_t d0, index_t count) {
  const index_t L = op.length(), N = op.state_size(), g = op.group_of(d0);
  hidden_attention_params<State> p;
  p.batch = 1, p.channels = count, p.length = L, p.state_size = N, p.groups = 1;
  p.delta = op.delta.data_handle() + d0 * L;
  p.a = op.a.data_handle() + d0 * N;
  p.b = op.b.data_handle() + g * N * L;
  p.c = op.c.data_handle() + g * N * L;
  return p;
}

// The paper's α alone (no D, no gate) of channels [d0, d0 + count) into out
// (count × L × L): the tiled kernel over runs of channels that share a group.
template <class State>
void s6_alpha_channels(const s6_operator<float, State>& op, index_t d0, index_t count, float* out,
                       cudaStream_t stream) {
  const index_t L = op.length(), per_group = op.in_channels() / op.groups();
  for (index_t d = d0; d < d0 + count;) {
    const index_t run = std::min(d0 + count, (op.group_of(d) + 1) * per_group) - d;
    hidden_attention(alpha_params(op, d, run), out + (d - d0) * L * L, stream);
    d += run;
  }
}

// D and the gate folded into `rows` rows of each of channels [d0, d0 + count).
template <class State>
void s6_fold(const s6_operator<float, State>& op, index_t d0, index_t count, float* r, index_t rows,
             const index_t* positions, cudaStream_t stream) {
  const float* skip = op.skip.empty() ? nullptr : op.skip.data() + d0;
  const float* gate = is_empty(op.gate) ? nullptr : op.gate.data_handle() + d0 * op.length();
  if (!skip && !gate) return;
  s6_fold_kernel<<<generic_grid(count * rows * op.length()), generic_threads, 0, stream>>>(
      r, count, rows, op.length(), positions, skip, gate);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

template <class State>
struct device_path<s6_operator<float, State>> {
  using view = s6_operator<float, State>;

  static void apply(const view& op, matrix_view<const float> x, matrix_view<float> y, cudaStream_t stream) {
    selective_scan_params<float, State> p;
    p.batch = 1, p.channels = op.in_channels(), p.length = op.length(), p.state_size = op.state_size();
    p.groups = op.groups();
    p.u = x.data_handle();
    p.delta = op.delta.data_handle();
    p.a = op.a.data_handle();
    p.b = op.b.data_handle();
    p.c = op.c.data_handle();
    p.skip = op.skip.empty() ? nullptr : op.skip.data();
    p.z = is_empty(op.gate) ? nullptr : op.gate.data_handle();
    p.z_silu = false;  // the view holds the gate itself
    p.y = y.data_handle();
    selective_scan_forward(p, stream);
  }

  static void materialize(const view& op, index_t out, index_t in, matrix_view<float> m, cudaStream_t stream) {
    const index_t L = op.length();
    if (out != in) {
      MIXLENS_CUDA_CHECK(cudaMemsetAsync(m.data_handle(), 0, static_cast<std::size_t>(L * L) * sizeof(float), stream));
      return;
    }
    materialize_channels(op, out, 1, m.data_handle(), stream);
  }

  // The tiled α kernel, then D and the gate.
  static void materialize_channels(const view& op, index_t d0, index_t count, float* out, cudaStream_t stream) {
    detail::s6_alpha_channels(op, d0, count, out, stream);
    detail::s6_fold(op, d0, count, out, op.length(), nullptr, stream);
  }

  static void aggregate_channels(const view& op, channel_reduction r, double* map, float* minmax, cudaStream_t stream) {
    hidden_attention_params<State> p;
    p.batch = 1, p.channels = op.in_channels(), p.length = op.length(), p.state_size = op.state_size();
    p.groups = op.groups();
    p.delta = op.delta.data_handle();
    p.a = op.a.data_handle();
    p.b = op.b.data_handle();
    p.c = op.c.data_handle();
    hidden_attention_aggregate(p, op.skip.empty() ? nullptr : op.skip.data(),
                               is_empty(op.gate) ? nullptr : op.gate.data_handle(), r, map, minmax, stream);
  }

  static void rows(const view& op, index_t out, index_t in, vector_view<const index_t> positions,
                   matrix_view<float> r, cudaStream_t stream) {
    const index_t count = static_cast<index_t>(positions.size());
    if (out != in) {
      MIXLENS_CUDA_CHECK(cudaMemsetAsync(r.data_handle(), 0, static_cast<std::size_t>(r.size()) * sizeof(float), stream));
      return;
    }
    hidden_attention_rows(detail::alpha_params(op, out, 1), positions, r.data_handle(), false, stream);
    if (op.skip.empty() && is_empty(op.gate)) return;
    detail::stream_workspace p(positions.size() * sizeof(index_t), stream);
    auto* dp = static_cast<index_t*>(p.get());
    MIXLENS_CUDA_CHECK(
        cudaMemcpyAsync(dp, positions.data(), positions.size() * sizeof(index_t), cudaMemcpyHostToDevice, stream));
    detail::s6_fold(op, out, 1, r.data_handle(), count, dp, stream);
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host positions may go away
  }
};

}  // namespace mixlens::gpu
