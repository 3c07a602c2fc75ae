// Operators on the CUDA backend (Operator.to("cuda")): a host operator's view
// copied to the device (gpu::to_device) behind an interface that knows neither
// nanobind nor CUDA's headers. device_operators.cu registers a factory for the
// view type of every operator the package builds (the registry's and the direct
// constructors'); the bindings (operator.hpp) look it up by type. Arguments
// arrive checked; pointers are device memory of the operator's device.
#pragma once

#include <memory>
#include <typeindex>
#include <vector>

#include "mixlens/config.hpp"
#include "results.hpp"

namespace mixlens::python::cuda {

template <class T>
class device_operator {
 public:
  virtual ~device_operator() = default;
  [[nodiscard]] virtual int device() const = 0;
  // y = M·x (out_channels × L) for x (in_channels × L).
  [[nodiscard]] virtual result_array<T> apply(const T* x) const = 0;
  // The L × L block (out, in).
  [[nodiscard]] virtual result_array<T> materialize(index_t out, index_t in) const = 0;
  // The diagonal blocks of every channel (channels × L × L; operators that do not mix channels).
  [[nodiscard]] virtual result_array<T> materialize_channels() const = 0;
  // The whole operator (out·L × in·L).
  [[nodiscard]] virtual result_array<T> materialize_full() const = 0;
  // Rows `positions` (host memory, in range) of the blocks `pairs` ((out, in) each):
  // (pairs × positions × L).
  [[nodiscard]] virtual result_array<T> rows(const std::vector<index_t>& positions,
                                             const std::vector<std::pair<index_t, index_t>>& pairs) const = 0;
};

// Makes the device operator of a host view of the registered type (view: a
// pointer to it) on CUDA device `device`.
template <class T>
using device_operator_factory = std::unique_ptr<device_operator<T>> (*)(const void* view, int device);

// The factory for views of type `view`, or null when none is registered.
template <class T>
[[nodiscard]] device_operator_factory<T> device_factory(std::type_index view);

}  // namespace mixlens::python::cuda
