// config.json of Mamba checkpoints, in both layouts.
#include <string_view>

#include "fuzz_common.hpp"
#include "mixlens/models/mamba_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mixlens::fuzz::expect_only_mixlens_errors([&] {
    (void)mixlens::models::parse_mamba_config(std::string_view(reinterpret_cast<const char*>(data), size));
  });
}
