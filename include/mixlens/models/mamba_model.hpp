// A Mamba language model (MambaForCausalLM): weights loaded from a Hugging Face
// or state-spaces checkpoint (config.json + model.safetensors) in the compute
// type T (float or double), their views for the forward pass, and the forward
// pass on the host. The forward pass itself is written once for host and
// device (models/mamba_forward.hpp); it hands every layer's internal signals to
// an observer as soon as the layer is done, so that hidden attention can be
// computed layer by layer with memory for one layer only.
// Needs nlohmann-json (through mamba_config.hpp).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <new>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/linear.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/models/detail/load.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/models/mamba_config.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens::models {

template <class T>
struct mamba_layer {
  std::vector<T> norm;           // (H) RMSNorm weight before the mixer
  matrix<T> in_proj;             // (2·D × H): rows [0, D) give x, [D, 2D) give z
  std::vector<T> in_proj_bias;   // (2·D) or empty
  matrix<T> conv_weight;         // (D × K): tap k multiplies x_{t−(K−1)+k}
  std::vector<T> conv_bias;      // (D) or empty
  s6_mixer<T> ssm;               // x_proj, dt_proj, dt_bias, A_log, D
  matrix<T> out_proj;            // (H × D)
  std::vector<T> out_proj_bias;  // (H) or empty
};

template <class T>
struct mamba_model {
  static_assert(std::is_floating_point_v<T>, "mamba_model: T must be float or double");
  using value_type = T;

  mamba_config config;
  matrix<T> embedding;   // (V × H)
  std::vector<mamba_layer<T>> layers;
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
    for (const auto& l : layers)
      n += static_cast<index_t>(l.norm.size() + l.in_proj_bias.size() + l.conv_bias.size() + l.ssm.dt_bias.size() +
                                l.ssm.skip.size() + l.out_proj_bias.size()) +
           l.in_proj.size() + l.conv_weight.size() + l.ssm.x_proj.size() + l.ssm.dt_proj.size() + l.ssm.a_log.size() +
           l.out_proj.size();
    return n;
  }
};

// ---- loading -------------------------------------------------------------------

// Loads the weights named by `config` from an open safetensors file.
// Refuses a checkpoint with more layers than the config; other tensors it does
// not use are listed in unused_tensors.
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const mamba_config& config, const io::safetensors_checkpoint& file) {
  detail::checkpoint_reader f{file, {}};
  using detail::load_matrix;
  using detail::load_vector;
  const index_t H = config.hidden_size, D = config.intermediate_size, N = config.state_size, K = config.conv_kernel,
                R = config.time_step_rank, V = config.vocab_size;
  mamba_model<T> m;
  m.config = config;
  m.embedding = load_matrix<T>(f, config.embedding_name(), {V, H});
  for (index_t i = 0; i < config.num_layers; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    mamba_layer<T> l;
    l.norm = load_vector<T>(f, p + "norm.weight", H);
    l.in_proj = load_matrix<T>(f, p + "mixer.in_proj.weight", {2 * D, H});
    l.in_proj_bias = detail::load_optional<T>(f, p + "mixer.in_proj.bias", 2 * D, config.use_bias, "use_bias");
    l.conv_weight = load_matrix<T>(f, p + "mixer.conv1d.weight", {D, 1, K});
    l.conv_bias = detail::load_optional<T>(f, p + "mixer.conv1d.bias", D, config.use_conv_bias, "use_conv_bias");
    l.ssm.x_proj = load_matrix<T>(f, p + "mixer.x_proj.weight", {R + 2 * N, D});
    l.ssm.dt_proj = load_matrix<T>(f, p + "mixer.dt_proj.weight", {D, R});
    l.ssm.dt_bias = load_vector<T>(f, p + "mixer.dt_proj.bias", D);
    l.ssm.a_log = load_matrix<T>(f, p + "mixer.A_log", {D, N});
    l.ssm.skip = load_vector<T>(f, p + "mixer.D", D);
    l.out_proj = load_matrix<T>(f, p + "mixer.out_proj.weight", {H, D});
    l.out_proj_bias = detail::load_optional<T>(f, p + "mixer.out_proj.bias", H, config.use_bias, "use_bias");
    m.layers.push_back(std::move(l));
  }
  m.norm_f = load_vector<T>(f, "backbone.norm_f.weight", H);
  // Tied checkpoints usually omit lm_head.weight; when tied, the embedding is used
  // as transformers does, even if a copy is stored.
  if (!config.tie_embeddings) m.lm_head = load_matrix<T>(f, "lm_head.weight", {V, H});
  else f.read.insert("lm_head.weight");  // a stored copy of the tied head is expected, not unknown
  m.unused_tensors = detail::unused_tensors(f, config.num_layers);
  return m;
}

// Loads `dir`/config.json and the weights (model.safetensors or its shards).
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw error("Mamba model folder '" + dir.string() + "' does not exist");
  const auto config_file = dir / "config.json";
  if (!std::filesystem::exists(config_file)) throw error("Mamba model folder '" + dir.string() + "' has no config.json");
  const mamba_config config = load_mamba_config(config_file);
  return load_mamba<T>(config, io::safetensors_checkpoint::open_folder(dir, "Mamba model"));
}

// ---- the forward pass (models/mamba_forward.hpp) ----------------------------------

// What the weight views need beyond the loaded tensors: A = −exp(A_log) and
// the conv taps by lag.
template <class T>
struct mamba_weights_storage {
  std::vector<matrix<T>> a, conv_taps;
};

// The model's weights as views (host memory), for the forward pass and for
// gpu::to_device.
template <class T>
[[nodiscard]] bound<mamba_weights<T>, mamba_weights_storage<T>> host_weights(const mamba_model<T>& m) {
  mamba_weights_storage<T> st;
  for (const auto& l : m.layers) {
    const index_t D = l.ssm.a_log.extent(0), N = l.ssm.a_log.extent(1), K = l.conv_weight.extent(1);
    matrix<T> a(D, N), taps(D, K);
    for (index_t d = 0; d < D; ++d) {
      for (index_t n = 0; n < N; ++n) a(d, n) = -std::exp(l.ssm.a_log(d, n));
      for (index_t k = 0; k < K; ++k) taps(d, k) = l.conv_weight(d, K - 1 - k);
    }
    st.a.push_back(std::move(a));
    st.conv_taps.push_back(std::move(taps));
  }
  return bound<mamba_weights<T>, mamba_weights_storage<T>>(std::move(st), [&](const mamba_weights_storage<T>& s) {
    const auto vec = [](const std::vector<T>& v) { return vector_view<const T>(v.data(), v.size()); };
    mamba_weights<T> w;
    w.config = m.config;
    w.embedding = m.embedding.view();
    w.output_embedding = m.output_embedding().view();
    w.norm_f = vec(m.norm_f);
    for (std::size_t k = 0; k < m.layers.size(); ++k) {
      const auto& l = m.layers[k];
      w.layers.push_back({vec(l.norm), l.in_proj.view(), vec(l.in_proj_bias), s.conv_taps[k].view(), vec(l.conv_bias),
                          l.ssm.x_proj.view(), l.ssm.dt_proj.view(), vec(l.ssm.dt_bias), s.a[k].view(),
                          vec(l.ssm.skip), l.out_proj.view(), vec(l.out_proj_bias)});
    }
    return w;
  });
}

// Checks token ids against the model's vocabulary.
template <class T>
void check_tokens(const mamba_model<T>& m, std::span<const index_t> tokens, std::string_view source = "tokens") {
  check_tokens(m.vocab_size(), tokens, source);
}

// Runs the language model on the host and returns the logits (L × V).
// `observe(const mamba_layer_signals<T>&)` is called after each layer.
template <class T, class Observer>
[[nodiscard]] matrix<T> mamba_forward(const mamba_model<T>& m, std::span<const index_t> tokens, Observer&& observe) {
  const auto weights = host_weights(m);
  const host_backend<T> be;
  const auto logits = mamba_forward(be, weights.view(), tokens, observe);
  matrix<T> out(static_cast<index_t>(tokens.size()), m.vocab_size());
  std::copy(logits.begin(), logits.end(), out.data());
  return out;
}

template <class T>
[[nodiscard]] matrix<T> mamba_forward(const mamba_model<T>& m, std::span<const index_t> tokens) {
  return mamba_forward(m, tokens, [](const mamba_layer_signals<T>&) {});
}

}  // namespace mixlens::models
