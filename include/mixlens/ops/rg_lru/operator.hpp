// The Real-Gated Linear Recurrent Unit of Griffin/Hawk (De et al. 2024) as a
// linear operator on its input x, with the gates that x induces held fixed.
//
// Per channel, with recurrence gate r_t = σ(W_a x_t + b_a), input gate
// i_t = σ(W_x x_t + b_x), a = σ(Λ) and c = 8:
//   a_t = a^{c·r_t},   h_t = a_t h_{t−1} + √(1 − a_t²) (i_t x_t),   y_t = h_t,
//   M[i][j] = (Π_{k=j+1..i} a_k) · √(1 − a_j²) · i_j        (j ≤ i).
// log a_t = −c·r_t·softplus(−Λ) and 1 − a_t² = −expm1(2 log a_t) are formed
// without cancellation.
//
// Class: one real decay per channel makes the operator diagonal data control:
// M = diag(P) · tril(1) · diag(√(1−a²)·i / P) with P_i = Π_{k≤i} a_k, a fixed
// mixer (the cumulative sum) between data-controlled diagonal gates, so
// M(x) ∘/ M(x₀) has rank one. (The gates have an exponential dynamic range,
// which is why the fast paths never form P.) S6 escapes this class only through
// its N > 1 decay rates per channel and its B, C.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

template <class T>
struct rg_lru_operator {
  using value_type = T;

  matrix_view<const T> decay;  // a_t: D × L, in [0, 1]
  matrix_view<const T> scale;  // √(1 − a_t²)·i_t: D × L

  rg_lru_operator() = default;
  rg_lru_operator(matrix_view<const T> decay_, matrix_view<const T> scale_) : decay(decay_), scale(scale_) {
    constexpr std::string_view where = "mixlens::rg_lru_operator";
    detail::check_positive(where, "decay (channels, extent 0)", decay.extent(0));
    detail::check_positive(where, "decay (length, extent 1)", decay.extent(1));
    detail::check_signal(where, "scale", decay.extent(0), decay.extent(1), scale.extent(0), scale.extent(1));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return decay.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return decay.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return decay.extent(0); }

  template <class F>
  void for_each_view(F&& f) {
    f(decay), f(scale);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  void validate() const {
    constexpr std::string_view where = "mixlens::rg_lru_operator";
    for (index_t d = 0; d < in_channels(); ++d)
      for (index_t t = 0; t < length(); ++t)
        if (!(decay(d, t) >= T(0) && decay(d, t) <= T(1)))
          detail::fail(where, "decay", "a_t in [0, 1] at [" + std::to_string(d) + "][" + std::to_string(t) + "]",
                       decay(d, t));
  }

  // The recurrence, sequentially (in double) or with any scan policy of scan.hpp
  // (in T). With sequence_parallel_scan the channels (independent sequences) are
  // split over its threads, each running the sequential recurrence: the
  // sequential results bit for bit. Subnormal states are flushed to 0 on every
  // path (detail/float_mode.hpp).
  template <scan_policy Policy = sequential_scan>
  void apply(matrix_view<const T> x, matrix_view<T> y, Policy policy = {}) const {
    constexpr std::string_view where = "mixlens::rg_lru_operator::apply";
    detail::check_apply_args(where, *this, "x", x, y);
    const index_t D = in_channels();
    if constexpr (std::is_same_v<Policy, sequence_parallel_scan>) {
      const index_t used = detail::threads_for(policy.checked_threads(), D * length(), policy.grain, D);
      detail::parallel_for(D, used, [&](index_t d) { recurrence(d, x, y); });
      return;
    }
    const detail::flush_subnormals_guard flush;
    std::vector<affine<T>> e;
    for (index_t d = 0; d < D; ++d) {
      if constexpr (std::is_same_v<Policy, sequential_scan>) {
        recurrence(d, x, y);
      } else {
        e.resize(static_cast<std::size_t>(length()));
        for (index_t t = 0; t < length(); ++t) e[static_cast<std::size_t>(t)] = {decay(d, t), scale(d, t) * x(d, t)};
        policy(vector_view<affine<T>>(e));
        for (index_t t = 0; t < length(); ++t) y(d, t) = e[static_cast<std::size_t>(t)].b;
      }
    }
  }

  // Column j: the impulse response started at j, by running products.
  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::rg_lru_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    for (index_t j = 0; j < length(); ++j) {
      double p = scale(out, j);
      m(j, j) = static_cast<T>(p);
      for (index_t i = j + 1; i < length(); ++i) m(i, j) = static_cast<T>(p *= double(decay(out, i)));
    }
  }

  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::rg_lru_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    double p = 1;  // Π_{k=j+1..t} a_k
    for (index_t j = t; j >= 0; --j) {
      r[static_cast<std::size_t>(j)] = static_cast<T>(p * double(scale(out, j)));
      p *= double(decay(out, j));
    }
  }

 private:
  // Channel d of apply in double, under the caller's flush_subnormals_guard.
  void recurrence(index_t d, matrix_view<const T> x, matrix_view<T> y) const {
    double h = 0;
    for (index_t t = 0; t < length(); ++t) {
      h = double(decay(d, t)) * h + double(scale(d, t)) * double(x(d, t));
      y(d, t) = static_cast<T>(h);
    }
  }
};

// Diagonal data control: see the header comment.
template <class T>
struct operator_traits<rg_lru_operator<T>> : operator_class<data_control::diagonal, false, false> {
  static constexpr std::string_view name = "RG-LRU";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<rg_lru_operator<T>> = true;  // channels over threads
}  // namespace detail

template <class T>
struct rg_lru_storage {
  matrix<T> decay, scale;
};

template <class T>
using bound_rg_lru = bound<rg_lru_operator<T>, rg_lru_storage<T>>;

}  // namespace mixlens
