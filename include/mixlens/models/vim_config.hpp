// The configuration of a Vision Mamba (hustvl/Vim VisionMamba) classifier, read
// from the config.json that tools/convert_vim.py writes beside the converted
// weights (docs/vim.md lists the fields). The names are VisionMamba's
// constructor arguments; a missing field takes VisionMamba's default. What
// mixlens does not implement (LayerNorm blocks, RoPE, bimamba v1, the paired
// if_bidirectional layers, two CLS tokens, layer scale, random sequence flips,
// max or per-token pooling) is refused, naming the field.
// Needs nlohmann-json.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/models/mamba_config.hpp"

namespace mixlens::models {

// Where the CLS token sits in the sequence.
enum class vim_cls_position {
  middle,  // use_middle_cls_token: before patch M/2 (M patches), as the released models do
  head,    // if_cls_token without use_middle_cls_token: position 0
  none,    // no CLS token: the classifier reads the pooled sequence
};

// What the classifier reads without a CLS token (final_pool_type).
enum class vim_pooling {
  mean,  // "mean": the mean over positions
  last,  // "none": the last position
};

[[nodiscard]] constexpr std::string_view to_string(vim_cls_position p) {
  return mixlens::detail::enum_name(p, {"middle", "head", "none"});
}

// A Vim is a stack of bidirectional Mamba blocks: the mamba_config fields are
// the blocks' (hidden_size = embed_dim, num_layers = depth, state_size = d_state,
// conv_kernel = d_conv, intermediate_size = expand · embed_dim, time_step_rank =
// dt_rank, use_conv_bias = conv_bias, use_bias = bias, norm_eps = norm_epsilon);
// vocab_size is 0 and tie_embeddings false.
struct vim_config : mamba_config {
  index_t image_height = 0, image_width = 0;  // img_size (one number, or [height, width])
  index_t patch_size = 0;                      // the Conv2d kernel
  index_t stride = 0;                          // the Conv2d stride (default: patch_size)
  index_t channels = 3;                        // image channels
  index_t num_classes = 0;
  vim_cls_position cls = vim_cls_position::middle;
  vim_pooling pooling = vim_pooling::last;     // without a CLS token only
  bool position_embedding = true;              // if_abs_pos_embed
  bool divide_out = true;                      // if_divide_out: (y_f + flip(y_b)) / 2 enters out_proj
  std::string model_name;                      // the registered name, when known

  [[nodiscard]] index_t grid_height() const { return (image_height - patch_size) / stride + 1; }
  [[nodiscard]] index_t grid_width() const { return (image_width - patch_size) / stride + 1; }
  [[nodiscard]] index_t num_patches() const { return grid_height() * grid_width(); }
  // The sequence the blocks run on: the patches and the CLS token.
  [[nodiscard]] index_t sequence_length() const { return num_patches() + (cls == vim_cls_position::none ? 0 : 1); }
  // The CLS token's position, −1 without one.
  [[nodiscard]] index_t cls_index() const {
    return cls == vim_cls_position::middle ? num_patches() / 2 : cls == vim_cls_position::head ? 0 : -1;
  }
  // The sequence position of patch p (row-major over the grid).
  [[nodiscard]] index_t token_of_patch(index_t p) const {
    const index_t c = cls_index();
    return c >= 0 && p >= c ? p + 1 : p;
  }
  // Values per patch: channels · patch_size².
  [[nodiscard]] index_t patch_values() const { return channels * patch_size * patch_size; }
};

namespace detail {

inline std::string vim_config_string(std::string_view source, const nlohmann::json& j, const char* key,
                                     std::string_view fallback) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return std::string(fallback);
  if (!f->is_string()) config_fail(source, std::string("field '") + key + "' must be a string, got " + config_show(*f));
  return f->get<std::string>();
}

// Refuses `key` unless it is absent, null or `expected`.
inline void vim_config_require(std::string_view source, const nlohmann::json& j, const char* key, bool expected,
                               std::string_view why) {
  if (config_bool(source, j, key, expected) != expected)
    config_fail(source, std::string(key) + " = " + (expected ? "false" : "true") + " is not supported (" +
                            std::string(why) + ")");
}

}  // namespace detail

// Parses the text of a Vim config.json; `source` names it in error messages.
[[nodiscard]] inline vim_config parse_vim_config(std::string_view text, std::string_view source = "config.json") {
  using namespace detail;
  const nlohmann::json j = parse_config_object(text, source);
  if (const auto* type = config_field(j, "model_type"); type && *type != "vim")
    config_fail(source, "model_type = " + config_show(*type) + " is not supported (expected \"vim\")");

  vim_config c;
  c.model_name = vim_config_string(source, j, "model_name", "");
  c.hidden_size = config_int(source, j, "embed_dim");
  c.num_layers = config_int(source, j, "depth");
  c.vocab_size = 0;
  c.tie_embeddings = false;
  c.state_size = config_int(source, j, "d_state", 16);
  c.conv_kernel = config_int(source, j, "d_conv", 4);
  c.intermediate_size = config_inner_size(source, config_real(source, j, "expand", 2.0), c.hidden_size);
  c.time_step_rank = config_rank(source, j, "dt_rank", c.hidden_size);
  c.use_conv_bias = config_bool(source, j, "conv_bias", true);
  c.use_bias = config_bool(source, j, "bias", false);
  c.norm_eps = config_real(source, j, "norm_epsilon", 1e-5);
  c.residual_in_fp32 = config_bool(source, j, "residual_in_fp32", true);
  (void)config_bool(source, j, "fused_add_norm", true);  // the same sums in another order: no effect here

  // The image and its patches.
  const nlohmann::json* img = config_field(j, "img_size");
  if (!img) config_fail(source, "missing field 'img_size'");
  if (img->is_array()) {
    if (img->size() != 2) config_fail(source, "field 'img_size' must be a number or [height, width], got " + config_show(*img));
    const nlohmann::json sides = {{"height", (*img)[0]}, {"width", (*img)[1]}};
    c.image_height = config_int(source, sides, "height");
    c.image_width = config_int(source, sides, "width");
  } else {
    c.image_height = c.image_width = config_int(source, j, "img_size");
  }
  c.patch_size = config_int(source, j, "patch_size");
  c.stride = config_int(source, j, "stride", c.patch_size);
  c.channels = config_int(source, j, "channels", 3);
  c.num_classes = config_int(source, j, "num_classes");
  if (c.patch_size > c.image_height || c.patch_size > c.image_width)
    config_fail(source, "patch_size " + std::to_string(c.patch_size) + " exceeds the image (" +
                            std::to_string(c.image_height) + " x " + std::to_string(c.image_width) + ")");

  // The CLS token and the pooling.
  const bool cls = config_bool(source, j, "if_cls_token", true);
  vim_config_require(source, j, "use_double_cls_token", false, "two CLS tokens");
  c.cls = !cls ? vim_cls_position::none
               : config_bool(source, j, "use_middle_cls_token", true) ? vim_cls_position::middle : vim_cls_position::head;
  const std::string pool = vim_config_string(source, j, "final_pool_type", "none");
  if (pool == "mean") c.pooling = vim_pooling::mean;
  else if (pool == "none") c.pooling = vim_pooling::last;
  else if (c.cls == vim_cls_position::none || (pool != "max" && pool != "all"))
    config_fail(source, "final_pool_type = \"" + pool + "\" is not supported (expected \"mean\" or \"none\")");
  // (with a CLS token VisionMamba returns it before pooling, so "max"/"all" only matter without one)
  c.position_embedding = config_bool(source, j, "if_abs_pos_embed", true);

  // The blocks.
  if (const std::string bimamba = vim_config_string(source, j, "bimamba_type", "v2"); bimamba != "v2")
    config_fail(source, "bimamba_type = \"" + bimamba + "\" is not supported (expected \"v2\")");
  vim_config_require(source, j, "if_bimamba", false, "bimamba v1");
  c.divide_out = config_bool(source, j, "if_divide_out", true);
  vim_config_require(source, j, "rms_norm", true, "LayerNorm blocks");
  vim_config_require(source, j, "if_rope", false, "rotary position embedding");
  vim_config_require(source, j, "if_bidirectional", false, "pairs of layers over both directions");
  if (config_field(j, "init_layer_scale")) config_fail(source, "init_layer_scale is not supported (expected null)");
  if (config_real(source, j, "flip_img_sequences_ratio", -1.0) > 0)
    config_fail(source, "flip_img_sequences_ratio > 0 (random flips of the sequence) is not supported");

  if (!(c.norm_eps >= 0)) config_fail(source, "norm_epsilon must be non-negative");
  config_check_sizes(source, c);
  const auto fits = [&](const char* what, std::initializer_list<index_t> sizes) {
    if (!mixlens::detail::element_count(sizes)) config_fail(source, std::string(what) + " exceeds 2^63");
  };
  fits("the image (height · width · channels)", {c.image_height, c.image_width, c.channels});
  fits("embed_dim · channels · patch_size² (patch_embed)", {c.hidden_size, c.channels, c.patch_size, c.patch_size});
  fits("num_classes · embed_dim (head)", {c.num_classes, c.hidden_size});
  fits("sequence length · 2 · d_inner (in_proj output)", {c.sequence_length(), 2, c.intermediate_size});
  fits("sequence length · embed_dim (pos_embed)", {c.sequence_length(), c.hidden_size});
  return c;
}

[[nodiscard]] inline vim_config load_vim_config(const std::filesystem::path& file) {
  return parse_vim_config(detail::read_config_text(file), file.string());
}

}  // namespace mixlens::models
