// NumPy .npy files (format versions 1–3, little-endian, C order): reading for
// inputs and token ids, writing for mixing matrices and logits.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/config.hpp"
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
  index_t count = 1;
  for (index_t e : shape) {
    if (e < 0) mixlens::detail::fail("mixlens::io::write_npy", "shape", "non-negative extents", e);
    dict << e << ", ";
    count *= e;
  }
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
    return std::accumulate(shape.begin(), shape.end(), index_t(1), std::multiplies<>());
  }

  // The elements converted to T; float, double and integer files are accepted.
  template <class T>
  [[nodiscard]] std::vector<T> as() const {
    std::vector<T> out(static_cast<std::size_t>(size()));
    auto convert = [&]<class S>(S) {
      for (std::size_t i = 0; i < out.size(); ++i) {
        S s;
        std::memcpy(&s, bytes.data() + i * sizeof(S), sizeof(S));
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
}  // namespace detail

// Reads a .npy file; malformed files raise mixlens::error naming the file and byte offset.
inline npy_array read_npy(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw error("cannot open npy file '" + file.string() + "'");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    detail::npy_fail(file, 0, "not a .npy file (bad magic string)");
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3) detail::npy_fail(file, 6, "unsupported format version " + std::to_string(major));
  std::uint32_t header_len = 0;
  unsigned char len_bytes[4] = {0, 0, 0, 0};
  const int len_size = major == 1 ? 2 : 4;
  if (!in.read(reinterpret_cast<char*>(len_bytes), len_size)) detail::npy_fail(file, 8, "truncated header length");
  for (int i = len_size - 1; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  std::string dict(header_len, '\0');
  if (!in.read(dict.data(), header_len)) detail::npy_fail(file, 8 + len_size, "truncated header");

  npy_array a;
  a.file = file;
  std::string descr = detail::npy_field(file, dict, "descr");
  if (descr.size() < 2) detail::npy_fail(file, 8 + len_size, "malformed descr " + descr);
  a.descr = descr.substr(1, descr.size() - 2);
  if (a.descr == "<f2" || a.descr[0] == '>')
    detail::npy_fail(file, 8 + len_size, "unsupported dtype '" + a.descr + "' (expected little-endian f4, f8, i4, i8 or u1)");
  if (detail::npy_field(file, dict, "fortran_order") != "False")
    detail::npy_fail(file, 8 + len_size, "Fortran-order arrays are not supported; save with np.ascontiguousarray");
  std::string shape = detail::npy_field(file, dict, "shape");
  std::stringstream dims(shape.substr(1, shape.size() - 2));
  for (std::string item; std::getline(dims, item, ',');) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    try {
      a.shape.push_back(std::stoll(item));
    } catch (const std::exception&) {
      detail::npy_fail(file, 8 + len_size, "malformed shape " + shape);
    }
  }
  std::size_t element = 0;
  if (a.descr == "<f4" || a.descr == "<i4") element = 4;
  else if (a.descr == "<f8" || a.descr == "<i8") element = 8;
  else if (a.descr == "|u1") element = 1;
  else detail::npy_fail(file, 8 + len_size, "unsupported dtype '" + a.descr + "'");
  const std::uint64_t data_offset = 8 + len_size + header_len;
  a.bytes.resize(element * static_cast<std::size_t>(a.size()));
  if (!in.read(a.bytes.data(), static_cast<std::streamsize>(a.bytes.size())))
    detail::npy_fail(file, data_offset, "truncated data: expected " + std::to_string(a.bytes.size()) + " bytes");
  return a;
}

}  // namespace mixlens::io
