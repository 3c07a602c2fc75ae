// The one concept every mixer implements: a bound linear operator y = M·x that
// can be applied with its fast algorithm and materialized exactly. Mixers are
// causal (M lower triangular) unless a view says otherwise (is_causal below).
#pragma once

#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens {

// How the channels of an attention tensor are reduced to one map.
enum class channel_reduction {
  mean,      // E_d α: signed mean, the paper's choice
  abs_mean,  // E_d |α|: magnitude, no cancellation between channels
  relu_mean, // E_d max(α, 0): positive contributions only
};

// How the input controls the mixing matrix (the paper's operator classes).
enum class data_control {
  none,          // class (i): fixed mixing (S4, DSS, S5)
  diagonal,      // class (ii): fixed mixer between data-controlled diagonal gates (GSS, Hyena)
  non_diagonal,  // class (iii): data-controlled mixer (S6, attention)
};

[[nodiscard]] constexpr std::string_view to_string(data_control c) {
  return detail::enum_name(c, {"fixed", "diagonal", "non_diagonal"});
}

// Specialize for every bound operator:
//   static constexpr std::string_view name;
//   static constexpr data_control control;
//   static constexpr bool time_invariant;   // M is (block) Toeplitz
//   static constexpr bool channel_mixing;   // M couples different channels
// usually as `struct operator_traits<X<T>> : operator_class<control, time_invariant,
// channel_mixing> { name }`.
template <class Op>
struct operator_traits;

template <data_control Control, bool TimeInvariant, bool ChannelMixing>
struct operator_class {
  static constexpr data_control control = Control;
  static constexpr bool time_invariant = TimeInvariant;
  static constexpr bool channel_mixing = ChannelMixing;
};

// Optional structure that views declare by answering the call (detected, so a
// new operator opts in by writing the accessor): the state size N behind each
// matrix (S6: N terms per channel, SSD: N per head) and the number of heads
// (the value channels of a head share one matrix).
template <class Op>
concept has_state_size = requires(const Op& op) {
  { op.state_size() } -> std::convertible_to<index_t>;
};
template <class Op>
concept has_heads = requires(const Op& op) {
  { op.heads() } -> std::convertible_to<index_t>;
};

// Causality: every operator is causal unless its view answers causal() with
// false — the bidirectional LTI forms (two_sided_conv_operator, S5 with a
// backward C̃), whose matrices fill both triangles. The analyses that read only
// a matrix's lower triangle (attention span, diagonal control, semiseparable
// rank) see the causal part of such an operator.
template <class Op>
concept declares_causality = requires(const Op& op) {
  { op.causal() } -> std::convertible_to<bool>;
};
template <class Op>
[[nodiscard]] MIXLENS_HD constexpr bool is_causal(const Op& op) {
  if constexpr (declares_causality<Op>) return op.causal();
  else return true;
}

// The parts of the concept, named separately so that a compiler error says which
// one is missing (e.g. "materializable<my_op>" was not satisfied).
template <class Op>
concept has_shape = requires(const Op& op) {
  typename Op::value_type;
  { op.length() } -> std::same_as<index_t>;
  { op.in_channels() } -> std::same_as<index_t>;
  { op.out_channels() } -> std::same_as<index_t>;
};

// apply(x, y): x is (in_channels × L), y is (out_channels × L); the fast path.
template <class Op>
concept applicable = has_shape<Op> && requires(const Op& op, matrix_view<const typename Op::value_type> x,
                                               matrix_view<typename Op::value_type> y) {
  op.apply(x, y);
};

// materialize(o, i, m): the dense L×L block of M from input channel i to output
// channel o (m(t, s) = weight of x(i, s) in y(o, t); lower triangular when causal).
template <class Op>
concept materializable = has_shape<Op> && requires(const Op& op, index_t channel,
                                                   matrix_view<typename Op::value_type> m) {
  op.materialize(channel, channel, m);
};

// row(o, i, t, r): row t of that block in O(L·N), without forming the matrix.
template <class Op>
concept has_rows = has_shape<Op> && requires(const Op& op, index_t channel, index_t t,
                                             vector_view<typename Op::value_type> r) {
  op.row(channel, channel, t, r);
};

template <class Op>
concept classified = requires {
  { operator_traits<Op>::name } -> std::convertible_to<std::string_view>;
  { operator_traits<Op>::control } -> std::convertible_to<data_control>;
  { operator_traits<Op>::time_invariant } -> std::convertible_to<bool>;
  { operator_traits<Op>::channel_mixing } -> std::convertible_to<bool>;
};

// Views are passed to kernels by value, so they must be trivially copyable.
template <class Op>
concept trivially_copyable_view = std::is_trivially_copyable_v<Op>;

// The same view type serves host and device memory. For that a view
//  - checks only shapes in its constructor; checks of values (Δ > 0, Re A < 0, …)
//    are a host-side `validate()` that bind runs on host data and to_device runs
//    before the upload;
//  - makes length(), in_channels(), out_channels() and row() MIXLENS_HD, row()
//    without allocating (it may use r as scratch), so that kernels can call it;
//  - lists its data members (mdspans, spans, nested views) once in
//    for_each_view(f), so that to_device / to_host can copy and rebase them.
// Views that do satisfy mixlens::gpu::apply / materialize / rows generically;
// fast kernels specialize mixlens::gpu::device_path (mixlens/gpu/operator.cuh).
namespace detail {
struct ignore_view {
  template <class V>
  void operator()(V&) const {}
};
}  // namespace detail
template <class Op>
concept rebasable = requires(Op& op) { op.for_each_view(detail::ignore_view{}); };

template <class Op>
concept linear_operator = applicable<Op> && materializable<Op> && has_rows<Op> && classified<Op> &&
                          trivially_copyable_view<Op>;

// An unbound mixer plus an input (in_channels × L) gives a bound operator.
template <class Mixer>
concept mixer = requires(const Mixer& m, matrix_view<const typename Mixer::value_type> x) {
  typename Mixer::value_type;
  m.bind(x);
};

// Owns the buffers a view points into (computed control signals, kernels) and
// hands the view out. Storage must keep its data on the heap (std::vector,
// mixlens::tensor) so that moving the owner leaves the view valid; copying is
// disabled because the copy's view would alias the original's buffers.
template <class View, class Storage>
class bound {
 public:
  using view_type = View;
  using value_type = typename View::value_type;

  template <class MakeView>
  bound(Storage storage, MakeView make_view) : storage_(std::move(storage)), view_(make_view(storage_)) {}
  bound(const bound&) = delete;
  bound& operator=(const bound&) = delete;
  bound(bound&&) noexcept = default;
  bound& operator=(bound&&) noexcept = default;

  [[nodiscard]] const View& view() const { return view_; }
  const View* operator->() const { return &view_; }
  [[nodiscard]] const Storage& storage() const { return storage_; }

 private:
  Storage storage_;
  View view_;
};

// The view of an operator, whether it is a view already or an owner of one.
template <class Op>
[[nodiscard]] constexpr const Op& view_of(const Op& op) {
  return op;
}
template <class View, class Storage>
[[nodiscard]] constexpr const View& view_of(const bound<View, Storage>& op) {
  return op.view();
}

// ---- convenience functions returning owning results -------------------------

namespace detail {
inline void check_signal(std::string_view where, std::string_view argument, index_t channels, index_t length,
                  index_t actual_channels, index_t actual_length) {
  check_equal(where, argument, "channels (extent 0)", channels, actual_channels);
  check_equal(where, argument, "length (extent 1)", length, actual_length);
}

inline void check_channel(std::string_view where, std::string_view argument, index_t channels, index_t c) {
  if (c < 0 || c >= channels) fail(where, argument, "a channel in [0, " + std::to_string(channels) + ")", c);
}

inline void check_square(std::string_view where, std::string_view argument, index_t length, index_t rows,
                         index_t cols) {
  check_equal(where, argument, "rows", length, rows);
  check_equal(where, argument, "columns", length, cols);
}

inline void check_row(std::string_view where, index_t length, index_t t, index_t row_size) {
  if (t < 0 || t >= length) fail(where, "t", "a position in [0, " + std::to_string(length) + ")", t);
  check_equal(where, "row", "size", length, row_size);
}

// Views whose host apply(x, y, const sequence_parallel_scan&) splits independent
// work (channels, heads or query rows) over the policy's threads with the results
// of one thread bit for bit: host_backend::apply runs them on its `threads`.
// Each such operator's header specializes it to true.
template <class Op>
inline constexpr bool splits_channels = false;

// The checks every operator's apply, materialize and row begin with.
template <class Op, class X, class Y>
void check_apply_args(std::string_view where, const Op& op, std::string_view input, const X& x, const Y& y) {
  check_signal(where, input, op.in_channels(), op.length(), x.extent(0), x.extent(1));
  check_signal(where, "y", op.out_channels(), op.length(), y.extent(0), y.extent(1));
}

template <class Op, class M>
void check_materialize_args(std::string_view where, const Op& op, index_t out, index_t in, const M& m) {
  check_channel(where, "out", op.out_channels(), out);
  check_channel(where, "in", op.in_channels(), in);
  check_square(where, "m", op.length(), m.extent(0), m.extent(1));
}

template <class Op, class R>
void check_row_args(std::string_view where, const Op& op, index_t out, index_t in, index_t t, const R& r) {
  check_channel(where, "out", op.out_channels(), out);
  check_channel(where, "in", op.in_channels(), in);
  check_row(where, op.length(), t, static_cast<index_t>(r.size()));
}
}  // namespace detail

// y = M·x with the operator's fast algorithm, into a new matrix. (Named `mix`,
// not `apply`, so that unqualified calls never meet cuda::std::apply by ADL.)
template <class Op>
[[nodiscard]] auto mix(const Op& op, matrix_view<const typename Op::value_type> x) {
  const auto& v = view_of(op);
  matrix<typename Op::value_type> y(v.out_channels(), v.length());
  v.apply(x, y.view());
  return y;
}

// The dense L×L block from input channel `in` to output channel `out`.
template <class Op>
[[nodiscard]] auto materialize(const Op& op, index_t out, index_t in) {
  const auto& v = view_of(op);
  matrix<typename Op::value_type> m(v.length(), v.length());
  v.materialize(out, in, m.view());
  return m;
}

// The whole operator as one (out_channels·L) × (in_channels·L) matrix, channel-major
// blocks: entry (o·L + t, i·L + s). Built from the per-pair blocks.
template <class Op>
[[nodiscard]] auto materialize_full(const Op& op) {
  const auto& v = view_of(op);
  using T = typename Op::value_type;
  const index_t L = v.length();
  matrix<T> full(v.out_channels() * L, v.in_channels() * L);
  matrix<T> block(L, L);
  for (index_t o = 0; o < v.out_channels(); ++o)
    for (index_t i = 0; i < v.in_channels(); ++i) {
      v.materialize(o, i, block.view());
      for (index_t t = 0; t < L; ++t)
        for (index_t s = 0; s < L; ++s) full(o * L + t, i * L + s) = block(t, s);
    }
  return full;
}

// The diagonal blocks (d, d) of channels [d0, d0 + count), one after another
// into out (count × L × L): a layer's attention matrices, for operators that do
// not mix channels.
template <class Op>
void materialize_channels(const Op& op, index_t d0, index_t count, typename Op::value_type* out) {
  const auto& v = view_of(op);
  if (d0 < 0 || count < 0 || d0 + count > v.out_channels())
    detail::fail("mixlens::materialize_channels", "channels",
                 "a range inside [0, " + std::to_string(v.out_channels()) + ")",
                 std::to_string(d0) + " + " + std::to_string(count));
  const index_t L = v.length();
  for (index_t c = 0; c < count; ++c)
    v.materialize(d0 + c, d0 + c, matrix_view<typename Op::value_type>(out + c * L * L, L, L));
}

// Row t of the block (out, in), computed without forming the matrix.
template <class Op>
[[nodiscard]] auto row(const Op& op, index_t out, index_t in, index_t t) {
  const auto& v = view_of(op);
  std::vector<typename Op::value_type> r(static_cast<std::size_t>(v.length()));
  v.row(out, in, t, vector_view<typename Op::value_type>(r.data(), r.size()));
  return r;
}

}  // namespace mixlens
