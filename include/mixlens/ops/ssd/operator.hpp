// Mamba-2's state space duality (SSD; Dao & Gu 2024, "Transformers are SSMs") as a
// data-controlled linear operator: a selective SSM whose decay is one scalar per
// head, so that its mixing matrix is a masked attention matrix
//   M_h = L_h ∘ (C Bᵀ) · diag(Δ_h),   L_h[i][j] = exp(a_h Σ_{k=j+1..i} Δ_h[k])  (j ≤ i),
// i.e. M_h[i][j] = ⟨C_i, B_j⟩ · exp(a_h Σ_{k=j+1..i} Δ_k) · Δ_j (+ D_h on the diagonal),
// exactly state-spaces/mamba's ssd_minimal with X·Δ and A·Δ. An optional gate
// (H·P × L) scales output row t of channel c by gate[c][t] (a diagonal on the
// left, as Mamba-2's gated norm is at a given input). Channels: H heads
// of P value channels; every channel of a head is mixed by the same M_h. B and C
// are shared by the heads of a group (G groups). Strictly lower blocks of M_h
// have rank ≤ N (semiseparable).
//
// apply runs the chunked SSD algorithm (intra-chunk quadratic form, chunk
// states, inter-chunk recurrence, state-to-output); apply_recurrent runs the
// plain recurrence; materialize uses the quadratic form. Segment sums are
// accumulated term by term (never as differences of long prefix sums), and every
// exponent is ≤ 0, so nothing overflows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

template <class T>
struct ssd_operator {
  using value_type = T;

  matrix_view<const T> delta;   // H × L, > 0 (after softplus)
  vector_view<const T> a;       // H scalar decay rates, < 0
  tensor_view<const T, 3> b;    // G × N × L
  tensor_view<const T, 3> c;    // G × N × L
  index_t head_dim = 0;         // P
  vector_view<const T> skip;    // H (the D term per head), H·P (per channel: Mamba-2's D_has_hdim) or empty
  index_t chunk = 64;           // chunk length of the SSD algorithm
  matrix_view<const T> gate;    // H·P × L, or empty

  ssd_operator() = default;
  ssd_operator(matrix_view<const T> delta_, vector_view<const T> a_, tensor_view<const T, 3> b_,
               tensor_view<const T, 3> c_, index_t head_dim_, vector_view<const T> skip_ = {}, index_t chunk_ = 64,
               matrix_view<const T> gate_ = {})
      : delta(delta_), a(a_), b(b_), c(c_), head_dim(head_dim_), skip(skip_), chunk(chunk_), gate(gate_) {
    check_shapes();
  }

  [[nodiscard]] MIXLENS_HD index_t length() const { return delta.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t heads() const { return delta.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t state_size() const { return b.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t groups() const { return b.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return heads() * head_dim; }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return in_channels(); }
  [[nodiscard]] MIXLENS_HD index_t head_of(index_t channel) const { return channel / head_dim; }
  [[nodiscard]] MIXLENS_HD index_t group_of(index_t h) const { return h / (heads() / groups()); }
  // D of a channel: its head's, or its own when skip holds one per channel.
  [[nodiscard]] MIXLENS_HD T skip_of(index_t channel) const {
    return skip[static_cast<std::size_t>(skip.size() == static_cast<std::size_t>(heads()) ? head_of(channel) : channel)];
  }

  template <class F>
  void for_each_view(F&& f) {
    f(delta), f(a), f(b), f(c), f(skip), f(gate);
  }

  // The value checks, on host data: bind runs them, and so does to_device.
  void validate() const {
    constexpr std::string_view where = "mixlens::ssd_operator";
    // As for S6: Δ = 0 and a = 0 are valid (no update, no decay); non-finite
    // values are refused as such.
    for (index_t h = 0; h < heads(); ++h) {
      const T ah = a[static_cast<std::size_t>(h)];
      const auto at = [&](index_t t) {  // "[h]" or "[h][t]" (piecewise: GCC 12 warns falsely on a + chain)
        std::string s = "[";
        s += std::to_string(h);
        s += "]";
        if (t >= 0) (s += "[") += std::to_string(t) += "]";
        return s;
      };
      if (!std::isfinite(ah)) detail::fail(where, "a", "finite values at " + at(-1), ah);
      if (!(ah <= T(0))) detail::fail(where, "a", "a <= 0 (no growth) at " + at(-1), ah);
      for (index_t t = 0; t < length(); ++t) {
        const T dt = delta(h, t);
        if (!std::isfinite(dt)) detail::fail(where, "delta", "finite values at " + at(t), dt);
        if (!(dt >= T(0))) detail::fail(where, "delta", "delta >= 0 at " + at(t), dt);
      }
    }
  }

  // The chunked SSD algorithm, per head: within a chunk the quadratic (attention)
  // form, across chunks the recurrence on the N × P chunk states. Subnormal
  // intermediates are flushed to 0, as on every host path (detail/float_mode.hpp).
  void apply(matrix_view<const T> x, matrix_view<T> y) const { apply(x, y, sequence_parallel_scan{.threads = 1}); }

  // The heads (independent) split over the policy's threads, a contiguous block
  // each: the same results bit for bit for any count.
  void apply(matrix_view<const T> x, matrix_view<T> y, const sequence_parallel_scan& policy) const {
    check_apply("mixlens::ssd_operator::apply", x, y);
    const index_t H = heads();
    const index_t used = detail::threads_for(policy.checked_threads(),
                                             H * length() * head_dim * (state_size() + std::min(chunk, length())),
                                             policy.grain, H);
    detail::parallel_blocks(H, used, [&](index_t first, index_t last) { apply_heads(x, y, first, last); });
  }

  // The plain recurrence h_t = exp(Δ_t a) h_{t−1} + Δ_t B_t x_tᵀ, y_t = h_tᵀ C_t.
  void apply_recurrent(matrix_view<const T> x, matrix_view<T> y) const {
    check_apply("mixlens::ssd_operator::apply_recurrent", x, y);
    const index_t N = state_size(), P = head_dim;
    std::vector<double> state(static_cast<std::size_t>(N * P));
    for (index_t h = 0; h < heads(); ++h) {
      const index_t g = group_of(h);
      std::fill(state.begin(), state.end(), 0.0);
      for (index_t t = 0; t < length(); ++t) {
        const double dt = delta(h, t), decay = std::exp(double(a[static_cast<std::size_t>(h)]) * dt);
        for (index_t p = 0; p < P; ++p) {
          const double xp = dt * double(x(h * P + p, t));
          double acc = 0;
          for (index_t k = 0; k < N; ++k) {
            auto& s = state[static_cast<std::size_t>(k * P + p)];
            s = decay * s + double(b(g, k, t)) * xp;
            acc += double(c(g, k, t)) * s;
          }
          y(h * P + p, t) = static_cast<T>(acc);
        }
      }
    }
    add_skip_and_gate(x, y);
  }

  // The quadratic form: column j, rows i ≥ j, segment sums grown term by term.
  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    constexpr std::string_view where = "mixlens::ssd_operator::materialize";
    detail::check_materialize_args(where, *this, out, in, m);
    detail::zero(m);
    if (out != in) return;
    const index_t h = head_of(out), g = group_of(h);
    const double ah = a[static_cast<std::size_t>(h)];
    for (index_t j = 0; j < length(); ++j) {
      double seg = 0;
      for (index_t i = j; i < length(); ++i) {
        if (i > j) seg += ah * double(delta(h, i));
        m(i, j) = static_cast<T>(cb(g, i, j) * std::exp(seg) * double(delta(h, j)));
      }
      if (!skip.empty()) m(j, j) += skip_of(out);
    }
    if (!is_empty(gate))
      for (index_t i = 0; i < length(); ++i)
        for (index_t j = 0; j <= i; ++j) m(i, j) *= gate(out, i);
  }

  // Row t in O(t·N), the segment sum grown backward from the diagonal.
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("mixlens::ssd_operator::row", *this, out, in, t, r));
    detail::zero(r);
    if (out != in) return;
    const index_t h = head_of(out), g = group_of(h);
    const double ah = a[static_cast<std::size_t>(h)];
    double seg = 0;  // Σ_{k=j+1..t} Δ_k a
    for (index_t j = t; j >= 0; --j) {
      r[static_cast<std::size_t>(j)] = static_cast<T>(cb(g, t, j) * std::exp(seg) * double(delta(h, j)));
      seg += ah * double(delta(h, j));
    }
    if (!skip.empty()) r[static_cast<std::size_t>(t)] += skip_of(out);
    if (!is_empty(gate))
      for (index_t j = 0; j <= t; ++j) r[static_cast<std::size_t>(j)] *= gate(out, t);
  }

 private:
  // Heads [first, last) of apply by the chunked algorithm, their skip and gate
  // included, with scratch of their own.
  void apply_heads(matrix_view<const T> x, matrix_view<T> y, index_t first, index_t last) const {
    const index_t L = length(), N = state_size(), P = head_dim, Q = chunk;
    std::vector<double> state(static_cast<std::size_t>(N * P)), out(static_cast<std::size_t>(Q * P)),
        seg_end(static_cast<std::size_t>(Q)), decay_in(static_cast<std::size_t>(Q));
    for (index_t h = first; h < last; ++h) {
      const index_t g = group_of(h);
      const double ah = a[static_cast<std::size_t>(h)];
      std::fill(state.begin(), state.end(), 0.0);
      for (index_t c0 = 0; c0 < L; c0 += Q) {
        const index_t n = std::min(Q, L - c0);
        std::fill(out.begin(), out.end(), 0.0);
        // Intra-chunk: column s, rows l ≥ s, with the segment sum grown term by term.
        for (index_t s = 0; s < n; ++s) {
          const index_t js = c0 + s;
          double seg = 0;
          for (index_t l = s; l < n; ++l) {
            const index_t il = c0 + l;
            if (l > s) seg += ah * double(delta(h, il));
            double cb = 0;
            for (index_t k = 0; k < N; ++k) cb += double(c(g, k, il)) * double(b(g, k, js));
            const double w = cb * std::exp(seg) * double(delta(h, js));
            for (index_t p = 0; p < P; ++p) out[static_cast<std::size_t>(l * P + p)] += w * double(x(h * P + p, js));
          }
          seg_end[static_cast<std::size_t>(s)] = seg;  // Σ_{k=s+1..n−1} a_k: decay to the chunk's end
        }
        // State to output: the state entering the chunk, decayed to each step.
        double into = 0;
        for (index_t l = 0; l < n; ++l) {
          into += ah * double(delta(h, c0 + l));
          decay_in[static_cast<std::size_t>(l)] = std::exp(into);
          for (index_t k = 0; k < N; ++k) {
            const double ck = double(c(g, k, c0 + l)) * decay_in[static_cast<std::size_t>(l)];
            for (index_t p = 0; p < P; ++p)
              out[static_cast<std::size_t>(l * P + p)] += ck * state[static_cast<std::size_t>(k * P + p)];
          }
        }
        // Next chunk state: decayed carry plus this chunk's contributions.
        for (index_t k = 0; k < N; ++k)
          for (index_t p = 0; p < P; ++p) {
            double acc = decay_in[static_cast<std::size_t>(n - 1)] * state[static_cast<std::size_t>(k * P + p)];
            for (index_t s = 0; s < n; ++s)
              acc += std::exp(seg_end[static_cast<std::size_t>(s)]) * double(delta(h, c0 + s)) * double(b(g, k, c0 + s)) *
                     double(x(h * P + p, c0 + s));
            state[static_cast<std::size_t>(k * P + p)] = acc;
          }
        for (index_t l = 0; l < n; ++l)
          for (index_t p = 0; p < P; ++p) y(h * P + p, c0 + l) = static_cast<T>(out[static_cast<std::size_t>(l * P + p)]);
      }
    }
    add_skip_and_gate(x, y, first * P, last * P);
  }

  [[nodiscard]] MIXLENS_HD double cb(index_t g, index_t i, index_t j) const {
    double s = 0;
    for (index_t k = 0; k < state_size(); ++k) s += double(c(g, k, i)) * double(b(g, k, j));
    return s;
  }

  void check_apply(std::string_view where, matrix_view<const T> x, matrix_view<T> y) const {
    detail::check_apply_args(where, *this, "x", x, y);
  }

  // Channels [first, last) (all by default).
  void add_skip_and_gate(matrix_view<const T> x, matrix_view<T> y, index_t first = 0, index_t last = -1) const {
    for (index_t ch = first; ch < (last < 0 ? in_channels() : last); ++ch)
      for (index_t t = 0; t < length(); ++t) {
        if (!skip.empty()) y(ch, t) += skip_of(ch) * x(ch, t);
        if (!is_empty(gate)) y(ch, t) *= gate(ch, t);
      }
  }

  void check_shapes() const {
    constexpr std::string_view where = "mixlens::ssd_operator";
    const index_t H = delta.extent(0), L = delta.extent(1), G = b.extent(0), N = b.extent(1);
    detail::check_positive(where, "delta (heads, extent 0)", H);
    detail::check_positive(where, "delta (length, extent 1)", L);
    detail::check_equal(where, "a", "size (= heads)", H, static_cast<index_t>(a.size()));
    detail::check_positive(where, "b (groups, extent 0)", G);
    if (H % G != 0) detail::fail(where, "b", "a group count dividing the " + std::to_string(H) + " heads", G);
    detail::check_positive(where, "b (state size, extent 1)", N);
    detail::check_equal(where, "b", "length (extent 2)", L, b.extent(2));
    detail::check_equal(where, "c", "groups (extent 0)", G, c.extent(0));
    detail::check_equal(where, "c", "state size (extent 1)", N, c.extent(1));
    detail::check_equal(where, "c", "length (extent 2)", L, c.extent(2));
    detail::check_positive(where, "head_dim", head_dim);
    detail::check_positive(where, "chunk", chunk);
    if (!skip.empty() && static_cast<index_t>(skip.size()) != H && static_cast<index_t>(skip.size()) != H * head_dim)
      detail::fail(where, "skip", "size " + std::to_string(H) + " (heads) or " + std::to_string(H * head_dim) +
                                      " (heads·head_dim, one D per channel)", skip.size());
    if (!is_empty(gate)) {
      detail::check_equal(where, "gate", "channels (extent 0, = heads·head_dim)", H * head_dim, gate.extent(0));
      detail::check_equal(where, "gate", "length (extent 1)", L, gate.extent(1));
    }
  }
};

template <class T>
struct operator_traits<ssd_operator<T>> : operator_class<data_control::non_diagonal, false, false> {
  static constexpr std::string_view name = "Mamba-2 SSD";
};

namespace detail {
template <class T>
inline constexpr bool splits_channels<ssd_operator<T>> = true;  // heads over threads
}  // namespace detail

template <class T>
struct ssd_storage {
  matrix<T> delta;
  std::vector<T> a;
  tensor<T, 3> b, c;
  std::vector<T> skip;
};

template <class T>
using bound_ssd = bound<ssd_operator<T>, ssd_storage<T>>;

}  // namespace mixlens
