// A whole checkpoint: config.json, a NUL byte, model.safetensors. Loads the
// model and runs a forward pass over three tokens.
#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/models/mamba_model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
  if (!nul) return 0;
  const std::string_view config_text(reinterpret_cast<const char*>(data), static_cast<std::size_t>(nul - data));
  const auto file = mixlens::fuzz::write_scratch(nul + 1, size - static_cast<std::size_t>(nul + 1 - data), ".safetensors");
  return mixlens::fuzz::expect_only_mixlens_errors([&] {
    const auto config = mixlens::models::parse_mamba_config(config_text, "config.json");
    const mixlens::io::safetensors_checkpoint f(file);
    const auto model = mixlens::models::load_mamba<float>(config, f);
    std::vector<mixlens::index_t> tokens = {0, 1, 2};
    for (auto& t : tokens) t %= model.vocab_size();
    (void)mixlens::models::mamba_forward(model, tokens);
  });
}
