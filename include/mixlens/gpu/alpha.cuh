// mixlens::gpu::hidden_attention: the S6 hidden attention α (paper eq. 12) on
// the GPU, for every channel of a batch (full L×L matrices) or for selected rows
// (e.g. the CLS or the last token), optionally split per state. Output fp32 or
// bf16; matches mixlens::s6_operator::alpha / alpha_row.
//
// Layers: alpha_kernels (cumulative sums, tiled full kernel, rows kernel) →
// dispatch and facade (here).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/linear_operator.hpp"
#include "mixlens/gpu/detail/alpha_kernels.cuh"
#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"

namespace mixlens::gpu {

// The S6 control signals of a batch, in device memory: Δ (batch, D, L) after
// softplus, A (D, N), B and C (batch, G, N, L) with channel d in group d / (D/G).
// For a complex State, B and C are complex and α = 2·Re(…).
template <class State = float>
struct hidden_attention_params {
  using state_type = State;
  index_t batch = 0, channels = 0, length = 0, state_size = 0, groups = 1;
  const float* delta = nullptr;
  const State* a = nullptr;
  const State* b = nullptr;
  const State* c = nullptr;
};

namespace detail {

template <class State>
void validate(const hidden_attention_params<State>& p, std::string_view where) {
  mixlens::detail::check_positive(where, "batch", p.batch);
  mixlens::detail::check_positive(where, "channels", p.channels);
  mixlens::detail::check_positive(where, "length", p.length);
  mixlens::detail::check_positive(where, "state_size", p.state_size);
  mixlens::detail::check_positive(where, "groups", p.groups);
  if (p.channels % p.groups != 0)
    mixlens::detail::fail(where, "groups", "a group count dividing the " + std::to_string(p.channels) + " channels",
                          p.groups);
  const auto need = [&](std::string_view name, const void* ptr) {
    if (!ptr) mixlens::detail::fail(where, name, "a device pointer", "null");
  };
  need("delta", p.delta);
  need("a", p.a);
  need("b", p.b);
  need("c", p.c);
}

// Cumulative sums of Δ in double, in stream-ordered scratch memory.
template <class State>
stream_workspace cumulative_sums(const hidden_attention_params<State>& p, cudaStream_t stream) {
  const index_t rows = p.batch * p.channels;
  stream_workspace s(static_cast<std::size_t>(rows * p.length) * sizeof(double), stream);
  cumsum_kernel<256><<<grid_size(rows), 256, 0, stream>>>(p.delta, static_cast<double*>(s.get()), p.length);
  MIXLENS_CUDA_CHECK_LAUNCH();
  return s;
}

}  // namespace detail

// alpha (batch, D, L, L), row-major, device memory: every entry written (zeros
// above the diagonal). Out is float or __nv_bfloat16.
template <class State, class Out>
void hidden_attention(const hidden_attention_params<State>& p, Out* alpha, cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::hidden_attention";
  detail::validate(p, where);
  if (!alpha) mixlens::detail::fail(where, "alpha", "a device pointer", "null");
  const std::size_t smem = detail::alpha_smem_bytes<State>(p.state_size);
  int device = 0, limit = 0;
  MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (smem > static_cast<std::size_t>(limit))
    mixlens::detail::fail(where, "state_size", "a state size whose tiles fit in shared memory", p.state_size);
  auto kernel = p.state_size == 16 ? detail::alpha_full_kernel<16, State, State, Out>
                                    : detail::alpha_full_kernel<0, State, State, Out>;
  MIXLENS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  auto sums = detail::cumulative_sums(p, stream);
  const index_t tiles = (p.length + detail::alpha_tile - 1) / detail::alpha_tile;
  kernel<<<detail::grid_size(p.batch * p.channels * tiles), 256, smem, stream>>>(
      p.delta, static_cast<const double*>(sums.get()), p.a, p.b, p.c, alpha, p.channels, p.length, p.state_size,
      p.groups);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// The channel aggregate of α for one sequence (p.batch = 1) without the D × L × L
// tensor: map (L × L, double, device memory) += Σ_d f(M_d) with M_d the block
// gate_d ⊙ (α_d + diag(skip_d)) (skip (D) and gate (D × L) may be null: α
// alone) and f per `reduction` (identity, |·|, max(·, 0)); minmax (3 floats,
// may be null) takes the min, max and NaN count of every entry of the blocks,
// the zeros above the diagonal included. The tiles of alpha_full_kernel are
// formed and reduced in registers, never stored; for the signed mean of real
// states without minmax, the strictly lower tiles are one product over every
// (channel, state) per tile pair instead (alpha_mean_lower_kernel).
template <class State>
void hidden_attention_aggregate(const hidden_attention_params<State>& p, const float* skip, const float* gate,
                                channel_reduction reduction, double* map, float* minmax, cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::hidden_attention_aggregate";
  detail::validate(p, where);
  mixlens::detail::check_equal(where, "batch", "1 (one sequence: the map sums its channels)", index_t(1), p.batch);
  if (!map) mixlens::detail::fail(where, "map", "a device pointer", "null");
  const std::size_t smem = detail::alpha_smem_bytes<State>(p.state_size);
  int device = 0, limit = 0, sms = 0;
  MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  MIXLENS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (smem > static_cast<std::size_t>(limit))
    mixlens::detail::fail(where, "state_size", "a state size whose tiles fit in shared memory", p.state_size);
  const index_t tiles = (p.length + detail::alpha_tile - 1) / detail::alpha_tile, pairs = tiles * (tiles + 1) / 2;
  if (pairs > 0x7fffffff) mixlens::detail::fail(where, "length", "fewer than 2^31 tile pairs", p.length);
  auto sums = detail::cumulative_sums(p, stream);
  const auto* cums = static_cast<const double*>(sums.get());
  // Enough blocks to fill the device `fill` times over: the channels are split
  // when the tiles alone are too few (per split a multiple of `chunk`).
  const auto split = [&](index_t blocks, index_t chunk, index_t fill = 4) {
    const index_t wanted = fill * index_t(sms), splits = std::clamp<index_t>((wanted + blocks - 1) / blocks, 1, p.channels);
    const index_t per = (p.channels + splits - 1) / splits;
    const index_t per_split = (per + chunk - 1) / chunk * chunk;
    return std::pair{per_split, (p.channels + per_split - 1) / per_split};
  };
  const auto launch = [&](auto kernel, index_t blocks) {
    MIXLENS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const auto [per_split, splits] = split(blocks, 1);
    kernel<<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)), 256, smem, stream>>>(
        p.delta, cums, p.a, p.b, p.c, skip, gate, map, minmax, p.channels, p.length, p.state_size, p.groups,
        per_split);
    MIXLENS_CUDA_CHECK_LAUNCH();
  };
  const auto with_reduction = [&]<int R>(index_t blocks) {
    if (p.state_size == 16) launch(detail::alpha_aggregate_kernel<16, R, State, State>, blocks);
    else launch(detail::alpha_aggregate_kernel<0, R, State, State>, blocks);
  };
  // The signed mean without the range, real states: one product over
  // (channel, state) per tile pair (alpha_mean_lower_kernel) at three levels,
  // the 16 × 16 diagonal tiles summed directly (alpha_mean_diagonal_kernel).
  if constexpr (std::is_same_v<State, float>) {
    if (reduction == channel_reduction::mean && !minmax) {
      const index_t chunk = std::max<index_t>(1, 64 / p.state_size), L = p.length;
      // Pairs of 64-row tiles, then the lower quadrants of the diagonal tiles
      // of 64 and of 32, then the 16 × 16 diagonal tiles.
      const auto lower = [&]<int T>(index_t blocks) {
        if (blocks <= 0) return;
        const std::size_t smem_t = 2 * static_cast<std::size_t>(chunk * p.state_size * T) * sizeof(float);
        if (smem_t > static_cast<std::size_t>(limit))
          mixlens::detail::fail(where, "state_size", "a state size whose tiles fit in shared memory", p.state_size);
        auto kernel = p.state_size == 16 ? detail::alpha_mean_lower_kernel<16, T, State>
                                         : detail::alpha_mean_lower_kernel<0, T, State>;
        MIXLENS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_t)));
        // The small levels walk their channels in short splits: many blocks hide the latency.
        const auto [per_split, splits] = split(blocks, chunk, T == 64 ? 4 : 64);
        kernel<<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)), (T / 4) * (T / 4), smem_t, stream>>>(
            p.delta, cums, p.a, p.b, p.c, gate, map, p.channels, L, p.state_size, p.groups, per_split,
            static_cast<int>(chunk));
        MIXLENS_CUDA_CHECK_LAUNCH();
      };
      lower.template operator()<64>(pairs - tiles);
      lower.template operator()<32>((L + 63) / 64);
      lower.template operator()<16>((L + 31) / 32);
      const index_t diagonal = (L + 15) / 16;
      const std::size_t smem_d = 16 * sizeof(double) + static_cast<std::size_t>(2 * 16 * p.state_size + p.state_size) * sizeof(float);
      if (smem_d > static_cast<std::size_t>(limit))
        mixlens::detail::fail(where, "state_size", "a state size whose tiles fit in shared memory", p.state_size);
      auto kernel = p.state_size == 16 ? detail::alpha_mean_diagonal_kernel<16, State>
                                       : detail::alpha_mean_diagonal_kernel<0, State>;
      MIXLENS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_d)));
      const auto [per_split, splits] = split(diagonal, 1, 64);
      kernel<<<dim3(static_cast<unsigned>(diagonal), static_cast<unsigned>(splits)), 256, smem_d, stream>>>(
          p.delta, cums, p.a, p.b, p.c, skip, gate, map, p.channels, L, p.state_size, p.groups, per_split);
      MIXLENS_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  switch (reduction) {
    case channel_reduction::mean: with_reduction.template operator()<0>(pairs); break;
    case channel_reduction::abs_mean: with_reduction.template operator()<1>(pairs); break;
    case channel_reduction::relu_mean: with_reduction.template operator()<2>(pairs); break;
  }
}

// Selected rows: out (batch, D, R, L) with out[b][d][r] = α[b][d][rows[r]], or
// with per_state (batch, D, N, R, L), the term of each state n on its own.
// `rows` is host memory, each in [0, L).
template <class State, class Out>
void hidden_attention_rows(const hidden_attention_params<State>& p, vector_view<const index_t> rows, Out* out,
                           bool per_state = false, cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::hidden_attention_rows";
  detail::validate(p, where);
  if (!out) mixlens::detail::fail(where, "out", "a device pointer", "null");
  mixlens::detail::check_positive(where, "rows (count)", static_cast<index_t>(rows.size()));
  for (const index_t r : rows)
    if (r < 0 || r >= p.length)
      mixlens::detail::fail(where, "rows", "row indices in [0, " + std::to_string(p.length) + ")", r);
  const index_t R = static_cast<index_t>(rows.size());
  detail::stream_workspace drows(rows.size() * sizeof(index_t), stream);
  MIXLENS_CUDA_CHECK(cudaMemcpyAsync(drows.get(), rows.data(), rows.size() * sizeof(index_t), cudaMemcpyHostToDevice,
                                     stream));
  auto sums = detail::cumulative_sums(p, stream);
  const std::size_t smem = 2 * static_cast<std::size_t>(p.state_size) * sizeof(State);
  const auto* cums = static_cast<const double*>(sums.get());
  const auto* rws = static_cast<const index_t*>(drows.get());
  const unsigned blocks = detail::grid_size(p.batch * p.channels * R);
  if (per_state)
    detail::alpha_rows_kernel<true, State, State, Out><<<blocks, 256, smem, stream>>>(
        p.delta, cums, p.a, p.b, p.c, rws, R, out, p.channels, p.length, p.state_size, p.groups);
  else
    detail::alpha_rows_kernel<false, State, State, Out><<<blocks, 256, smem, stream>>>(
        p.delta, cums, p.a, p.b, p.c, rws, R, out, p.channels, p.length, p.state_size, p.groups);
  MIXLENS_CUDA_CHECK_LAUNCH();
  // The host rows buffer may go away once the copy is done.
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace mixlens::gpu
