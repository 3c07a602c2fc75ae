// NumPy .npy files (format versions 1–3, little-endian, C order): reading for
// inputs and token ids, writing for mixing matrices and logits.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/file.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

namespace detail {

template <class T>
constexpr std::string_view npy_descr() {
  if constexpr (std::is_same_v<T, float>) return "<f4";
  else if constexpr (std::is_same_v<T, double>) return "<f8";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "<i4";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "<i8";
  else if constexpr (std::is_same_v<T, std::uint8_t>) return "|u1";
  else static_assert(sizeof(T) == 0, "npy: unsupported element type");
}

// Whether `s` converts to the integer type T exactly: no NaN, fraction or
// overflow (a float-to-integer cast out of range is undefined behaviour).
template <class T, class S>
[[nodiscard]] constexpr bool converts_exactly(S s) {
  if constexpr (std::is_floating_point_v<S>) {
    constexpr S hi = S(std::numeric_limits<T>::max() / 2 + 1) * S(2);  // 2^digits, exact in S
    constexpr S lo = std::is_signed_v<T> ? -hi : S(0);
    return s >= lo && s < hi && std::trunc(s) == s;
  } else {
    return std::in_range<T>(s);
  }
}

[[noreturn]] inline void npy_fail(const std::filesystem::path& file, std::uint64_t offset, const std::string& what) {
  throw error("npy file '" + file.string() + "' at byte " + std::to_string(offset) + ": " + what);
}

// Writes through a temporary file and renames it, so that a failed write never
// leaves a truncated file behind under the final name.
inline void write_atomically(const std::filesystem::path& file, const std::string& header, const void* data,
                             std::size_t bytes) {
  const std::filesystem::path tmp = file.string() + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw error("cannot open '" + file.string() + "' for writing");
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
    out.flush();
    if (!out) {
      out.close();
      std::filesystem::remove(tmp);
      throw error("failed writing '" + file.string() + "' (disk full or not writable?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw error("cannot move '" + tmp.string() + "' to '" + file.string() + "': " + ec.message());
  }
}

}  // namespace detail

// Writes `data` (C order) with the given shape.
template <class T>
void write_npy(const std::filesystem::path& file, const T* data, const std::vector<index_t>& shape) {
  std::ostringstream dict;
  dict << "{'descr': '" << detail::npy_descr<T>() << "', 'fortran_order': False, 'shape': (";
  const index_t count = mixlens::detail::checked_element_count("mixlens::io::write_npy", "shape", shape);
  for (index_t e : shape) dict << e << ", ";
  dict << "), }";
  std::string header = dict.str();
  // Magic (6) + version (2) + length (2) + dict + '\n', padded to 64 bytes.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string prefix("\x93NUMPY\x01\x00", 8);
  prefix.push_back(static_cast<char>(header.size() & 0xff));
  prefix.push_back(static_cast<char>(header.size() >> 8));
  detail::write_atomically(file, prefix + header, data, sizeof(T) * static_cast<std::size_t>(count));
}

template <class T, std::size_t Rank>
void write_npy(const std::filesystem::path& file, const tensor<T, Rank>& t) {
  std::vector<index_t> shape(Rank);
  for (std::size_t r = 0; r < Rank; ++r) shape[r] = t.extent(r);
  write_npy(file, t.data(), shape);
}

// A loaded array: its shape, its dtype string ("<f4", "<i8", …) and raw bytes.
struct npy_array {
  std::filesystem::path file;
  std::vector<index_t> shape;
  std::string descr;
  std::vector<char> bytes;

  [[nodiscard]] index_t size() const {
    return mixlens::detail::checked_element_count("mixlens::io::npy_array", "shape", shape);
  }

  // The elements converted to T; float, double and integer files are accepted.
  // An integer T refuses values it cannot hold exactly (NaN, fractions, out of
  // range): the cast would be undefined or silently wrong.
  template <class T>
  [[nodiscard]] std::vector<T> as() const {
    std::vector<T> out(static_cast<std::size_t>(size()));
    auto convert = [&]<class S>(S) {
      if (bytes.size() / sizeof(S) < out.size())
        throw error("npy file '" + file.string() + "': " + std::to_string(bytes.size()) + " data bytes for " +
                    std::to_string(out.size()) + " elements of " + descr);
      for (std::size_t i = 0; i < out.size(); ++i) {
        S s;
        std::memcpy(&s, bytes.data() + i * sizeof(S), sizeof(S));
        if constexpr (std::is_integral_v<T>) {
          if (!detail::converts_exactly<T>(s)) {
            std::ostringstream os;
            os << "npy file '" << file.string() << "': element " << i << " (" << +s << ") is not a " << sizeof(T) * 8
               << "-bit integer";
            throw error(os.str());
          }
        }
        out[i] = static_cast<T>(s);
      }
    };
    if (descr == "<f4") convert(float{});
    else if (descr == "<f8") convert(double{});
    else if (descr == "<i4") convert(std::int32_t{});
    else if (descr == "<i8") convert(std::int64_t{});
    else if (descr == "|u1") convert(std::uint8_t{});
    else throw error("npy file '" + file.string() + "': unsupported dtype '" + descr + "' (expected <f4, <f8, <i4, <i8 or |u1)");
    return out;
  }
};

namespace detail {

// Real headers are a few hundred bytes; NumPy itself refuses more than 10 000
// by default. The cap keeps a v2 header from claiming 4 GiB of text.
inline constexpr std::uint32_t npy_max_header = 1 << 20;

// The value of `'key': ` in the header dict, up to the next top-level comma.
inline std::string npy_field(const std::filesystem::path& file, const std::string& dict, const std::string& key) {
  const std::size_t at = dict.find("'" + key + "'");
  if (at == std::string::npos) npy_fail(file, 10, "header lacks '" + key + "'");
  std::size_t begin = dict.find(':', at);
  if (begin == std::string::npos) npy_fail(file, 10 + at, "malformed header entry '" + key + "'");
  ++begin;
  while (begin < dict.size() && dict[begin] == ' ') ++begin;
  std::size_t end = begin;
  if (end < dict.size() && dict[end] == '(') end = dict.find(')', end) + 1;
  else
    while (end < dict.size() && dict[end] != ',' && dict[end] != '}') ++end;
  if (end == 0 || end > dict.size()) npy_fail(file, 10 + begin, "malformed header entry '" + key + "'");
  return dict.substr(begin, end - begin);
}

// "(3, 4)", "(5,)" or "()": non-negative integers only.
inline std::vector<index_t> npy_shape(const std::filesystem::path& file, const std::string& text, std::uint64_t at) {
  auto bad = [&](const std::string& why) -> std::vector<index_t> { npy_fail(file, at, "malformed shape " + text + why); };
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') return bad("");
  std::vector<index_t> shape;
  std::size_t i = 1;
  const std::size_t stop = text.size() - 1;
  auto spaces = [&] { while (i < stop && text[i] == ' ') ++i; };
  for (spaces(); i < stop;) {
    index_t e = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + i, text.data() + stop, e);
    if (ec != std::errc() || e < 0) return bad(" (extents must be non-negative 64-bit integers)");
    shape.push_back(e);
    i = static_cast<std::size_t>(ptr - text.data());
    spaces();
    if (i < stop && text[i] != ',') return bad("");
    if (i < stop) ++i;
    spaces();
  }
  if (!mixlens::detail::element_count(shape)) npy_fail(file, at, "shape " + text + " holds more than 2^63 elements");
  return shape;
}

}  // namespace detail

namespace detail {

// The .npy format read through `read(dst, n)` (false when fewer than n bytes
// remain) from a source of `total` bytes, named `file` in messages: a file, or
// a member of an .npz archive. Every size in the header is checked against
// `total` before anything is allocated.
template <class Read>
npy_array parse_npy(const std::filesystem::path& file, std::uint64_t total, Read&& read) {
  char magic[8];
  if (total < 8 || !read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    detail::npy_fail(file, 0, "not a .npy file (bad magic string)");
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) detail::npy_fail(file, 6, "unsupported format version " + std::to_string(major));
  std::uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  const int len_size = major == 1 ? 2 : 4;
  if (total < 8u + len_size || !read(reinterpret_cast<char*>(len_bytes), len_size))
    detail::npy_fail(file, 8, "truncated header length");
  for (int i = len_size - 1; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  const std::uint64_t header_at = 8 + len_size;
  if (header_len > detail::npy_max_header || header_len > total - header_at)
    detail::npy_fail(file, 8, "header length " + std::to_string(header_len) + " exceeds " +
                                  (header_len > detail::npy_max_header ? "the limit of 1 MiB" : "the file"));
  std::string dict(header_len, '\0');
  if (!read(dict.data(), header_len)) detail::npy_fail(file, header_at, "truncated header");
  npy_array a;
  a.file = file;
  std::string descr = detail::npy_field(file, dict, "descr");
  if (descr.size() < 3) detail::npy_fail(file, header_at, "malformed descr " + descr);
  a.descr = descr.substr(1, descr.size() - 2);
  if (a.descr == "<f2" || a.descr[0] == '>')
    detail::npy_fail(file, header_at, "unsupported dtype '" + a.descr + "' (expected little-endian f4, f8, i4, i8 or u1)");
  if (detail::npy_field(file, dict, "fortran_order") != "False")
    detail::npy_fail(file, header_at, "Fortran-order arrays are not supported; save with np.ascontiguousarray");
  a.shape = detail::npy_shape(file, detail::npy_field(file, dict, "shape"), header_at);
  std::size_t element = 0;
  if (a.descr == "<f4" || a.descr == "<i4") element = 4;
  else if (a.descr == "<f8" || a.descr == "<i8") element = 8;
  else if (a.descr == "|u1") element = 1;
  else detail::npy_fail(file, header_at, "unsupported dtype '" + a.descr + "'");
  const std::uint64_t data_offset = header_at + header_len;
  const auto count = static_cast<std::uint64_t>(a.size());
  const std::uint64_t held = total - data_offset;
  if (count > held / element)
    detail::npy_fail(file, data_offset, "truncated data: shape and dtype need " + std::to_string(count) + " x " +
                                            std::to_string(element) + " bytes, the file holds " + std::to_string(held));
  try {
    a.bytes.resize(static_cast<std::size_t>(count * element));
  } catch (const std::bad_alloc&) {
    detail::npy_fail(file, data_offset, "out of memory for " + std::to_string(count * element) + " data bytes");
  }
  if (!read(a.bytes.data(), a.bytes.size()))
    detail::npy_fail(file, data_offset, "truncated data: expected " + std::to_string(a.bytes.size()) + " bytes");
  return a;
}

}  // namespace detail

// Reads a .npy file; malformed files raise mixlens::error naming the file and
// byte offset. Every size in the header is checked against the file before
// anything is allocated.
inline npy_array read_npy(const std::filesystem::path& file) {
  const std::uint64_t file_size = mixlens::detail::regular_file_size(file, "npy file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw error("cannot open npy file '" + file.string() + "'");
  return detail::parse_npy(file, file_size, [&](char* dst, std::size_t n) {
    return static_cast<bool>(in.read(dst, static_cast<std::streamsize>(n)));
  });
}

}  // namespace mixlens::io
