// RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the
// Transformer Era"): the wkv operator as a linear operator on the values v.
//
// Per channel, with keys k_t, decay w > 0 (weight e^{−w} per step) and bonus u
// for the current token:
//   wkv_t = (Σ_{j<t} e^{k_j − (t−1−j)w} v_j + e^{u + k_t} v_t) / Z_t,
//   Z_t   =  Σ_{j<t} e^{k_j − (t−1−j)w}     + e^{u + k_t},
// a softmax over the past with a fixed positional bias, so
//   M[t][j] = ρ_t · exp(b_{t−j} + k_j − log Z_t),  b_0 = u,  b_d = −(d−1)w,
// with the receptance ρ_t = σ(r_t) when the operator includes it (else 1).
// Every exponent is taken after subtracting the running maximum (the log-sum-
// exp form of RWKV's kernel), so nothing overflows for any k.
//
// Class: M = diag(ρ/Z) · T · diag(e^k) with T the fixed Toeplitz matrix of the
// positional bias: a fixed mixer between data-controlled diagonal gates
// (diagonal data control, class ii); the data never enter T itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cuda/std/limits>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens {

template <class T>
struct rwkv4_operator {
  using value_type = T;

  matrix_view<const T> k;           // D × L keys
  vector_view<const T> w;           // D decay rates, > 0 (RWKV: exp(time_decay))
  vector_view<const T> u;           // D bonus of the current token (time_first)
  matrix_view<const T> receptance;  // D × L σ(r), or empty

  rwkv4_operator() = default;
  rwkv4_operator(matrix_view<const T> k_, vector_view<const T> w_, vector_view<const T> u_,
                 matrix_view<const T> receptance_ = {})
      : k(k_), w(w_), u(u_), receptance(receptance_) {
    constexpr std::string_view where = "mixlens::rwkv4_operator";
    detail::check_positive(where, "k (channels, extent 0)", k.extent(0));
    detail::check_positive(where, "k (length, extent 1)", k.extent(1));
    detail::check_equal(where, "w", "size (= channels)", k.extent(0), static_cast<index_t>(w.size()));
    detail::check_equal(where, "u", "size (= channels)", k.extent(0), static_cast<index_t>(u.size()));
    if (!is_empty(receptance))
      detail::check_signal(where, "receptance", k.extent(0), k.extent(1), receptance.extent(0), receptance.extent(1));
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return k.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return k.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return k.extent(0); }

  template <class F>
  void for_each_view(F&& f) {
    f(k), f(w), f(u), f(receptance);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  void validate() const {
    constexpr std::string_view where = "mixlens::rwkv4_operator";
    for (index_t d = 0; d < in_channels(); ++d)
      if (!(w[static_cast<std::size_t>(d)] > T(0)))
        detail::fail(where, "w", "a decay rate w > 0 at [" + std::to_string(d) + "]", w[static_cast<std::size_t>(d)]);
  }

  // The recurrence on (numerator, denominator) scaled by e^{−o}, o the running
  // maximum exponent.
  void apply(matrix_view<const T> v, matrix_view<T> y) const {
    constexpr std::string_view where = "mixlens::rwkv4_operator::apply";
    detail::check_apply_args(where, *this, "v", v, y);
    for (index_t d = 0; d < in_channels(); ++d) {
      const double wd = w[static_cast<std::size_t>(d)], ud = u[static_cast<std::size_t>(d)];
      double num = 0, den = 0, o = -std::numeric_limits<double>::infinity();
      for (index_t t = 0; t < length(); ++t) {
        const double kt = k(d, t), vt = v(d, t);
        double top = std::max(o, ud + kt);
        double past = std::exp(o - top), now = std::exp(ud + kt - top);
        y(d, t) = static_cast<T>(gate(d, t) * (past * num + now * vt) / (past * den + now));
        top = std::max(o - wd, kt);
        past = std::exp(o - wd - top);
        now = std::exp(kt - top);
        num = past * num + now * vt;
        den = past * den + now;
        o = top;
      }
    }
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::rwkv4_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    const auto lz = log_normalizers(out, length());
    for (index_t t = 0; t < length(); ++t)
      for (index_t j = 0; j <= t; ++j) m(t, j) = static_cast<T>(entry(out, t, j, lz[static_cast<std::size_t>(t)]));
  }

  // Row t in O(t): log Z_t by its recurrence up to t, then the entries.
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::rwkv4_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    const double lz = log_normalizer(out, t);
    for (index_t j = 0; j <= t; ++j) r[static_cast<std::size_t>(j)] = static_cast<T>(entry(out, t, j, lz));
  }

  // log Z_t of channel d, by the same max-shifted recurrence as apply, without memory.
  [[nodiscard]] MIXLENS_HD double log_normalizer(index_t d, index_t t) const {
    const double wd = w[static_cast<std::size_t>(d)], ud = u[static_cast<std::size_t>(d)];
    denominator z;
    for (index_t j = 0; j < t; ++j) z.push(k(d, j), wd);
    return z.log_with(k(d, t), ud);
  }

  // log Z_t for t < n (the same values as log_normalizer, in O(n) for all of them).
  [[nodiscard]] std::vector<double> log_normalizers(index_t d, index_t n) const {
    const double wd = w[static_cast<std::size_t>(d)], ud = u[static_cast<std::size_t>(d)];
    std::vector<double> lz(static_cast<std::size_t>(n));
    denominator z;
    for (index_t t = 0; t < n; ++t) {
      lz[static_cast<std::size_t>(t)] = z.log_with(k(d, t), ud);
      z.push(k(d, t), wd);
    }
    return lz;
  }

 private:
  // Σ_{j<t} e^{k_j − (t−1−j)w} as den·e^{o}, o the running maximum exponent.
  struct denominator {
    double den = 0, o = -cuda::std::numeric_limits<double>::infinity();

    // log(den·e^{o} + e^{u + k_t}): log Z_t.
    [[nodiscard]] MIXLENS_HD double log_with(double kt, double ud) const {
      const double top = o < ud + kt ? ud + kt : o;  // std::max(o, u + k_t)
      return top + std::log(std::exp(o - top) * den + std::exp(ud + kt - top));
    }
    // One step: decay the past by e^{−w}, add e^{k_t}.
    MIXLENS_HD void push(double kt, double wd) {
      const double top = o - wd < kt ? kt : o - wd;  // std::max(o − w, k_t)
      den = std::exp(o - wd - top) * den + std::exp(kt - top);
      o = top;
    }
  };

  [[nodiscard]] MIXLENS_HD double gate(index_t d, index_t t) const {
    return is_empty(receptance) ? 1.0 : double(receptance(d, t));
  }

  // ρ_t exp(b_{t−j} + k_j − log Z_t): the exponent is ≤ 0 (one term of Z_t).
  [[nodiscard]] MIXLENS_HD double entry(index_t d, index_t t, index_t j, double lz) const {
    const double bias = j == t ? double(u[static_cast<std::size_t>(d)])
                               : -double(t - 1 - j) * double(w[static_cast<std::size_t>(d)]);
    return gate(d, t) * std::exp(bias + double(k(d, j)) - lz);
  }
};

// Diagonal data control: see the header comment.
template <class T>
struct operator_traits<rwkv4_operator<T>> : operator_class<data_control::diagonal, false, false> {
  static constexpr std::string_view name = "RWKV-4 time mixing";
};

template <class T>
struct rwkv4_storage {
  matrix<T> k;
  std::vector<T> w, u;
  matrix<T> receptance;
};

template <class T>
using bound_rwkv4 = bound<rwkv4_operator<T>, rwkv4_storage<T>>;

}  // namespace mixlens
