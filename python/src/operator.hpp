// mixlens.Operator: any bound operator of the library behind one Python type.
// The view is the library's own; the object keeps alive whatever the view
// points into: the caller's arrays (zero-copy inputs) or the storage of a
// bound owner (control signals, kernels computed by bind).
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::python {

class py_operator {
 public:
  virtual ~py_operator() = default;

  [[nodiscard]] virtual std::string name() const = 0;
  [[nodiscard]] virtual std::string control() const = 0;
  [[nodiscard]] virtual bool time_invariant() const = 0;
  [[nodiscard]] virtual bool channel_mixing() const = 0;
  [[nodiscard]] virtual std::optional<index_t> state_size() const = 0;
  [[nodiscard]] virtual std::optional<index_t> heads() const = 0;
  [[nodiscard]] virtual index_t length() const = 0;
  [[nodiscard]] virtual index_t in_channels() const = 0;
  [[nodiscard]] virtual index_t out_channels() const = 0;
  [[nodiscard]] virtual std::string dtype() const = 0;

  [[nodiscard]] virtual nb::object apply(nb::handle x) const = 0;
  [[nodiscard]] virtual nb::object materialize(std::optional<index_t> out, std::optional<index_t> in) const = 0;
  [[nodiscard]] virtual nb::object materialize_full() const = 0;
  [[nodiscard]] virtual nb::object rows(const std::vector<index_t>& positions, std::optional<index_t> out,
                                        std::optional<index_t> in) const = 0;

  std::string key;               // the constructor or registry key it was made by
  framework fw = framework::numpy;
  std::vector<any_array> inputs;  // the caller's arrays the view reads
  // The signal the operator acts on when bind computed it from a layer's input
  // (mixlens.from_module: Hyena's value v, Mamba-2's SSM input u; Mamba's x as
  // given); None otherwise.
  nb::object input_signal = nb::none();
};

template <class View>
class operator_impl final : public py_operator {
 public:
  using T = typename View::value_type;
  using traits = operator_traits<View>;

  // `owner` holds what the view points into beyond `inputs` (may be null).
  operator_impl(View view, std::shared_ptr<const void> owner) : view_(view), owner_(std::move(owner)) {}

  [[nodiscard]] std::string name() const override { return std::string(traits::name); }
  [[nodiscard]] std::string control() const override { return std::string(to_string(traits::control)); }
  [[nodiscard]] bool time_invariant() const override { return traits::time_invariant; }
  [[nodiscard]] bool channel_mixing() const override { return traits::channel_mixing; }
  [[nodiscard]] std::optional<index_t> state_size() const override {
    if constexpr (has_state_size<View>) return view_.state_size();
    else return std::nullopt;
  }
  [[nodiscard]] std::optional<index_t> heads() const override {
    if constexpr (has_heads<View>) return view_.heads();
    else return std::nullopt;
  }
  [[nodiscard]] index_t length() const override { return view_.length(); }
  [[nodiscard]] index_t in_channels() const override { return view_.in_channels(); }
  [[nodiscard]] index_t out_channels() const override { return view_.out_channels(); }
  [[nodiscard]] std::string dtype() const override { return dtype_name<T>(); }

  [[nodiscard]] nb::object apply(nb::handle x) const override {
    constexpr std::string_view where = "mixlens.Operator.apply";
    const auto a = get<T>(x, where, "x");
    check_ndim(where, "x", a, 2, "channels x length");
    const auto xv = as_matrix(a);
    const index_t O = view_.out_channels(), L = view_.length();
    // (The operators name their input u, x or input: check it here, as x.)
    mixlens::detail::check_signal(where, "x", view_.in_channels(), L, xv.extent(0), xv.extent(1));
    return make_output<T>({size(O), size(L)}, framework_of(x),
                          [&](T* y) { view_.apply(xv, matrix_view<T>(y, O, L)); });
  }

  [[nodiscard]] nb::object materialize(std::optional<index_t> out, std::optional<index_t> in) const override {
    const index_t L = view_.length(), O = view_.out_channels(), I = view_.in_channels();
    if (out || in) {
      const index_t o = out ? *out : *in, i = in ? *in : *out;
      check_pair("mixlens.Operator.materialize", o, i);
      return make_output<T>({size(L), size(L)}, fw, [&](T* m) { view_.materialize(o, i, matrix_view<T>(m, L, L)); });
    }
    if (!traits::channel_mixing)
      return make_output<T>({size(O), size(L), size(L)}, fw, [&](T* m) { materialize_channels(view_, 0, O, m); });
    return make_output<T>({size(O), size(I), size(L), size(L)}, fw, [&](T* m) {
      for (index_t o = 0; o < O; ++o)
        for (index_t i = 0; i < I; ++i) view_.materialize(o, i, matrix_view<T>(m + (o * I + i) * L * L, L, L));
    });
  }

  [[nodiscard]] nb::object materialize_full() const override {
    const index_t L = view_.length(), O = view_.out_channels(), I = view_.in_channels();
    return make_output<T>({size(O * L), size(I * L)}, fw, [&](T* m) {
      std::vector<T> block(static_cast<std::size_t>(L * L));
      for (index_t o = 0; o < O; ++o)
        for (index_t i = 0; i < I; ++i) {
          view_.materialize(o, i, matrix_view<T>(block.data(), L, L));
          for (index_t t = 0; t < L; ++t)
            std::copy_n(block.data() + t * L, L, m + (o * L + t) * (I * L) + i * L);
        }
    });
  }

  [[nodiscard]] nb::object rows(const std::vector<index_t>& positions, std::optional<index_t> out,
                                std::optional<index_t> in) const override {
    constexpr std::string_view where = "mixlens.Operator.rows";
    const index_t L = view_.length(), O = view_.out_channels(), I = view_.in_channels();
    const index_t P = static_cast<index_t>(positions.size());
    for (index_t t : positions)
      if (t < 0 || t >= L) mixlens::detail::fail(where, "positions", "positions in [0, " + std::to_string(L) + ")", t);
    const auto fill = [&](index_t o, index_t i, T* r) {
      for (index_t p = 0; p < P; ++p)
        view_.row(o, i, positions[static_cast<std::size_t>(p)], vector_view<T>(r + p * L, static_cast<std::size_t>(L)));
    };
    if (out || in) {
      const index_t o = out ? *out : *in, i = in ? *in : *out;
      check_pair(where, o, i);
      return make_output<T>({size(P), size(L)}, fw, [&](T* r) { fill(o, i, r); });
    }
    if (!traits::channel_mixing)
      return make_output<T>({size(O), size(P), size(L)}, fw, [&](T* r) {
        for (index_t d = 0; d < O; ++d) fill(d, d, r + d * P * L);
      });
    return make_output<T>({size(O), size(I), size(P), size(L)}, fw, [&](T* r) {
      for (index_t o = 0; o < O; ++o)
        for (index_t i = 0; i < I; ++i) fill(o, i, r + (o * I + i) * P * L);
    });
  }

  [[nodiscard]] const View& view() const { return view_; }

 private:
  static std::size_t size(index_t n) { return static_cast<std::size_t>(n); }

  void check_pair(std::string_view where, index_t o, index_t i) const {
    mixlens::detail::check_channel(where, "out", view_.out_channels(), o);
    mixlens::detail::check_channel(where, "in_", view_.in_channels(), i);
  }

  View view_;
  std::shared_ptr<const void> owner_;
};

// An operator over a bound owner (mixlens::bound<View, Storage>, moved in).
template <class Owner>
std::unique_ptr<py_operator> from_owner(Owner owner, std::string key, framework fw) {
  using View = std::remove_cvref_t<decltype(view_of(owner))>;
  auto shared = std::make_shared<Owner>(std::move(owner));
  const View view = view_of(*shared);
  auto op = std::make_unique<operator_impl<View>>(view, std::shared_ptr<const void>(shared));
  op->key = std::move(key);
  op->fw = fw;
  return op;
}

// An operator viewing the caller's arrays directly, plus `extra` (buffers made here).
template <class View>
std::unique_ptr<py_operator> from_view(View view, std::vector<any_array> inputs, std::string key, framework fw,
                                       std::shared_ptr<const void> extra = {}) {
  auto op = std::make_unique<operator_impl<View>>(view, std::move(extra));
  op->key = std::move(key);
  op->fw = fw;
  op->inputs = std::move(inputs);
  return op;
}

void bind_operator_class(nb::module_& m);
void bind_direct_operators(nb::module_& m);
void bind_registry(nb::module_& m);
void bind_models(nb::module_& m);
void bind_tokens(nb::module_& m);
void bind_reference_modules(nb::module_& m);

}  // namespace mixlens::python
