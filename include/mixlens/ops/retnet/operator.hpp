// RetNet retention (Sun et al. 2023, "Retentive Network") as a linear operator on
// the values: a fixed exponential decay γ^{i−j} on data-controlled scores q·k.
//
// Per head h with decay γ_h ∈ (0, 1) (RetNet: γ_h = 1 − 2^{−5−h}):
//   M_h[i][j] = γ_h^{i−j} · ⟨q_i, k_j⟩   (j ≤ i)
// Fast path: the recurrent form S_t = γ S_{t−1} + k_t v_tᵀ, y_t = S_tᵀ q_t.
// The mixer scales keys by 1/√E as RetNet does. Not modelled: the xPos rotation
// of q and k (a fixed position-dependent rotation applied before binding), the
// row normalizations of RetNet's parallel form (numerical safeguards that the
// recurrent form does not have) and the GroupNorm and swish gate after it.
// Strictly lower blocks have rank ≤ E: M = diag(γ^i) tril(Q Kᵀ) diag(γ^{−j}).
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
struct retnet_operator {
  using value_type = T;

  tensor_view<const T, 3> q;   // H × E × L
  tensor_view<const T, 3> k;   // H × E × L (scaled by the mixer)
  vector_view<const T> gamma;  // H decays in (0, 1)
  index_t head_dim = 0;        // P: value channels per head

  retnet_operator() = default;
  retnet_operator(tensor_view<const T, 3> q_, tensor_view<const T, 3> k_, vector_view<const T> gamma_,
                     index_t head_dim_)
      : q(q_), k(k_), gamma(gamma_), head_dim(head_dim_) {
    constexpr std::string_view where = "mixlens::retnet_operator";
    detail::check_heads<T>(where, q, k, head_dim);
    detail::check_equal(where, "gamma", "size (= heads)", heads(), static_cast<index_t>(gamma.size()));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return q.extent(2); }
  [[nodiscard]] MIXLENS_HD index_t heads() const { return q.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t key_size() const { return q.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return heads() * head_dim; }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t head_of(index_t channel) const { return channel / head_dim; }

  template <class F>
  void for_each_view(F&& f) {
    f(q), f(k), f(gamma);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  void validate() const {
    constexpr std::string_view where = "mixlens::retnet_operator";
    for (index_t h = 0; h < heads(); ++h)
      if (!(gamma[static_cast<std::size_t>(h)] > T(0) && gamma[static_cast<std::size_t>(h)] < T(1)))
        detail::fail(where, "gamma", "a decay in (0, 1) at [" + std::to_string(h) + "]", gamma[static_cast<std::size_t>(h)]);
  }

  // The recurrent form per head. Subnormal states are flushed to 0, as on every
  // host path (detail/float_mode.hpp).
  void apply(matrix_view<const T> v, matrix_view<T> y) const { apply(v, y, sequence_parallel_scan{.threads = 1}); }

  // The value channels (independent: each owns its column of the state) split
  // over the policy's threads, a contiguous block each: every channel computed
  // as with one thread, bit for bit.
  void apply(matrix_view<const T> v, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    constexpr std::string_view where = "mixlens::retnet_operator::apply";
    detail::check_apply_args(where, *this, "v", v, y);
    const index_t C = in_channels();
    const index_t used =
        detail::threads_for(policy.checked_threads(), C * length() * key_size(), policy.grain, C);
    detail::parallel_blocks(C, used, [&](index_t first, index_t last) { apply_channels(v, y, first, last); });
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::retnet_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    const index_t h = head_of(out);
    const auto power = powers(h, length());
    for (index_t i = 0; i < length(); ++i)
      for (index_t j = 0; j <= i; ++j) m(i, j) = static_cast<T>(power[static_cast<std::size_t>(i - j)] * score(h, i, j));
  }

  // Row t, γ^{t−j} as a running product from the diagonal: the same products
  // in the same order as powers(), so rows and blocks agree to the last bit.
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::retnet_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    const index_t h = head_of(out);
    const double g = gamma[static_cast<std::size_t>(h)];
    double p = 1;  // γ^{t−j}
    for (index_t j = t; j >= 0; --j, p *= g) r[static_cast<std::size_t>(j)] = static_cast<T>(p * score(h, t, j));
  }

 private:
  // Channels [first, last) of apply, with their own state (E × P per head, the
  // block's columns used).
  void apply_channels(matrix_view<const T> v, matrix_view<T> y, index_t first, index_t last) const {
    const index_t E = key_size(), P = head_dim;
    std::vector<double> s(static_cast<std::size_t>(E * P));
    for (index_t h = first / P; h * P < last; ++h) {
      const index_t p0 = std::max(first, h * P) - h * P, p1 = std::min(last, (h + 1) * P) - h * P;
      const double g = gamma[static_cast<std::size_t>(h)];
      std::fill(s.begin(), s.end(), 0.0);
      for (index_t t = 0; t < length(); ++t) {
        for (index_t e = 0; e < E; ++e) {
          const double ke = k(h, e, t);
          for (index_t p = p0; p < p1; ++p) {
            auto& se = s[static_cast<std::size_t>(e * P + p)];
            se = g * se + ke * double(v(h * P + p, t));
          }
        }
        for (index_t p = p0; p < p1; ++p) {
          double acc = 0;
          for (index_t e = 0; e < E; ++e) acc += double(q(h, e, t)) * s[static_cast<std::size_t>(e * P + p)];
          y(h * P + p, t) = static_cast<T>(acc);
        }
      }
    }
  }

  // γ^d for d < n by running products. Their roundings add up like a random walk
  // (~√d·ε): against long double, RetNet's γ_h (h < 12) stay within 1.5e-14
  // relative up to d = 65535, as accurate as exp(d·log γ), whose error grows as
  // |d·log γ|·ε, and without an exp per entry.
  [[nodiscard]] std::vector<double> powers(index_t h, index_t n) const {
    const double g = gamma[static_cast<std::size_t>(h)];
    std::vector<double> p(static_cast<std::size_t>(n));
    double v = 1;
    for (index_t d = 0; d < n; ++d, v *= g) p[static_cast<std::size_t>(d)] = v;
    return p;
  }
  [[nodiscard]] MIXLENS_HD double score(index_t h, index_t i, index_t j) const {
    return detail::head_score(q, k, h, i, j);
  }
};

template <class T>
struct operator_traits<retnet_operator<T>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name = "RetNet retention";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<retnet_operator<T>> = true;  // value channels over threads
}  // namespace detail

template <class T>
struct retnet_storage {
  detail::qk_storage<T> qk;
  std::vector<T> gamma;
};

template <class T>
using bound_retnet = bound<retnet_operator<T>, retnet_storage<T>>;

}  // namespace mixlens
