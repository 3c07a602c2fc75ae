// Details of io/reference_params.hpp: reading a module's tensors by name with
// their shapes checked before anything is read, the positive-parameter
// transforms of the reference code, and the error messages.
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <new>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/tensor_map.hpp"
#include "mixlens/ops/causal_conv/two_sided.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

namespace detail {

inline std::string shape_text(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The tensors of one module under `prefix`, for one loader (`module` names the
// reference class in messages). expect() checks a shape without reading;
// read() reads a tensor whose shape was checked.
template <class Source>
class param_reader {
 public:
  param_reader(const Source& src, std::string module, std::string prefix)
      : src_(src), module_(std::move(module)), prefix_(std::move(prefix)) {}

  [[nodiscard]] std::string context() const {
    return module_ + " parameters '" + std::filesystem::path(src_.path()).string() + "'";
  }
  [[noreturn]] void fail(const std::string& what) const { throw error(context() + ": " + what); }

  // An option value the loader does not model: names it and what is modeled.
  [[noreturn]] void unsupported(std::string_view option, std::string_view value, std::string_view why) const {
    fail("unsupported " + std::string(option) + " " + std::string(value) + ": " + std::string(why));
  }

  [[nodiscard]] std::string full(std::string_view name) const { return prefix_ + std::string(name); }
  [[nodiscard]] bool has(std::string_view name) const { return src_.find(full(name)) != nullptr; }

  // The stored shape of a required tensor.
  [[nodiscard]] std::vector<index_t> shape(std::string_view name, std::string_view meaning) const {
    const auto* t = src_.find(full(name));
    if (!t) fail("missing tensor '" + full(name) + "' (" + std::string(meaning) + ")");
    return t->shape;
  }

  // Checks that tensor `name` has exactly `expected`.
  void expect(std::string_view name, const std::vector<index_t>& expected, std::string_view meaning) {
    const auto actual = shape(name, meaning);
    if (actual != expected)
      fail("tensor '" + full(name) + "' (" + std::string(meaning) + ") has shape " + shape_text(actual) +
           ", expected " + shape_text(expected));
    used_.insert(full(name));
  }

  // A tensor that must not be there (a stored variant the options do not describe).
  void refuse(std::string_view name, std::string_view why) const {
    if (has(name)) fail("unexpected tensor '" + full(name) + "': " + std::string(why));
  }

  // A checked tensor's values in float64.
  [[nodiscard]] std::vector<double> read(std::string_view name) const {
    const auto* t = src_.find(full(name));
    if (!t || !used_.count(full(name))) fail("internal: tensor '" + full(name) + "' read before its shape check");
    std::vector<double> out;
    try {
      out.resize(static_cast<std::size_t>(mixlens::detail::checked_element_count("mixlens::io", full(name), t->shape)));
    } catch (const std::bad_alloc&) {
      fail("out of memory for tensor '" + full(name) + "'");
    }
    src_.read(*t, out.data());
    return out;
  }

  // A checked scalar count (a registered integer buffer such as SSMKernelDPLR's
  // l_kernel): I64/I32 bytes of a safetensors file, or an integral float value.
  [[nodiscard]] index_t read_count(std::string_view name) const {
    const auto* t = src_.find(full(name));
    if (!t || !used_.count(full(name))) fail("internal: tensor '" + full(name) + "' read before its shape check");
    if constexpr (requires { t->dtype; src_.bytes(*t); }) {
      if (t->dtype == "I64" || t->dtype == "I32") {
        std::int64_t v = 0;
        if (t->dtype == "I64") std::memcpy(&v, src_.bytes(*t), sizeof v);
        else {
          std::int32_t w = 0;
          std::memcpy(&w, src_.bytes(*t), sizeof w);
          v = w;
        }
        if (v < 0) fail("tensor '" + full(name) + "' holds " + std::to_string(v) + ", expected a count >= 0");
        return static_cast<index_t>(v);
      }
    }
    const double v = read(name).at(0);
    if (!(v >= 0) || v != std::floor(v) || v > 1e15)
      fail("tensor '" + full(name) + "' holds " + std::to_string(v) + ", expected a count >= 0");
    return static_cast<index_t>(v);
  }

  // Every tensor under prefix + `group` must have been checked: one that was not
  // belongs to a variant the loader does not model (say, SSMKernelDPLR's P).
  void refuse_unread(std::string_view group, std::string_view hint) const {
    const std::string under = full(group);
    for (const std::string& name : tensor_names(src_))
      if (std::string_view(name).starts_with(under) && !used_.count(name))
        fail("unexpected tensor '" + name + "' (" + std::string(hint) + ")");
  }

 private:
  const Source& src_;
  std::string module_;
  std::string prefix_;
  std::set<std::string> used_;
};

// The D skip (channels, H) against the kernel's channels (tensor `kernel`): a
// bidirectional FFTConv or DSS stores twice D's channels in its kernel, the
// forward ones first. Checks that the stored direction is the one asked for
// (`other` names the loader of the other one) and returns D's channels.
template <class Source>
index_t skip_channels(param_reader<Source>& r, std::string_view kernel, index_t kernel_channels, index_t H,
                      bool bidirectional, std::string_view module, std::string_view other) {
  const auto d_shape = r.shape("D", "the D skip (channels, H)");
  const bool twice = d_shape.size() == 2 && d_shape[1] == H && 2 * d_shape[0] == kernel_channels;
  const std::string stored = "tensor '" + r.full(kernel) + "' has " + std::to_string(kernel_channels) + " channels";
  if (twice && !bidirectional)
    r.fail(stored + ", twice the " + std::to_string(d_shape[0]) + " of '" + r.full("D") + "': a bidirectional " +
           std::string(module) + "; load it with io::" + std::string(other));
  if (bidirectional && !twice && d_shape.size() == 2 && d_shape[1] == H)
    r.fail(stored + " and '" + r.full("D") + "' " + std::to_string(d_shape[0]) + ": a bidirectional " +
           std::string(module) + " stores twice D's channels in the kernel (forward, then backward); a " +
           "unidirectional one loads with io::" + std::string(other));
  const index_t channels = bidirectional ? kernel_channels / 2 : kernel_channels;
  r.expect("D", {channels, H}, "the D skip (channels, H)");
  return channels;
}

// Pairs a bidirectional module's kernel channels into two-sided mixers: channel
// c (< half) is forward, c + half its backward (einops '(s c)' with s = 2).
template <class Mixer>
std::vector<two_sided_mixer<Mixer>> pair_directions(std::vector<Mixer> channels) {
  const std::size_t half = channels.size() / 2;
  std::vector<two_sided_mixer<Mixer>> out;
  for (std::size_t c = 0; c < half; ++c)
    out.push_back({std::move(channels[c]), std::move(channels[c + half]), 1});
  return out;
}

// The transforms under which state-spaces/s4 stores positive parameters
// (src/models/sequence/kernels/ssm.py, param_transform).
enum class positive_transform { none, exp, relu, sigmoid, softplus };

template <class Source>
positive_transform parse_transform(const param_reader<Source>& r, std::string_view option, std::string_view value) {
  if (value == "none") return positive_transform::none;
  if (value == "exp") return positive_transform::exp;
  if (value == "relu") return positive_transform::relu;
  if (value == "sigmoid") return positive_transform::sigmoid;
  if (value == "softplus") return positive_transform::softplus;
  r.unsupported(option, "'" + std::string(value) + "'", "expected none, exp, relu, sigmoid or softplus");
}

[[nodiscard]] inline double apply_transform(positive_transform t, double x) {
  switch (t) {
    case positive_transform::none: return x;
    case positive_transform::exp: return std::exp(x);
    case positive_transform::relu: return (x > 0 ? x : 0.0) + 1e-4;  // as the reference: relu(x) + 1e-4
    case positive_transform::sigmoid: return 1 / (1 + std::exp(-x));
    case positive_transform::softplus: return x > 20 ? x : std::log1p(std::exp(x));  // PyTorch: threshold 20
  }
  return x;
}

// X := A⁻¹X for a dense n × n complex A (row-major, overwritten) and n × m X, by
// Gaussian elimination with partial pivoting; false if A is singular.
[[nodiscard]] inline bool solve_in_place(std::vector<std::complex<double>>& a, std::vector<std::complex<double>>& x,
                                         std::size_t n, std::size_t m) {
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t piv = k;
    for (std::size_t i = k + 1; i < n; ++i)
      if (std::abs(a[i * n + k]) > std::abs(a[piv * n + k])) piv = i;
    if (a[piv * n + k] == 0.0) return false;
    if (piv != k) {
      for (std::size_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[piv * n + j]);
      for (std::size_t j = 0; j < m; ++j) std::swap(x[k * m + j], x[piv * m + j]);
    }
    for (std::size_t i = k + 1; i < n; ++i) {
      const auto f = a[i * n + k] / a[k * n + k];
      if (f == 0.0) continue;
      for (std::size_t j = k; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
      for (std::size_t j = 0; j < m; ++j) x[i * m + j] -= f * x[k * m + j];
    }
  }
  for (std::size_t k = n; k-- > 0;) {
    for (std::size_t j = 0; j < m; ++j) {
      auto v = x[k * m + j];
      for (std::size_t i = k + 1; i < n; ++i) v -= a[k * n + i] * x[i * m + j];
      x[k * m + j] = v / a[k * n + k];
    }
  }
  return true;
}

}  // namespace detail
}  // namespace mixlens::io
