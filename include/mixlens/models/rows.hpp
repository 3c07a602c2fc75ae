// Row selections for the maps of selected rows (analysis::aggregate_rows):
// mixlens-attn's and python -m mixlens's --rows, mixlens.Model.attention's rows.
#pragma once

#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::models {

// The positions of `text`, comma-separated items each `last` (L − 1), `cls` (the
// CLS position: `vision` models only, `cls` < 0 when the model pools instead) or
// a position in [0, L); ascending and distinct. Errors name `option` (e.g.
// "--rows"), the item and the valid range.
[[nodiscard]] inline std::vector<index_t> resolve_rows(std::string_view text, index_t L, bool vision, index_t cls,
                                                       std::string_view option) {
  const std::string name(option);
  if (text.empty())
    throw error(name + ": expected last, cls or a comma-separated list of row positions, got an empty list");
  std::vector<index_t> out;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(',', begin);
    const std::string item(text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    index_t v = 0;
    if (item == "last") {
      v = L - 1;
    } else if (item == "cls") {
      if (!vision)
        throw error(name + " cls: the CLS position is Vision Mamba's; a language model has none (give last or row positions)");
      if (cls < 0)
        throw error(name + " cls: this Vision Mamba model pools the sequence (mean) and has no CLS token "
                           "(give last or row positions)");
      v = cls;
    } else {
      const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
        throw error(name + ": '" + item + "' is not last, cls or a row position (an integer)");
      if (v < 0 || v >= L)
        throw error(name + ": row " + item + " is outside the valid range [0, " + std::to_string(L) + ") of the " +
                    std::to_string(L) + " positions");
    }
    out.push_back(v);
    if (end == std::string_view::npos) break;
    begin = end + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace mixlens::models
