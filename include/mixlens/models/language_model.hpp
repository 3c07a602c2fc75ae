// A language model of any family mixlens reads, chosen by its config.json:
//   model_type / architectures   "mamba" / MambaForCausalLM                → Mamba
//                                "falcon_mamba" / FalconMambaForCausalLM   → Falcon-Mamba (a Mamba option)
//                                "mamba2" / Mamba2ForCausalLM              → Mamba-2
//                                "vim" / VisionMamba                       → Vision Mamba (a classifier:
//                                                                            models::load_vim, not a language model)
//   state-spaces (d_model)       ssm_cfg.layer "Mamba1" or absent → Mamba, "Mamba2" → Mamba-2
// A config without any of these keys is read as Mamba (as older checkpoints are).
// Needs nlohmann-json.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::models {

enum class model_family { mamba, falcon_mamba, mamba2, vim };

[[nodiscard]] constexpr std::string_view to_string(model_family f) {
  return mixlens::detail::enum_name(f, {"Mamba", "Falcon-Mamba", "Mamba-2", "Vision Mamba"});
}

// The family the text of a config.json describes; `source` names it in error
// messages.
[[nodiscard]] inline model_family parse_family(std::string_view text, std::string_view source = "config.json") {
  const nlohmann::json j = detail::parse_config_object(text, source);
  struct known {
    std::string_view type, architecture;
    model_family family;
  };
  static constexpr known families[] = {{"mamba", "MambaForCausalLM", model_family::mamba},
                                       {"falcon_mamba", "FalconMambaForCausalLM", model_family::falcon_mamba},
                                       {"mamba2", "Mamba2ForCausalLM", model_family::mamba2},
                                       {"vim", "VisionMamba", model_family::vim}};
  const nlohmann::json* type = detail::config_field(j, "model_type");
  const nlohmann::json* arch = detail::config_field(j, "architectures");
  if (type) {
    for (const auto& k : families)
      if (*type == k.type) return k.family;
    detail::config_fail(source, "model_type = " + detail::config_show(*type) +
                                    " is not supported (expected \"mamba\", \"falcon_mamba\", \"mamba2\" or \"vim\")");
  }
  if (arch) {
    if (!arch->is_array() || arch->empty() || !(*arch)[0].is_string())
      detail::config_fail(source, "field 'architectures' must be a list of class names, got " + detail::config_show(*arch));
    for (const auto& k : families)
      if ((*arch)[0] == k.architecture) return k.family;
    detail::config_fail(source, "architectures = " + detail::config_show(*arch) +
                                    " is not supported (expected MambaForCausalLM, FalconMambaForCausalLM, "
                                    "Mamba2ForCausalLM or VisionMamba)");
  }
  if (detail::config_field(j, "d_model"))
    if (const auto* ssm = detail::config_field(j, "ssm_cfg"); ssm && ssm->is_object())
      if (const auto* layer = detail::config_field(*ssm, "layer"); layer && *layer == "Mamba2") return model_family::mamba2;
  return model_family::mamba;  // the Mamba parser names what else is wrong
}

[[nodiscard]] inline model_family detect_family(const std::filesystem::path& config_file) {
  return parse_family(detail::read_config_text(config_file), config_file.string());
}

template <class T>
using language_model = std::variant<mamba_model<T>, mamba2_model<T>>;

// The family of a loaded model.
template <class T>
[[nodiscard]] model_family family_of(const mamba_model<T>& m) {
  return m.config.bc_dt_norm ? model_family::falcon_mamba : model_family::mamba;
}
template <class T>
[[nodiscard]] model_family family_of(const mamba2_model<T>&) {
  return model_family::mamba2;
}

// Loads the language model in `dir` (config.json + model.safetensors or its
// shards), whatever its family.
template <class T>
[[nodiscard]] language_model<T> load_language_model(const std::filesystem::path& dir) {
  const std::filesystem::path config = detail::model_config_file(dir, "model");
  switch (detect_family(config)) {
    case model_family::mamba2: return load_mamba2<T>(dir);
    case model_family::vim:
      detail::config_fail(config.string(), "a Vision Mamba classifier, not a language model: load it with "
                                           "mixlens::models::load_vim (docs/vim.md)");
    default: return load_mamba<T>(dir);
  }
}

}  // namespace mixlens::models
