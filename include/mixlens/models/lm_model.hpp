// What every language-model family shares, written once: the embedding, the
// layer list, the final RMSNorm and the (possibly tied) head, loaded from a
// checkpoint and viewed for the forward pass; the model folder check; the host
// forward pass. A family supplies its config (derived from lm_config), its
// layer (with parameter_count() and signals_type), its layer loader and its
// layer views.
// Needs nlohmann-json (through mamba_config.hpp).
#pragma once

#include <algorithm>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/models/detail/load.hpp"
#include "mixlens/models/mamba_config.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::models {

// A loaded language model: the shared tensors plus the family's layers.
template <class T, class Config, class Layer>
struct lm_model {
  static_assert(std::is_floating_point_v<T>, "language model: T must be float or double");
  using value_type = T;
  using config_type = Config;
  using layer_type = Layer;
  using signals_type = typename Layer::signals_type;  // what the forward pass's observer receives

  Config config;
  matrix<T> embedding;  // (V × H)
  std::vector<Layer> layers;
  std::vector<T> norm_f;  // (H)
  matrix<T> lm_head;      // (V × H); empty when tied to the embedding
  // Tensors of the checkpoint the model does not use (tools report them, and
  // refuse them when asked to be strict).
  std::vector<std::string> unused_tensors;

  [[nodiscard]] index_t vocab_size() const { return embedding.extent(0); }
  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers.size()); }
  [[nodiscard]] const matrix<T>& output_embedding() const { return lm_head.size() ? lm_head : embedding; }
  [[nodiscard]] index_t parameter_count() const {
    index_t n = embedding.size() + lm_head.size() + static_cast<index_t>(norm_f.size());
    for (const auto& l : layers) n += l.parameter_count();
    return n;
  }
};

// The model's weights as views over host or device memory (the forward pass
// reads only these; gpu::to_device copies what they point to).
template <class T, class Config, class LayerWeights>
struct lm_weights {
  using value_type = T;
  Config config;
  matrix_view<const T> embedding;         // (V × H)
  matrix_view<const T> output_embedding;  // (V × H): lm_head, or the embedding when tied
  vector_view<const T> norm_f;            // (H)
  std::vector<LayerWeights> layers;

  [[nodiscard]] index_t vocab_size() const { return embedding.extent(0); }
  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers.size()); }

  template <class F>
  void for_each_view(F&& f) {
    f(embedding), f(output_embedding), f(norm_f);
    for (auto& l : layers) f(l);
  }
};

template <class T>
[[nodiscard]] vector_view<const T> vector_view_of(const std::vector<T>& v) {
  return vector_view<const T>(v.data(), static_cast<index_t>(v.size()));
}

// The shared views of `m`; the caller adds the layers.
template <class Weights, class Model>
[[nodiscard]] Weights shared_views(const Model& m) {
  Weights w;
  w.config = m.config;
  w.embedding = m.embedding.view();
  w.output_embedding = m.output_embedding().view();
  w.norm_f = vector_view_of(m.norm_f);
  return w;
}

// Checks token ids against the vocabulary; `source` names where they came from.
inline void check_tokens(index_t vocab_size, std::span<const index_t> tokens, std::string_view source = "tokens") {
  if (tokens.empty()) throw error(std::string(source) + ": no tokens (expected at least one)");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_size)
      throw error(std::string(source) + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
}

template <class T, class C, class L>
void check_tokens(const lm_model<T, C, L>& m, std::span<const index_t> tokens, std::string_view source = "tokens") {
  check_tokens(m.vocab_size(), tokens, source);
}

namespace detail {

// Loads the shared tensors named by `config` and each layer through
// `load_layer(reader, "backbone.layers.<i>.")`. Refuses a checkpoint with more
// layers than the config; other tensors it does not use are listed.
template <class Model, class LoadLayer>
[[nodiscard]] Model load_lm(const typename Model::config_type& config, const io::safetensors_checkpoint& file,
                            LoadLayer&& load_layer) {
  using T = typename Model::value_type;
  checkpoint_reader f{file, {}};
  const index_t H = config.hidden_size, V = config.vocab_size;
  Model m;
  m.config = config;
  m.embedding = load_matrix<T>(f, config.embedding_name(), {V, H});
  for (index_t i = 0; i < config.num_layers; ++i)
    m.layers.push_back(load_layer(f, "backbone.layers." + std::to_string(i) + "."));
  m.norm_f = load_vector<T>(f, "backbone.norm_f.weight", H);
  // Tied checkpoints usually omit lm_head.weight; when tied, the embedding is used
  // as transformers does, even if a copy is stored.
  if (!config.tie_embeddings) m.lm_head = load_matrix<T>(f, "lm_head.weight", {V, H});
  else f.read.insert("lm_head.weight");  // a stored copy of the tied head is expected, not unknown
  m.unused_tensors = unused_tensors(f, config.num_layers);
  return m;
}

// PyTorch's depthwise conv weight (channels × K, tap k multiplies x_{t−(K−1)+k})
// as taps by lag (tap k multiplies x_{t−k}), the order the forward pass uses.
template <class T>
[[nodiscard]] matrix<T> taps_by_lag(const matrix<T>& conv_weight) {
  const index_t C = conv_weight.extent(0), K = conv_weight.extent(1);
  matrix<T> taps(C, K);
  for (index_t c = 0; c < C; ++c)
    for (index_t k = 0; k < K; ++k) taps(c, k) = conv_weight(c, K - 1 - k);
  return taps;
}

// `dir`/config.json, after checking that the folder and the file exist; `what`
// names the model in the messages ("Mamba model").
[[nodiscard]] inline std::filesystem::path model_config_file(const std::filesystem::path& dir, std::string_view what) {
  if (!std::filesystem::is_directory(dir)) throw error(std::string(what) + " folder '" + dir.string() + "' does not exist");
  auto config_file = dir / "config.json";
  if (!std::filesystem::exists(config_file))
    throw error(std::string(what) + " folder '" + dir.string() + "' has no config.json");
  return config_file;
}

}  // namespace detail

// Runs the language model on the host and returns the logits (L × V).
// `observe(signals)` is called after each layer with the family's layer
// signals (mamba_layer_signals, mamba2_layer_signals).
template <class T, class C, class L, class Observer>
[[nodiscard]] matrix<T> mamba_forward(const lm_model<T, C, L>& m, std::span<const index_t> tokens, Observer&& observe) {
  const auto weights = host_weights(m);
  const host_backend<T> be;
  const auto logits = mamba_forward(be, weights.view(), tokens, observe);
  matrix<T> out(static_cast<index_t>(tokens.size()), m.vocab_size());
  std::copy(logits.begin(), logits.end(), out.data());
  return out;
}

template <class T, class C, class L>
[[nodiscard]] matrix<T> mamba_forward(const lm_model<T, C, L>& m, std::span<const index_t> tokens) {
  return mamba_forward(m, tokens, [](const auto&) {});
}

}  // namespace mixlens::models
