// NumPy .npz archives (numpy.savez: stored members; numpy.savez_compressed:
// deflate) read through libzip into the tensor_map that read_npy_folder gives:
// member "layers_0/seq/B.npy" is tensor "layers_0/seq/B". Needs the target
// mixlens::npz (libzip, found through pkg-config; Debian: libzip-dev).
#pragma once

#include <zip.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/tensor_map.hpp"

namespace mixlens::io {

struct npz_options {
  // The most uncompressed bytes one member may declare: a larger one (or a
  // corrupt size) is refused before anything is allocated.
  std::uint64_t max_member_bytes = std::uint64_t(1) << 34;
};

// Every member of the archive `file` as a float64 tensor named by the member's
// path without ".npy", in the archive's order. Errors name the archive and the
// member: an archive libzip cannot open, a member that is not a .npy file (by
// name or by content), one larger than max_member_bytes, a member whose data
// does not inflate or fails its CRC.
[[nodiscard]] inline tensor_map read_npz(const std::filesystem::path& file, const npz_options& options = {}) {
  const std::string where = "npz archive '" + file.string() + "'";
  int code = 0;
  zip_t* raw = zip_open(file.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!raw) {
    zip_error_t e;
    zip_error_init_with_code(&e, code);
    const std::string why = zip_error_strerror(&e);
    zip_error_fini(&e);
    throw error("cannot open " + where + ": " + why);
  }
  const std::unique_ptr<zip_t, void (*)(zip_t*)> archive(raw, [](zip_t* z) { zip_discard(z); });
  tensor_map out(file);
  const zip_int64_t count = zip_get_num_entries(raw, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(raw, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
        !(st.valid & ZIP_STAT_SIZE))
      throw error(where + ": cannot read entry " + std::to_string(i) + ": " + zip_strerror(raw));
    const std::string member = st.name;
    if (!member.empty() && member.back() == '/') continue;  // a folder entry
    const std::string at = where + ", member '" + member + "'";
    if (member.size() < 5 || member.compare(member.size() - 4, 4, ".npy") != 0)
      throw error(at + ": not a .npy member (numpy.savez stores every array as NAME.npy)");
    if (st.size > options.max_member_bytes)
      throw error(at + ": declares " + std::to_string(st.size) + " bytes, more than the limit of " +
                  std::to_string(options.max_member_bytes) + " (npz_options::max_member_bytes)");
    std::vector<char> bytes;
    try {
      bytes.resize(static_cast<std::size_t>(st.size));
    } catch (const std::bad_alloc&) {
      throw error(at + ": out of memory for " + std::to_string(st.size) + " bytes");
    }
    zip_file_t* f = zip_fopen_index(raw, static_cast<zip_uint64_t>(i), 0);
    if (!f) throw error(at + ": cannot open: " + zip_strerror(raw));
    zip_uint64_t got = 0;
    std::string failure;
    while (got < st.size) {
      const zip_int64_t n = zip_fread(f, bytes.data() + got, st.size - got);
      if (n < 0) {
        failure = zip_file_strerror(f);
        break;
      }
      if (n == 0) break;
      got += static_cast<zip_uint64_t>(n);
    }
    char extra;  // past the declared size: the data must end there (and the CRC be checked)
    if (failure.empty() && got == st.size && zip_fread(f, &extra, 1) < 0) failure = zip_file_strerror(f);
    zip_fclose(f);
    if (!failure.empty()) throw error(at + ": corrupt data: " + failure);
    if (got != st.size)
      throw error(at + ": truncated data: " + std::to_string(got) + " of " + std::to_string(st.size) + " bytes");
    std::size_t pos = 0;
    const npy_array a = detail::parse_npy(file.string() + ":" + member, st.size, [&](char* dst, std::size_t n) {
      if (n > bytes.size() - pos) return false;
      std::copy_n(bytes.data() + pos, n, dst);
      pos += n;
      return true;
    });
    out.insert(member.substr(0, member.size() - 4), a.shape, a.as<double>());
  }
  return out;
}

}  // namespace mixlens::io
