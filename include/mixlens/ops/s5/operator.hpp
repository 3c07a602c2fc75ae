// S5 (Smith, Warrington, Linderman 2023): one multi-input multi-output diagonal
// SSM shared by all H channels,
//   x_t = Λ̄ ⊙ x_{t−1} + B̄·u_t,   y_t = f·Re(C̃·x_t) + D ⊙ u_t,
// with Λ ∈ C^P (Re < 0), B̃ ∈ C^{P×H}, C̃ ∈ C^{H×P}, a step Δ_p = exp(log_step_p)
// per state, D ∈ R^H, and f = 2 under conjugate symmetry (only one state of each
// conjugate pair is stored), else f = 1.
// Discretization: ZOH Λ̄ = exp(ΛΔ), B̄ = (Λ̄ − 1)/Λ·B̃; bilinear
// Λ̄ = (1 + ΛΔ/2)/(1 − ΛΔ/2), B̄ = Δ/(1 − ΛΔ/2)·B̃.
// The mixing matrix is block lower-triangular Toeplitz with H×H blocks: block
// (o, i) has entries m[t][s] = f·Re Σ_p C̃(o,p)·Λ̄_p^{t−s}·B̄(p,i) + D_o·[t = s]·[o = i].
// Bidirectional S5 (the reference's `bidirectional`) adds a reverse scan over the
// same Λ̄ and B̄, x←_t = Λ̄ ⊙ x←_{t+1} + B̄·u_t, read by its own C̃←: block (o, i)
// gains f·Re Σ_p C̃←(o,p)·Λ̄_p^{s−t}·B̄(p,i) for s ≥ t (the diagonal included),
// and the blocks become full Toeplitz matrices.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/hippo.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

enum class s5_discretization { zoh, bilinear };

// How C is drawn at initialization (the options of the reference implementation).
enum class s5_c_init {
  trunc_standard_normal,  // per output row, truncated normal with std 1/sqrt(P_full), then C̃ = C·V
  lecun_normal,           // truncated normal with std 1/sqrt(P_full·H), then C̃ = C·V
  complex_normal,         // C̃ drawn directly: Re, Im ~ N(0, 1/2); not multiplied by V
};

// Initialization of an S5 mixer as in the paper's reference code.
struct s5_init {
  index_t state_size = 64;  // P of the paper: states before halving for conjugate symmetry
  index_t blocks = 1;       // J: HiPPO-N blocks on the diagonal of Λ (state_size / blocks each)
  bool conj_sym = true;     // store state_size / 2 states, output 2·Re
  s5_discretization discretization = s5_discretization::zoh;
  s5_c_init c_init = s5_c_init::trunc_standard_normal;
  double dt_min = 1e-3;  // log_step ~ U[log dt_min, log dt_max]
  double dt_max = 1e-1;
  std::uint64_t seed = 0;
};

namespace detail {

template <class T>
MIXLENS_HD complex<double> widen(const complex<T>& z) {
  return {double(z.real()), double(z.imag())};
}

}  // namespace detail

// ---- the bound operator ---------------------------------------------------------

// Bound S5 SSM over sequences of a fixed length: spans over the discretized
// parameters. Input and output channels are both H.
template <class T>
struct s5_operator {
  using value_type = T;

  vector_view<const complex<T>> lambda_bar;  // Λ̄, P
  matrix_view<const complex<T>> b_bar;       // B̄, P × H
  matrix_view<const complex<T>> c_tilde;     // C̃, H × P
  matrix_view<const complex<T>> c_backward;  // C̃← of the reverse scan, H × P, or empty (causal)
  vector_view<const T> skip;                 // D, H or empty
  index_t sequence_length = 0;
  bool conj_sym = false;  // output 2·Re instead of Re
  // |Λ̄_p| > 1 admitted (a trained checkpoint's growing state, on a finite
  // length): validate then asks only that Λ̄^L stay well inside T's range.
  bool allow_growth = false;

  s5_operator() = default;
  s5_operator(vector_view<const complex<T>> lambda, matrix_view<const complex<T>> b, matrix_view<const complex<T>> c,
              vector_view<const T> d, index_t length, bool conjugate_symmetry,
              matrix_view<const complex<T>> c_back = {})
      : lambda_bar(lambda), b_bar(b), c_tilde(c), c_backward(c_back), skip(d), sequence_length(length),
        conj_sym(conjugate_symmetry) {
    constexpr std::string_view where = "mixlens::s5_operator";
    detail::check_positive(where, "length", length);
    const index_t P = static_cast<index_t>(lambda.size());
    detail::check_positive(where, "lambda_bar (states)", P);
    detail::check_positive(where, "b_bar (channels, extent 1)", b.extent(1));
    detail::check_equal(where, "b_bar", "states (extent 0)", P, b.extent(0));
    detail::check_equal(where, "c_tilde", "channels (extent 0)", b.extent(1), c.extent(0));
    detail::check_equal(where, "c_tilde", "states (extent 1)", P, c.extent(1));
    if (!d.empty()) detail::check_equal(where, "skip", "size", b.extent(1), static_cast<index_t>(d.size()));
    if (!c_back.empty()) {
      detail::check_equal(where, "c_backward", "channels (extent 0)", b.extent(1), c_back.extent(0));
      detail::check_equal(where, "c_backward", "states (extent 1)", P, c_back.extent(1));
    }
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return sequence_length; }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return b_bar.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return c_tilde.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t states() const { return static_cast<index_t>(lambda_bar.size()); }
  // The name every state-space view uses (analysis::attention_count reads it).
  [[nodiscard]] MIXLENS_HD index_t state_size() const { return states(); }
  [[nodiscard]] MIXLENS_HD bool causal() const { return c_backward.empty(); }

  template <class F>
  void for_each_view(F&& f) {
    f(lambda_bar), f(b_bar), f(c_tilde), f(c_backward), f(skip);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  // |Λ̄_p| ≤ 1: a larger modulus makes the kernel grow without bound. The slack
  // of a few ulps admits a decay next to the unit circle rounded to T.
  void validate() const {
    constexpr std::string_view where = "mixlens::s5_operator";
    const double bound = 1.0 + 4.0 * double(std::numeric_limits<T>::epsilon());
    // With allow_growth: |Λ̄|^L at most the square root of T's largest value, which
    // leaves the products with B̄, C̃ and the input room before they overflow.
    const double log_limit = 0.5 * std::log(double(std::numeric_limits<T>::max()));
    for (index_t p = 0; p < states(); ++p) {
      const complex<double> l = detail::widen(lambda_bar[static_cast<std::size_t>(p)]);
      if (allow_growth) {
        if (!(std::isfinite(l.real()) && std::isfinite(l.imag()) &&
              double(length()) * std::log(cuda::std::abs(l)) <= log_limit))
          detail::fail(where, "lambda_bar",
                       "finite, with |lambda_bar|^length <= sqrt(max) (a growth the type holds) at [" + std::to_string(p) +
                           "], length " + std::to_string(length()),
                       detail::format_complex(l));
        continue;
      }
      if (!(std::isfinite(l.real()) && std::isfinite(l.imag()) && cuda::std::abs(l) <= bound))
        detail::fail(where, "lambda_bar", "|lambda_bar| <= 1 (a stable state) at [" + std::to_string(p) + "]",
                     detail::format_complex(l));
    }
  }

  // y = M·x by a parallel scan per state over the elements (Λ̄_p, (B̄·u_t)_p),
  // and for a bidirectional S5 the same scan over the reversed elements. With
  // sequence_parallel_scan the states are scanned on its threads (sequentially
  // each, all P·L states kept), then the output channels summed over the states
  // in order on them: the sequential scan's results bit for bit.
  void apply(matrix_view<const T> x, matrix_view<T> y) const { apply(x, y, blelloch_scan{}); }

  template <scan_policy Policy>
  void apply(matrix_view<const T> x, matrix_view<T> y, Policy policy) const {
    constexpr std::string_view where = "mixlens::s5_operator::apply";
    detail::check_apply_args(where, *this, "x", x, y);
    const index_t L = length(), H = in_channels(), P = states(), directions = causal() ? 1 : 2;
    index_t threads = 1;
    if constexpr (std::is_same_v<Policy, sequence_parallel_scan>)
      threads = detail::threads_for(policy.checked_threads(), P * L * H, policy.grain, P);
    // Rows (direction, p) of scanned states; one row at a time unless threaded.
    const index_t rows = threads > 1 ? directions * P : 1;
    std::vector<complex<T>> states(static_cast<std::size_t>(rows * L));
    std::vector<double> acc(static_cast<std::size_t>(H * L), 0.0);  // y, summed over states
    // State p of one direction into row r: e[k] holds time time_of(k).
    auto scan = [&](index_t p, bool reverse, complex<T>* row) {
      std::vector<affine<complex<T>>> e(static_cast<std::size_t>(L));
      const complex<T> a = lambda_bar[static_cast<std::size_t>(p)];
      for (index_t k = 0; k < L; ++k) {
        const index_t t = reverse ? L - 1 - k : k;
        complex<T> v(0);
        for (index_t h = 0; h < H; ++h) v += b_bar(p, h) * x(h, t);
        e[static_cast<std::size_t>(k)] = {a, v};
      }
      if constexpr (std::is_same_v<Policy, sequence_parallel_scan>) sequential_scan{}(vector_view<affine<complex<T>>>(e));
      else policy(vector_view<affine<complex<T>>>(e));
      for (index_t k = 0; k < L; ++k) row[reverse ? L - 1 - k : k] = e[static_cast<std::size_t>(k)].b;
    };
    // Adds state p of one direction (row, by time) to the channels [o0, o1), in state order.
    const T f = conj_sym ? T(2) : T(1);
    auto accumulate = [&](index_t p, bool reverse, const complex<T>* row, index_t o0, index_t o1) {
      for (index_t o = o0; o < o1; ++o) {
        const complex<T> co = reverse ? c_backward(o, p) : c_tilde(o, p);
        double* out = acc.data() + o * L;
        for (index_t t = 0; t < L; ++t) out[t] += double(f * (co * row[t]).real());
      }
    };
    if (threads == 1) {
      for (index_t p = 0; p < P; ++p)
        for (index_t dir = 0; dir < directions; ++dir) {
          scan(p, dir == 1, states.data());
          accumulate(p, dir == 1, states.data(), 0, H);
        }
    } else {
      detail::parallel_for(directions * P, threads, [&](index_t r) { scan(r / directions, r % directions == 1, states.data() + r * L); });
      detail::parallel_for(H, threads, [&](index_t o) {
        for (index_t r = 0; r < directions * P; ++r) accumulate(r / directions, r % directions == 1, states.data() + r * L, o, o + 1);
      });
    }
    for (index_t o = 0; o < H; ++o) {
      const double d = skip.empty() ? 0.0 : double(skip[static_cast<std::size_t>(o)]);
      for (index_t t = 0; t < L; ++t) y(o, t) = static_cast<T>(acc[static_cast<std::size_t>(o * L + t)] + d * double(x(o, t)));
    }
  }

  // The Toeplitz generator of block (out, in): k[d] = entry (t, t − d), for
  // d < k.size() ≤ L, skip included at d = 0. Running powers of Λ̄ in double.
  // For a bidirectional S5 this is the lower triangle's generator (lags t − s).
  void kernel(index_t out, index_t in, vector_view<T> k) const {
    constexpr std::string_view where = "mixlens::s5_operator::kernel";
    detail::check_channel(where, "out", out_channels(), out);
    detail::check_channel(where, "in", in_channels(), in);
    if (static_cast<index_t>(k.size()) > length())
      detail::fail(where, "k", "size <= length " + std::to_string(length()), k.size());
    fill_kernel(c_tilde, true, out, in, static_cast<index_t>(k.size()),
                [&](index_t d, T v) { k[static_cast<std::size_t>(d)] = v; });
  }

  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::s5_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    const index_t L = length();
    std::vector<T> k(static_cast<std::size_t>(L));
    fill_kernel(c_tilde, true, out, in, L, [&](index_t d, T v) { k[static_cast<std::size_t>(d)] = v; });
    for (index_t t = 0; t < L; ++t)
      for (index_t s = 0; s < L; ++s) m(t, s) = s <= t ? k[static_cast<std::size_t>(t - s)] : T(0);
    if (causal()) return;
    fill_kernel(c_backward, false, out, in, L, [&](index_t d, T v) { k[static_cast<std::size_t>(d)] = v; });
    for (index_t t = 0; t < L; ++t)
      for (index_t s = t; s < L; ++s) m(t, s) += k[static_cast<std::size_t>(s - t)];
  }

  // Row t: r[t − d] = k[d], accumulated state by state into r (the skip first,
  // then the states in fill_kernel's order: in double the same sums), each
  // state's term advanced by one multiplication per lag in double, so no large
  // powers are formed; the reverse scan's terms go to r[t + d]. Needs no memory
  // beyond r: host loops and kernels share it.
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::s5_operator::row", *this, out, in, t, r));
    const double f = conj_sym ? 2.0 : 1.0;
    for (index_t s = 0; s < length(); ++s) r[static_cast<std::size_t>(s)] = T(0);
    if (out == in && !skip.empty()) r[static_cast<std::size_t>(t)] = skip[static_cast<std::size_t>(out)];
    for (index_t p = 0; p < states(); ++p) {
      const complex<double> a = detail::widen(lambda_bar[static_cast<std::size_t>(p)]);
      complex<double> w = detail::widen(c_tilde(out, p)) * detail::widen(b_bar(p, in));  // C̃·Λ̄^d·B̄
      for (index_t d = 0; d <= t; ++d) {
        r[static_cast<std::size_t>(t - d)] += static_cast<T>(f * w.real());
        w *= a;
      }
      if (causal()) continue;
      w = detail::widen(c_backward(out, p)) * detail::widen(b_bar(p, in));
      for (index_t d = 0; t + d < length(); ++d) {
        r[static_cast<std::size_t>(t + d)] += static_cast<T>(f * w.real());
        w *= a;
      }
    }
  }

 private:
  // Calls put(d, k[d]) for d < count in O(count·P): w_p = c(o,p)·Λ̄_p^d·B̄(p,i) is
  // advanced by one multiplication per lag, so no large powers are formed. c is
  // C̃ or C̃←; with_skip adds D at d = 0.
  template <class Put>
  void fill_kernel(matrix_view<const complex<T>> c, bool with_skip, index_t out, index_t in, index_t count,
                   Put put) const {
    const index_t P = states();
    const double f = conj_sym ? 2.0 : 1.0;
    std::vector<complex<double>> w(static_cast<std::size_t>(P)), a(static_cast<std::size_t>(P));
    for (index_t p = 0; p < P; ++p) {
      a[static_cast<std::size_t>(p)] = detail::widen(lambda_bar[static_cast<std::size_t>(p)]);
      w[static_cast<std::size_t>(p)] = detail::widen(c(out, p)) * detail::widen(b_bar(p, in));
    }
    const double d0 = (with_skip && out == in && !skip.empty()) ? double(skip[static_cast<std::size_t>(out)]) : 0.0;
    for (index_t d = 0; d < count; ++d) {
      double v = d == 0 ? d0 : 0.0;
      for (std::size_t p = 0; p < w.size(); ++p) {
        v += f * w[p].real();
        w[p] *= a[p];
      }
      put(d, static_cast<T>(v));
    }
  }
};

template <class T>
struct operator_traits<s5_operator<T>> : operator_class<data_control::none, true, true> {
  static constexpr std::string_view name = "S5";
};

// What a bound S5 operator owns: the discretized parameters.
template <class T>
struct s5_storage {
  std::vector<complex<T>> lambda_bar;
  matrix<complex<T>> b_bar;
  matrix<complex<T>> c_tilde;
  std::vector<T> skip;
  matrix<complex<T>> c_backward;  // empty: causal
};

template <class T>
using bound_s5 = bound<s5_operator<T>, s5_storage<T>>;

}  // namespace mixlens
