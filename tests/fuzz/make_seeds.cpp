// Writes the seed corpus of each harness from the test fixtures:
//   mixlens-fuzz-seeds DATA_DIR OUT_DIR
// OUT_DIR/{npy,npz,json,safetensors,config,checkpoint}/ (the checkpoint seeds are
// config.json, a NUL byte and model.safetensors; CMake cannot write NUL bytes).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// A one-layer Mamba of a few hundred bytes (d_model 2, d_inner 4, N 2, V 5):
// the checkpoint harness runs far faster from it than from the fixtures.
std::string tiny_checkpoint() {
  const std::string config =
      R"({"model_type": "mamba", "hidden_size": 2, "num_hidden_layers": 1, "vocab_size": 5, "state_size": 2,)"
      R"( "conv_kernel": 2, "intermediate_size": 4, "time_step_rank": 1, "use_bias": false,)"
      R"( "use_conv_bias": true, "tie_word_embeddings": true})";
  const std::pair<std::string, std::vector<int>> tensors[] = {
      {"backbone.embeddings.weight", {5, 2}},   {"backbone.layers.0.norm.weight", {2}},
      {"backbone.layers.0.mixer.in_proj.weight", {8, 2}}, {"backbone.layers.0.mixer.conv1d.weight", {4, 1, 2}},
      {"backbone.layers.0.mixer.conv1d.bias", {4}},      {"backbone.layers.0.mixer.x_proj.weight", {5, 4}},
      {"backbone.layers.0.mixer.dt_proj.weight", {4, 1}}, {"backbone.layers.0.mixer.dt_proj.bias", {4}},
      {"backbone.layers.0.mixer.A_log", {4, 2}},         {"backbone.layers.0.mixer.D", {4}},
      {"backbone.layers.0.mixer.out_proj.weight", {2, 4}}, {"backbone.norm_f.weight", {2}}};
  std::string header = "{", data;
  for (const auto& [name, shape] : tensors) {
    std::size_t n = 1;
    std::string dims;
    for (int e : shape) {
      n *= static_cast<std::size_t>(e);
      dims += (dims.empty() ? "" : ",") + std::to_string(e);
    }
    header += (header.size() > 1 ? "," : "") + ("\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims +
              "],\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + 4 * n) + "]}");
    for (std::size_t i = 0; i < n; ++i) {
      const float v = float(i % 7) * 0.1f - 0.3f;
      data.append(reinterpret_cast<const char*>(&v), 4);
    }
  }
  header += "}";
  std::string length(8, '\0');
  for (int i = 0; i < 8; ++i) length[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return config + '\0' + length + header + data;
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
  for (const auto& e : fs::directory_iterator(data / "reference_params"))
    if (e.path().extension() == ".npz") put(out / "npz", e.path().filename().string(), slurp(e.path()));
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
  const std::string tiny = tiny_checkpoint();
  put(out / "checkpoint", "tiny", tiny);
  const std::size_t nul = tiny.find('\0');
  put(out / "config", "tiny", tiny.substr(0, nul));
  put(out / "safetensors", "tiny", tiny.substr(nul + 1));
  return 0;
}
