// device_operator.hpp's factories: for the view type of every operator the
// package builds (each registry entry's, and the direct constructors' S6 with
// real and complex A, SSD and the causal convolution), in float and double,
// the host view copied to the device and run by gpu::apply / materialize /
// rows: the device path tests/ops/device_oracle_test.cu checks against the host.
#include <cuda_runtime.h>

#include <map>
#include <optional>
#include <utility>

#include "device_memory.cuh"
#include "device_operator.hpp"
#include "mixlens/mixlens.cuh"
#include "mixlens/ops/registry.hpp"

namespace mixlens::python::cuda {
namespace {

template <class View>
class device_impl final : public device_operator<typename View::value_type> {
 public:
  using T = typename View::value_type;

  device_impl(const View& host, int device) : device_(device) {
    const device_guard on(device);
    owner_.emplace(gpu::to_device(host));
  }
  device_impl(const device_impl&) = delete;
  device_impl& operator=(const device_impl&) = delete;
  ~device_impl() override {
    const device_guard on(device_);
    owner_.reset();
  }

  [[nodiscard]] int device() const override { return device_; }

  [[nodiscard]] result_array<T> apply(const T* x) const override {
    const device_guard on(device_);
    const View& v = view();
    auto y = output(v.out_channels() * v.length());
    gpu::apply(*owner_, matrix_view<const T>(x, v.in_channels(), v.length()),
               matrix_view<T>(y.data(), v.out_channels(), v.length()));
    return done(std::move(y), {size(v.out_channels()), size(v.length())});
  }

  [[nodiscard]] result_array<T> materialize(index_t out, index_t in) const override {
    const device_guard on(device_);
    const index_t L = view().length();
    auto m = output(L * L);
    gpu::materialize(*owner_, out, in, matrix_view<T>(m.data(), L, L));
    return done(std::move(m), {size(L), size(L)});
  }

  [[nodiscard]] result_array<T> materialize_channels() const override {
    const device_guard on(device_);
    const index_t L = view().length(), D = view().out_channels();
    auto m = output(D * L * L);
    gpu::materialize_channels(*owner_, 0, D, m.data());
    return done(std::move(m), {size(D), size(L), size(L)});
  }

  [[nodiscard]] result_array<T> materialize_full() const override {
    const device_guard on(device_);
    const View& v = view();
    const index_t L = v.length(), O = v.out_channels(), I = v.in_channels();
    auto m = output(O * L * I * L);
    gpu::materialize(*owner_, matrix_view<T>(m.data(), O * L, I * L));
    return done(std::move(m), {size(O * L), size(I * L)});
  }

  [[nodiscard]] result_array<T> rows(const std::vector<index_t>& positions,
                                     const std::vector<std::pair<index_t, index_t>>& pairs) const override {
    const device_guard on(device_);
    const index_t L = view().length(), P = static_cast<index_t>(positions.size());
    auto r = output(std::max<index_t>(1, static_cast<index_t>(pairs.size()) * P * L));
    for (std::size_t k = 0; k < pairs.size(); ++k)
      gpu::rows(*owner_, pairs[k].first, pairs[k].second, vector_view<const index_t>(positions.data(), positions.size()),
                matrix_view<T>(r.data() + static_cast<index_t>(k) * P * L, P, L));
    return done(std::move(r), {pairs.size(), size(P), size(L)});
  }

 private:
  static std::size_t size(index_t n) { return static_cast<std::size_t>(n); }
  [[nodiscard]] const View& view() const { return view_of(*owner_); }
  [[nodiscard]] static gpu::device_buffer<T> output(index_t n) { return gpu::device_buffer<T>(n); }

  // The finished result (the work on the legacy default stream done).
  [[nodiscard]] result_array<T> done(gpu::device_buffer<T> values, std::vector<std::size_t> shape) const {
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    auto r = keep_result(std::move(values), std::move(shape), device_);
    hold(r);
    return r;
  }

  int device_;
  std::optional<bound<View, gpu::device_storage>> owner_;
};

template <class View>
std::unique_ptr<device_operator<typename View::value_type>> make(const void* view, int device) {
  return std::make_unique<device_impl<View>>(*static_cast<const View*>(view), device);
}

template <class T>
std::map<std::type_index, device_operator_factory<T>> factories() {
  std::map<std::type_index, device_operator_factory<T>> out;
  const auto add = [&]<class View>() { out.emplace(std::type_index(typeid(View)), &make<View>); };
  for_each_operator<T>([&](auto entry) {
    using E = decltype(entry);
    add.template operator()<std::remove_cvref_t<decltype(view_of(std::declval<const registry_operator_t<E, T>&>()))>>();
  });
  add.template operator()<s6_operator<T, T>>();
  add.template operator()<s6_operator<T, complex<T>>>();
  add.template operator()<ssd_operator<T>>();
  add.template operator()<causal_conv_operator<T, short_conv_kind>>();
  return out;
}

}  // namespace

template <class T>
device_operator_factory<T> device_factory(std::type_index view) {
  static const auto table = factories<T>();
  const auto it = table.find(view);
  return it == table.end() ? nullptr : it->second;
}

template device_operator_factory<float> device_factory<float>(std::type_index);
template device_operator_factory<double> device_factory<double>(std::type_index);

}  // namespace mixlens::python::cuda
