// The device side of the linear-operator concept: the same view types as on the
// host, over device memory.
//
//   to_device(op) / to_host(op)             owners whose storage lives on that side
//                                           (to_host also of a plain device view)
//   gpu::apply(op, x, y, stream)            y = M·x
//   gpu::materialize(op, out, in, m, s)     the dense L×L block (out, in)
//   gpu::materialize(op, m, s)              the whole (out·L)×(in·L) operator
//   gpu::rows(op, out, in, positions, r, s) selected rows of one block
//   gpu::materialize_channels(op, d0, count, out, s)
//                                           diagonal blocks of a channel range (a
//                                           layer's attention matrices)
//
// Every view gets a generic implementation from its MIXLENS_HD `row` (one thread
// per row, the row written in place), so an operator a researcher writes runs on
// the device once its row is MIXLENS_HD. An operator's fast kernels are
// specializations of device_path<View> (see below), picked at compile time;
// whatever a specialization leaves out falls back to the generic path.
//
// Inputs and outputs are device memory; every call is asynchronous on `stream`
// and checks its arguments on the host before it launches.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/gpu/detail/scan_dispatch.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/detail/rebase.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::gpu {

// Specialize for a view type with any of these static members (T = value_type):
//   apply(const View&, matrix_view<const T> x, matrix_view<T> y, cudaStream_t)
//   materialize(const View&, index_t out, index_t in, matrix_view<T> m, cudaStream_t)
//   rows(const View&, index_t out, index_t in, vector_view<const index_t> positions
//        (host memory), matrix_view<T> r, cudaStream_t)
//   materialize_channels(const View&, index_t d0, index_t count, T* out, cudaStream_t)
// Arguments arrive checked. The primary template has none: generic everywhere.
template <class View>
struct device_path {};

// ---- owners on either side ---------------------------------------------------------

// The device memory behind a device-resident view: one buffer per data member.
struct device_storage {
  std::vector<device_buffer<std::byte>> buffers;
};

namespace detail {

template <class View>
void validate_values(const View& view) {
  if constexpr (requires { view.validate(); }) view.validate();
}

}  // namespace detail

// A device-resident copy of a host view's data: the same view type, rebased.
// Runs the view's host-side value checks (validate) first, as bind does.
template <class View>
  requires rebasable<View>
[[nodiscard]] bound<View, device_storage> to_device(const View& host_view) {
  detail::validate_values(host_view);
  View v = host_view;
  device_storage storage;
  auto copy = [&](std::size_t bytes, const void* source) -> void* {
    storage.buffers.emplace_back(static_cast<index_t>(bytes));
    void* p = storage.buffers.back().data();
    MIXLENS_CUDA_CHECK(cudaMemcpy(p, source, bytes, cudaMemcpyHostToDevice));
    return p;
  };
  mixlens::detail::rebase(v, copy);
  return bound<View, device_storage>(std::move(storage), [&](const device_storage&) { return v; });
}

template <class View, class Storage>
[[nodiscard]] bound<View, device_storage> to_device(const bound<View, Storage>& host_owner) {
  return to_device(host_owner.view());
}

// A host copy of a view over device memory (the same view type): of an
// operator, or of a view the caller does not own (a layer's signals during the
// forward pass). Synchronous on the legacy default stream: work on another
// non-blocking stream that writes the data must be synchronized first.
template <class View>
  requires rebasable<View>
[[nodiscard]] bound<View, host_storage> to_host(const View& device_view) {
  return mixlens::detail::host_copy(device_view, [](void* to, const void* from, std::size_t bytes) {
    MIXLENS_CUDA_CHECK(cudaMemcpy(to, from, bytes, cudaMemcpyDeviceToHost));
  });
}

// A host copy of a device-resident operator (the same view type).
template <class View>
[[nodiscard]] bound<View, host_storage> to_host(const bound<View, device_storage>& device_owner) {
  return to_host(device_owner.view());
}

// ---- the generic implementation --------------------------------------------------

namespace detail {

inline constexpr int generic_threads = 128;
// Scratch rows the generic apply keeps in flight (bounded so that long
// sequences do not need out·L·L of memory): at most this many bytes.
inline constexpr std::size_t generic_scratch_bytes = std::size_t(256) << 20;

inline unsigned generic_grid(index_t work) {
  const index_t blocks = (work + generic_threads - 1) / generic_threads;
  return grid_size(blocks < 65535 * 64 ? blocks : 65535 * 64);  // threads stride over the rest
}

// Row `positions[k]` (or first + k) of block (out, in) into r + k·ld.
template <class View, class T>
__global__ void generic_rows_kernel(View op, index_t out, index_t in, const index_t* positions, index_t first,
                                    index_t count, T* r, index_t ld) {
  const index_t L = op.length();
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < count;
       k += index_t(gridDim.x) * blockDim.x) {
    const index_t t = positions ? positions[k] : first + k;
    op.row(out, in, t, vector_view<T>(r + k * ld, static_cast<std::size_t>(L)));
  }
}

// Rows (o·L + t) of the whole operator, block column i at offset i·L.
template <class View, class T>
__global__ void generic_full_kernel(View op, T* m) {
  const index_t L = op.length(), O = op.out_channels(), I = op.in_channels(), ld = I * L;
  const index_t count = O * I * L;
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < count;
       k += index_t(gridDim.x) * blockDim.x) {
    const index_t i = k % I, t = (k / I) % L, o = k / (I * L);
    op.row(o, i, t, vector_view<T>(m + (o * L + t) * ld + i * L, static_cast<std::size_t>(L)));
  }
}

// y(o, t) = Σ_i row(o, i, t)·x(i, :) for flat output rows first..first+count.
template <class View, class T>
__global__ void generic_apply_kernel(View op, const T* x, T* y, T* scratch, index_t first, index_t count) {
  const index_t L = op.length(), I = op.in_channels();
  constexpr bool mixing = operator_traits<View>::channel_mixing;
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < count;
       k += index_t(gridDim.x) * blockDim.x) {
    const index_t g = first + k, o = g / L, t = g % L;
    T* r = scratch + k * L;
    double acc = 0;
    const index_t last = is_causal(op) ? t : L - 1;  // a causal row is zero past t
    for (index_t i = mixing ? 0 : o; i < (mixing ? I : o + 1); ++i) {
      op.row(o, i, t, vector_view<T>(r, static_cast<std::size_t>(L)));
      for (index_t s = 0; s <= last; ++s) acc += double(r[s]) * double(x[i * L + s]);
    }
    y[o * L + t] = static_cast<T>(acc);
  }
}

template <class Op>
using view_t = std::remove_cvref_t<decltype(view_of(std::declval<const Op&>()))>;

template <class M>
void require_data(std::string_view where, std::string_view argument, const M& m) {
  if (m.size() > 0 && !m.data_handle()) mixlens::detail::fail(where, argument, "a device pointer", "null");
}

}  // namespace detail

namespace detail {
// out(r, t) = in(r, L − 1 − t), or out(r, t) += in(r, L − 1 − t) with accumulate.
template <class T>
__global__ void reverse_time_kernel(const T* in, T* out, index_t rows, index_t L, bool accumulate) {
  const index_t total = rows * L;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < total; e += index_t(gridDim.x) * blockDim.x) {
    const index_t r = e / L, t = e % L;
    const T v = in[r * L + (L - 1 - t)];
    out[e] = accumulate ? out[e] + v : v;
  }
}

// The backward half of a bidirectional operator: y += J·f(J·x), J reversing
// time, where apply_reversed(x', y') writes a causal operator's output y' for x'
// (rows × L in device memory, on `stream`).
template <class T, class ApplyReversed>
void add_time_reversed(const T* x, T* y, index_t rows, index_t L, ApplyReversed apply_reversed, cudaStream_t stream) {
  const std::size_t bytes = static_cast<std::size_t>(rows * L) * sizeof(T);
  stream_workspace xr(bytes, stream), yr(bytes, stream);
  auto* px = static_cast<T*>(xr.get());
  auto* py = static_cast<T*>(yr.get());
  reverse_time_kernel<<<generic_grid(rows * L), generic_threads, 0, stream>>>(x, px, rows, L, false);
  MIXLENS_CUDA_CHECK_LAUNCH();
  apply_reversed(static_cast<const T*>(px), py);
  reverse_time_kernel<<<generic_grid(rows * L), generic_threads, 0, stream>>>(static_cast<const T*>(py), y, rows, L, true);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// The generic apply from the view's rows (also the fallback of device paths
// that cover only some sizes); arguments already checked.
template <class View>
void generic_apply(const View& v, matrix_view<const typename View::value_type> x,
                   matrix_view<typename View::value_type> y, cudaStream_t stream) {
  using T = typename View::value_type;
  const index_t L = v.length(), total = v.out_channels() * L;
  const index_t batch_rows = std::max<index_t>(
      1, std::min<index_t>(total, static_cast<index_t>(generic_scratch_bytes / (sizeof(T) * L))));
  stream_workspace scratch(static_cast<std::size_t>(batch_rows * L) * sizeof(T), stream);
  for (index_t first = 0; first < total; first += batch_rows) {
    const index_t count = std::min(batch_rows, total - first);
    generic_apply_kernel<<<generic_grid(count), generic_threads, 0, stream>>>(
        v, x.data_handle(), y.data_handle(), static_cast<T*>(scratch.get()), first, count);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
}
}  // namespace detail

// y = M·x; x (in_channels × L) and y (out_channels × L) in device memory.
template <class Op>
void apply(const Op& op, matrix_view<const typename detail::view_t<Op>::value_type> x,
           matrix_view<typename detail::view_t<Op>::value_type> y, cudaStream_t stream = nullptr) {
  using View = detail::view_t<Op>;
  constexpr std::string_view where = "mixlens::gpu::apply";
  const View& v = view_of(op);
  mixlens::detail::check_apply_args(where, v, "x", x, y);
  detail::require_data(where, "x", x);
  detail::require_data(where, "y", y);
  if constexpr (requires { device_path<View>::apply(v, x, y, stream); }) device_path<View>::apply(v, x, y, stream);
  else detail::generic_apply(v, x, y, stream);
}

// The dense L×L block from input channel `in` to output channel `out` into m.
template <class Op>
void materialize(const Op& op, index_t out, index_t in, matrix_view<typename detail::view_t<Op>::value_type> m,
                 cudaStream_t stream = nullptr) {
  using View = detail::view_t<Op>;
  constexpr std::string_view where = "mixlens::gpu::materialize";
  const View& v = view_of(op);
  mixlens::detail::check_materialize_args(where, v, out, in, m);
  detail::require_data(where, "m", m);
  if constexpr (requires { device_path<View>::materialize(v, out, in, m, stream); }) {
    device_path<View>::materialize(v, out, in, m, stream);
  } else {
    const index_t L = v.length();
    detail::generic_rows_kernel<<<detail::generic_grid(L), detail::generic_threads, 0, stream>>>(
        v, out, in, nullptr, 0, L, m.data_handle(), L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
}

namespace detail {
// Row t of diagonal block d0 + c into out + (c·L + t)·L.
template <class View, class T>
__global__ void generic_channels_kernel(View op, index_t d0, index_t count, T* out) {
  const index_t L = op.length();
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < count * L;
       k += index_t(gridDim.x) * blockDim.x) {
    const index_t c = k / L, t = k % L;
    op.row(d0 + c, d0 + c, t, vector_view<T>(out + k * L, static_cast<std::size_t>(L)));
  }
}
}  // namespace detail

// The diagonal blocks (d, d) of channels [d0, d0 + count) into out (count × L × L,
// device memory), as mixlens::materialize_channels on the host.
template <class Op>
void materialize_channels(const Op& op, index_t d0, index_t count, typename detail::view_t<Op>::value_type* out,
                          cudaStream_t stream = nullptr) {
  using View = detail::view_t<Op>;
  const View& v = view_of(op);
  if (d0 < 0 || count < 0 || d0 + count > v.out_channels() || d0 + count > v.in_channels())
    mixlens::detail::fail("mixlens::gpu::materialize_channels", "channels",
                          "a range inside [0, " + std::to_string(v.out_channels()) + ")",
                          std::to_string(d0) + " + " + std::to_string(count));
  if (count == 0) return;
  if (!out) mixlens::detail::fail("mixlens::gpu::materialize_channels", "out", "a device pointer", "null");
  if constexpr (requires { device_path<View>::materialize_channels(v, d0, count, out, stream); }) {
    device_path<View>::materialize_channels(v, d0, count, out, stream);
  } else {
    detail::generic_channels_kernel<<<detail::generic_grid(count * v.length()), detail::generic_threads, 0, stream>>>(
        v, d0, count, out);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
}

// Whether Op's channel aggregate is computed without its blocks
// (device_path<View>::aggregate_channels: S6's fused α aggregation).
template <class Op>
inline constexpr bool aggregates_channels = requires(const detail::view_t<Op>& v, channel_reduction r, double* map,
                                                     float* minmax, cudaStream_t s) {
  device_path<detail::view_t<Op>>::aggregate_channels(v, r, map, minmax, s);
};

// map (L × L, double, device memory) += Σ over channels of f(block (d, d)), and
// the blocks' min, max and NaN count into minmax (may be null), without the
// blocks in memory; f per `reduction`.
template <class Op>
  requires aggregates_channels<Op>
void aggregate_channels(const Op& op, channel_reduction reduction, double* map, float* minmax,
                        cudaStream_t stream = nullptr) {
  device_path<detail::view_t<Op>>::aggregate_channels(view_of(op), reduction, map, minmax, stream);
}

// The whole operator, (out_channels·L) × (in_channels·L), entry (o·L + t, i·L + s).
template <class Op>
void materialize(const Op& op, matrix_view<typename detail::view_t<Op>::value_type> m, cudaStream_t stream = nullptr) {
  using View = detail::view_t<Op>;
  constexpr std::string_view where = "mixlens::gpu::materialize";
  const View& v = view_of(op);
  const index_t L = v.length();
  mixlens::detail::check_equal(where, "m", "rows", v.out_channels() * L, m.extent(0));
  mixlens::detail::check_equal(where, "m", "columns", v.in_channels() * L, m.extent(1));
  detail::require_data(where, "m", m);
  detail::generic_full_kernel<<<detail::generic_grid(v.out_channels() * v.in_channels() * L),
                                detail::generic_threads, 0, stream>>>(v, m.data_handle());
  MIXLENS_CUDA_CHECK_LAUNCH();
}

namespace detail {

// The generic rows: positions (host memory) are copied next to the launch.
template <class View>
void generic_rows(const View& v, index_t out, index_t in, vector_view<const index_t> positions,
                  matrix_view<typename View::value_type> r, cudaStream_t stream) {
  const index_t count = static_cast<index_t>(positions.size());
  stream_workspace p(positions.size() * sizeof(index_t), stream);
  auto* dp = static_cast<index_t*>(p.get());
  MIXLENS_CUDA_CHECK(
      cudaMemcpyAsync(dp, positions.data(), positions.size() * sizeof(index_t), cudaMemcpyHostToDevice, stream));
  generic_rows_kernel<<<generic_grid(count), generic_threads, 0, stream>>>(v, out, in, dp, 0, count, r.data_handle(),
                                                                          v.length());
  MIXLENS_CUDA_CHECK_LAUNCH();
  // The host positions may go away once the copy is done.
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace detail

// Rows positions[k] of block (out, in) into r(k, :); positions is host memory
// (the call returns once it has been read).
template <class Op>
void rows(const Op& op, index_t out, index_t in, vector_view<const index_t> positions,
          matrix_view<typename detail::view_t<Op>::value_type> r, cudaStream_t stream = nullptr) {
  using View = detail::view_t<Op>;
  constexpr std::string_view where = "mixlens::gpu::rows";
  const View& v = view_of(op);
  const index_t L = v.length(), count = static_cast<index_t>(positions.size());
  mixlens::detail::check_channel(where, "out", v.out_channels(), out);
  mixlens::detail::check_channel(where, "in", v.in_channels(), in);
  for (const index_t t : positions)
    if (t < 0 || t >= L) mixlens::detail::fail(where, "positions", "positions in [0, " + std::to_string(L) + ")", t);
  mixlens::detail::check_equal(where, "r", "rows", count, r.extent(0));
  mixlens::detail::check_equal(where, "r", "columns", L, r.extent(1));
  detail::require_data(where, "r", r);
  if (count == 0) return;
  if constexpr (requires { device_path<View>::rows(v, out, in, positions, r, stream); })
    device_path<View>::rows(v, out, in, positions, r, stream);
  else
    detail::generic_rows(v, out, in, positions, r, stream);
}

}  // namespace mixlens::gpu
