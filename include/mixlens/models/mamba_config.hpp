// The configuration of a Mamba language model, read from config.json in either
// of the two layouts Mamba checkpoints come with:
//  - Hugging Face transformers (MambaConfig: hidden_size, state_size, …; or
//    FalconMambaConfig, the same model with weightless RMSNorms on δ, B and C);
//  - the original state-spaces release (d_model, n_layer, ssm_cfg, …; vocabulary
//    padded to pad_vocab_size_multiple).
// Needs nlohmann-json (mixlens/models/ headers are the only ones that do).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "mixlens/config.hpp"
#include "mixlens/detail/file.hpp"
#include "mixlens/error.hpp"

namespace mixlens::models {

// Which tensor names the checkpoint uses.
enum class mamba_naming {
  hugging_face,  // backbone.embeddings.weight
  state_spaces,  // backbone.embedding.weight
};

// The fields every language-model family's config has.
struct lm_config {
  index_t vocab_size = 0;   // rows of the embedding (padded for state-spaces files)
  index_t hidden_size = 0;  // d_model
  index_t num_layers = 0;
  double norm_eps = 1e-5;         // the block norms (and Mamba-2's gated norm)
  bool use_bias = false;          // in_proj and out_proj biases
  bool use_conv_bias = true;
  bool residual_in_fp32 = true;   // no effect in fp32/fp64 compute; kept for reporting
  bool tie_embeddings = true;     // lm_head = embedding
  mamba_naming naming = mamba_naming::hugging_face;

  [[nodiscard]] std::string embedding_name() const {
    return naming == mamba_naming::state_spaces ? "backbone.embedding.weight" : "backbone.embeddings.weight";
  }
};

struct mamba_config : lm_config {
  index_t state_size = 16;        // N
  index_t intermediate_size = 0;  // d_inner = expand · d_model
  index_t conv_kernel = 4;
  index_t time_step_rank = 0;     // dt_rank
  // Falcon-Mamba: the x_proj outputs δ, B and C each RMS-normalized (no weight)
  // at every position before dt_proj and the scan, with this epsilon.
  bool bc_dt_norm = false;
  double mixer_rms_eps = 1e-6;

  [[nodiscard]] std::string_view family() const { return bc_dt_norm ? "Falcon-Mamba" : "Mamba"; }
};

namespace detail {

[[noreturn]] inline void config_fail(std::string_view source, const std::string& what) {
  throw error("Mamba config '" + std::string(source) + "': " + what);
}

// The value as JSON text for messages (invalid UTF-8 replaced: dump() would throw).
inline std::string config_show(const nlohmann::json& v) {
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  if (!f->is_number_integer()) config_fail(source, std::string("field '") + key + "' must be an integer, got " + config_show(*f));
  if (f->is_number_unsigned() && f->get<std::uint64_t>() > std::uint64_t(INT64_MAX))
    config_fail(source, std::string("field '") + key + "' must fit in 64 bits, got " + config_show(*f));
  const auto v = f->get<std::int64_t>();
  if (v <= 0) config_fail(source, std::string("field '") + key + "' must be positive, got " + std::to_string(v));
  return v;
}

inline bool config_bool(std::string_view source, const nlohmann::json& j, const char* key, bool fallback) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return fallback;
  if (!f->is_boolean()) config_fail(source, std::string("field '") + key + "' must be true or false, got " + config_show(*f));
  return f->get<bool>();
}

inline double config_real(std::string_view source, const nlohmann::json& j, const char* key, double fallback) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return fallback;
  if (!f->is_number()) config_fail(source, std::string("field '") + key + "' must be a number, got " + config_show(*f));
  return f->get<double>();
}

// d_inner = expand · d_model, checked before the cast (out of range is undefined).
inline index_t config_inner_size(std::string_view source, double expand, index_t hidden) {
  const double inner = expand * static_cast<double>(hidden);
  if (!(inner >= 1 && inner < 0x1p62))
    config_fail(source, "expand = " + std::to_string(expand) + " times d_model = " + std::to_string(hidden) +
                            " is not a positive size below 2^62");
  return static_cast<index_t>(inner);
}

// Every product the loader and the forward pass form from the sizes must fit
// in 64 bits: a config can claim any size, the checkpoint is checked later.
inline void config_check_sizes(std::string_view source, const mamba_config& c) {
  const auto fits = [&](const char* what, std::initializer_list<index_t> sizes) {
    if (!mixlens::detail::element_count(sizes)) config_fail(source, std::string(what) + " exceeds 2^63");
  };
  fits("2 · d_inner · d_model (in_proj)", {2, c.intermediate_size, c.hidden_size});
  fits("vocab_size · d_model (embedding)", {c.vocab_size, c.hidden_size});
  fits("d_inner · d_state (A_log)", {c.intermediate_size, c.state_size});
  fits("d_inner · d_conv (conv1d)", {c.intermediate_size, c.conv_kernel});
  fits("d_inner · dt_rank (dt_proj)", {c.intermediate_size, c.time_step_rank});
  const auto bc = mixlens::detail::product(2, c.state_size);
  if (!bc || c.time_step_rank > INT64_MAX - *bc) config_fail(source, "dt_rank + 2 · d_state (x_proj) exceeds 2^63");
  fits("(dt_rank + 2 · d_state) · d_inner (x_proj)", {c.time_step_rank + *bc, c.intermediate_size});
}

// "auto" (⌈d_model/16⌉, as both codebases define it) or a positive integer.
inline index_t config_rank(std::string_view source, const nlohmann::json& j, const char* key, index_t hidden) {
  const nlohmann::json* f = config_field(j, key);
  if (!f || (f->is_string() && f->get<std::string>() == "auto")) return (hidden + 15) / 16;
  return config_int(source, j, key);
}

// Python's json writes float("inf") as a bare Infinity (transformers 4 configs
// hold `"time_step_limit": [0.0, Infinity]`), which is not JSON: the tokens
// Infinity, -Infinity and NaN outside strings, quoted, so that the text parses.
inline std::string quote_non_finite(std::string_view text) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) out += text[++i];
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    bool quoted = false;
    for (const std::string_view token : {"-Infinity", "Infinity", "NaN"})
      if (text.substr(i, token.size()) == token) {
        out += '"', out += token, out += '"';
        i += token.size() - 1;
        quoted = true;
        break;
      }
    if (!quoted) out += ch;
  }
  return out;
}

// The top-level object of a config.json's text.
inline nlohmann::json parse_config_object(std::string_view text, std::string_view source) {
  nlohmann::json j;
  try {
    const bool bare = text.find("Infinity") != std::string_view::npos || text.find("NaN") != std::string_view::npos;
    j = bare ? nlohmann::json::parse(quote_non_finite(text)) : nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::ostringstream os;
    os << "Mamba config '" << source << "' at byte " << e.byte << ": malformed JSON (" << e.what() << ")";
    throw error(os.str());
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range.406 for 1e400
    config_fail(source, std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) config_fail(source, "expected a JSON object at the top level");
  return j;
}

inline std::string read_config_text(const std::filesystem::path& file) {
  (void)mixlens::detail::regular_file_size(file, "Mamba config");  // a directory or a FIFO is no JSON
  std::ifstream in(file, std::ios::binary);
  if (!in) throw error("cannot open Mamba config '" + file.string() + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The vocabulary of a state-spaces config, padded as its embedding is.
inline index_t padded_vocab(std::string_view source, const nlohmann::json& j) {
  const index_t vocab = config_int(source, j, "vocab_size");
  const index_t multiple = config_int(source, j, "pad_vocab_size_multiple", 1);
  const index_t pad = (multiple - vocab % multiple) % multiple;
  if (vocab > INT64_MAX - pad)
    config_fail(source, "vocab_size " + std::to_string(vocab) + " padded to a multiple of " + std::to_string(multiple) +
                            " exceeds 2^63");
  return vocab + pad;
}

// ssm_cfg of a state-spaces config, or an empty object.
inline const nlohmann::json& config_ssm_cfg(std::string_view source, const nlohmann::json& j) {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json* ssm = config_field(j, "ssm_cfg");
  if (ssm && !ssm->is_object()) config_fail(source, "field 'ssm_cfg' must be an object");
  return ssm ? *ssm : empty;
}

// The lm_config fields of a state-spaces MambaConfig (d_model, n_layer, …).
inline void parse_state_spaces_lm(std::string_view source, const nlohmann::json& j, lm_config& c) {
  c.naming = mamba_naming::state_spaces;
  c.hidden_size = config_int(source, j, "d_model");
  c.num_layers = config_int(source, j, "n_layer");
  c.vocab_size = padded_vocab(source, j);
  c.residual_in_fp32 = config_bool(source, j, "residual_in_fp32", true);
  c.tie_embeddings = config_bool(source, j, "tie_embeddings", true);
  if (!config_bool(source, j, "rms_norm", true)) config_fail(source, "rms_norm = false (LayerNorm blocks) is not supported");
  c.norm_eps = 1e-5;  // mamba_ssm's RMSNorm default
}

// The lm_config fields of a transformers config (hidden_size, …); `tie` is the
// family's default of tie_word_embeddings.
inline void parse_hugging_face_lm(std::string_view source, const nlohmann::json& j, bool tie, lm_config& c) {
  if (const auto* act = config_field(j, "hidden_act"); act && *act != "silu" && *act != "swish")
    config_fail(source, "hidden_act = " + config_show(*act) + " is not supported (expected \"silu\")");
  c.naming = mamba_naming::hugging_face;
  c.hidden_size = config_int(source, j, "hidden_size");
  c.num_layers = config_int(source, j, "num_hidden_layers");
  c.vocab_size = config_int(source, j, "vocab_size");
  c.norm_eps = config_real(source, j, "layer_norm_epsilon", 1e-5);
  c.use_bias = config_bool(source, j, "use_bias", false);
  c.use_conv_bias = config_bool(source, j, "use_conv_bias", true);
  c.residual_in_fp32 = config_bool(source, j, "residual_in_fp32", true);
  c.tie_embeddings = config_bool(source, j, "tie_word_embeddings", tie);
}

}  // namespace detail

// Parses the text of a config.json; `source` names it in error messages.
[[nodiscard]] inline mamba_config parse_mamba_config(std::string_view text, std::string_view source = "config.json") {
  const nlohmann::json j = detail::parse_config_object(text, source);

  mamba_config c;
  if (detail::config_field(j, "d_model")) {  // state-spaces layout
    detail::parse_state_spaces_lm(source, j, c);
    const nlohmann::json& s = detail::config_ssm_cfg(source, j);
    if (const auto* layer = detail::config_field(s, "layer"); layer && *layer != "Mamba1")
      detail::config_fail(source, "ssm_cfg.layer = " + detail::config_show(*layer) + " is not supported (only Mamba1)");
    c.state_size = detail::config_int(source, s, "d_state", 16);
    c.conv_kernel = detail::config_int(source, s, "d_conv", 4);
    c.intermediate_size = detail::config_inner_size(source, detail::config_real(source, s, "expand", 2.0), c.hidden_size);
    c.time_step_rank = detail::config_rank(source, s, "dt_rank", c.hidden_size);
    c.use_conv_bias = detail::config_bool(source, s, "conv_bias", true);
    c.use_bias = detail::config_bool(source, s, "bias", false);
  } else {  // Hugging Face MambaConfig or FalconMambaConfig
    const auto* type = detail::config_field(j, "model_type");
    if (type && *type != "mamba" && *type != "falcon_mamba")
      detail::config_fail(source, "model_type = " + detail::config_show(*type) +
                                      " is not supported (expected \"mamba\" or \"falcon_mamba\")");
    c.bc_dt_norm = type && *type == "falcon_mamba";
    c.mixer_rms_eps = detail::config_real(source, j, "mixer_rms_eps", 1e-6);
    detail::parse_hugging_face_lm(source, j, true, c);
    c.state_size = detail::config_int(source, j, "state_size", 16);
    c.conv_kernel = detail::config_int(source, j, "conv_kernel", 4);
    c.intermediate_size = detail::config_field(j, "intermediate_size")
                              ? detail::config_int(source, j, "intermediate_size")
                              : detail::config_inner_size(source, detail::config_real(source, j, "expand", 2.0), c.hidden_size);
    c.time_step_rank = detail::config_rank(source, j, "time_step_rank", c.hidden_size);
  }
  if (!(c.norm_eps >= 0)) detail::config_fail(source, "the norm epsilon must be non-negative");
  if (!(c.mixer_rms_eps >= 0)) detail::config_fail(source, "mixer_rms_eps must be non-negative");
  detail::config_check_sizes(source, c);
  return c;
}

[[nodiscard]] inline mamba_config load_mamba_config(const std::filesystem::path& file) {
  return parse_mamba_config(detail::read_config_text(file), file.string());
}

}  // namespace mixlens::models
