// The configuration of a Mamba language model, read from config.json in either
// of the two layouts Mamba checkpoints come with:
//  - Hugging Face transformers (MambaConfig: hidden_size, state_size, …);
//  - the original state-spaces release (d_model, n_layer, ssm_cfg, …; vocabulary
//    padded to pad_vocab_size_multiple).
// Needs nlohmann-json (mixlens/models/ headers are the only ones that do).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"

namespace mixlens::models {

// Which tensor names the checkpoint uses.
enum class mamba_naming {
  hugging_face,  // backbone.embeddings.weight
  state_spaces,  // backbone.embedding.weight
};

struct mamba_config {
  index_t vocab_size = 0;         // rows of the embedding (padded for state-spaces files)
  index_t hidden_size = 0;        // d_model
  index_t state_size = 16;        // N
  index_t intermediate_size = 0;  // d_inner = expand · d_model
  index_t conv_kernel = 4;
  index_t time_step_rank = 0;     // dt_rank
  index_t num_layers = 0;
  double norm_eps = 1e-5;
  bool use_bias = false;          // in_proj and out_proj biases
  bool use_conv_bias = true;
  bool residual_in_fp32 = true;   // no effect in fp32/fp64 compute; kept for reporting
  bool tie_embeddings = true;     // lm_head = embedding
  mamba_naming naming = mamba_naming::hugging_face;

  [[nodiscard]] std::string embedding_name() const {
    return naming == mamba_naming::state_spaces ? "backbone.embedding.weight" : "backbone.embeddings.weight";
  }
};

namespace detail {

[[noreturn]] inline void config_fail(std::string_view source, const std::string& what) {
  throw error("Mamba config '" + std::string(source) + "': " + what);
}

inline const nlohmann::json* config_field(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline index_t config_int(std::string_view source, const nlohmann::json& j, const char* key,
                          std::optional<index_t> fallback = std::nullopt) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) {
    if (fallback) return *fallback;
    config_fail(source, std::string("missing field '") + key + "'");
  }
  if (!f->is_number_integer()) config_fail(source, std::string("field '") + key + "' must be an integer, got " + f->dump());
  const auto v = f->get<std::int64_t>();
  if (v <= 0) config_fail(source, std::string("field '") + key + "' must be positive, got " + std::to_string(v));
  return v;
}

inline bool config_bool(std::string_view source, const nlohmann::json& j, const char* key, bool fallback) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return fallback;
  if (!f->is_boolean()) config_fail(source, std::string("field '") + key + "' must be true or false, got " + f->dump());
  return f->get<bool>();
}

inline double config_real(std::string_view source, const nlohmann::json& j, const char* key, double fallback) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return fallback;
  if (!f->is_number()) config_fail(source, std::string("field '") + key + "' must be a number, got " + f->dump());
  return f->get<double>();
}

// "auto" (⌈d_model/16⌉, as both codebases define it) or a positive integer.
inline index_t config_rank(std::string_view source, const nlohmann::json& j, const char* key, index_t hidden) {
  const nlohmann::json* f = config_field(j, key);
  if (!f || (f->is_string() && f->get<std::string>() == "auto")) return (hidden + 15) / 16;
  return config_int(source, j, key);
}

}  // namespace detail

// Parses the text of a config.json; `source` names it in error messages.
[[nodiscard]] inline mamba_config parse_mamba_config(std::string_view text, std::string_view source = "config.json") {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::ostringstream os;
    os << "Mamba config '" << source << "' at byte " << e.byte << ": malformed JSON (" << e.what() << ")";
    throw error(os.str());
  }
  if (!j.is_object()) detail::config_fail(source, "expected a JSON object at the top level");

  mamba_config c;
  if (detail::config_field(j, "d_model")) {  // state-spaces layout
    c.naming = mamba_naming::state_spaces;
    c.hidden_size = detail::config_int(source, j, "d_model");
    c.num_layers = detail::config_int(source, j, "n_layer");
    const index_t vocab = detail::config_int(source, j, "vocab_size");
    const index_t multiple = detail::config_int(source, j, "pad_vocab_size_multiple", 1);
    c.vocab_size = (vocab + multiple - 1) / multiple * multiple;
    c.residual_in_fp32 = detail::config_bool(source, j, "residual_in_fp32", true);
    c.tie_embeddings = detail::config_bool(source, j, "tie_embeddings", true);
    if (!detail::config_bool(source, j, "rms_norm", true))
      detail::config_fail(source, "rms_norm = false (LayerNorm blocks) is not supported");
    static const nlohmann::json empty = nlohmann::json::object();
    const nlohmann::json* ssm = detail::config_field(j, "ssm_cfg");
    if (ssm && !ssm->is_object()) detail::config_fail(source, "field 'ssm_cfg' must be an object");
    const nlohmann::json& s = ssm ? *ssm : empty;
    if (const auto* layer = detail::config_field(s, "layer"); layer && *layer != "Mamba1")
      detail::config_fail(source, "ssm_cfg.layer = " + layer->dump() + " is not supported (only Mamba1)");
    c.state_size = detail::config_int(source, s, "d_state", 16);
    c.conv_kernel = detail::config_int(source, s, "d_conv", 4);
    const double expand = detail::config_real(source, s, "expand", 2.0);
    c.intermediate_size = static_cast<index_t>(expand * static_cast<double>(c.hidden_size));
    c.time_step_rank = detail::config_rank(source, s, "dt_rank", c.hidden_size);
    c.use_conv_bias = detail::config_bool(source, s, "conv_bias", true);
    c.use_bias = detail::config_bool(source, s, "bias", false);
    c.norm_eps = 1e-5;  // mamba_ssm's RMSNorm default
  } else {  // Hugging Face MambaConfig
    if (const auto* type = detail::config_field(j, "model_type"); type && *type != "mamba")
      detail::config_fail(source, "model_type = " + type->dump() + " is not supported (expected \"mamba\")");
    if (const auto* act = detail::config_field(j, "hidden_act"); act && *act != "silu" && *act != "swish")
      detail::config_fail(source, "hidden_act = " + act->dump() + " is not supported (expected \"silu\")");
    c.naming = mamba_naming::hugging_face;
    c.hidden_size = detail::config_int(source, j, "hidden_size");
    c.num_layers = detail::config_int(source, j, "num_hidden_layers");
    c.vocab_size = detail::config_int(source, j, "vocab_size");
    c.state_size = detail::config_int(source, j, "state_size", 16);
    c.conv_kernel = detail::config_int(source, j, "conv_kernel", 4);
    const double expand = detail::config_real(source, j, "expand", 2.0);
    c.intermediate_size =
        detail::config_int(source, j, "intermediate_size", static_cast<index_t>(expand * static_cast<double>(c.hidden_size)));
    c.time_step_rank = detail::config_rank(source, j, "time_step_rank", c.hidden_size);
    c.norm_eps = detail::config_real(source, j, "layer_norm_epsilon", 1e-5);
    c.use_bias = detail::config_bool(source, j, "use_bias", false);
    c.use_conv_bias = detail::config_bool(source, j, "use_conv_bias", true);
    c.residual_in_fp32 = detail::config_bool(source, j, "residual_in_fp32", true);
    c.tie_embeddings = detail::config_bool(source, j, "tie_word_embeddings", true);
  }
  if (c.intermediate_size <= 0) detail::config_fail(source, "the inner size (expand · d_model) must be positive");
  if (!(c.norm_eps >= 0)) detail::config_fail(source, "the norm epsilon must be non-negative");
  return c;
}

[[nodiscard]] inline mamba_config load_mamba_config(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw error("cannot open Mamba config '" + file.string() + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_mamba_config(text.str(), file.string());
}

}  // namespace mixlens::models
