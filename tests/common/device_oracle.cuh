// The device side of the shared oracle: device_executor runs an operator through
// mixlens::gpu (to_device, gpu::apply / materialize / rows) and hands host
// arrays back, so that check_linear_operator's body runs unchanged on the GPU;
// check_host_device adds host ≡ device.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/gpu/operator.cuh"

namespace mixlens::testing {

template <class T>
gpu::device_buffer<T> upload(const matrix<T>& m) {
  gpu::device_buffer<T> d(m.size());
  if (m.size() > 0) d.upload(m.data());
  return d;
}

template <class T>
matrix<T> download(const gpu::device_buffer<T>& d, index_t rows, index_t cols) {
  matrix<T> m(rows, cols);
  MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  if (m.size() > 0) d.download(m.data());
  return m;
}

// Runs the operator's device copy; every output buffer starts as NaN so that an
// entry the device leaves unwritten cannot pass.
template <class View>
class device_executor {
 public:
  using T = typename View::value_type;

  explicit device_executor(const View& host_view) : device_(gpu::to_device(host_view)) {}

  template <class Op>
  matrix<T> apply(const Op& op, matrix_view<const T> x) const {
    const auto& v = view_of(op);
    gpu::device_buffer<T> dx(x.size());  // x is a contiguous row-major view
    if (x.size() > 0) dx.upload(x.data_handle());
    gpu::device_buffer<T> dy(v.out_channels() * v.length());
    dy.fill_bytes(0xff);
    gpu::apply(device_, matrix_view<const T>(dx.data(), x.extent(0), x.extent(1)),
               matrix_view<T>(dy.data(), v.out_channels(), v.length()));
    return download(dy, v.out_channels(), v.length());
  }

  template <class Op>
  matrix<T> materialize(const Op& op, index_t out, index_t in) const {
    const index_t L = view_of(op).length();
    gpu::device_buffer<T> dm(L * L);
    dm.fill_bytes(0xff);
    gpu::materialize(device_, out, in, matrix_view<T>(dm.data(), L, L));
    return download(dm, L, L);
  }

  template <class Op>
  std::vector<T> row(const Op& op, index_t out, index_t in, index_t t) const {
    const index_t L = view_of(op).length();
    gpu::device_buffer<T> dr(L);
    dr.fill_bytes(0xff);
    const index_t positions[] = {t};
    gpu::rows(device_, out, in, vector_view<const index_t>(positions, 1), matrix_view<T>(dr.data(), 1, L));
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
    return dr.to_host();
  }

  [[nodiscard]] const auto& device_operator() const { return device_; }

 private:
  bound<View, gpu::device_storage> device_;
};

// The oracle on the device, then host ≡ device for apply, every sampled block
// and rows of it, and the whole operator (when it is small).
template <class Op>
double check_host_device(const Op& op, matrix_view<const typename Op::value_type> x, double tol) {
  const auto& v = view_of(op);
  using V = std::remove_cvref_t<decltype(v)>;
  using traits = operator_traits<V>;
  const std::string name(traits::name);
  const index_t L = v.length();
  device_executor<V> dev(v);
  const host_executor host;
  BOOST_TEST_CONTEXT(name << " on the device, L=" << L) { check_linear_operator(v, x, tol, dev); }

  const double apply_err = relative_error(dev.apply(v, x), host.apply(v, x));
  double worst = apply_err;
  const auto track = [&worst](double e) { worst = std::isnan(e) || std::isnan(worst) ? NAN : std::max(worst, e); };
  BOOST_TEST(apply_err <= tol, name << ": device apply vs host: " << apply_err << " at L=" << L);
  for (index_t o = 0; o < v.out_channels(); ++o)
    for (index_t i = 0; i < v.in_channels(); ++i) {
      if (!traits::channel_mixing && o != i) continue;
      if (traits::channel_mixing && (o + i) % 2 != 0) continue;  // sample pairs
      const double m_err = relative_error(dev.materialize(v, o, i), host.materialize(v, o, i));
      track(m_err);
      BOOST_TEST(m_err <= tol, name << ": device block (" << o << "," << i << ") vs host: " << m_err << " at L=" << L);
    }
  const index_t O = v.out_channels(), I = v.in_channels();
  if (O * I * L * L <= (index_t(1) << 22)) {
    gpu::device_buffer<typename V::value_type> dm(O * L * I * L);
    dm.fill_bytes(0xff);
    gpu::materialize(dev.device_operator(), matrix_view<typename V::value_type>(dm.data(), O * L, I * L));
    const auto full = download(dm, O * L, I * L);
    const auto expected = materialize_full(v);
    const double f_err = relative_error(full, expected);
    track(f_err);
    BOOST_TEST(f_err <= tol, name << ": device whole operator vs host: " << f_err << " at L=" << L);
  }
  return worst;  // the largest host-vs-device error: apply, blocks, whole operator
}

}  // namespace mixlens::testing
