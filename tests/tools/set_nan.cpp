// Writes a copy of a checkpoint or an array with one entry set to NaN, for the
// tests of the non-finite checks (CMake scripts cannot write NUL bytes).
//
//   mixlens-test-set-nan IN.safetensors OUT.safetensors TENSOR INDEX
//       a byte-exact copy with element INDEX (flat, C order) of the F32 tensor
//       TENSOR set to NaN, at the offset the file's header gives
//   mixlens-test-set-nan IN.npy OUT.npy INDEX
//       the float32 / float64 array with element INDEX set to NaN
//   mixlens-test-set-nan --add IN.safetensors OUT.safetensors TENSOR
//       a copy with one more tensor TENSOR (empty, F32) that no model reads
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "mixlens/io/npy.hpp"
#include "mixlens/io/safetensors.hpp"

namespace fs = std::filesystem;

namespace {

std::int64_t parse_index(const std::string& text) {
  std::size_t used = 0;
  const long long v = std::stoll(text, &used);
  if (used != text.size() || v < 0) throw mixlens::error("INDEX: expected a non-negative integer, got '" + text + "'");
  return v;
}

void check_range(const std::string& what, std::int64_t index, std::int64_t size) {
  if (index >= size)
    throw mixlens::error(what + ": INDEX " + std::to_string(index) + " is outside [0, " + std::to_string(size) + ")");
}

void patch_safetensors(const fs::path& in, const fs::path& out, const std::string& name, std::int64_t index) {
  std::uint64_t at = 0;
  {
    const mixlens::io::safetensors_file f(in);
    const auto& t = f.at(name);
    if (t.dtype != "F32")
      throw mixlens::error("tensor '" + name + "' in '" + in.string() + "': dtype " + t.dtype + " (expected F32)");
    check_range("tensor '" + name + "'", index, t.size());
    at = t.begin + static_cast<std::uint64_t>(index) * sizeof(float);
  }
  std::ifstream src(in, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + at, &nan, sizeof nan);  // little-endian host, as the format
  std::ofstream dst(out, std::ios::binary);
  if (!dst.write(bytes.data(), static_cast<std::streamsize>(bytes.size())))
    throw mixlens::error("cannot write '" + out.string() + "'");
}

// The header gains an entry in front; data offsets are relative to the data, so
// the data bytes stay as they are.
void add_tensor(const fs::path& in, const fs::path& out, const std::string& name) {
  std::ifstream src(in, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes.at(static_cast<std::size_t>(i)));
  const std::string header = "{\"" + name + "\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}, " +
                             bytes.substr(9, n - 1);
  std::ofstream dst(out, std::ios::binary);
  for (int i = 0; i < 8; ++i) dst.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  if (!(dst << header << bytes.substr(8 + n))) throw mixlens::error("cannot write '" + out.string() + "'");
}

template <class T>
void patch_npy_as(const mixlens::io::npy_array& a, const fs::path& out, std::int64_t index) {
  std::vector<T> v = a.as<T>();
  v[static_cast<std::size_t>(index)] = std::numeric_limits<T>::quiet_NaN();
  mixlens::io::write_npy(out, v.data(), a.shape);
}

void patch_npy(const fs::path& in, const fs::path& out, std::int64_t index) {
  const auto a = mixlens::io::read_npy(in);
  check_range("array '" + in.string() + "'", index, a.size());
  if (a.descr == "<f4") patch_npy_as<float>(a, out, index);
  else if (a.descr == "<f8") patch_npy_as<double>(a, out, index);
  else throw mixlens::error("array '" + in.string() + "': dtype " + a.descr + " (expected <f4 or <f8)");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::string(argv[1]) == "--add") {
      add_tensor(argv[2], argv[3], argv[4]);
    } else if (argc == 5 && fs::path(argv[1]).extension() == ".safetensors") {
      patch_safetensors(argv[1], argv[2], argv[3], parse_index(argv[4]));
    } else if (argc == 4 && fs::path(argv[1]).extension() == ".npy") {
      patch_npy(argv[1], argv[2], parse_index(argv[3]));
    } else {
      std::cerr << "usage: mixlens-test-set-nan IN.safetensors OUT.safetensors TENSOR INDEX\n"
                   "       mixlens-test-set-nan IN.npy OUT.npy INDEX\n"
                   "       mixlens-test-set-nan --add IN.safetensors OUT.safetensors TENSOR\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cerr << "mixlens-test-set-nan: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
