// Reading a model's tensors from a checkpoint by name, with the shapes its
// config implies: a missing tensor, a wrong shape or an unannounced optional
// tensor is an error naming the tensor and the expected shape; shapes are
// checked before anything is allocated; what was not read is listed.
#pragma once

#include <algorithm>
#include <charconv>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::models {

namespace detail {

inline std::string shape_string(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The checkpoint and the names read from it, so that what was not read can be
// reported.
struct checkpoint_reader {
  const io::safetensors_checkpoint& file;
  std::set<std::string> read;

  [[nodiscard]] const std::filesystem::path& path() const { return file.path(); }
  [[nodiscard]] bool contains(const std::string& name) const { return file.contains(name); }
};

// The entry of tensor `name`, checked to have exactly `shape` before anything
// is allocated for it (a config can claim any size).
inline const io::safetensors_tensor& checked_tensor(checkpoint_reader& f, const std::string& name,
                                                    const std::vector<index_t>& shape) {
  const io::safetensors_tensor* t = f.file.find(name);
  if (!t)
    throw error("Mamba checkpoint '" + f.path().string() + "': missing tensor '" + name + "' (expected shape " +
                shape_string(shape) + ")");
  if (t->shape != shape)
    throw error("Mamba checkpoint '" + f.path().string() + "': tensor '" + name + "' has shape " +
                shape_string(t->shape) + ", expected " + shape_string(shape));
  f.read.insert(name);
  return *t;
}

// make() allocates the tensor's buffer; running out of memory names the tensor.
template <class F>
auto allocate(const checkpoint_reader& f, const std::string& name, F&& make) {
  try {
    return make();
  } catch (const std::bad_alloc&) {
    throw error("Mamba checkpoint '" + f.path().string() + "': out of memory for tensor '" + name + "'");
  }
}

template <class T>
matrix<T> load_matrix(checkpoint_reader& f, const std::string& name, std::vector<index_t> shape) {
  const auto& t = checked_tensor(f, name, shape);
  auto m = allocate(f, name, [&] { return matrix<T>(shape[0], shape.size() > 1 ? shape.back() : 1); });
  f.file.read(t, m.data());
  return m;
}

// A tensor of any rank read as a (rows × cols) matrix, rows · cols being its
// element count (Vision Mamba's (E, C, p, p) patch kernel, (1, L, E) position
// embedding).
template <class T>
matrix<T> load_reshaped(checkpoint_reader& f, const std::string& name, const std::vector<index_t>& shape, index_t rows,
                        index_t cols) {
  const auto& t = checked_tensor(f, name, shape);
  index_t count = 1;
  for (index_t e : shape) count *= e;  // checked_tensor matched the file's shape, whose count fits
  if (count != rows * cols)
    throw error("Mamba checkpoint '" + f.path().string() + "': tensor '" + name + "' of shape " + shape_string(shape) +
                " read as " + std::to_string(rows) + " x " + std::to_string(cols));
  auto m = allocate(f, name, [&] { return matrix<T>(rows, cols); });
  f.file.read(t, m.data());
  return m;
}

template <class T>
std::vector<T> load_vector(checkpoint_reader& f, const std::string& name, index_t n) {
  const auto& t = checked_tensor(f, name, {n});
  auto v = allocate(f, name, [&] { return std::vector<T>(static_cast<std::size_t>(n)); });
  f.file.read(t, v.data());
  return v;
}

// An optional tensor: required when the config enables it, refused when it does not.
template <class T>
std::vector<T> load_optional(checkpoint_reader& f, const std::string& name, index_t n, bool enabled,
                             std::string_view flag) {
  if (enabled) return load_vector<T>(f, name, n);
  if (f.contains(name))
    throw error("Mamba checkpoint '" + f.path().string() + "': unexpected tensor '" + name + "' (the config sets " +
                std::string(flag) + " = false)");
  return {};
}

// The tensors not read, after refusing layers beyond the config's: a config
// with fewer layers would otherwise run the first ones silently. `prefix` starts
// the layers' tensor names.
inline std::vector<std::string> unused_tensors(const checkpoint_reader& f, index_t num_layers,
                                               std::string_view prefix = "backbone.layers.") {
  std::vector<std::string> unused;
  index_t stored_layers = 0;
  for (const std::string& name : f.file.tensor_names()) {
    if (f.read.count(name)) continue;
    unused.push_back(name);
    if (!std::string_view(name).starts_with(prefix)) continue;
    index_t k = -1;
    const char* digits = name.data() + prefix.size();
    const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), k);
    if (ec == std::errc() && *end == '.' && k >= 0) stored_layers = std::max(stored_layers, k + 1);
  }
  if (stored_layers > num_layers)
    throw error("Mamba checkpoint '" + f.path().string() + "' holds " + std::to_string(stored_layers) +
                " layers (" + std::string(prefix) + std::to_string(stored_layers - 1) + ".*), but the config has " +
                std::to_string(num_layers) + " layers");
  return unused;
}

}  // namespace detail

}  // namespace mixlens::models
