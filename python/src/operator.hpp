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
#ifdef MIXLENS_PYTHON_CUDA
#include <typeindex>

#include "device_operator.hpp"
#endif

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

  // −1 on the host, else the CUDA device that holds the operator's data.
  [[nodiscard]] virtual int device_index() const { return -1; }
  // The operator on CUDA device `device`: its data copied there once (Operator.to).
  [[nodiscard]] virtual std::unique_ptr<py_operator> to_device(int device) const = 0;

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

  [[nodiscard]] std::unique_ptr<py_operator> to_device(int device) const override;

 private:
  static std::size_t size(index_t n) { return static_cast<std::size_t>(n); }

  void check_pair(std::string_view where, index_t o, index_t i) const {
    mixlens::detail::check_channel(where, "out", view_.out_channels(), o);
    mixlens::detail::check_channel(where, "in_", view_.in_channels(), i);
  }

  View view_;
  std::shared_ptr<const void> owner_;
};

#ifdef MIXLENS_PYTHON_CUDA
// An operator on a CUDA device (Operator.to): the traits of the host operator
// it was made from, its data in device memory (device_operator.hpp); apply
// takes CUDA tensors of that device in place, and every result is a CUDA
// tensor there.
template <class T>
class device_operator_impl final : public py_operator {
 public:
  device_operator_impl(const py_operator& host, std::unique_ptr<cuda::device_operator<T>> op)
      : name_(host.name()), control_(host.control()), time_invariant_(host.time_invariant()),
        channel_mixing_(host.channel_mixing()), state_size_(host.state_size()), heads_(host.heads()),
        length_(host.length()), in_(host.in_channels()), out_(host.out_channels()), op_(std::move(op)) {
    key = host.key;
    fw = framework::torch;
    if (!is_none(host.input_signal))  // the signal the operator acts on, beside it on the device
      input_signal = nb::module_::import_("torch").attr("as_tensor")(host.input_signal).attr("to")(
          "cuda:" + std::to_string(op_->device()));
  }

  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] std::string control() const override { return control_; }
  [[nodiscard]] bool time_invariant() const override { return time_invariant_; }
  [[nodiscard]] bool channel_mixing() const override { return channel_mixing_; }
  [[nodiscard]] std::optional<index_t> state_size() const override { return state_size_; }
  [[nodiscard]] std::optional<index_t> heads() const override { return heads_; }
  [[nodiscard]] index_t length() const override { return length_; }
  [[nodiscard]] index_t in_channels() const override { return in_; }
  [[nodiscard]] index_t out_channels() const override { return out_; }
  [[nodiscard]] std::string dtype() const override { return dtype_name<T>(); }
  [[nodiscard]] int device_index() const override { return op_->device(); }

  [[nodiscard]] nb::object apply(nb::handle x) const override {
    constexpr std::string_view where = "mixlens.Operator.apply";
    nb::ndarray<const T, nb::c_contig, nb::device::cuda> a;
    if (!nb::try_cast(x, a, false) || a.device_id() != op_->device())
      fail(where, "x",
           std::string("a C-contiguous ") + dtype_name<T>() + " CUDA tensor on cuda:" + std::to_string(op_->device()) +
               " (the operator's device)",
           python_type(x) + (is_torch(x) ? " of dtype " + str_of(x.attr("dtype")) + " on " + str_of(x.attr("device")) : ""));
    check_ndim(where, "x", a, 2, "channels x length");
    mixlens::detail::check_signal(where, "x", in_, length_, static_cast<index_t>(a.shape(0)),
                                  static_cast<index_t>(a.shape(1)));
    return run([&] { return op_->apply(a.data()); });
  }

  [[nodiscard]] nb::object materialize(std::optional<index_t> out, std::optional<index_t> in) const override {
    if (out || in) {
      const index_t o = out ? *out : *in, i = in ? *in : *out;
      check_pair("mixlens.Operator.materialize", o, i);
      return run([&] { return op_->materialize(o, i); });
    }
    if (!channel_mixing_) return run([&] { return op_->materialize_channels(); });
    std::vector<index_t> every(static_cast<std::size_t>(length_));
    for (index_t t = 0; t < length_; ++t) every[static_cast<std::size_t>(t)] = t;
    return run([&] { return op_->rows(every, all_pairs()); },
               {size(out_), size(in_), size(length_), size(length_)});
  }

  [[nodiscard]] nb::object materialize_full() const override {
    return run([&] { return op_->materialize_full(); });
  }

  [[nodiscard]] nb::object rows(const std::vector<index_t>& positions, std::optional<index_t> out,
                                std::optional<index_t> in) const override {
    constexpr std::string_view where = "mixlens.Operator.rows";
    for (index_t t : positions)
      if (t < 0 || t >= length_)
        mixlens::detail::fail(where, "positions", "positions in [0, " + std::to_string(length_) + ")", t);
    const std::size_t P = positions.size(), L = size(length_);
    if (out || in) {
      const index_t o = out ? *out : *in, i = in ? *in : *out;
      check_pair(where, o, i);
      return run([&] { return op_->rows(positions, {{o, i}}); }, {P, L});
    }
    if (!channel_mixing_) {
      std::vector<std::pair<index_t, index_t>> diagonal;
      for (index_t d = 0; d < out_; ++d) diagonal.emplace_back(d, d);
      return run([&] { return op_->rows(positions, diagonal); }, {size(out_), P, L});
    }
    return run([&] { return op_->rows(positions, all_pairs()); }, {size(out_), size(in_), P, L});
  }

  [[nodiscard]] std::unique_ptr<py_operator> to_device(int) const override {
    fail("mixlens.Operator.to", "device", "the operator's own device, cuda:" + std::to_string(op_->device()) +
             " (a device operator is not copied again: keep the host operator it was made from)",
         "another device");
  }

 private:
  static std::size_t size(index_t n) { return static_cast<std::size_t>(n); }

  [[nodiscard]] std::vector<std::pair<index_t, index_t>> all_pairs() const {
    std::vector<std::pair<index_t, index_t>> pairs;
    for (index_t o = 0; o < out_; ++o)
      for (index_t i = 0; i < in_; ++i) pairs.emplace_back(o, i);
    return pairs;
  }

  void check_pair(std::string_view where, index_t o, index_t i) const {
    mixlens::detail::check_channel(where, "out", out_, o);
    mixlens::detail::check_channel(where, "in_", in_, i);
  }

  // f() with the GIL released, as a CUDA tensor (of `shape` when given).
  template <class F>
  nb::object run(F&& f, std::vector<std::size_t> shape = {}) const {
    result_array<T> r;
    {
      nb::gil_scoped_release release;
      r = f();
    }
    if (!shape.empty()) r.shape = std::move(shape);
    return to_python(r, framework::torch);
  }

  std::string name_, control_;
  bool time_invariant_, channel_mixing_;
  std::optional<index_t> state_size_, heads_;
  index_t length_, in_, out_;
  std::unique_ptr<cuda::device_operator<T>> op_;
};
#endif

template <class View>
std::unique_ptr<py_operator> operator_impl<View>::to_device(int device) const {
  constexpr std::string_view where = "mixlens.Operator.to";
  if (const std::string why = cuda_unavailable(device); !why.empty()) fail(where, "device", "a usable CUDA device", why);
#ifdef MIXLENS_PYTHON_CUDA
  const auto factory = cuda::device_factory<T>(std::type_index(typeid(View)));
  if (!factory)
    fail(where, "device", "'cpu' for " + name() + " (built by '" + key + "'): its view type has no device path registered",
         "cuda:" + std::to_string(device));
  std::unique_ptr<cuda::device_operator<T>> op;
  {
    nb::gil_scoped_release release;
    op = factory(&view_, device);
  }
  return std::make_unique<device_operator_impl<T>>(*this, std::move(op));
#else
  return nullptr;  // unreachable: cuda_unavailable says why
#endif
}

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
