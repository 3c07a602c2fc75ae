// A Mamba language model (MambaForCausalLM) on the CPU: weights loaded from a
// Hugging Face or state-spaces checkpoint (config.json + model.safetensors) and
// the forward pass
//   embedding → [RMSNorm → in_proj → (x, z) → conv1d + bias → SiLU → u
//                → x_proj → (δ, B, C) → Δ = softplus(dt_proj·δ + bias)
//                → selective scan + D·u → ⊙ SiLU(z) → out_proj → + residual] × layers
//   → RMSNorm → lm_head,
// in the compute type T (float or double). The forward pass hands every layer's
// internal signals to an observer as soon as the layer is done, so that hidden
// attention can be computed layer by layer with memory for one layer only.
// Needs nlohmann-json (through mamba_config.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/linear.hpp"
#include "mixlens/io/safetensors.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/models/mamba_config.hpp"
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

namespace detail {

inline std::string shape_string(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Reads tensor `name` of exactly `shape` into `out`, converting to T.
template <class T>
void load_tensor(const io::safetensors_file& f, const std::string& name, const std::vector<index_t>& shape, T* out) {
  const io::safetensors_tensor* t = f.find(name);
  if (!t)
    throw error("Mamba checkpoint '" + f.path().string() + "': missing tensor '" + name + "' (expected shape " +
                shape_string(shape) + ")");
  if (t->shape != shape)
    throw error("Mamba checkpoint '" + f.path().string() + "': tensor '" + name + "' has shape " +
                shape_string(t->shape) + ", expected " + shape_string(shape));
  f.read(*t, out);
}

template <class T>
matrix<T> load_matrix(const io::safetensors_file& f, const std::string& name, std::vector<index_t> shape) {
  matrix<T> m(shape[0], shape.size() > 1 ? shape.back() : 1);
  load_tensor(f, name, shape, m.data());
  return m;
}

template <class T>
std::vector<T> load_vector(const io::safetensors_file& f, const std::string& name, index_t n) {
  std::vector<T> v(static_cast<std::size_t>(n));
  load_tensor(f, name, {n}, v.data());
  return v;
}

// An optional tensor: required when the config enables it, refused when it does not.
template <class T>
std::vector<T> load_optional(const io::safetensors_file& f, const std::string& name, index_t n, bool enabled,
                             std::string_view flag) {
  if (enabled) return load_vector<T>(f, name, n);
  if (f.contains(name))
    throw error("Mamba checkpoint '" + f.path().string() + "': unexpected tensor '" + name + "' (the config sets " +
                std::string(flag) + " = false)");
  return {};
}

}  // namespace detail

// Loads the weights named by `config` from an open safetensors file.
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const mamba_config& config, const io::safetensors_file& f) {
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
  return m;
}

// Loads `dir`/config.json and `dir`/model.safetensors.
template <class T>
[[nodiscard]] mamba_model<T> load_mamba(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) throw error("Mamba model folder '" + dir.string() + "' does not exist");
  const auto config_file = dir / "config.json", weights_file = dir / "model.safetensors";
  if (!std::filesystem::exists(config_file)) throw error("Mamba model folder '" + dir.string() + "' has no config.json");
  if (!std::filesystem::exists(weights_file)) {
    if (std::filesystem::exists(dir / "model.safetensors.index.json"))
      throw error("Mamba model folder '" + dir.string() + "': sharded checkpoints are not supported");
    throw error("Mamba model folder '" + dir.string() + "' has no model.safetensors");
  }
  const mamba_config config = load_mamba_config(config_file);
  const io::safetensors_file f(weights_file);
  return load_mamba<T>(config, f);
}

// ---- the forward pass ------------------------------------------------------------

// One layer's internal signals, channel-major (D × L) like every mixlens signal.
// Together with the layer's weights they determine its hidden attention.
template <class T>
struct mamba_layer_signals {
  index_t layer = 0;
  matrix<T> x, z;       // the two halves of in_proj's output
  matrix<T> u;          // SSM input: SiLU(conv1d(x) + bias)
  matrix<T> delta;      // Δ = softplus(dt_proj·δ + dt_bias)
  matrix<T> a;          // (D × N): A = −exp(A_log)
  tensor<T, 3> b, c;    // (1 × N × L)
  matrix<T> gate;       // SiLU(z)
  matrix<T> y;          // (S6(u) + D·u) ⊙ SiLU(z): the out_proj input

  // The layer's S6 operator: the paper's α by default; with `fold`, + diag(D)
  // and the gate, so that apply(u) = y.
  [[nodiscard]] s6_operator<T> ssm(const mamba_layer<T>& w, s6_fold fold = {}) const {
    return s6_operator<T>(delta.view(), a.view(), b.view(), c.view(),
                          fold.skip ? vector_view<const T>(w.ssm.skip.data(), w.ssm.skip.size()) : vector_view<const T>{},
                          fold.gate ? gate.view() : matrix_view<const T>{});
  }
};

namespace detail {

// RMSNorm over each row of x (rows × H): x / sqrt(mean(x²) + eps) · weight.
template <class T>
void rms_norm(const T* x, index_t rows, index_t H, const std::vector<T>& weight, double eps, T* out) {
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * H;
    T ms = mixlens::detail::dot(xr, xr, H) / static_cast<T>(H);
    const T scale = T(1) / std::sqrt(ms + static_cast<T>(eps));
    for (index_t i = 0; i < H; ++i) out[r * H + i] = xr[i] * scale * weight[static_cast<std::size_t>(i)];
  }
}

}  // namespace detail

// Checks token ids against the vocabulary; `source` names where they came from.
template <class T>
void check_tokens(const mamba_model<T>& m, std::span<const index_t> tokens, std::string_view source = "tokens") {
  if (tokens.empty()) throw error(std::string(source) + ": no tokens (expected at least one)");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= m.vocab_size())
      throw error(std::string(source) + ": token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(m.vocab_size()) + ")");
}

// Runs the language model on one token sequence and returns the logits (L × V).
// `observe(const mamba_layer_signals<T>&)` is called after each layer; the
// signals are released before the next layer starts.
template <class T, class Observer>
[[nodiscard]] matrix<T> mamba_forward(const mamba_model<T>& m, std::span<const index_t> tokens, Observer&& observe) {
  check_tokens(m, tokens);
  const mamba_config& cfg = m.config;
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, D = cfg.intermediate_size;

  matrix<T> h(L, H), hn(L, H), xz(L, 2 * D), yt(L, D), out(L, H);
  for (index_t t = 0; t < L; ++t)
    std::copy_n(m.embedding.data() + tokens[static_cast<std::size_t>(t)] * H, H, h.data() + t * H);

  for (index_t k = 0; k < m.num_layers(); ++k) {
    const mamba_layer<T>& w = m.layers[static_cast<std::size_t>(k)];
    const index_t K = w.conv_weight.extent(1);
    mamba_layer_signals<T> s;
    s.layer = k;
    s.x = matrix<T>(D, L);
    s.z = matrix<T>(D, L);
    s.u = matrix<T>(D, L);
    s.gate = matrix<T>(D, L);
    s.y = matrix<T>(D, L);

    detail::rms_norm(h.data(), L, H, w.norm, cfg.norm_eps, hn.data());
    mixlens::detail::linear(hn.data(), H, L, w.in_proj, w.in_proj_bias, xz.data());
    for (index_t t = 0; t < L; ++t)
      for (index_t d = 0; d < D; ++d) {
        s.x(d, t) = xz(t, d);
        s.z(d, t) = xz(t, D + d);
        s.gate(d, t) = mixlens::detail::silu(s.z(d, t));
      }
    // Depthwise causal conv (PyTorch's padding K − 1, then the first L outputs).
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        T acc = w.conv_bias.empty() ? T(0) : w.conv_bias[static_cast<std::size_t>(d)];
        for (index_t j = 0; j < K; ++j) {
          const index_t src = t - (K - 1) + j;
          if (src >= 0) acc += w.conv_weight(d, j) * s.x(d, src);
        }
        s.u(d, t) = mixlens::detail::silu(acc);
      }
    auto controls = w.ssm.controls(s.u.view());  // Δ, A, B, C exactly as s6_mixer::bind computes them
    s.delta = std::move(controls.delta);
    s.a = std::move(controls.a);
    s.b = std::move(controls.b);
    s.c = std::move(controls.c);
    s.ssm(w).validate();

    s.ssm(w, s6_fold{.skip = true, .gate = true}).apply(s.u.view(), s.y.view());
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) yt(t, d) = s.y(d, t);
    mixlens::detail::linear(yt.data(), D, L, w.out_proj, w.out_proj_bias, out.data());
    for (index_t i = 0; i < L * H; ++i) h.data()[i] += out.data()[i];
    observe(static_cast<const mamba_layer_signals<T>&>(s));
  }

  detail::rms_norm(h.data(), L, H, m.norm_f, cfg.norm_eps, hn.data());
  matrix<T> logits(L, m.vocab_size());
  mixlens::detail::linear(hn.data(), H, L, m.output_embedding(), {}, logits.data());
  return logits;
}

template <class T>
[[nodiscard]] matrix<T> mamba_forward(const mamba_model<T>& m, std::span<const index_t> tokens) {
  return mamba_forward(m, tokens, [](const mamba_layer_signals<T>&) {});
}

}  // namespace mixlens::models
