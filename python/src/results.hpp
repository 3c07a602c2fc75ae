// A result of the library, in host or device memory, before it becomes a
// Python object (arrays.hpp's to_python): shared by the host and the CUDA
// translation units, so it knows neither nanobind nor CUDA.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace mixlens::python {

// Values a backend computed, kept alive by `values` (it owns the backend's
// array), with the shape they are handed to Python in.
template <class T>
struct result_array {
  std::shared_ptr<const T> values;
  std::vector<std::size_t> shape;
  int device = -1;  // -1: host memory; else the CUDA device that holds it

  [[nodiscard]] explicit operator bool() const { return values != nullptr; }
};

// A backend array (std::vector on the host, device memory on the GPU) as a result.
template <class Array>
auto keep_result(Array&& a, std::vector<std::size_t> shape, int device) {
  using A = std::remove_cvref_t<Array>;
  using T = std::remove_cvref_t<decltype(*std::declval<A&>().data())>;
  auto owner = std::make_shared<A>(std::forward<Array>(a));
  T* data = owner->data();
  return result_array<T>{std::shared_ptr<const T>(std::move(owner), data), std::move(shape), device};
}

}  // namespace mixlens::python
