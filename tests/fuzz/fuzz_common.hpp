// Shared by the libFuzzer harnesses: a scratch file for the readers that take a
// path, and the contract every harness checks.
//
// The contract: malformed input raises mixlens::error. Any other exception
// escapes LLVMFuzzerTestOneInput, std::terminate aborts, and libFuzzer reports
// the input as a crash, as it does for sanitizer findings.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "mixlens/error.hpp"

namespace mixlens::fuzz {

// A file of this process that holds the input (readers that map or stat need a
// real file); in memory where /dev/shm exists, as disk writeback slows every run.
inline std::filesystem::path write_scratch(const std::uint8_t* data, std::size_t size, const char* ext) {
  namespace fs = std::filesystem;
  static const fs::path path = (fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
                               ("mixlens-fuzz-" + std::to_string(::getpid()) + ext);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                 static_cast<std::streamsize>(size));
  return path;
}

// Runs f, accepting mixlens::error only.
template <class F>
int expect_only_mixlens_errors(F&& f) {
  try {
    f();
  } catch (const mixlens::error&) {
  }
  return 0;
}

}  // namespace mixlens::fuzz
