// Arrays in and out of the extension: the element type a call computes in,
// zero-copy views of contiguous inputs, and results handed to numpy (or torch).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"
#include "results.hpp"

namespace mixlens::python {

namespace nb = nanobind;

// The framework results are returned in: that of the caller's input.
enum class framework { numpy, torch };

// A C-contiguous host array of T, read only; it holds a reference to its
// source, so the memory stays valid as long as the array object lives.
template <class T>
using in_array = nb::ndarray<const T, nb::c_contig, nb::device::cpu>;

// Any array, kept only to keep its memory alive.
using any_array = nb::ndarray<nb::ro>;

[[noreturn]] inline void fail(std::string_view where, std::string_view argument, const std::string& expected,
                              const std::string& actual) {
  mixlens::detail::fail(where, argument, expected, actual);
}

inline bool is_none(nb::handle h) { return !h.is_valid() || h.is_none(); }

// str(h) (nb::str(object) would be a checked cast, not a conversion).
inline std::string str_of(nb::handle h) { return nb::cast<std::string>(nb::str(h)); }

inline std::string python_type(nb::handle h) { return nb::cast<std::string>(nb::type_name(h.type())); }

inline bool is_torch(nb::handle h) {
  if (is_none(h)) return false;
  const std::string name = python_type(h);
  return name.rfind("torch.", 0) == 0;
}

inline framework framework_of(nb::handle h) { return is_torch(h) ? framework::torch : framework::numpy; }

// The dtype of h when it is an array (buffer protocol or DLPack), without converting.
inline bool array_dtype(nb::handle h, nb::dlpack::dtype& out) {
  any_array a;
  if (!nb::try_cast(h, a, false)) return false;
  out = a.dtype();
  return true;
}

// Single precision when every array argument that is given is float32 (or
// complex64); double otherwise: float64, integer or mixed inputs, sequences.
inline bool single_precision(std::initializer_list<nb::handle> args) {
  bool any = false;
  for (nb::handle h : args) {
    if (is_none(h)) continue;
    nb::dlpack::dtype dt;
    if (!array_dtype(h, dt)) return false;
    const bool f32 = (dt == nb::dtype<float>()) || (dt == nb::dtype<mixlens::complex<float>>());
    if (!f32) return false;
    any = true;
  }
  return any;
}

// True when h is an array of a complex dtype.
inline bool is_complex_array(nb::handle h) {
  nb::dlpack::dtype dt;
  return !is_none(h) && array_dtype(h, dt) && dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Complex);
}

template <class T>
inline constexpr bool is_complex_v = false;
template <class T>
inline constexpr bool is_complex_v<mixlens::complex<T>> = true;

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else if constexpr (std::is_same_v<T, mixlens::complex<float>>) return "complex64";
  else if constexpr (std::is_same_v<T, mixlens::complex<double>>) return "complex128";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  else static_assert(sizeof(T) == 0, "unsupported element type");
}

// h as a C-contiguous array of T: the caller's memory when it already is one
// (no copy), else a converted copy (other dtype or order; sequences through
// numpy). The message names the argument when h is no array of numbers.
template <class T>
in_array<T> get(nb::handle h, std::string_view where, std::string_view name) {
  in_array<T> a;
  if (nb::try_cast(h, a, false)) return a;
  if (nb::try_cast(h, a, true)) return a;
  std::string hint;
  if (is_torch(h)) {
    if (nb::hasattr(h, "requires_grad") && nb::cast<bool>(h.attr("requires_grad")))
      hint = " (a tensor that requires grad: pass tensor.detach())";
    else if (nb::hasattr(h, "device") && str_of(h.attr("device")) != "cpu")
      hint = " (on " + str_of(h.attr("device")) + ": this takes host memory; pass .cpu(), or move the operator or "
             "model to the GPU with .to('cuda'))";
  }
  if (hint.empty() && !is_complex_array(h)) {
    try {  // lists, tuples, scalars
      nb::object np = nb::module_::import_("numpy");
      nb::object converted = np.attr("ascontiguousarray")(h, nb::arg("dtype") = dtype_name<T>());
      if (nb::try_cast(converted, a, false)) return a;
    } catch (const nb::python_error&) {
    }
  }
  if (hint.empty() && is_complex_array(h) && !is_complex_v<T>)
    hint = " (complex values where real ones are expected)";
  fail(where, name, std::string("an array of ") + dtype_name<T>() + " values (numpy array, CPU torch tensor or sequence)",
       python_type(h) + hint);
}

// The device argument of load, Model.to and Operator.to: 'cpu' (−1), 'cuda'
// or 'cuda:N' (N; 'cuda' is 0), or a torch.device (models.cpp).
int device_index(std::string_view where, nb::handle device);

// Why CUDA device `device` cannot run the CUDA backend ("" when it can; models.cpp).
std::string cuda_unavailable(int device);

// Runs f(); a mixlens::error thrown by the library names its own argument
// (`a`, `skip`, …): the message is rewritten to name the Python argument, each
// pair being {library name, Python name}.
using name_map = std::vector<std::pair<std::string_view, std::string_view>>;

template <class F>
decltype(auto) with_names(const name_map& names, F&& f) {
  try {
    return f();
  } catch (const mixlens::error& e) {
    std::string msg = e.what();
    for (const auto& [lib, py] : names)
      for (const char* tail : {"'", " ("}) {
        const std::string from = "argument '" + std::string(lib) + tail, to = "argument '" + std::string(py) + tail;
        for (std::size_t at = msg.find(from); at != std::string::npos; at = msg.find(from, at + to.size()))
          msg.replace(at, from.size(), to);
      }
    throw mixlens::error(msg);
  }
}

// Shape checks that name the argument.
template <class A>
void check_ndim(std::string_view where, std::string_view name, const A& a, std::size_t ndim, std::string_view layout) {
  if (a.ndim() != ndim) {
    std::string got = "shape (";
    for (std::size_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    got += a.ndim() == 1 ? ",)" : ")";
    fail(where, name, std::to_string(ndim) + " dimensions (" + std::string(layout) + ")", got);
  }
}

template <class T>
matrix_view<const T> as_matrix(const in_array<T>& a) {
  return matrix_view<const T>(a.data(), static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1)));
}
template <class T>
tensor_view<const T, 3> as_tensor3(const in_array<T>& a) {
  return tensor_view<const T, 3>(a.data(), static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1)),
                                 static_cast<index_t>(a.shape(2)));
}
template <class T>
vector_view<const T> as_vector(const in_array<T>& a) {
  return vector_view<const T>(a.data(), static_cast<std::size_t>(a.shape(0)));
}

// A new array of `shape` in `fw`, filled by fill(T*) with the GIL released.
template <class T, class Fill>
nb::object make_output(std::vector<std::size_t> shape, framework fw, Fill&& fill) {
  std::size_t n = 1;
  for (std::size_t e : shape) n *= e;
  std::unique_ptr<T[]> data(new T[n == 0 ? 1 : n]);
  {
    nb::gil_scoped_release release;
    fill(data.get());
  }
  T* p = data.release();
  nb::capsule owner(p, [](void* q) noexcept { delete[] static_cast<T*>(q); });
  if (fw == framework::torch)
    return nb::ndarray<nb::pytorch, T>(p, shape.size(), shape.data(), owner).cast();
  return nb::ndarray<nb::numpy, T>(p, shape.size(), shape.data(), owner).cast();
}

// A copy of `values` as a new array.
template <class T>
nb::object copy_output(const T* values, std::vector<std::size_t> shape, framework fw) {
  std::size_t n = 1;
  for (std::size_t e : shape) n *= e;
  return make_output<T>(std::move(shape), fw, [&](T* out) { std::copy(values, values + n, out); });
}

// A result as an array of `fw` (numpy or torch) sharing its memory; a result in
// device memory as a torch CUDA tensor, whatever fw; an empty one as None.
template <class T>
nb::object to_python(const result_array<T>& r, framework fw) {
  if (!r) return nb::none();
  auto* keep = new std::shared_ptr<const T>(r.values);
  nb::capsule owner(keep, [](void* p) noexcept { delete static_cast<std::shared_ptr<const T>*>(p); });
  T* data = const_cast<T*>(r.values.get());  // the array is the result's only user
  if (r.device >= 0)
    return nb::ndarray<nb::pytorch, T>(data, r.shape.size(), r.shape.data(), owner, nullptr, nb::dtype<T>(),
                                       nb::device::cuda::value, r.device)
        .cast();
  if (fw == framework::torch) return nb::ndarray<nb::pytorch, T>(data, r.shape.size(), r.shape.data(), owner).cast();
  return nb::ndarray<nb::numpy, T>(data, r.shape.size(), r.shape.data(), owner).cast();
}

}  // namespace mixlens::python
