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

#include "mixlens/detail/gemm.hpp"
#include "mixlens/io/checkpoint.hpp"
#include "mixlens/models/detail/load.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/models/lm_model.hpp"
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

  using signals_type = mamba_layer_signals<T>;

  [[nodiscard]] index_t parameter_count() const {
    return static_cast<index_t>(norm.size() + in_proj_bias.size() + conv_bias.size() + ssm.dt_bias.size() +
                                ssm.skip.size() + out_proj_bias.size()) +
           in_proj.size() + conv_weight.size() + ssm.x_proj.size() + ssm.dt_proj.size() + ssm.a_log.size() +
           out_proj.size();
  }
};

template <class T>
using mamba_model = lm_model<T, mamba_config, mamba_layer<T>>;

// ---- loading -------------------------------------------------------------------

namespace detail {

// The tensor names of one selective branch under a layer's mixer prefix:
// Mamba's, or Vision Mamba's backward branch (conv1d_b, x_proj_b, dt_proj_b,
// A_b_log, D_b).
struct mamba_branch_names {
  std::string conv1d = "conv1d", x_proj = "x_proj", dt_proj = "dt_proj", a_log = "A_log", skip = "D";
};

// Loads the branch's conv, x_proj, dt_proj, A_log and D (`mixer` ends with '.')
// into l, with the shapes `config` implies.
template <class T>
void load_mamba_branch(checkpoint_reader& f, const std::string& mixer, const mamba_config& config,
                       const mamba_branch_names& n, mamba_layer<T>& l) {
  const index_t D = config.intermediate_size, N = config.state_size, K = config.conv_kernel, R = config.time_step_rank;
  l.conv_weight = load_matrix<T>(f, mixer + n.conv1d + ".weight", {D, 1, K});
  l.conv_bias = load_optional<T>(f, mixer + n.conv1d + ".bias", D, config.use_conv_bias, "use_conv_bias");
  l.ssm.x_proj = load_matrix<T>(f, mixer + n.x_proj + ".weight", {R + 2 * N, D});
  l.ssm.dt_proj = load_matrix<T>(f, mixer + n.dt_proj + ".weight", {D, R});
  l.ssm.dt_bias = load_vector<T>(f, mixer + n.dt_proj + ".bias", D);
  l.ssm.a_log = load_matrix<T>(f, mixer + n.a_log, {D, N});
  l.ssm.skip = load_vector<T>(f, mixer + n.skip, D);
}

}  // namespace detail

// Loads the weights named by `config` from a checkpoint (models/lm_model.hpp
// says what is refused and what is listed as unused).
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const mamba_config& config, const io::safetensors_checkpoint& file) {
  using detail::load_matrix;
  using detail::load_optional;
  using detail::load_vector;
  const index_t H = config.hidden_size, D = config.intermediate_size;
  return detail::load_lm<mamba_model<T>>(config, file, [&](detail::checkpoint_reader& f, const std::string& p) {
    mamba_layer<T> l;
    l.norm = load_vector<T>(f, p + "norm.weight", H);
    l.in_proj = load_matrix<T>(f, p + "mixer.in_proj.weight", {2 * D, H});
    l.in_proj_bias = load_optional<T>(f, p + "mixer.in_proj.bias", 2 * D, config.use_bias, "use_bias");
    detail::load_mamba_branch(f, p + "mixer.", config, {}, l);
    l.out_proj = load_matrix<T>(f, p + "mixer.out_proj.weight", {H, D});
    l.out_proj_bias = load_optional<T>(f, p + "mixer.out_proj.bias", H, config.use_bias, "use_bias");
    return l;
  });
}

// Loads `dir`/config.json and the weights (model.safetensors or its shards).
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const std::filesystem::path& dir) {
  const mamba_config config = load_mamba_config(detail::model_config_file(dir, "Mamba model"));
  return load_mamba<T>(config, io::safetensors_checkpoint::open_folder(dir, "Mamba model"));
}

// ---- the forward pass (models/mamba_forward.hpp) ----------------------------------

// What the weight views need beyond the loaded tensors: A = −exp(A_log) and
// the conv taps by lag.
template <class T>
struct mamba_weights_storage {
  std::vector<matrix<T>> a, conv_taps;

  // Adds layer l's; returns its index.
  std::size_t add(const mamba_layer<T>& l) {
    matrix<T> neg(l.ssm.a_log.extent(0), l.ssm.a_log.extent(1));
    std::transform(l.ssm.a_log.data(), l.ssm.a_log.data() + neg.size(), neg.data(), [](T v) { return -std::exp(v); });
    a.push_back(std::move(neg));
    conv_taps.push_back(detail::taps_by_lag(l.conv_weight));
    return a.size() - 1;
  }

  // The views of layer l, whose A and taps were added k-th (empty members stay empty).
  [[nodiscard]] mamba_layer_weights<T> views(const mamba_layer<T>& l, std::size_t k) const {
    return {vector_view_of(l.norm), l.in_proj.view(), vector_view_of(l.in_proj_bias), conv_taps[k].view(),
            vector_view_of(l.conv_bias), l.ssm.x_proj.view(), l.ssm.dt_proj.view(), vector_view_of(l.ssm.dt_bias),
            a[k].view(), vector_view_of(l.ssm.skip), l.out_proj.view(), vector_view_of(l.out_proj_bias)};
  }
};

// The model's weights as views (host memory), for the forward pass and for
// gpu::to_device.
template <class T>
[[nodiscard]] bound<mamba_weights<T>, mamba_weights_storage<T>> host_weights(const mamba_model<T>& m) {
  mamba_weights_storage<T> st;
  for (const auto& l : m.layers) st.add(l);
  return bound<mamba_weights<T>, mamba_weights_storage<T>>(std::move(st), [&](const mamba_weights_storage<T>& s) {
    auto w = shared_views<mamba_weights<T>>(m);
    for (std::size_t k = 0; k < m.layers.size(); ++k) w.layers.push_back(s.views(m.layers[k], k));
    return w;
  });
}

}  // namespace mixlens::models
