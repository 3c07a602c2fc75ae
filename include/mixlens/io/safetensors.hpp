// Reading safetensors files (the format Hugging Face save_pretrained writes): an
// 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw data. The file is memory-mapped; tensors
// are converted to the compute type on reading (F64, F32, F16, BF16).
//
// The whole header is validated when the file is opened: JSON syntax, known
// dtypes, non-negative shapes, byte ranges matching the shapes, inside the file
// and not overlapping. Any defect throws mixlens::error naming the file and the
// byte offset. POSIX only (mmap).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/file.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/json.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

// One tensor's entry in the header. Offsets are relative to the file start.
struct safetensors_tensor {
  std::string name;
  std::string dtype;              // as written: "F32", "BF16", …
  std::vector<index_t> shape;
  std::uint64_t begin = 0;        // first data byte in the file
  std::uint64_t end = 0;          // one past the last
  std::uint64_t header_offset = 0;  // where the entry is described, for messages

  [[nodiscard]] index_t size() const {
    return mixlens::detail::checked_element_count("mixlens::io::safetensors_tensor", name, shape);
  }
};

namespace detail {

[[noreturn]] inline void safetensors_fail(const std::filesystem::path& file, std::uint64_t offset,
                                          const std::string& what) {
  throw error("safetensors file '" + file.string() + "' at byte " + std::to_string(offset) + ": " + what);
}

// Bytes per element of every dtype the format defines; 0 for unknown names.
[[nodiscard]] inline std::size_t safetensors_item_size(std::string_view dtype) {
  static constexpr std::pair<std::string_view, std::size_t> sizes[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};
  for (const auto& [name, size] : sizes)
    if (name == dtype) return size;
  return 0;
}

[[nodiscard]] inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

[[nodiscard]] inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF, bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf, nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    exponent = 113;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A read-only memory map that unmaps itself.
class mapped_file {
 public:
  mapped_file() = default;
  explicit mapped_file(const std::filesystem::path& file) {
    // stat first: open() blocks on a FIFO (O_NONBLOCK covers a swap in between).
    (void)mixlens::detail::regular_file_size(file, "safetensors file");
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw error("cannot open safetensors file '" + file.string() + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw error("safetensors file '" + file.string() + "' is not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw error("cannot map safetensors file '" + file.string() + "': " + std::strerror(e));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping stays valid
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~mapped_file() { release(); }

  [[nodiscard]] const std::byte* data() const { return data_; }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  void release() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
  }
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace detail

class safetensors_file {
 public:
  explicit safetensors_file(std::filesystem::path file) : path_(std::move(file)), map_(path_) { parse(); }

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::size_t file_size() const { return map_.size(); }
  // Entries in header order; `__metadata__` is kept apart.
  [[nodiscard]] const std::vector<safetensors_tensor>& tensors() const { return tensors_; }
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return metadata_; }

  [[nodiscard]] const safetensors_tensor* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  [[nodiscard]] bool contains(std::string_view name) const { return find(name) != nullptr; }

  // The entry, or an error naming the file and the missing tensor.
  [[nodiscard]] const safetensors_tensor& at(std::string_view name) const {
    if (const auto* t = find(name)) return *t;
    throw error("safetensors file '" + path_.string() + "': no tensor named '" + std::string(name) + "'");
  }

  // The raw little-endian bytes of a tensor, inside the mapping.
  [[nodiscard]] const std::byte* bytes(const safetensors_tensor& t) const { return map_.data() + t.begin; }

  // Converts the tensor to T (float or double) into `out` (t.size() elements).
  template <class T>
  void read(const safetensors_tensor& t, T* out) const {
    static_assert(std::is_floating_point_v<T>, "safetensors_file::read: T must be float or double");
    const std::byte* p = bytes(t);
    const auto n = static_cast<std::size_t>(t.size());
    auto each = [&]<class S>(S, auto convert) {
      for (std::size_t i = 0; i < n; ++i) {
        S s;
        std::memcpy(&s, p + i * sizeof(S), sizeof(S));
        out[i] = static_cast<T>(convert(s));
      }
    };
    auto same = [](auto s) { return s; };
    if (t.dtype == "F32") each(float{}, same);
    else if (t.dtype == "F64") each(double{}, same);
    else if (t.dtype == "F16") each(std::uint16_t{}, detail::f16_to_float);
    else if (t.dtype == "BF16") each(std::uint16_t{}, detail::bf16_to_float);
    else
      detail::safetensors_fail(path_, t.header_offset,
                               "tensor '" + t.name + "' has dtype " + t.dtype + " (expected F32, F64, F16 or BF16)");
  }

  template <class T>
  [[nodiscard]] std::vector<T> read(std::string_view name) const {
    const auto& t = at(name);
    std::vector<T> out(static_cast<std::size_t>(t.size()));
    read(t, out.data());
    return out;
  }

 private:
  void parse() {
    const std::size_t size = map_.size();
    if (size < 8) detail::safetensors_fail(path_, 0, "file of " + std::to_string(size) + " bytes is too short for the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(map_.data()[i]);
    if (n == 0 || n > size - 8)
      detail::safetensors_fail(path_, 0, "header length " + std::to_string(n) + " does not fit the file of " +
                                             std::to_string(size) + " bytes");
    const std::uint64_t data_begin = 8 + n;
    json_value root;
    try {
      root = parse_json(std::string_view(reinterpret_cast<const char*>(map_.data()) + 8, n));
    } catch (const json_error& e) {
      detail::safetensors_fail(path_, 8 + e.offset(), "malformed JSON header: " + e.reason());
    }
    if (!root.is(json_value::kind::object)) detail::safetensors_fail(path_, 8 + root.offset, "the header is not a JSON object");

    for (const auto& [key, value, key_at] : root.members) {
      const std::uint64_t at = 8 + value.offset;
      if (key == "__metadata__") {
        if (!value.is(json_value::kind::object)) detail::safetensors_fail(path_, at, "__metadata__ is not an object");
        for (const auto& [mk, mv, mk_at] : value.members) {
          if (!mv.is(json_value::kind::string))
            detail::safetensors_fail(path_, 8 + mv.offset, "__metadata__ value '" + mk + "' is not a string");
          metadata_[mk] = mv.string;
        }
        continue;
      }
      tensors_.push_back(parse_entry(key, value, data_begin, size));
      index_[key] = tensors_.size() - 1;
    }

    // Byte ranges must not overlap (empty tensors occupy nothing).
    std::vector<const safetensors_tensor*> order;
    for (const auto& t : tensors_)
      if (t.end > t.begin) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < order.size(); ++i)
      if (order[i]->begin < order[i - 1]->end)
        detail::safetensors_fail(path_, order[i]->header_offset,
                                 "data of tensor '" + order[i]->name + "' overlaps tensor '" + order[i - 1]->name + "'");
  }

  safetensors_tensor parse_entry(const std::string& key, const json_value& v, std::uint64_t data_begin,
                                 std::uint64_t size) const {
    const std::uint64_t at = 8 + v.offset;
    const std::string who = "tensor '" + key + "'";
    if (!v.is(json_value::kind::object)) detail::safetensors_fail(path_, at, who + " is not a JSON object");
    for (const auto& [field, fv, field_at] : v.members)
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        detail::safetensors_fail(path_, 8 + fv.offset, who + " has an unknown field '" + field + "'");
    auto field = [&](const char* name, json_value::kind kind) -> const json_value& {
      const json_value* f = v.find(name);
      if (!f) detail::safetensors_fail(path_, at, who + " lacks '" + name + "'");
      if (!f->is(kind))
        detail::safetensors_fail(path_, 8 + f->offset, who + ": '" + name + "' is not " + std::string(to_string(kind)));
      return *f;
    };
    auto non_negative = [&](const json_value& e, const char* what) -> std::uint64_t {
      if (!e.is(json_value::kind::number) || !e.integral || e.integer < 0)
        detail::safetensors_fail(path_, 8 + e.offset, who + ": " + what + " must be non-negative integers");
      return static_cast<std::uint64_t>(e.integer);
    };

    safetensors_tensor t;
    t.name = key;
    t.header_offset = at;
    const json_value& dtype = field("dtype", json_value::kind::string);
    t.dtype = dtype.string;
    const std::size_t item = detail::safetensors_item_size(t.dtype);
    if (item == 0) detail::safetensors_fail(path_, 8 + dtype.offset, who + " has unknown dtype '" + t.dtype + "'");

    for (const auto& e : field("shape", json_value::kind::array).items)
      t.shape.push_back(static_cast<index_t>(non_negative(e, "shape entries")));
    // Overflow past 2^63 elements is refused even with a zero extent: strides must fit.
    const auto elements = mixlens::detail::element_count(t.shape);
    const bool overflow = !elements;
    const std::uint64_t count = elements ? static_cast<std::uint64_t>(*elements) : 0;
    const json_value& offsets = field("data_offsets", json_value::kind::array);
    if (offsets.items.size() != 2)
      detail::safetensors_fail(path_, 8 + offsets.offset, who + ": data_offsets must hold 2 integers, not " +
                                                             std::to_string(offsets.items.size()));
    const std::uint64_t begin = non_negative(offsets.items[0], "data_offsets");
    const std::uint64_t end = non_negative(offsets.items[1], "data_offsets");
    if (end < begin) detail::safetensors_fail(path_, 8 + offsets.offset, who + ": data_offsets end before begin");
    if (overflow || count > UINT64_MAX / item || count * item != end - begin)
      detail::safetensors_fail(path_, 8 + offsets.offset,
                               who + ": data_offsets span " + std::to_string(end - begin) + " bytes, but shape and " +
                                   t.dtype + " need " + (overflow ? std::string("more than 2^63 elements") : std::to_string(count * item)));
    if (end > size - data_begin)
      detail::safetensors_fail(path_, 8 + offsets.offset,
                               who + ": data ends at byte " + std::to_string(data_begin + end) + ", past the end of the " +
                                   std::to_string(size) + "-byte file");
    t.begin = data_begin + begin;
    t.end = data_begin + end;
    return t;
  }

  std::filesystem::path path_;
  detail::mapped_file map_;
  std::vector<safetensors_tensor> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mixlens::io
