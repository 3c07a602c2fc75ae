// Causal linear attention (Katharopoulos et al. 2020, "Transformers are RNNs") as
// a linear operator on the values.
//
// With the feature map φ(z) = elu(z) + 1 > 0 applied to queries and keys (the
// bound operator stores φ(q), φ(k)), per head h:
//   M_h[i][j] = ⟨φ(q_i), φ(k_j)⟩ / n_i      (j ≤ i),
//   n_i = ⟨φ(q_i), Σ_{j'≤i} φ(k_j')⟩ when normalized, else 1.
// Fast path: the recurrence S_t = S_{t−1} + φ(k_t) v_tᵀ, z_t = z_{t−1} + φ(k_t),
// y_t = φ(q_t)ᵀ S_t / ⟨φ(q_t), z_t⟩, O(L·E·P) per head. The off-diagonal
// blocks have rank ≤ E (the key width). Layout as in softmax_attention.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

template <class T>
struct linear_attention_operator {
  using value_type = T;

  tensor_view<const T, 3> q;  // φ(q): H × E × L, positive when normalized
  tensor_view<const T, 3> k;  // φ(k): H × E × L
  index_t head_dim = 0;       // P: value channels per head
  bool normalized = true;

  linear_attention_operator() = default;
  linear_attention_operator(tensor_view<const T, 3> q_, tensor_view<const T, 3> k_, index_t head_dim_,
                            bool normalized_ = true)
      : q(q_), k(k_), head_dim(head_dim_), normalized(normalized_) {
    constexpr std::string_view where = "mixlens::linear_attention_operator";
    detail::check_heads<T>(where, q, k, head_dim);
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

  // The value checks, on host data: bind runs them, and so does to_device.
  void validate() const {
    constexpr std::string_view where = "mixlens::linear_attention_operator";
    if (normalized)  // the normalizer must not vanish: positive features
      for (index_t h = 0; h < heads(); ++h)
        for (index_t e = 0; e < key_size(); ++e)
          for (index_t t = 0; t < length(); ++t) {
            if (!(q(h, e, t) > T(0)))
              detail::fail(where, "q", "positive features for the normalized form at [" + std::to_string(h) + "][" +
                                           std::to_string(e) + "][" + std::to_string(t) + "]", q(h, e, t));
            if (!(k(h, e, t) > T(0)))
              detail::fail(where, "k", "positive features for the normalized form at [" + std::to_string(h) + "][" +
                                           std::to_string(e) + "][" + std::to_string(t) + "]", k(h, e, t));
          }
  }

  // The running state per head. Subnormal intermediates are flushed to 0, as on
  // every host path (detail/float_mode.hpp).
  void apply(matrix_view<const T> v, matrix_view<T> y) const { apply(v, y, sequence_parallel_scan{.threads = 1}); }

  // The value channels (independent: a channel's state columns and its head's
  // normalizer are its own) split over the policy's threads, a contiguous block
  // each: every channel computed as with one thread, bit for bit.
  void apply(matrix_view<const T> v, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    constexpr std::string_view where = "mixlens::linear_attention_operator::apply";
    detail::check_apply_args(where, *this, "v", v, y);
    const index_t C = in_channels();
    const index_t used =
        detail::threads_for(policy.checked_threads(), C * length() * key_size(), policy.grain, C);
    detail::parallel_blocks(C, used, [&](index_t first, index_t last) { apply_channels(v, y, first, last); });
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::linear_attention_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    const index_t h = head_of(out);
    std::vector<double> z(static_cast<std::size_t>(key_size()), 0.0);
    for (index_t t = 0; t < length(); ++t) {
      for (index_t e = 0; e < key_size(); ++e) z[static_cast<std::size_t>(e)] += double(k(h, e, t));
      const double norm = normalizer_from(h, t, z);
      for (index_t j = 0; j <= t; ++j) m(t, j) = static_cast<T>(score(h, t, j) / norm);
    }
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::linear_attention_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    const index_t h = head_of(out);
    const double norm = normalizer(h, t);
    for (index_t j = 0; j <= t; ++j) r[static_cast<std::size_t>(j)] = static_cast<T>(score(h, t, j) / norm);
  }

  // n_t = ⟨φ(q_t), z_t⟩ with z_t = Σ_{j≤t} φ(k_j), one key feature at a time
  // (no vector of z): O(t·E), summed in the order materialize sums it.
  [[nodiscard]] MIXLENS_HD double normalizer(index_t h, index_t t) const {
    if (!normalized) return 1;
    double n = 0;
    for (index_t e = 0; e < key_size(); ++e) {
      double z = 0;
      for (index_t j = 0; j <= t; ++j) z += double(k(h, e, j));
      n += double(q(h, e, t)) * z;
    }
    return n;
  }

 private:
  // Channels [first, last) of apply, with scratch of their own: per head the
  // state S (E × P, the block's columns used) and the key sum z.
  void apply_channels(matrix_view<const T> v, matrix_view<T> y, index_t first, index_t last) const {
    const index_t E = key_size(), P = head_dim;
    std::vector<double> s(static_cast<std::size_t>(E * P)), z(static_cast<std::size_t>(E));
    for (index_t h = first / P; h * P < last; ++h) {
      const index_t p0 = std::max(first, h * P) - h * P, p1 = std::min(last, (h + 1) * P) - h * P;
      std::fill(s.begin(), s.end(), 0.0);
      std::fill(z.begin(), z.end(), 0.0);
      for (index_t t = 0; t < length(); ++t) {
        double norm = 0;
        for (index_t e = 0; e < E; ++e) {
          const double ke = k(h, e, t);
          for (index_t p = p0; p < p1; ++p) s[static_cast<std::size_t>(e * P + p)] += ke * double(v(h * P + p, t));
          z[static_cast<std::size_t>(e)] += ke;
          norm += double(q(h, e, t)) * z[static_cast<std::size_t>(e)];
        }
        if (!normalized) norm = 1;
        for (index_t p = p0; p < p1; ++p) {
          double acc = 0;
          for (index_t e = 0; e < E; ++e) acc += double(q(h, e, t)) * s[static_cast<std::size_t>(e * P + p)];
          y(h * P + p, t) = static_cast<T>(acc / norm);
        }
      }
    }
  }

  [[nodiscard]] MIXLENS_HD double score(index_t h, index_t i, index_t j) const {
    return detail::head_score(q, k, h, i, j);
  }
  // ⟨φ(q_t), z_t⟩ with z_t the running key sum of materialize (1 when not normalized).
  [[nodiscard]] double normalizer_from(index_t h, index_t t, const std::vector<double>& z) const {
    if (!normalized) return 1;
    double n = 0;
    for (index_t e = 0; e < key_size(); ++e) n += double(q(h, e, t)) * z[static_cast<std::size_t>(e)];
    return n;
  }
};

template <class T>
struct operator_traits<linear_attention_operator<T>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name = "linear attention";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<linear_attention_operator<T>> = true;  // value channels over threads
}  // namespace detail

template <class T>
using bound_linear_attention = bound<linear_attention_operator<T>, detail::qk_storage<T>>;

}  // namespace mixlens
