// Input files are checked before they are opened: a FIFO blocks open() until a
// writer appears, a device reads forever, and a directory opens as an empty
// stream that parsers report as a malformed file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "mixlens/error.hpp"

namespace mixlens::detail {

// The size of `file` when it is a regular file (or a link to one); otherwise a
// mixlens::error "<what> '<file>' does not exist / is not a regular file".
[[nodiscard]] inline std::uint64_t regular_file_size(const std::filesystem::path& file, std::string_view what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);
  const std::string name = std::string(what) + " '" + file.string() + "'";
  if (st.type() == fs::file_type::not_found) throw error("cannot open " + name + ": no such file");
  if (ec) throw error("cannot open " + name + ": " + ec.message());
  if (st.type() != fs::file_type::regular) {
    const char* kind = st.type() == fs::file_type::directory ? "a directory"
                       : st.type() == fs::file_type::fifo    ? "a FIFO"
                                                             : "a special file";
    throw error(name + " is not a regular file (it is " + kind + ")");
  }
  const std::uintmax_t size = fs::file_size(file, ec);
  if (ec) throw error("cannot open " + name + ": " + ec.message());
  return size;
}

}  // namespace mixlens::detail
