// The configuration of a Mamba-2 language model, read from config.json in
// either layout:
//  - Hugging Face transformers (Mamba2Config: num_heads, head_dim, n_groups,
//    state_size, expand, …, time_step_limit);
//  - the original state-spaces release (d_model, n_layer, ssm_cfg with
//    layer "Mamba2", headdim, ngroups, d_ssm, …; vocabulary padded to
//    pad_vocab_size_multiple).
// The gated RMSNorm normalizes per group of d_ssm / ngroups channels in mamba_ssm
// and in transformers from 5.23.0, over the whole SSM width in older transformers;
// a Hugging Face config's transformers_version tells which, the config records
// it (norm_group_size). See docs/mamba2.md.
// Needs nlohmann-json.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

#include "mixlens/models/mamba_config.hpp"

namespace mixlens::models {

struct mamba2_config : lm_config {
  index_t num_heads = 0;        // H
  index_t head_dim = 64;        // P; the SSM width is H·P
  index_t state_size = 128;     // N
  index_t n_groups = 1;         // G: heads share B and C in groups of H / G
  index_t conv_kernel = 4;
  index_t chunk_size = 256;     // of the chunked SSD algorithm (the result does not depend on it)
  index_t d_mlp = 0;            // channels of the gated-MLP part of in_proj (state-spaces d_ssm < d_inner)
  index_t norm_group_size = 0;  // channels per group of the gated RMSNorm
  double dt_min = 0;            // time_step_limit: Δ is clamped to [dt_min, dt_max]
  double dt_max = std::numeric_limits<double>::infinity();

  [[nodiscard]] std::string_view family() const { return "Mamba-2"; }
  [[nodiscard]] index_t ssm_channels() const { return num_heads * head_dim; }
  [[nodiscard]] index_t conv_channels() const { return ssm_channels() + 2 * n_groups * state_size; }
  // in_proj rows: [z0, x0 (d_mlp each); z (H·P); x, B, C (conv channels); dt (H)].
  [[nodiscard]] index_t in_proj_rows() const { return 2 * d_mlp + ssm_channels() + conv_channels() + num_heads; }
  // out_proj columns: [MLP (d_mlp); SSM (H·P)].
  [[nodiscard]] index_t intermediate_size() const { return d_mlp + ssm_channels(); }
};

namespace detail {

// A number, or infinity as configs spell it where JSON cannot: transformers 5's
// {"__float__": "Infinity"}, a string "Infinity" / "inf", or Python's bare
// Infinity (quoted by parse_config_object).
inline double config_extended_real(std::string_view source, const nlohmann::json& v, const std::string& what) {
  if (v.is_number()) return v.get<double>();
  const nlohmann::json* s = &v;
  if (v.is_object() && v.size() == 1 && v.contains("__float__")) s = &v["__float__"];
  if (s->is_string()) {
    const std::string text = s->get<std::string>();
    if (text == "Infinity" || text == "inf") return std::numeric_limits<double>::infinity();
    if (text == "-Infinity" || text == "-inf") return -std::numeric_limits<double>::infinity();
  }
  config_fail(source, what + " must be a number, got " + config_show(v));
}

// time_step_limit / dt_limit: [lo, hi] with 0 ≤ lo < hi.
inline void config_limit(std::string_view source, const nlohmann::json& j, const char* key, mamba2_config& c) {
  const nlohmann::json* f = config_field(j, key);
  if (!f) return;
  if (!f->is_array() || f->size() != 2) config_fail(source, std::string("field '") + key + "' must be [min, max], got " + config_show(*f));
  c.dt_min = config_extended_real(source, (*f)[0], std::string(key) + "[0]");
  c.dt_max = config_extended_real(source, (*f)[1], std::string(key) + "[1]");
  if (!(c.dt_min >= 0 && c.dt_min < c.dt_max))
    config_fail(source, std::string("field '") + key + "' must satisfy 0 <= min < max, got " + config_show(*f));
}

// A flag that must have one value: `why` names the variant that is not supported.
inline void config_require(std::string_view source, const nlohmann::json& j, const char* key, bool expected,
                           const std::string& why) {
  if (config_bool(source, j, key, expected) != expected)
    config_fail(source, std::string(key) + " = " + (expected ? "false" : "true") + " (" + why + ") is not supported");
}

// Every size the loader and the forward pass form from the config must fit in
// 64 bits (a config can claim any size; the checkpoint is checked later). All
// are sums of the products below, each below 2^62, so these checks suffice.
inline void config_check_sizes(std::string_view source, const mamba2_config& c) {
  constexpr index_t limit = index_t(1) << 60;
  const auto small = [&](const char* what, std::initializer_list<index_t> sizes) {
    const auto n = mixlens::detail::element_count(sizes);
    if (!n || *n >= limit) config_fail(source, std::string(what) + " exceeds 2^60");
  };
  small("num_heads · head_dim (the SSM width)", {c.num_heads, c.head_dim});
  small("n_groups · state_size (B, C)", {c.n_groups, c.state_size});
  small("d_mlp", {c.d_mlp});
  // in_proj (rows × d_model), conv1d (channels × d_conv), out_proj, embedding.
  const index_t rows = c.in_proj_rows(), conv = c.conv_channels();
  small("in_proj rows · d_model (in_proj)", {rows, c.hidden_size});
  small("conv channels · conv_kernel (conv1d)", {conv, c.conv_kernel});
  small("vocab_size · d_model (embedding)", {c.vocab_size, c.hidden_size});
}

// Whether the transformers that wrote a Hugging Face config normalizes Mamba-2's
// gated RMSNorm per group: from 5.23.0 (earlier releases take one group of the
// whole width); a config without transformers_version is taken as current.
[[nodiscard]] inline bool transformers_groups_gated_norm(std::string_view source, const nlohmann::json& j) {
  const nlohmann::json* v = config_field(j, "transformers_version");
  if (!v) return true;
  if (!v->is_string()) config_fail(source, "field 'transformers_version' must be a string, got " + config_show(*v));
  const std::string text = v->get<std::string>();
  int major = 0, minor = 0;
  if (std::sscanf(text.c_str(), "%d.%d", &major, &minor) != 2)
    config_fail(source, "field 'transformers_version' = \"" + text + "\" is not a version (expected \"major.minor[.patch]\")");
  return major > 5 || (major == 5 && minor >= 23);
}

}  // namespace detail

// Parses the text of a Mamba-2 config.json; `source` names it in error messages.
[[nodiscard]] inline mamba2_config parse_mamba2_config(std::string_view text, std::string_view source = "config.json") {
  const nlohmann::json j = detail::parse_config_object(text, source);
  mamba2_config c;
  index_t inner = 0;  // expand · d_model
  if (detail::config_field(j, "d_model")) {  // state-spaces MambaConfig with a Mamba2 mixer
    detail::parse_state_spaces_lm(source, j, c);
    if (const auto* mlp = detail::config_field(j, "d_intermediate"); mlp && !(mlp->is_number_integer() && mlp->get<std::int64_t>() == 0))
      detail::config_fail(source, "d_intermediate = " + detail::config_show(*mlp) + " (MLP blocks between the mixers) is not supported");
    if (const auto* attn = detail::config_field(j, "attn_layer_idx"); attn && !(attn->is_array() && attn->empty()))
      detail::config_fail(source, "attn_layer_idx = " + detail::config_show(*attn) + " (attention layers) is not supported");
    const nlohmann::json& s = detail::config_ssm_cfg(source, j);
    if (const auto* layer = detail::config_field(s, "layer"); !layer || *layer != "Mamba2")
      detail::config_fail(source, "ssm_cfg.layer must be \"Mamba2\" for a Mamba-2 model, got " + (layer ? detail::config_show(*layer) : "none"));
    c.state_size = detail::config_int(source, s, "d_state", 128);
    c.conv_kernel = detail::config_int(source, s, "d_conv", 4);
    inner = detail::config_inner_size(source, detail::config_real(source, s, "expand", 2.0), c.hidden_size);
    c.head_dim = detail::config_int(source, s, "headdim", 64);
    const index_t d_ssm = detail::config_int(source, s, "d_ssm", inner);
    if (d_ssm > inner) detail::config_fail(source, "ssm_cfg.d_ssm = " + std::to_string(d_ssm) + " exceeds expand · d_model = " + std::to_string(inner));
    if (d_ssm % c.head_dim != 0)
      detail::config_fail(source, "ssm_cfg.d_ssm = " + std::to_string(d_ssm) + " is not a multiple of headdim " + std::to_string(c.head_dim));
    c.num_heads = d_ssm / c.head_dim;
    c.d_mlp = inner - d_ssm;
    c.n_groups = detail::config_int(source, s, "ngroups", 1);
    c.chunk_size = detail::config_int(source, s, "chunk_size", 256);
    c.use_bias = detail::config_bool(source, s, "bias", false);
    c.use_conv_bias = detail::config_bool(source, s, "conv_bias", true);
    detail::config_limit(source, s, "dt_limit", c);
    detail::config_require(source, s, "rmsnorm", true, "no gated RMSNorm");
    detail::config_require(source, s, "norm_before_gate", false, "the norm before the gate");
    detail::config_require(source, s, "D_has_hdim", false, "D per channel");
    if (c.ssm_channels() % c.n_groups != 0)
      detail::config_fail(source, "ssm_cfg.ngroups = " + std::to_string(c.n_groups) + " does not divide d_ssm = " + std::to_string(c.ssm_channels()));
    c.norm_group_size = c.ssm_channels() / c.n_groups;  // mamba_ssm: RMSNormGated(group_size = d_ssm / ngroups)
    inner = c.intermediate_size();
  } else {  // Hugging Face Mamba2Config
    if (const auto* type = detail::config_field(j, "model_type"); type && *type != "mamba2")
      detail::config_fail(source, "model_type = " + detail::config_show(*type) + " is not a Mamba-2 model (expected \"mamba2\")");
    detail::parse_hugging_face_lm(source, j, false, c);
    c.num_heads = detail::config_int(source, j, "num_heads", 128);
    c.head_dim = detail::config_int(source, j, "head_dim", 64);
    c.state_size = detail::config_int(source, j, "state_size", 128);
    c.n_groups = detail::config_int(source, j, "n_groups", 8);
    c.conv_kernel = detail::config_int(source, j, "conv_kernel", 4);
    c.chunk_size = detail::config_int(source, j, "chunk_size", 256);
    inner = detail::config_inner_size(source, detail::config_real(source, j, "expand", 2.0), c.hidden_size);
    if (!mixlens::detail::product(c.num_heads, c.head_dim))
      detail::config_fail(source, "num_heads · head_dim exceeds 2^63");
    if (inner != c.ssm_channels())
      detail::config_fail(source, "expand · hidden_size = " + std::to_string(inner) + " must equal num_heads · head_dim = " +
                                      std::to_string(c.ssm_channels()));
    detail::config_limit(source, j, "time_step_limit", c);
    // MambaRMSNormGated: per group since transformers 5.23.0, one group of the whole width before.
    c.norm_group_size = detail::transformers_groups_gated_norm(source, j) ? c.ssm_channels() / c.n_groups
                                                                          : c.ssm_channels();
  }
  if (c.num_heads % c.n_groups != 0)
    detail::config_fail(source, "the " + std::to_string(c.n_groups) + " groups do not divide the " + std::to_string(c.num_heads) + " heads");
  if (!(c.norm_eps >= 0)) detail::config_fail(source, "the norm epsilon must be non-negative");
  detail::config_check_sizes(source, c);
  return c;
}

[[nodiscard]] inline mamba2_config load_mamba2_config(const std::filesystem::path& file) {
  return parse_mamba2_config(detail::read_config_text(file), file.string());
}

}  // namespace mixlens::models
