// What the command-line tools share: usage errors, number and list parsing,
// the output folder that appears only when a run completes, and main's exit codes.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::tools {

namespace fs = std::filesystem;

// Bad command line: exit status 2 and the usage text.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Walks a command line: next() moves to each argument, option() names it,
// value() takes the value that follows it (a usage error when none does).
class argument_cursor {
 public:
  argument_cursor(int argc, char** argv) : argc_(argc), argv_(argv) {}
  [[nodiscard]] bool next() { return ++i_ < argc_; }
  [[nodiscard]] std::string_view option() const { return argv_[i_]; }
  [[nodiscard]] std::string value() {
    if (i_ + 1 >= argc_) throw usage_error(std::string(option()) + " needs a value");
    return argv_[++i_];
  }
  [[noreturn]] void unknown() const { throw usage_error("unknown argument '" + std::string(option()) + "'"); }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
};

// A whole number >= 0.
index_t parse_count(const std::string& text, const char* what) {
  index_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v < 0)
    throw usage_error(std::string(what) + ": expected a whole number >= 0, not '" + text + "'");
  return v;
}

// "3,17,5" → ids; every item must be a whole integer.
std::vector<index_t> parse_list(const std::string& text, const char* what) {
  std::vector<index_t> out;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(',', begin);
    const std::string item = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    index_t v = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw mixlens::error(std::string(what) + ": '" + item + "' is not an integer");
    out.push_back(v);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return out;
}

// The manifest <tool>.manifest of an output folder: "<tool> output", then every
// other name in it, one a line; it marks the folder as a former output that a
// later run may replace (output_folder), a batch's per-sequence folders too.
inline void write_manifest(const fs::path& folder, const std::string& tool) {
  const std::string manifest = tool + ".manifest";
  std::ofstream m(folder / manifest);
  m << tool << " output\n";
  for (const auto& e : fs::directory_iterator(folder))
    if (e.path().filename() != manifest) m << e.path().filename().string() << "\n";
  if (!m.flush()) throw mixlens::error("cannot write the manifest in '" + folder.string() + "'");
}

// The output folder. The run writes into a fresh folder beside --out (so on
// the same file system) and renames it into place when every file is written:
// a failed run leaves nothing, and a rerun leaves no file of an earlier one.
// An existing --out is replaced only when it is empty or a former output (its
// manifest lists every file in it); anything else is refused before any work
// is done, so that no file of the user's is ever removed.
class output_folder {
 public:
  // tool: the program's name, which names the manifest (<tool>.manifest) and the messages.
  output_folder(fs::path out, std::string tool)
      : out_(std::move(out)), tool_(std::move(tool)), manifest(tool_ + ".manifest"), manifest_magic(tool_ + " output") {
    if (!out_.has_filename()) out_ = out_.parent_path();  // "dir/" names dir
    check_replaceable();
    const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
    std::error_code ec;
    fs::create_directories(parent, ec);
    std::string pattern = (parent / ("." + out_.filename().string() + ".partial-XXXXXX")).string();
    if (ec || !::mkdtemp(pattern.data()))
      throw mixlens::error("output folder '" + out_.string() + "' cannot be created: " +
                           (ec ? ec.message() : std::string(std::strerror(errno))));
    staging_ = pattern;
    // mkdtemp makes the folder private (0700); outputs get the usual umask.
    const ::mode_t mask = ::umask(0);
    ::umask(mask);
    fs::permissions(staging_, fs::perms::all & ~static_cast<fs::perms>(mask), ec);
  }
  output_folder(const output_folder&) = delete;
  output_folder& operator=(const output_folder&) = delete;
  ~output_folder() {
    std::error_code ec;
    if (!staging_.empty()) fs::remove_all(staging_, ec);
  }

  // Where the run writes its files until commit().
  [[nodiscard]] const fs::path& staging() const { return staging_; }

  // Writes the manifest and moves the files into place as --out.
  void commit() {
    write_manifest(staging_, tool_);
    check_replaceable();  // again: the folder may have changed during the run
    std::error_code ec;
    fs::path old;
    if (fs::exists(out_) && !fs::is_empty(out_)) {
      old = staging_.string() + ".old";
      fs::rename(out_, old, ec);
      if (ec) throw mixlens::error("cannot replace output folder '" + out_.string() + "': " + ec.message());
    }
    fs::rename(staging_, out_, ec);  // replaces an empty folder
    if (ec) {
      if (!old.empty()) fs::rename(old, out_);
      throw mixlens::error("cannot move the outputs to '" + out_.string() + "': " + ec.message());
    }
    staging_.clear();
    if (!old.empty()) fs::remove_all(old, ec);
  }

 private:
  void check_replaceable() const {
    std::error_code ec;
    const auto st = fs::symlink_status(out_, ec);
    if (st.type() == fs::file_type::not_found) return;
    if (st.type() != fs::file_type::directory)
      throw mixlens::error("output folder '" + out_.string() + "' exists and is not a folder");
    if (fs::is_empty(out_)) return;
    std::ifstream in(out_ / manifest);
    std::string line;
    if (!std::getline(in, line) || line != manifest_magic)
      throw mixlens::error("output folder '" + out_.string() + "' is not empty and holds no " + std::string(manifest) +
                           ": it is not a former " + tool_ + " output, and nothing in it is replaced; choose another --out");
    std::vector<std::string> listed;
    while (std::getline(in, line)) listed.push_back(line);
    for (const auto& e : fs::directory_iterator(out_)) {
      const std::string name = e.path().filename().string();
      if (name != manifest && std::find(listed.begin(), listed.end(), name) == listed.end())
        throw mixlens::error("output folder '" + out_.string() + "' holds '" + name +
                             "', which no " + tool_ + " run wrote; nothing in it is replaced; choose another --out");
    }
  }

  fs::path out_;
  std::string tool_, manifest, manifest_magic;
  fs::path staging_;
};

// --device cuda: in a tool's CUDA build (MIXLENS_TOOL_CUDA) nothing to do; in
// its host build, the CUDA build named MIXLENS_TOOL_CUDA_BUILD beside this
// executable runs the same command line in this process's place, and without
// one the run is refused. tools/CMakeLists.txt (mixlens_add_tool) defines both.
inline void route_device(const std::string& device, char** argv, std::string_view tool) {
#if !defined(MIXLENS_TOOL_CUDA)
  if (device != "cuda") return;
#if defined(MIXLENS_TOOL_CUDA_BUILD)
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  const fs::path cuda_tool = (ec ? fs::path(argv[0]).parent_path() : self.parent_path()) / MIXLENS_TOOL_CUDA_BUILD;
  ::execv(cuda_tool.c_str(), argv);
  throw mixlens::error("--device cuda: cannot run the CUDA build of " + std::string(tool) + ", '" + cuda_tool.string() +
                       "': " + std::strerror(errno) + " (build the target " MIXLENS_TOOL_CUDA_BUILD ")");
#else
  (void)argv;
  throw mixlens::error("--device cuda: this " + std::string(tool) + " was built without CUDA (no CUDA path); use --device cpu");
#endif
#else
  (void)device, (void)argv, (void)tool;
#endif
}

// A tool's main: --help prints the usage (0); `parse(argc, argv)` throwing
// usage_error prints it with the message (2); `run(options)` failing prints the
// error (1, with `oom_hint` for an allocation failure).
template <class Parse, class Run>
int tool_main(int argc, char** argv, std::string_view tool, std::string_view usage, std::string_view oom_hint,
              Parse&& parse, Run&& run) {
  decltype(parse(argc, argv)) o;
  try {
    if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
      std::cout << usage;
      return 0;
    }
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << tool << ": " << e.what() << "\n" << usage;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::bad_alloc&) {
    std::cerr << tool << ": error: out of memory; " << oom_hint << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << tool << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace mixlens::tools
