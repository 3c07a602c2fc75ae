// A Vision Mamba classifier (hustvl/Vim VisionMamba with bimamba v2 blocks):
// weights loaded from the folder tools/convert_vim.py writes (config.json +
// model.safetensors) in the compute type T, their views for the forward pass
// (models/vim_forward.hpp, written once for host and device), the host forward
// pass, and the image input (.npy, height × width × channels).
// Needs nlohmann-json (through vim_config.hpp).
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixlens/io/checkpoint.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/png_read.hpp"
#include "mixlens/models/detail/load.hpp"
#include "mixlens/models/mamba_model.hpp"
#include "mixlens/models/vim_config.hpp"
#include "mixlens/models/vim_forward.hpp"

namespace mixlens::models {

// One bidirectional block: `forward` is a whole Mamba layer (the shared norm,
// in_proj and out_proj, and the forward branch); `backward` holds the backward
// branch only (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b; the rest empty).
template <class T>
struct vim_layer {
  mamba_layer<T> forward, backward;

  [[nodiscard]] index_t parameter_count() const { return forward.parameter_count() + backward.parameter_count(); }
};

template <class T>
struct vim_model {
  static_assert(std::is_floating_point_v<T>, "vim_model: T must be float or double");
  using value_type = T;
  using config_type = vim_config;
  using signals_type = vim_layer_signals<T>;

  vim_config config;
  matrix<T> patch_weight;      // (E × C·p·p)
  std::vector<T> patch_bias;   // (E)
  std::vector<T> cls_token;    // (E) or empty
  matrix<T> pos_embed;         // (L × E) or empty
  std::vector<vim_layer<T>> layers;
  std::vector<T> norm_f;       // (E)
  matrix<T> head;              // (classes × E)
  std::vector<T> head_bias;    // (classes)
  std::vector<std::string> unused_tensors;

  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers.size()); }
  [[nodiscard]] index_t num_classes() const { return head.extent(0); }
  [[nodiscard]] index_t parameter_count() const {
    index_t n = patch_weight.size() + pos_embed.size() + head.size() +
                static_cast<index_t>(patch_bias.size() + cls_token.size() + norm_f.size() + head_bias.size());
    for (const auto& l : layers) n += l.parameter_count();
    return n;
  }
};

// ---- loading -------------------------------------------------------------------

// Loads the weights named by `config` (VisionMamba's state-dict names: patch_embed.proj,
// cls_token, pos_embed, layers.<i>.norm / .mixer.*, norm_f, head). A missing tensor,
// a wrong shape, a bias the config does not announce, or more layers than the
// config has is an error naming the tensor; other unused tensors are listed.
template <class T>
[[nodiscard]] vim_model<T> load_vim(const vim_config& config, const io::safetensors_checkpoint& file) {
  using detail::load_matrix;
  using detail::load_optional;
  using detail::load_reshaped;
  using detail::load_vector;
  detail::checkpoint_reader f{file, {}};
  const index_t E = config.hidden_size, D = config.intermediate_size, p = config.patch_size, L = config.sequence_length();
  vim_model<T> m;
  m.config = config;
  m.patch_weight = load_reshaped<T>(f, "patch_embed.proj.weight", {E, config.channels, p, p}, E, config.patch_values());
  m.patch_bias = load_vector<T>(f, "patch_embed.proj.bias", E);
  if (config.cls != vim_cls_position::none) {
    const matrix<T> cls = load_reshaped<T>(f, "cls_token", {1, 1, E}, 1, E);
    m.cls_token.assign(cls.data(), cls.data() + E);
  } else if (f.contains("cls_token"))
    throw error("Mamba checkpoint '" + f.path().string() + "': unexpected tensor 'cls_token' (the config sets if_cls_token = false)");
  if (config.position_embedding) m.pos_embed = load_reshaped<T>(f, "pos_embed", {1, L, E}, L, E);
  else if (f.contains("pos_embed"))
    throw error("Mamba checkpoint '" + f.path().string() + "': unexpected tensor 'pos_embed' (the config sets if_abs_pos_embed = false)");
  for (index_t i = 0; i < config.num_layers; ++i) {
    const std::string prefix = "layers." + std::to_string(i) + ".", mixer = prefix + "mixer.";
    vim_layer<T> l;
    l.forward.norm = load_vector<T>(f, prefix + "norm.weight", E);
    l.forward.in_proj = load_matrix<T>(f, mixer + "in_proj.weight", {2 * D, E});
    l.forward.in_proj_bias = load_optional<T>(f, mixer + "in_proj.bias", 2 * D, config.use_bias, "bias");
    detail::load_mamba_branch(f, mixer, config, {}, l.forward);
    detail::load_mamba_branch(f, mixer, config, {"conv1d_b", "x_proj_b", "dt_proj_b", "A_b_log", "D_b"}, l.backward);
    l.forward.out_proj = load_matrix<T>(f, mixer + "out_proj.weight", {E, D});
    l.forward.out_proj_bias = load_optional<T>(f, mixer + "out_proj.bias", E, config.use_bias, "bias");
    if (f.contains(prefix + "norm.bias"))
      throw error("Mamba checkpoint '" + f.path().string() + "': unexpected tensor '" + prefix +
                  "norm.bias' (a LayerNorm block; the config sets rms_norm = true)");
    m.layers.push_back(std::move(l));
  }
  m.norm_f = load_vector<T>(f, "norm_f.weight", E);
  m.head = load_matrix<T>(f, "head.weight", {config.num_classes, E});
  m.head_bias = load_vector<T>(f, "head.bias", config.num_classes);
  m.unused_tensors = detail::unused_tensors(f, config.num_layers, "layers.");
  return m;
}

// Loads `dir`/config.json and the weights (model.safetensors or its shards).
template <class T>
[[nodiscard]] vim_model<T> load_vim(const std::filesystem::path& dir) {
  const vim_config config = load_vim_config(detail::model_config_file(dir, "Vision Mamba model"));
  return load_vim<T>(config, io::safetensors_checkpoint::open_folder(dir, "Vision Mamba model"));
}

// ---- the forward pass (models/vim_forward.hpp) ------------------------------------

template <class T>
struct vim_weights_storage {
  mamba_weights_storage<T> branches;  // per layer: forward, then backward
};

// The model's weights as views (host memory), for the forward pass and for
// gpu::to_device.
template <class T>
[[nodiscard]] bound<vim_weights<T>, vim_weights_storage<T>> host_weights(const vim_model<T>& m) {
  vim_weights_storage<T> st;
  for (const auto& l : m.layers) st.branches.add(l.forward), st.branches.add(l.backward);
  return bound<vim_weights<T>, vim_weights_storage<T>>(std::move(st), [&](const vim_weights_storage<T>& s) {
    vim_weights<T> w;
    w.config = m.config;
    w.patch_weight = m.patch_weight.view();
    w.patch_bias = vector_view_of(m.patch_bias);
    w.cls_token = vector_view_of(m.cls_token);
    w.pos_embed = m.pos_embed.view();
    w.norm_f = vector_view_of(m.norm_f);
    w.head = m.head.view();
    w.head_bias = vector_view_of(m.head_bias);
    for (std::size_t k = 0; k < m.layers.size(); ++k)
      w.layers.push_back({s.branches.views(m.layers[k].forward, 2 * k), s.branches.views(m.layers[k].backward, 2 * k + 1)});
    return w;
  });
}

// Runs the classifier on the host; returns the logits (num_classes).
// `observe(const vim_layer_signals<T>&)` is called after each layer.
template <class T, class Observer>
[[nodiscard]] std::vector<T> vim_forward(const vim_model<T>& m, tensor_view<const T, 3> image, Observer&& observe) {
  const auto weights = host_weights(m);
  return vim_forward(host_backend<T>{}, weights.view(), image, observe);
}

template <class T>
[[nodiscard]] std::vector<T> vim_forward(const vim_model<T>& m, tensor_view<const T, 3> image) {
  return vim_forward(m, image, [](const auto&) {});
}

// ---- the image ---------------------------------------------------------------------

// An image from a .npy file of shape (height, width, channels), float or
// integer values taken as they are (the model's input: normalize first, e.g.
// with imagenet_normalize).
template <class T>
[[nodiscard]] tensor<T, 3> read_image_npy(const std::filesystem::path& file) {
  const io::npy_array a = io::read_npy(file);
  if (a.shape.size() != 3)
    throw error("image '" + file.string() + "': expected shape (height, width, channels), got rank " +
                std::to_string(a.shape.size()));
  tensor<T, 3> image(a.shape[0], a.shape[1], a.shape[2]);
  const std::vector<T> v = a.as<T>();
  std::copy(v.begin(), v.end(), image.data());
  return image;
}

// An image file: .png (any PNG, as 8-bit RGB pixels / 255: values in [0, 1],
// to be normalized like the pixels Vim's evaluation transform reads) or .npy
// (read_image_npy: as stored).
template <class T>
[[nodiscard]] tensor<T, 3> read_image(const std::filesystem::path& file) {
  std::string ext = file.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == ".png") return io::read_png_rgb<T>(file);
  if (ext == ".npy") return read_image_npy<T>(file);
  throw error("image '" + file.string() + "': expected a .png or .npy file (height x width x channels), not '" + ext + "'");
}

// The normalization of the Vim (DeiT) evaluation transform, in place: values in
// [0, 1] (ToTensor of 8-bit pixels / 255) minus timm's IMAGENET_DEFAULT_MEAN,
// divided by IMAGENET_DEFAULT_STD, per RGB channel.
template <class T>
void imagenet_normalize(tensor<T, 3>& image) {
  constexpr double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};
  if (image.extent(2) != 3)
    mixlens::detail::fail("mixlens::models::imagenet_normalize", "image", "3 (RGB) channels", image.extent(2));
  for (index_t y = 0; y < image.extent(0); ++y)
    for (index_t x = 0; x < image.extent(1); ++x)
      for (index_t c = 0; c < 3; ++c) image(y, x, c) = static_cast<T>((double(image(y, x, c)) - mean[c]) / stdev[c]);
}

}  // namespace mixlens::models
