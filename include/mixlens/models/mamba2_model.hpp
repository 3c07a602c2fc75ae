// A Mamba-2 language model (Mamba2ForCausalLM, or state-spaces' Mamba2 LM):
// weights loaded from config.json and safetensors (one file or shards) in the
// compute type T, their views for the forward pass (models/mamba2_forward.hpp),
// and the forward pass on the host.
// Needs nlohmann-json (through mamba2_config.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/io/checkpoint.hpp"
#include "mixlens/models/detail/load.hpp"
#include "mixlens/models/mamba2_config.hpp"
#include "mixlens/models/mamba2_forward.hpp"

namespace mixlens::models {

template <class T>
struct mamba2_layer {
  std::vector<T> norm;           // (H) RMSNorm weight before the mixer
  matrix<T> in_proj;             // (in_proj_rows × H): [z0, x0, z, x, B, C, dt]
  std::vector<T> in_proj_bias;   // or empty
  matrix<T> conv_weight;         // (conv channels × K): tap k multiplies x_{t−(K−1)+k}
  std::vector<T> conv_bias;      // (conv channels) or empty
  std::vector<T> dt_bias, a_log, skip;  // (heads)
  std::vector<T> norm_weight;    // (H·P) gated RMSNorm
  matrix<T> out_proj;            // (H × d_mlp + H·P)
  std::vector<T> out_proj_bias;  // (H) or empty
};

template <class T>
struct mamba2_model {
  static_assert(std::is_floating_point_v<T>, "mamba2_model: T must be float or double");
  using value_type = T;

  mamba2_config config;
  matrix<T> embedding;  // (V × H)
  std::vector<mamba2_layer<T>> layers;
  std::vector<T> norm_f;  // (H)
  matrix<T> lm_head;      // (V × H); empty when tied to the embedding
  std::vector<std::string> unused_tensors;  // of the checkpoint (as for mamba_model)

  [[nodiscard]] index_t vocab_size() const { return embedding.extent(0); }
  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers.size()); }
  [[nodiscard]] const matrix<T>& output_embedding() const { return lm_head.size() ? lm_head : embedding; }
  [[nodiscard]] index_t parameter_count() const {
    index_t n = embedding.size() + lm_head.size() + static_cast<index_t>(norm_f.size());
    for (const auto& l : layers)
      n += static_cast<index_t>(l.norm.size() + l.in_proj_bias.size() + l.conv_bias.size() + l.dt_bias.size() +
                                l.a_log.size() + l.skip.size() + l.norm_weight.size() + l.out_proj_bias.size()) +
           l.in_proj.size() + l.conv_weight.size() + l.out_proj.size();
    return n;
  }
};

// Loads the weights named by `config` from a checkpoint. Refuses a checkpoint
// with more layers than the config; other tensors it does not use are listed in
// unused_tensors.
template <class T>
[[nodiscard]] mamba2_model<T> load_mamba2(const mamba2_config& config, const io::safetensors_checkpoint& file) {
  detail::checkpoint_reader f{file, {}};
  using detail::load_matrix;
  using detail::load_vector;
  const index_t H = config.hidden_size, S = config.ssm_channels(), X = config.conv_channels(), Hd = config.num_heads,
                K = config.conv_kernel, V = config.vocab_size, R = config.in_proj_rows(), I = config.intermediate_size();
  mamba2_model<T> m;
  m.config = config;
  m.embedding = load_matrix<T>(f, config.embedding_name(), {V, H});
  for (index_t i = 0; i < config.num_layers; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    mamba2_layer<T> l;
    l.norm = load_vector<T>(f, p + "norm.weight", H);
    l.in_proj = load_matrix<T>(f, p + "mixer.in_proj.weight", {R, H});
    l.in_proj_bias = detail::load_optional<T>(f, p + "mixer.in_proj.bias", R, config.use_bias, "use_bias");
    l.conv_weight = load_matrix<T>(f, p + "mixer.conv1d.weight", {X, 1, K});
    l.conv_bias = detail::load_optional<T>(f, p + "mixer.conv1d.bias", X, config.use_conv_bias, "use_conv_bias");
    l.dt_bias = load_vector<T>(f, p + "mixer.dt_bias", Hd);
    l.a_log = load_vector<T>(f, p + "mixer.A_log", Hd);
    l.skip = load_vector<T>(f, p + "mixer.D", Hd);
    l.norm_weight = load_vector<T>(f, p + "mixer.norm.weight", S);
    l.out_proj = load_matrix<T>(f, p + "mixer.out_proj.weight", {H, I});
    l.out_proj_bias = detail::load_optional<T>(f, p + "mixer.out_proj.bias", H, config.use_bias, "use_bias");
    m.layers.push_back(std::move(l));
  }
  m.norm_f = load_vector<T>(f, "backbone.norm_f.weight", H);
  if (!config.tie_embeddings) m.lm_head = load_matrix<T>(f, "lm_head.weight", {V, H});
  else f.read.insert("lm_head.weight");  // a stored copy of the tied head is expected, not unknown
  m.unused_tensors = detail::unused_tensors(f, config.num_layers);
  return m;
}

// Loads `dir`/config.json and the weights (model.safetensors or its shards).
template <class T>
[[nodiscard]] mamba2_model<T> load_mamba2(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw error("Mamba-2 model folder '" + dir.string() + "' does not exist");
  const auto config_file = dir / "config.json";
  if (!std::filesystem::exists(config_file)) throw error("Mamba-2 model folder '" + dir.string() + "' has no config.json");
  const mamba2_config config = load_mamba2_config(config_file);
  return load_mamba2<T>(config, io::safetensors_checkpoint::open_folder(dir, "Mamba-2 model"));
}

// What the weight views need beyond the loaded tensors: A = −exp(A_log) and
// the conv taps by lag.
template <class T>
struct mamba2_weights_storage {
  std::vector<std::vector<T>> a;
  std::vector<matrix<T>> conv_taps;
};

// The model's weights as views (host memory), for the forward pass and for
// gpu::to_device.
template <class T>
[[nodiscard]] bound<mamba2_weights<T>, mamba2_weights_storage<T>> host_weights(const mamba2_model<T>& m) {
  mamba2_weights_storage<T> st;
  for (const auto& l : m.layers) {
    const index_t X = l.conv_weight.extent(0), K = l.conv_weight.extent(1);
    std::vector<T> a(l.a_log.size());
    std::transform(l.a_log.begin(), l.a_log.end(), a.begin(), [](T v) { return -std::exp(v); });
    matrix<T> taps(X, K);
    for (index_t d = 0; d < X; ++d)
      for (index_t k = 0; k < K; ++k) taps(d, k) = l.conv_weight(d, K - 1 - k);
    st.a.push_back(std::move(a));
    st.conv_taps.push_back(std::move(taps));
  }
  return bound<mamba2_weights<T>, mamba2_weights_storage<T>>(std::move(st), [&](const mamba2_weights_storage<T>& s) {
    const auto vec = [](const std::vector<T>& v) { return vector_view<const T>(v.data(), v.size()); };
    mamba2_weights<T> w;
    w.config = m.config;
    w.embedding = m.embedding.view();
    w.output_embedding = m.output_embedding().view();
    w.norm_f = vec(m.norm_f);
    for (std::size_t k = 0; k < m.layers.size(); ++k) {
      const auto& l = m.layers[k];
      w.layers.push_back({vec(l.norm), l.in_proj.view(), vec(l.in_proj_bias), s.conv_taps[k].view(), vec(l.conv_bias),
                          vec(l.dt_bias), vec(s.a[k]), vec(l.skip), vec(l.norm_weight), l.out_proj.view(),
                          vec(l.out_proj_bias)});
    }
    return w;
  });
}

// Runs the language model on the host and returns the logits (L × V).
// `observe(const mamba2_layer_signals<T>&)` is called after each layer.
template <class T, class Observer>
[[nodiscard]] matrix<T> mamba_forward(const mamba2_model<T>& m, std::span<const index_t> tokens, Observer&& observe) {
  const auto weights = host_weights(m);
  const host_backend<T> be;
  const auto logits = mamba_forward(be, weights.view(), tokens, observe);
  matrix<T> out(static_cast<index_t>(tokens.size()), m.vocab_size());
  std::copy(logits.begin(), logits.end(), out.data());
  return out;
}

template <class T>
[[nodiscard]] matrix<T> mamba_forward(const mamba2_model<T>& m, std::span<const index_t> tokens) {
  return mamba_forward(m, tokens, [](const mamba2_layer_signals<T>&) {});
}

}  // namespace mixlens::models
