// The host backend: the handful of array operations that model families'
// forward passes and the attention maps are written against. The device
// backend (mixlens/gpu/backend.cuh) has the same members over device memory,
// so that every model and map is written once (models/mamba_forward.hpp,
// analysis/attention_maps.hpp).
//
// Layouts: signals are channel-major (channels × L, row-major), like every
// mixlens signal; weights are PyTorch's (out × in).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/detail/gemm.hpp"
#include "mixlens/detail/linear.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/s6/aggregate.hpp"
#include "mixlens/ops/s6/backward.hpp"
#include "mixlens/ops/s6/operator.hpp"

namespace mixlens {

template <class T>
struct host_backend {
  using value_type = T;
  static constexpr bool on_host = true;
  template <class U>
  using array = std::vector<U>;

  // Threads of apply for the operators that split their work (channels, heads or
  // query rows: detail::splits_channels) and of the models' convolutions
  // (sequence_parallel_scan: the same results for any count); 0: every core.
  int threads = 0;

  template <class U = T>
  [[nodiscard]] array<U> alloc(index_t n) const {
    return array<U>(static_cast<std::size_t>(n));
  }
  [[nodiscard]] array<index_t> upload(std::span<const index_t> v) const { return {v.begin(), v.end()}; }
  // Values from host memory (Vision Mamba's image patches).
  [[nodiscard]] array<T> upload(std::span<const T> v) const { return {v.begin(), v.end()}; }
  template <class U>
  [[nodiscard]] std::vector<U> download(const U* p, index_t n) const {
    return {p, p + n};
  }
  void synchronize() const {}

  // h (L × H): row t is the embedding row of tokens[t].
  void embed(const array<index_t>& tokens, matrix_view<const T> embedding, T* h) const {
    const index_t L = static_cast<index_t>(tokens.size()), H = embedding.extent(1);
    for (index_t t = 0; t < L; ++t)
      std::copy_n(&embedding(tokens[static_cast<std::size_t>(t)], 0), H, h + t * H);
  }

  // RMSNorm of every row of x (rows × H): x / sqrt(mean(x²) + eps) · weight.
  void rms_norm(const T* x, index_t rows, index_t H, vector_view<const T> weight, double eps, T* out) const {
    for (index_t r = 0; r < rows; ++r) {
      const T* xr = x + r * H;
      double ss = 0;
      for (index_t i = 0; i < H; ++i) ss += double(xr[i]) * double(xr[i]);
      const T scale = static_cast<T>(1.0 / std::sqrt(ss / double(H) + eps));
      for (index_t i = 0; i < H; ++i) out[r * H + i] = xr[i] * scale * weight[static_cast<std::size_t>(i)];
    }
  }

  // C (m × n) = op(A) · op(B) + beta·C, row-major, op(A) (m × k), op(B) (k × n);
  // A is stored (k × m) when trans_a, B (n × k) when trans_b (detail/gemm.hpp:
  // OpenBLAS where configured).
  void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, const T* b, T beta, T* c) const {
    mixlens::detail::gemm(trans_a, trans_b, m, n, k, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
  }
  // `count` such products, the i-th on a + i·stride_a, b + i·stride_b and
  // c + i·stride_c (a stride 0 shares that operand: a weight over a batch).
  void gemm_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t stride_a,
                    const T* b, index_t stride_b, T beta, T* c, index_t stride_c, index_t count) const {
    for (index_t i = 0; i < count; ++i)
      gemm(trans_a, trans_b, m, n, k, a + i * stride_a, b + i * stride_b, beta, c + i * stride_c);
  }

  // data (rows × cols) += bias[col].
  void add_column_bias(T* data, vector_view<const T> bias, index_t rows, index_t cols) const {
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) data[r * cols + c] += bias[static_cast<std::size_t>(c)];
  }

  // data (rows × cols) += bias[row].
  void add_row_bias(T* data, vector_view<const T> bias, index_t rows, index_t cols) const {
    for (index_t r = 0; r < rows; ++r)
      for (index_t t = 0; t < cols; ++t) data[r * cols + t] += bias[static_cast<std::size_t>(r)];
  }

  // u = SiLU(conv(x) + bias) and σ = σ(conv(x) + bias), bias (D) or empty;
  // sigma null: σ is not wanted.
  template <class Kind>
  void conv_silu(const causal_conv_operator<T, Kind>& conv, vector_view<const T> bias, const T* x, T* u,
                 T* sigma) const {
    const index_t D = conv.in_channels(), L = conv.length();
    conv.apply(matrix_view<const T>(x, D, L), matrix_view<T>(u, D, L), sequence_parallel_scan{.threads = threads});
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        const T p = u[d * L + t] + (bias.empty() ? T(0) : bias[static_cast<std::size_t>(d)]);
        const T s = mixlens::detail::sigmoid(p);
        if (sigma) sigma[d * L + t] = s;
        u[d * L + t] = p * s;
      }
  }

  // Δ = softplus(dt + bias[row]) in place, dt (D × L), clamped to [lo, hi]
  // (Mamba-2's time_step_limit; NaN stays NaN).
  void softplus_bias(T* dt, vector_view<const T> bias, index_t D, index_t L, T lo = T(0),
                     T hi = std::numeric_limits<T>::infinity()) const {
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t)
        dt[d * L + t] =
            mixlens::detail::clamp_keep_nan(mixlens::detail::softplus(dt[d * L + t] + bias[static_cast<std::size_t>(d)]), lo, hi);
  }

  // The gated RMSNorm of x (C × L) over groups of `group` consecutive channels,
  // as a diagonal: factor[c][t] = s·w_c / sqrt(mean over c's group of (x·s)² + eps)
  // with s = SiLU(z[c][t]) (1 when z is null) and w the weight (1 when empty);
  // out = x ⊙ factor. out may be x; factor may be null.
  void gated_rms_norm(const T* x, const T* z, index_t C, index_t L, index_t group, vector_view<const T> weight,
                      double eps, T* out, T* factor) const {
    const auto gate = [&](index_t c, index_t t) { return z ? mixlens::detail::silu(z[c * L + t]) : T(1); };
    for (index_t g0 = 0; g0 < C; g0 += group)
      for (index_t t = 0; t < L; ++t) {
        double ss = 0;
        for (index_t c = g0; c < g0 + group; ++c) {
          const double v = double(x[c * L + t]) * double(gate(c, t));
          ss += v * v;
        }
        const double r = 1.0 / std::sqrt(ss / double(group) + eps);
        for (index_t c = g0; c < g0 + group; ++c) {
          const T f = static_cast<T>(double(gate(c, t)) * r * (weight.empty() ? 1.0 : double(weight[static_cast<std::size_t>(c)])));
          if (factor) factor[c * L + t] = f;
          out[c * L + t] = x[c * L + t] * f;
        }
      }
  }

  // out (rows × cols) = x with every row reversed in time: out[r][c] = x[r][cols − 1 − c]
  // (Vision Mamba's backward branch). out must not overlap x.
  void reverse_columns(const T* x, index_t rows, index_t cols, T* out) const {
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) out[r * cols + c] = x[r * cols + cols - 1 - c];
  }

  // y *= x elementwise.
  void multiply(T* y, const T* x, index_t n) const {
    for (index_t i = 0; i < n; ++i) y[i] *= x[i];
  }

  void silu(const T* z, T* gate, index_t n) const {
    for (index_t i = 0; i < n; ++i) gate[i] = mixlens::detail::silu(z[i]);
  }

  // out = σ ⊙ bias[row] (the conv bias as it enters the SSM).
  void scale_rows(const T* sigma, vector_view<const T> bias, T* out, index_t D, index_t L) const {
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) out[d * L + t] = sigma[d * L + t] * bias[static_cast<std::size_t>(d)];
  }

  // ---- the backward pass (models/mamba_backward.hpp) ----------------------------
  // Each is the gradient of the forward primitive of the same name with respect
  // to its input, in the forward primitive's layout.

  // dx (rows × H) = (or += when `accumulate`) the gradient through rms_norm at x
  // given dy: with r = 1/sqrt(mean(x²) + eps),
  // dx_i = r·w_i·dy_i − x_i·r³·mean_j(w_j·dy_j·x_j); with `detach_scale` r is a
  // constant (LRP's rule): dx_i = r·w_i·dy_i.
  void rms_norm_backward(const T* x, index_t rows, index_t H, vector_view<const T> weight, double eps, const T* dy,
                         T* dx, bool accumulate, bool detach_scale = false) const {
    for (index_t r = 0; r < rows; ++r) {
      const T *xr = x + r * H, *gr = dy + r * H;
      double ss = 0, dot = 0;
      for (index_t i = 0; i < H; ++i) {
        ss += double(xr[i]) * double(xr[i]);
        dot += double(gr[i]) * double(weight[static_cast<std::size_t>(i)]) * double(xr[i]);
      }
      const double scale = 1.0 / std::sqrt(ss / double(H) + eps),
                   k = detach_scale ? 0.0 : scale * scale * scale * dot / double(H);
      for (index_t i = 0; i < H; ++i) {
        const T v = static_cast<T>(scale * double(weight[static_cast<std::size_t>(i)]) * double(gr[i]) - k * double(xr[i]));
        dx[r * H + i] = accumulate ? dx[r * H + i] + v : v;
      }
    }
  }

  // The gradient through gated_rms_norm without gate and weight (Falcon-Mamba's
  // δ, B, C norms; Mamba-2's gated norm at x = ssm_out ⊙ SiLU(z) with ∂out ⊙ w)
  // at x (C × L, groups of `group` channels): grad holds ∂out on entry and ∂x on
  // return; with `detach_scale` the scale r is a constant (LRP's rule): ∂x = r·∂out.
  void group_rms_norm_backward(const T* x, index_t C, index_t L, index_t group, double eps, T* grad,
                               bool detach_scale = false) const {
    for (index_t g0 = 0; g0 < C; g0 += group)
      for (index_t t = 0; t < L; ++t) {
        double ss = 0, dot = 0;
        for (index_t c = g0; c < g0 + group; ++c) {
          ss += double(x[c * L + t]) * double(x[c * L + t]);
          dot += double(grad[c * L + t]) * double(x[c * L + t]);
        }
        const double scale = 1.0 / std::sqrt(ss / double(group) + eps),
                     k = detach_scale ? 0.0 : scale * scale * scale * dot / double(group);
        for (index_t c = g0; c < g0 + group; ++c)
          grad[c * L + t] = static_cast<T>(scale * double(grad[c * L + t]) - k * double(x[c * L + t]));
      }
  }

  // The gradient through conv_silu: du (D × L) holds ∂u on entry and ∂p on
  // return (p = conv(x) + bias; SiLU'(p) = σ + u·(1 − σ), from the forward's u
  // and σ; with `detach_sigmoid` σ is a constant, LRP's rule: ∂p = ∂u·σ);
  // dx = convᵀ·∂p, dx[d][s] = Σ_k taps[d][k]·∂p[d][s + k].
  template <class Kind>
  void conv_silu_backward(const causal_conv_operator<T, Kind>& conv, const T* u, const T* sigma, T* du, T* dx,
                          bool detach_sigmoid = false) const {
    const index_t D = conv.in_channels(), L = conv.length(), K = conv.taps();
    for (index_t i = 0; i < D * L; ++i) du[i] *= detach_sigmoid ? sigma[i] : sigma[i] + u[i] * (T(1) - sigma[i]);
    for (index_t d = 0; d < D; ++d)
      for (index_t s = 0; s < L; ++s) {
        T acc = 0;
        for (index_t k = 0; k < std::min(K, L - s); ++k) acc += conv.kernel(d, k) * du[d * L + s + k];
        dx[d * L + s] = acc;
      }
  }

  // grad *= softplus'(p) where Δ = softplus(p): softplus'(p) = σ(p) = 1 − exp(−Δ),
  // from the forward's Δ; where softplus_bias's clamp to [lo, hi] binds (Δ ≤ lo
  // for lo > 0, Δ ≥ hi) the gradient is 0, as the clamp's.
  void softplus_backward(const T* delta, T* grad, index_t n, T lo = T(0),
                         T hi = std::numeric_limits<T>::infinity()) const {
    for (index_t i = 0; i < n; ++i)
      grad[i] = mixlens::detail::clamp_binds(delta[i], lo, hi) ? T(0) : grad[i] * -std::expm1(-delta[i]);
  }

  // grad *= SiLU'(z) = σ(z)·(1 + z·(1 − σ(z))); with `detach_sigmoid`, grad *= σ(z).
  void silu_backward(const T* z, T* grad, index_t n, bool detach_sigmoid = false) const {
    for (index_t i = 0; i < n; ++i) {
      const T s = mixlens::detail::sigmoid(z[i]);
      grad[i] *= detach_sigmoid ? s : s * (T(1) + z[i] * (T(1) - s));
    }
  }

  // The selective scan's backward (ops/s6/backward.hpp): u, dy (D × L).
  void s6_backward(const s6_operator<T>& op, const T* u, const T* dy, const s6_gradient_views<T>& g) const {
    const index_t D = op.in_channels(), L = op.length();
    mixlens::s6_backward(op, matrix_view<const T>(u, D, L), matrix_view<const T>(dy, D, L), g);
  }

  void copy(const T* from, index_t n, T* to) const { std::copy(from, from + n, to); }

  // Mamba's selective scan over `batch` sequences of length L in one call:
  // y = (S6(u) + D·u) ⊙ SiLU(z) with Δ = softplus(dt + dt_bias[channel]); u,
  // dt, z, y (batch, D, L), b, c (batch, N, L), a (D × N). On the device one
  // fused kernel that keeps Δ and the gate out of memory; here the same steps
  // one sequence at a time, each checked as the forward pass checks its S6.
  void mamba_scan(index_t batch, index_t L, const T* u, const T* dt, vector_view<const T> dt_bias,
                  matrix_view<const T> a, const T* b, const T* c, vector_view<const T> skip, const T* z, T* y) const {
    const index_t D = a.extent(0), N = a.extent(1);
    std::vector<T> delta(static_cast<std::size_t>(D * L)), gate(static_cast<std::size_t>(D * L));
    for (index_t s = 0; s < batch; ++s) {
      std::copy_n(dt + s * D * L, D * L, delta.data());
      softplus_bias(delta.data(), dt_bias, D, L);
      silu(z + s * D * L, gate.data(), D * L);
      const s6_operator<T> op(matrix_view<const T>(delta.data(), D, L), a, tensor_view<const T, 3>(b + s * N * L, 1, N, L),
                              tensor_view<const T, 3>(c + s * N * L, 1, N, L), skip,
                              matrix_view<const T>(gate.data(), D, L));
      op.validate();  // finite, Δ ≥ 0, Re A ≤ 0
      apply(op, u + s * D * L, y + s * D * L);
    }
  }

  // y = M·x with the operator's host fast path; split over `threads` where the
  // operator's apply takes a sequence_parallel_scan (detail::splits_channels).
  template <class Op>
  void apply(const Op& op, const T* x, T* y) const {
    const auto& v = view_of(op);
    const matrix_view<const T> xv(x, v.in_channels(), v.length());
    const matrix_view<T> yv(y, v.out_channels(), v.length());
    if constexpr (mixlens::detail::splits_channels<std::remove_cvref_t<decltype(v)>>)
      v.apply(xv, yv, sequence_parallel_scan{.threads = threads});
    else v.apply(xv, yv);
  }

  // The diagonal blocks of channels [d0, d0 + count) into out (count × L × L).
  template <class Op>
  void materialize_channels(const Op& op, index_t d0, index_t count, T* out) const {
    mixlens::materialize_channels(op, d0, count, out);
  }

  // acc (L·L, double) += the reduction over channels of an S6 operator's blocks,
  // minmax (not null) their range, without the blocks (ops/s6/aggregate.hpp).
  // On the host every reduction and the range take this path.
  template <class State>
  [[nodiscard]] bool aggregates_directly(const s6_operator<T, State>&, channel_reduction, bool) const {
    return true;
  }
  template <class State>
  void aggregate_channels(const s6_operator<T, State>& op, channel_reduction r, double* acc, T* minmax) const {
    s6_aggregate_channels(op, r, acc, minmax);
  }

  // minmax (not null, reset by the caller) merges the range of every entry of
  // an S6 operator's blocks, without the blocks (ops/s6/aggregate.hpp).
  template <class State>
  void range_channels(const s6_operator<T, State>& op, T* minmax) const {
    s6_range_channels(op, minmax, threads);
  }

  // Rows positions[k] of the diagonal blocks of channels [d0, d0 + count) into
  // out (count × R × L, R = positions.size()): channel c's row k at (c·R + k)·L;
  // channels split over `threads`. Positions are checked by the caller.
  template <class Op>
  void rows_channels(const Op& op, index_t d0, index_t count, std::span<const index_t> positions, T* out) const {
    const auto& v = view_of(op);
    const index_t L = v.length(), R = static_cast<index_t>(positions.size());
    const index_t parts = mixlens::detail::threads_for(
        mixlens::detail::resolve_threads("mixlens::host_backend::rows_channels", threads), count * R * L, 1 << 14, count);
    mixlens::detail::parallel_for(parts, parts, [&](index_t k) {
      for (index_t c = count * k / parts; c < count * (k + 1) / parts; ++c)
        for (index_t i = 0; i < R; ++i)
          v.row(d0 + c, d0 + c, positions[static_cast<std::size_t>(i)],
                vector_view<T>(out + (c * R + i) * L, static_cast<std::size_t>(L)));
    });
  }

  // acc (L·L, double) += the reduction over `count` matrices of m (count × LL);
  // minmax (3 values, see reset_min_max) takes every value when not null.
  void aggregate(const T* m, index_t count, index_t LL, channel_reduction r, double* acc, T* minmax) const {
    for (index_t c = 0; c < count; ++c)
      for (index_t e = 0; e < LL; ++e) {
        const double v = m[c * LL + e];
        acc[e] += r == channel_reduction::mean ? v : r == channel_reduction::abs_mean ? std::abs(v) : (v > 0 ? v : 0.0 * v);
        if (minmax) merge_min_max(minmax, m[c * LL + e]);
      }
  }
  void mean(const double* acc, index_t n, double count, T* out) const {
    for (index_t i = 0; i < n; ++i) out[i] = static_cast<T>(acc[i] / count);
  }
  // minmax = {min, max, count of NaN}: NaNs are counted, never dropped.
  void reset_min_max(T* minmax) const {
    minmax[0] = std::numeric_limits<T>::infinity();
    minmax[1] = -std::numeric_limits<T>::infinity();
    minmax[2] = T(0);
  }
  void min_max(const T* data, index_t n, T* minmax) const {
    reset_min_max(minmax);
    accumulate_min_max(data, n, minmax);
  }
  // minmax merges the range of n more values (no reset).
  void accumulate_min_max(const T* data, index_t n, T* minmax) const {
    for (index_t i = 0; i < n; ++i) merge_min_max(minmax, data[i]);
  }
  // out = (in − min) / (max − min) in double; 0 for a constant input; NaN when
  // the input held a NaN.
  void normalize(const T* in, const T* minmax, T* out, index_t n) const {
    const double lo = minmax[0], range = double(minmax[1]) - lo;
    const bool nan = minmax[2] > 0;
    for (index_t i = 0; i < n; ++i)
      out[i] = nan ? std::numeric_limits<T>::quiet_NaN() : range > 0 ? static_cast<T>((double(in[i]) - lo) / range) : T(0);
  }
  void fill(T* data, index_t n, T value) const { std::fill(data, data + n, value); }
  template <class U>
  void fill_zero(U* data, index_t n) const {
    std::fill(data, data + n, U(0));
  }
  void copy_to_host(const T* data, index_t n, T* host) const { std::copy(data, data + n, host); }
  void identity(T* m, index_t L) const {
    for (index_t i = 0; i < L * L; ++i) m[i] = i / L == i % L ? T(1) : T(0);
  }
  void axpy(T* y, const T* x, T scale, index_t n) const {
    for (index_t i = 0; i < n; ++i) y[i] += scale * x[i];
  }
  void scale(T* y, T factor, index_t n) const {
    for (index_t i = 0; i < n; ++i) y[i] *= factor;
  }
  // aug = I + map, each row divided by its sum (in double; a zero-sum row stays).
  void rownorm_identity(const T* map, T* aug, index_t L) const {
    for (index_t i = 0; i < L; ++i) {
      double sum = 0;
      for (index_t j = 0; j < L; ++j) {
        aug[i * L + j] = map[i * L + j] + (i == j ? T(1) : T(0));
        sum += aug[i * L + j];
      }
      if (sum != 0)
        for (index_t j = 0; j < L; ++j) aug[i * L + j] = static_cast<T>(aug[i * L + j] / sum);
    }
  }

  // out[c][t] = (Σ_{j≤t} M_k[t][j]·v[c][j] + skip_k·v[c][t])·gate[c][t] + offset[c][t]
  // in double for `count` channels c, k = c / per_matrix indexing the matrices M
  // (count / per_matrix × L × L) and skip (a head's matrix serves its channels);
  // skip, gate, offset may be null.
  void reconstruct(const T* m, const T* v, const T* skip, const T* gate, const T* offset, index_t count, index_t L,
                   double* out, index_t per_matrix = 1) const {
    for (index_t c = 0; c < count; ++c)
      for (index_t t = 0; t < L; ++t) {
        const index_t k = c / per_matrix;
        long double acc = 0;
        for (index_t j = 0; j <= t; ++j) acc += static_cast<long double>(m[(k * L + t) * L + j]) * v[c * L + j];
        if (skip) acc += static_cast<long double>(skip[k]) * v[c * L + t];
        if (gate) acc *= gate[c * L + t];
        if (offset) acc += offset[c * L + t];
        out[c * L + t] = static_cast<double>(acc);
      }
  }

 private:

  static void merge_min_max(T* minmax, T v) {
    if (std::isnan(v)) {
      minmax[2] += T(1);
      return;
    }
    minmax[0] = std::min(minmax[0], v);
    minmax[1] = std::max(minmax[1], v);
  }
};

}  // namespace mixlens
