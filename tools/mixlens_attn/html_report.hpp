// mixlens-attn --html FILE: the maps of a run in one self-contained page
// (report_page.hpp), the data embedded as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/tensor.hpp"
#include "mixlens_attn/report_page.hpp"

namespace mixlens::tools {

// One map of the page: an L × L matrix (rows = cols = L) or a vector of L scores.
struct report_map {
  std::string name;
  std::vector<float> data;  // row-major
  index_t rows = 0, cols = 0;
  bool vector = false;            // a bar chart of scores (rows = 1) instead of a heatmap
  bool causal = false;            // the upper triangle is structurally zero: masked
  std::optional<index_t> target;  // a vector's target position
};

struct report_data {
  std::string title;
  std::vector<index_t> ids;
  std::vector<std::string> texts;  // empty: no tokenizer (the page shows ids)
  std::vector<report_map> maps;
};

namespace detail {

inline void append_values(std::string& out, std::span<const float> v) {
  out += '[';
  char buf[32];
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    if (!std::isfinite(v[i])) {
      out += "null";
      continue;
    }
    std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(v[i]));
    out += buf;
  }
  out += ']';
}

// JSON that is safe inside <script>: '<', '>' and '&' occur only in strings,
// where \u escapes stand for them.
inline std::string script_safe(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (const char ch : json) {
    if (ch == '<') out += "\\u003c";
    else if (ch == '>') out += "\\u003e";
    else if (ch == '&') out += "\\u0026";
    else out += ch;
  }
  return out;
}

}  // namespace detail

// The page's HTML for `data`.
inline std::string html_report(const report_data& data) {
  std::string json = "{\"title\": " + nlohmann::json(data.title).dump() + ", \"tokens\": [";
  for (std::size_t i = 0; i < data.ids.size(); ++i) {
    json += i ? ", " : "";
    json += "{\"id\": " + std::to_string(data.ids[i]) + ", \"text\": " +
            (data.texts.empty() ? std::string("null") : nlohmann::json(data.texts[i]).dump()) + "}";
  }
  json += "],\n\"maps\": [";
  for (std::size_t k = 0; k < data.maps.size(); ++k) {
    const report_map& m = data.maps[k];
    json += k ? ",\n" : "\n";
    json += "{\"name\": " + nlohmann::json(m.name).dump() + ", \"kind\": \"" + (m.vector ? "vector" : "matrix") +
            "\", \"rows\": " + std::to_string(m.rows) + ", \"cols\": " + std::to_string(m.cols) +
            ", \"causal\": " + (m.causal ? "true" : "false") +
            (m.target ? ", \"target\": " + std::to_string(*m.target) : std::string()) + ", \"data\": ";
    detail::append_values(json, m.data);
    json += "}";
  }
  json += "]}";
  const std::string_view marker = "/*MIXLENS_DATA*/";
  const std::size_t at = report_page.find(marker);
  std::string page(report_page.substr(0, at));
  page += detail::script_safe(json);
  page += report_page.substr(at + marker.size());
  return page;
}

// Writes the page to `file` through a temporary file beside it, so that a
// failed write leaves no half page.
inline void write_html_report(const std::filesystem::path& file, const report_data& data) {
  const std::string page = html_report(data);
  std::filesystem::path tmp = file;
  tmp += ".partial";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << page;
    if (!out.flush()) throw mixlens::error("--html: cannot write '" + file.string() + "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw mixlens::error("--html: cannot write '" + file.string() + "': " + ec.message());
  }
}

// Whether --html names a file in the output folder (then it is written with the
// outputs and listed in the manifest); checked before the run: a name, in a
// folder that exists.
inline bool html_in_folder(const std::filesystem::path& html, const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  if (!html.has_filename() || html.filename() == "." || html.filename() == "..")
    throw mixlens::error("--html: expected a file name, not '" + html.string() + "'");
  std::error_code ec;
  const fs::path folder = html.has_parent_path() ? html.parent_path() : fs::path(".");
  const fs::path a = fs::weakly_canonical(folder, ec), b = fs::weakly_canonical(out.has_filename() ? out : out.parent_path(), ec);
  if (a == b) return true;
  if (!fs::is_directory(folder, ec))
    throw mixlens::error("--html '" + html.string() + "': the folder '" + folder.string() + "' does not exist");
  if (fs::is_directory(html, ec)) throw mixlens::error("--html '" + html.string() + "' is a folder");
  return false;
}

// The page of a run: each analysed layer's channel mean, raw attention and
// rollout (r), and the attribution mixlens-attn wrote into `written`
// (attribution.npy, target.json). A language model's tokens (ids, and texts
// where a tokenizer is known) mix causally; a Vision Mamba's positions
// (ids 0 … L−1, texts naming the patch or the CLS token) both ways.
template <class Options, class Results>
report_data report_of(const Options& o, const std::filesystem::path& written, std::string_view family,
                      const std::vector<index_t>& tokens, const std::vector<std::string>& texts, const Results& r,
                      bool causal = true) {
  const index_t L = static_cast<index_t>(tokens.size());
  const std::string form = std::string(to_string(o.form)) + " form";
  report_data d;
  d.title = "mixlens-attn \u00b7 " + o.model.string() + " (" + std::string(family) + ") \u00b7 " + std::to_string(L) +
            (causal ? " tokens" : " positions") + " \u00b7 " + form;
  d.ids = tokens;
  d.texts = texts;
  const auto square = [&](const std::string& name, const float* p) {
    d.maps.push_back({.name = name, .data = std::vector<float>(p, p + L * L), .rows = L, .cols = L, .causal = causal, .target = std::nullopt});
  };
  for (const auto& [k, mean] : r.layer_means) square("layer " + std::to_string(k) + " \u00b7 " + form + " \u00b7 channel mean", mean.data());
  const std::string over = std::to_string(r.layer_means.size()) + (r.layer_means.size() == 1 ? " layer" : " layers");
  if (r.raw.size() > 0) square("raw attention \u00b7 " + over, r.raw.data());
  if (r.roll.size() > 0) square("attention rollout \u00b7 " + over, r.roll.data());
  std::error_code ec;
  if (std::filesystem::exists(written / "attribution.npy", ec)) {
    const auto scores = io::read_npy(written / "attribution.npy").template as<float>();
    std::ifstream in(written / "target.json");
    const auto target = nlohmann::json::parse(in);
    const index_t position = target.at("position").get<index_t>(), token = target.at("token").get<index_t>();
    const std::string what = causal ? "target position " + std::to_string(position) + ", token " + std::to_string(token)
                                    : "class " + std::to_string(token) +
                                          (position >= 0 ? " at position " + std::to_string(position) : " (mean pooling)");
    d.maps.push_back({.name = "attribution \u00b7 " + target.at("method").get<std::string>() + " \u00b7 " + what,
                      .data = scores, .rows = 1, .cols = L, .vector = true,
                      .target = position >= 0 ? std::optional<index_t>(position) : std::nullopt});
  }
  return d;
}

}  // namespace mixlens::tools
