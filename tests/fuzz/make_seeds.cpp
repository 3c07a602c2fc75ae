// Writes the seed corpus of each harness from the test fixtures:
//   mixlens-fuzz-seeds DATA_DIR OUT_DIR
// OUT_DIR/{npy,json,safetensors,config,checkpoint}/ (the checkpoint seeds are
// config.json, a NUL byte and model.safetensors; CMake cannot write NUL bytes).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: mixlens-fuzz-seeds DATA_DIR OUT_DIR\n";
    return 2;
  }
  const fs::path data = argv[1], out = argv[2];
  for (const auto& e : fs::directory_iterator(data / "npy"))
    if (e.path().extension() == ".npy") put(out / "npy", e.path().filename().string(), slurp(e.path()));
  const fs::path ref = data / "reference" / "mamba_tied_fp32";
  for (const char* f : {"tokens_0.npy", "tokens_2.npy", "logits_0.npy"}) put(out / "npy", f, slurp(ref / f));
  put(out / "json", "manifest.json", slurp(data / "reference" / "manifest.json"));
  // The small checkpoints (mamba_demo is too large for quick mutations).
  for (const char* model : {"mamba_tied_fp32", "mamba_bias_bf16", "mamba_ss_f16", "mamba_demo"}) {
    const std::string config = slurp(data / model / "config.json");
    const std::string weights = slurp(data / model / "model.safetensors");
    put(out / "config", model, config);
    put(out / "json", std::string(model) + "_config", config);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(weights.at(static_cast<std::size_t>(i)));
    put(out / "json", std::string(model) + "_header", weights.substr(8, n));
    if (std::string(model) == "mamba_demo") continue;
    put(out / "safetensors", model, weights);
    put(out / "checkpoint", model, config + '\0' + weights);
  }
  return 0;
}
