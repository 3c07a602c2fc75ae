// Causal softmax attention, the transformer reference point of the operator-class
// comparison, as a linear operator on the values.
//
// Per head h with queries q_t, keys k_t ∈ R^E (E = key size) and scale 1/√E:
//   M_h[i][j] = exp(s_ij − max_{j'≤i} s_ij') / Σ_{j'≤i} exp(s_ij' − max)   for j ≤ i,
//   s_ij = scale·⟨q_i, k_j⟩,   M_h[i][j] = 0 for j > i.
// The operator maps values v (H·P channels, P per head) to y_c = M_{h(c)} v_c:
// every value channel of a head is mixed by the same matrix, so the operator
// is channel-separable and a layer has H attention matrices. The output
// projection W_o is not part of it.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include <cuda/std/limits>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

template <class T>
struct softmax_attention_operator {
  using value_type = T;

  tensor_view<const T, 3> q;  // H × E × L
  tensor_view<const T, 3> k;  // H × E × L
  index_t head_dim = 0;       // P: value channels per head
  T scale = 0;                // multiplies ⟨q, k⟩

  softmax_attention_operator() = default;
  // `scale` ≤ 0 selects 1/√E.
  softmax_attention_operator(tensor_view<const T, 3> q_, tensor_view<const T, 3> k_, index_t head_dim_, T scale_ = 0)
      : q(q_), k(k_), head_dim(head_dim_), scale(scale_) {
    detail::check_heads<T>("mixlens::softmax_attention_operator", q, k, head_dim);
    if (!(scale > T(0))) scale = T(1) / std::sqrt(T(q.extent(1)));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return q.extent(2); }
  [[nodiscard]] MIXLENS_HD index_t heads() const { return q.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t key_size() const { return q.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return heads() * head_dim; }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t head_of(index_t channel) const { return channel / head_dim; }

  template <class F>
  void for_each_view(F&& f) {
    f(q), f(k);
  }

  // Row t of head h's softmax weights into w[0..t], with w as the only memory
  // (U = double for apply's buffer, T for row, which forms them in r): the
  // scores and their maximum, then exp(s − max) and their sum, then the
  // division. Stable: the maximum is subtracted before the exponential.
  template <class U>
  MIXLENS_HD void weights(index_t h, index_t t, U* w) const {
    double top = -cuda::std::numeric_limits<double>::infinity();
    for (index_t j = 0; j <= t; ++j) {
      w[j] = static_cast<U>(double(scale) * detail::head_score(q, k, h, t, j));
      top = top < double(w[j]) ? double(w[j]) : top;  // std::max, over the stored scores: every exponent ≤ 0
    }
    double sum = 0;
    for (index_t j = 0; j <= t; ++j) {
      const double e = std::exp(double(w[j]) - top);
      w[j] = static_cast<U>(e);
      sum += e;
    }
    for (index_t j = 0; j <= t; ++j) w[j] = static_cast<U>(double(w[j]) / sum);
  }

  // Row by row: the weights are recomputed on the fly, never stored as a matrix.
  // Subnormal weights are flushed to 0, as on every host path (detail/float_mode.hpp).
  void apply(matrix_view<const T> v, matrix_view<T> y) const { apply(v, y, sequence_parallel_scan{.threads = 1}); }

  // The query rows (independent) split over the policy's threads: blocks of
  // `row_block` rows dealt out in turn (row t costs O(t), so contiguous halves
  // would not balance), every row computed as with one thread, bit for bit.
  void apply(matrix_view<const T> v, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    constexpr std::string_view where = "mixlens::softmax_attention_operator::apply";
    detail::check_apply_args(where, *this, "v", v, y);
    const index_t L = length(), H = heads(), blocks = (L + row_block - 1) / row_block;
    const index_t used = detail::threads_for(policy.checked_threads(), H * L * (L + 1) / 2 * (key_size() + head_dim),
                                             policy.grain, H * blocks);
    detail::parallel_for(used, used, [&](index_t k) {
      std::vector<double> w(static_cast<std::size_t>(L));
      for (index_t h = 0; h < H; ++h)
        for (index_t b = (h * blocks + k) % used; b < blocks; b += used)  // this thread's blocks, staggered by head
          for (index_t t = b * row_block; t < std::min(L, (b + 1) * row_block); ++t) {
            weights(h, t, w.data());
            for (index_t c = h * head_dim; c < (h + 1) * head_dim; ++c) {
              double acc = 0;
              for (index_t j = 0; j <= t; ++j) acc += w[static_cast<std::size_t>(j)] * double(v(c, j));
              y(c, t) = static_cast<T>(acc);
            }
          }
    });
  }

  // Query rows per block of the threaded apply (whole cache lines of y in float).
  static constexpr index_t row_block = 32;

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::softmax_attention_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    std::vector<double> w(static_cast<std::size_t>(length()));
    for (index_t t = 0; t < length(); ++t) {
      weights(head_of(out), t, w.data());
      for (index_t j = 0; j <= t; ++j) m(t, j) = static_cast<T>(w[static_cast<std::size_t>(j)]);
    }
  }

  // The row is its own scratch: the weights are formed in r. For float rows the
  // scores and exponentials pass through float (relative error ~|s|·2⁻²⁴ per
  // entry, against one rounding in materialize's double buffer).
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::softmax_attention_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    weights(head_of(out), t, r.data());
  }
};

template <class T>
struct operator_traits<softmax_attention_operator<T>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name = "softmax attention";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<softmax_attention_operator<T>> = true;  // query rows over threads
}  // namespace detail

template <class T>
using bound_softmax_attention = bound<softmax_attention_operator<T>, detail::qk_storage<T>>;

}  // namespace mixlens
