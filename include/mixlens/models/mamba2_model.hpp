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
#include "mixlens/models/lm_model.hpp"
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

  using signals_type = mamba2_layer_signals<T>;

  [[nodiscard]] index_t parameter_count() const {
    return static_cast<index_t>(norm.size() + in_proj_bias.size() + conv_bias.size() + dt_bias.size() + a_log.size() +
                                skip.size() + norm_weight.size() + out_proj_bias.size()) +
           in_proj.size() + conv_weight.size() + out_proj.size();
  }
};

template <class T>
using mamba2_model = lm_model<T, mamba2_config, mamba2_layer<T>>;

// Loads the weights named by `config` from a checkpoint (models/lm_model.hpp
// says what is refused and what is listed as unused).
template <class T>
[[nodiscard]] mamba2_model<T> load_mamba2(const mamba2_config& config, const io::safetensors_checkpoint& file) {
  using detail::load_matrix;
  using detail::load_optional;
  using detail::load_vector;
  const index_t H = config.hidden_size, S = config.ssm_channels(), X = config.conv_channels(), Hd = config.num_heads,
                K = config.conv_kernel, R = config.in_proj_rows(), I = config.intermediate_size();
  return detail::load_lm<mamba2_model<T>>(config, file, [&](detail::checkpoint_reader& f, const std::string& p) {
    mamba2_layer<T> l;
    l.norm = load_vector<T>(f, p + "norm.weight", H);
    l.in_proj = load_matrix<T>(f, p + "mixer.in_proj.weight", {R, H});
    l.in_proj_bias = load_optional<T>(f, p + "mixer.in_proj.bias", R, config.use_bias, "use_bias");
    l.conv_weight = load_matrix<T>(f, p + "mixer.conv1d.weight", {X, 1, K});
    l.conv_bias = load_optional<T>(f, p + "mixer.conv1d.bias", X, config.use_conv_bias, "use_conv_bias");
    l.dt_bias = load_vector<T>(f, p + "mixer.dt_bias", Hd);
    l.a_log = load_vector<T>(f, p + "mixer.A_log", Hd);
    l.skip = load_vector<T>(f, p + "mixer.D", Hd);
    l.norm_weight = load_vector<T>(f, p + "mixer.norm.weight", S);
    l.out_proj = load_matrix<T>(f, p + "mixer.out_proj.weight", {H, I});
    l.out_proj_bias = load_optional<T>(f, p + "mixer.out_proj.bias", H, config.use_bias, "use_bias");
    return l;
  });
}

// Loads `dir`/config.json and the weights (model.safetensors or its shards).
template <class T>
[[nodiscard]] mamba2_model<T> load_mamba2(const std::filesystem::path& dir) {
  const mamba2_config config = load_mamba2_config(detail::model_config_file(dir, "Mamba-2 model"));
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
    std::vector<T> a(l.a_log.size());
    std::transform(l.a_log.begin(), l.a_log.end(), a.begin(), [](T v) { return -std::exp(v); });
    st.a.push_back(std::move(a));
    st.conv_taps.push_back(detail::taps_by_lag(l.conv_weight));
  }
  return bound<mamba2_weights<T>, mamba2_weights_storage<T>>(std::move(st), [&](const mamba2_weights_storage<T>& s) {
    auto w = shared_views<mamba2_weights<T>>(m);
    for (std::size_t k = 0; k < m.layers.size(); ++k) {
      const auto& l = m.layers[k];
      w.layers.push_back({vector_view_of(l.norm), l.in_proj.view(), vector_view_of(l.in_proj_bias), s.conv_taps[k].view(), vector_view_of(l.conv_bias),
                          vector_view_of(l.dt_bias), vector_view_of(s.a[k]), vector_view_of(l.skip), vector_view_of(l.norm_weight), l.out_proj.view(),
                          vector_view_of(l.out_proj_bias)});
    }
    return w;
  });
}

}  // namespace mixlens::models
