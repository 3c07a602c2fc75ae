// Named tensors in memory, and the concept of what the loaders of
// io/reference_params.hpp read from: a safetensors file, a checkpoint folder's
// tensors, a tensor_map (filled by hand, or from a folder of .npy files by
// read_npy_folder), tensor_views (a framework's arrays, read in place).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/safetensors.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

// Named tensors in memory (float64), with the interface the loaders read: for
// parameters that come from elsewhere (.npy files, a framework's arrays).
// `origin` names the source in messages.
class tensor_map {
 public:
  struct entry {
    std::string name;
    std::vector<index_t> shape;
    std::vector<double> data;
  };

  explicit tensor_map(std::filesystem::path origin = "<memory>") : origin_(std::move(origin)) {}

  // Every tensor of a safetensors file, converted to float64.
  [[nodiscard]] static tensor_map copy_of(const safetensors_file& f) {
    tensor_map m(f.path());
    for (const auto& t : f.tensors()) {
      std::vector<double> data(static_cast<std::size_t>(t.size()));
      f.read(t, data.data());
      m.insert(t.name, t.shape, std::move(data));
    }
    return m;
  }

  // Adds (or replaces) a tensor; data holds the product of shape elements, C order.
  void insert(std::string name, std::vector<index_t> shape, std::vector<double> data) {
    const index_t n = mixlens::detail::checked_element_count("mixlens::io::tensor_map::insert", name, shape);
    if (n != static_cast<index_t>(data.size()))
      mixlens::detail::fail("mixlens::io::tensor_map::insert", name, std::to_string(n) + " values for its shape",
                            data.size());
    erase(name);
    names_.push_back(name);
    entries_.push_back({std::move(name), std::move(shape), std::move(data)});
  }

  void erase(std::string_view name) {
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].name == name) {
        entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
        names_.erase(names_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }

  [[nodiscard]] const std::filesystem::path& path() const { return origin_; }
  [[nodiscard]] const entry* find(std::string_view name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  [[nodiscard]] entry* find(std::string_view name) {
    for (auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  [[nodiscard]] const std::vector<std::string>& tensor_names() const { return names_; }

  template <class T>
  void read(const entry& e, T* out) const {
    for (std::size_t i = 0; i < e.data.size(); ++i) out[i] = static_cast<T>(e.data[i]);
  }

 private:
  std::filesystem::path origin_;
  std::vector<entry> entries_;
  std::vector<std::string> names_;
};

// Named tensors in the caller's memory, read in place (no copy): the parameters
// of a framework's module (the Python package hands a PyTorch state_dict over
// as these views), with the interface the loaders read. Elements are float32,
// float64, int32 or int64 in C order; the memory must outlive the views (and
// whatever reads them). `origin` names the source in messages.
class tensor_views {
 public:
  enum class element { f32, f64, i32, i64 };
  struct entry {
    std::string name;
    std::vector<index_t> shape;
    element type;
    const void* data;
  };

  explicit tensor_views(std::filesystem::path origin = "<memory>") : origin_(std::move(origin)) {}

  // Adds (or replaces) the view of a tensor of `shape` at `data`.
  void insert(std::string name, std::vector<index_t> shape, const float* data) {
    add(std::move(name), std::move(shape), element::f32, data);
  }
  void insert(std::string name, std::vector<index_t> shape, const double* data) {
    add(std::move(name), std::move(shape), element::f64, data);
  }
  void insert(std::string name, std::vector<index_t> shape, const std::int32_t* data) {
    add(std::move(name), std::move(shape), element::i32, data);
  }
  void insert(std::string name, std::vector<index_t> shape, const std::int64_t* data) {
    add(std::move(name), std::move(shape), element::i64, data);
  }

  [[nodiscard]] const std::filesystem::path& path() const { return origin_; }
  [[nodiscard]] const entry* find(std::string_view name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  [[nodiscard]] const std::vector<std::string>& tensor_names() const { return names_; }

  // The elements of e converted to T.
  template <class T>
  void read(const entry& e, T* out) const {
    const auto n = static_cast<std::size_t>(mixlens::detail::checked_element_count("mixlens::io::tensor_views", e.name, e.shape));
    auto copy = [&](const auto* in) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(in[i]);
    };
    switch (e.type) {
      case element::f32: copy(static_cast<const float*>(e.data)); break;
      case element::f64: copy(static_cast<const double*>(e.data)); break;
      case element::i32: copy(static_cast<const std::int32_t*>(e.data)); break;
      case element::i64: copy(static_cast<const std::int64_t*>(e.data)); break;
    }
  }

 private:
  void add(std::string name, std::vector<index_t> shape, element type, const void* data) {
    const index_t n = mixlens::detail::checked_element_count("mixlens::io::tensor_views::insert", name, shape);
    if (n > 0 && data == nullptr)
      mixlens::detail::fail("mixlens::io::tensor_views::insert", name, "data for " + std::to_string(n) + " values", "null");
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].name == name) {
        entries_[i] = {std::move(name), std::move(shape), type, data};
        return;
      }
    names_.push_back(name);
    entries_.push_back({std::move(name), std::move(shape), type, data});
  }

  std::filesystem::path origin_;
  std::vector<entry> entries_;
  std::vector<std::string> names_;
};

// Every .npy file under `dir` (recursively) as a tensor named by its path
// relative to `dir` without ".npy", with '/' between folders: the layout that
// unzipping a numpy.savez archive of flattened parameters gives (a key
// "layers_0/seq/B" is the file layers_0/seq/B.npy). Names in sorted order.
[[nodiscard]] inline tensor_map read_npy_folder(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw error("npy folder '" + dir.string() + "' is not a directory");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".npy") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  tensor_map m(dir);
  for (const auto& f : files) {
    std::string name = fs::relative(f, dir).generic_string();
    name.resize(name.size() - 4);
    const npy_array a = read_npy(f);
    m.insert(std::move(name), a.shape, a.as<double>());
  }
  return m;
}

namespace detail {

[[nodiscard]] inline std::vector<std::string> tensor_names(const safetensors_file& f) {
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  return names;
}
[[nodiscard]] inline const std::vector<std::string>& tensor_names(const safetensors_checkpoint& f) {
  return f.tensor_names();
}
[[nodiscard]] inline const std::vector<std::string>& tensor_names(const tensor_map& f) { return f.tensor_names(); }
[[nodiscard]] inline const std::vector<std::string>& tensor_names(const tensor_views& f) { return f.tensor_names(); }

}  // namespace detail

// What the loaders read from: safetensors_file, safetensors_checkpoint,
// tensor_map and tensor_views. find(name) gives an entry with a `shape`, or nullptr.
template <class S>
concept tensor_source = requires(const S& s, std::string_view name, double* out) {
  { s.path() } -> std::convertible_to<std::filesystem::path>;
  { s.find(name)->shape } -> std::convertible_to<std::vector<index_t>>;
  s.read(*s.find(name), out);
  { detail::tensor_names(s) };
};

}  // namespace mixlens::io
