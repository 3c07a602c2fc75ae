// safetensors: the header checks, then every tensor read as float.
#include <vector>

#include "fuzz_common.hpp"
#include "mixlens/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = mixlens::fuzz::write_scratch(data, size, ".safetensors");
  return mixlens::fuzz::expect_only_mixlens_errors([&] {
    const mixlens::io::safetensors_file f(file);
    std::vector<float> out;
    for (const auto& t : f.tensors()) {
      out.resize(static_cast<std::size_t>(t.size()));
      f.read(t, out.data());
    }
  });
}
