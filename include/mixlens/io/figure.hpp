// Figures as PNG files: heatmaps of mixing matrices (title, position or token
// ticks on both axes, a colour bar labelled with the data's range, the causal
// upper triangle masked, sequential or diverging colours) and bar charts of
// attribution vectors. Text is drawn with FreeType (mixlens::figures; Debian:
// libfreetype-dev, font fonts-dejavu-core).
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/detail/figure.hpp"
#include "mixlens/io/png.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

enum class color_scale {
  linear,         // value → colour between min and max
  log_magnitude,  // log10|value| over `decades` below the largest magnitude
};

struct heatmap_options {
  color_scale scale = color_scale::linear;
  bool colorbar = true;
  int decades = 6;                  // log_magnitude: range shown below the maximum
  index_t target_pixels = 512;      // small matrices are enlarged to about this size
  index_t max_pixels = 1024;        // large matrices are block-averaged down to this
  std::optional<double> vmin{};     // linear: fixed range instead of the data's
  std::optional<double> vmax{};
  std::string title{};              // e.g. "layer 3 · alpha (channel mean)"
  std::vector<std::string> tick_labels{};  // token strings (UTF-8) for rows and columns; empty: positions
  std::optional<bool> diverging{};  // blue–white–red centred at 0; unset: when a value is negative
  bool mask_upper = false;          // causal maps: entries above the diagonal drawn grey, left out of the range
  std::filesystem::path font{};     // empty: $MIXLENS_FONT, else the configured DejaVu Sans
};

// Where write_heatmap_png put things (pixels) and the range its colours span.
struct heatmap_layout {
  index_t width = 0, height = 0;
  index_t map_x = 0, map_y = 0, map_w = 0, map_h = 0;
  index_t bar_x = 0, bar_w = 0;  // the colour bar spans rows map_y … map_y + map_h − 1
  index_t title_y = 0, title_h = 0;
  double vmin = 0, vmax = 0;     // the colour bar's ends (log_magnitude: 10^ of its ends)
  bool diverging = false;
};

// Colour of the masked upper triangle: neutral grey, in neither colour map.
inline constexpr detail::rgb masked_color{180, 180, 180};

namespace detail {

inline constexpr int title_px = 16, tick_px = 12;

// Draws labels[i] for the positions i at the thinned steps along one axis.
inline void axis_ticks(rgb_image& img, font& f, index_t n, index_t x0, index_t y0, index_t length, bool horizontal,
                       const std::vector<std::string>& labels) {
  auto text = [&](index_t i) {
    return labels.empty() ? std::to_string(i) : utf8_truncate(labels[static_cast<std::size_t>(i)], 10);
  };
  index_t widest = 0;
  for (index_t i = 0; i < n; ++i) widest = std::max(widest, f.width(text(i), tick_px));
  const double spacing = double(length) / double(n);
  const index_t step = tick_step(spacing, horizontal ? double(widest + 6) : double(tick_px + 3));
  for (index_t i = 0; i < n; i += step) {
    const index_t centre = static_cast<index_t>(double(i) * spacing + spacing / 2);
    const std::string s = text(i);
    if (horizontal) {
      img.fill(x0 + centre, y0, 1, 4, {0, 0, 0});
      f.draw(img, x0 + centre - f.width(s, tick_px) / 2, y0 + 4 + tick_px, s, tick_px);
    } else {
      img.fill(x0 - 4, y0 + centre, 4, 1, {0, 0, 0});
      f.draw(img, x0 - 6 - f.width(s, tick_px), y0 + centre + tick_px / 2 - 1, s, tick_px);
    }
  }
}

}  // namespace detail

// Writes matrix m as a heatmap (row 0 at the top) with the options' title, ticks
// and colour bar; returns the layout. The colour range is the full-resolution
// data's (finite values; masked entries left out), also when blocks are averaged
// down for large matrices.
template <class T>
heatmap_layout write_heatmap_png(const std::filesystem::path& file, matrix_view<const T> m,
                                 const heatmap_options& opt = {}) {
  constexpr std::string_view where = "mixlens::io::write_heatmap_png";
  const index_t rows = m.extent(0), cols = m.extent(1);
  if (rows <= 0 || cols <= 0) mixlens::detail::fail(where, "m", "a non-empty matrix", "0 rows or columns");
  if (!opt.tick_labels.empty() && (static_cast<index_t>(opt.tick_labels.size()) != rows || rows != cols))
    mixlens::detail::fail(where, "tick_labels", "one label per row and column of a square matrix (" +
                                                    std::to_string(rows) + " × " + std::to_string(cols) + ")",
                          opt.tick_labels.size());
  if (opt.target_pixels <= 0) mixlens::detail::fail(where, "target_pixels", "a positive size", opt.target_pixels);
  if (opt.max_pixels <= 0) mixlens::detail::fail(where, "max_pixels", "a positive size", opt.max_pixels);
  const bool log = opt.scale == color_scale::log_magnitude;
  auto masked = [&](index_t i, index_t j) { return opt.mask_upper && j > i; };

  // The range over the full-resolution data.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, top = 0;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      if (masked(i, j)) continue;
      const double v = static_cast<double>(m(i, j));
      if (!std::isfinite(v))
        mixlens::detail::fail(where, "m", "finite values",
                              std::to_string(v) + " at (" + std::to_string(i) + ", " + std::to_string(j) + ")");
      lo = std::min(lo, v), hi = std::max(hi, v), top = std::max(top, std::abs(v));
    }
  if (!(hi >= lo)) lo = hi = 0;  // everything masked
  if (log) {
    hi = top > 0 ? std::log10(top) : 0.0;
    lo = hi - opt.decades;
  } else {
    if (opt.vmin) lo = *opt.vmin;
    if (opt.vmax) hi = *opt.vmax;
  }
  const bool diverging = !log && opt.diverging.value_or(lo < 0);
  const double span = hi > lo ? hi - lo : 1.0, half = std::max({std::abs(lo), std::abs(hi), 1e-300});
  auto colour = [&](double v) {  // v: a value, or log10 of a magnitude
    if (diverging) return detail::diverging(0.5 + 0.5 * v / half);
    return detail::viridis((v - lo) / span);
  };

  // Pixel grid: enlarge small matrices by an integer factor, average blocks of
  // large ones (log: the largest magnitude of a block); masked blocks stay grey.
  const index_t n = std::max(rows, cols);
  const index_t up = std::max<index_t>(1, opt.target_pixels / n);
  const index_t down = std::max<index_t>(1, (n + opt.max_pixels - 1) / opt.max_pixels);
  const index_t grid_r = (rows + down - 1) / down, grid_c = (cols + down - 1) / down;

  auto& f = detail::font::get(opt.font);
  heatmap_layout lay;
  lay.diverging = diverging;
  lay.title_h = opt.title.empty() ? 0 : detail::title_px + 12;
  index_t label_w = 0;
  for (index_t i = 0; i < rows; ++i)
    label_w = std::max(label_w, f.width(opt.tick_labels.empty() ? std::to_string(i)
                                                                : detail::utf8_truncate(opt.tick_labels[static_cast<std::size_t>(i)], 10),
                                        detail::tick_px));
  lay.map_x = label_w + 12, lay.map_y = std::max<index_t>(lay.title_h, 8);
  lay.map_w = grid_c * up, lay.map_h = std::max<index_t>(grid_r * up, 1);
  lay.vmin = log ? std::pow(10.0, lo) : lo;
  lay.vmax = log ? std::pow(10.0, hi) : hi;
  const std::string lo_s = detail::format_value(lay.vmin), hi_s = detail::format_value(lay.vmax);
  const index_t bar_labels = std::max({f.width(lo_s, detail::tick_px), f.width(hi_s, detail::tick_px),
                                       f.width("-0.00e+00", detail::tick_px)});
  lay.bar_x = lay.map_x + lay.map_w + 16, lay.bar_w = opt.colorbar ? 16 : 0;
  lay.width = opt.colorbar ? lay.bar_x + lay.bar_w + 8 + bar_labels + 8 : lay.map_x + lay.map_w + 8;
  lay.width = std::max(lay.width, f.width(opt.title, detail::title_px) + 16);
  lay.height = lay.map_y + lay.map_h + detail::tick_px + 14;
  lay.title_y = 0;

  detail::rgb_image img(lay.width, lay.height);
  for (index_t r = 0; r < grid_r; ++r)
    for (index_t c = 0; c < grid_c; ++c) {
      double acc = 0, count = 0;
      for (index_t i = r * down; i < std::min(rows, (r + 1) * down); ++i)
        for (index_t j = c * down; j < std::min(cols, (c + 1) * down); ++j) {
          if (masked(i, j)) continue;
          const double v = static_cast<double>(m(i, j));
          acc = log ? std::max(acc, std::abs(v)) : acc + v;
          count += 1;
        }
      double v = log || count == 0 ? acc : acc / count;
      if (log) v = v > 0 ? std::max(lo, std::log10(v)) : lo;
      const auto c_rgb = count == 0 ? masked_color : colour(v);
      img.fill(lay.map_x + c * up, lay.map_y + r * up, up, up, c_rgb);
    }
  detail::axis_ticks(img, f, cols, lay.map_x, lay.map_y + lay.map_h, lay.map_w, true, opt.tick_labels);
  detail::axis_ticks(img, f, rows, lay.map_x, lay.map_y, lay.map_h, false, opt.tick_labels);
  if (!opt.title.empty()) f.draw(img, 8, detail::title_px + 4, opt.title, detail::title_px);
  if (opt.colorbar) {
    const index_t h = lay.map_h, tx = lay.bar_x + lay.bar_w + 5;
    for (index_t y = 0; y < h; ++y)
      img.fill(lay.bar_x, lay.map_y + y, lay.bar_w, 1, colour(h > 1 ? hi - (hi - lo) * double(y) / double(h - 1) : hi));
    auto label = [&](double v, const std::string& s) {
      const index_t y = lay.map_y + (h > 1 ? static_cast<index_t>(std::lround((hi - v) / span * double(h - 1))) : 0);
      img.fill(lay.bar_x + lay.bar_w, y, 3, 1, {0, 0, 0});
      f.draw(img, tx, std::clamp<index_t>(y + detail::tick_px / 2 - 1, lay.map_y + detail::tick_px, lay.map_y + h + 4), s,
             detail::tick_px);
    };
    label(hi, hi_s);
    label(lo, lo_s);
    // Inner ticks (and 0 on diverging maps) where they keep clear of the ends.
    if (!log && h >= 4 * detail::tick_px)
      for (double t : detail::nice_ticks(lo, hi, std::max<int>(2, static_cast<int>(h / 60)))) {
        const double y = (hi - t) / span * double(h - 1);
        if (y > 2.0 * detail::tick_px && y < double(h - 1) - 2.0 * detail::tick_px) label(t, detail::format_value(t));
      }
  }
  write_png(file, img.width, img.height, img.pixels);
  return lay;
}

struct bar_chart_options {
  std::string title{};                // e.g. "grad-input · position 7 → token 12 (logit 3.1)"
  std::string value_label{};          // the value axis, e.g. "attribution"
  index_t plot_height = 300;          // pixels of the value axis
  index_t plot_width = 0;             // 0: about 800 pixels, at least 2 per bar
  std::filesystem::path font{};       // empty: $MIXLENS_FONT, else the configured DejaVu Sans
};

struct bar_chart_layout {
  index_t width = 0, height = 0;
  index_t plot_x = 0, plot_y = 0, plot_w = 0, plot_h = 0;
  index_t bar_w = 0;      // pixels per position; bar i spans columns plot_x + i·bar_w …
  index_t zero_y = 0;     // the row of value 0
  double vmin = 0, vmax = 0;  // the value axis's ends
};

inline constexpr detail::rgb bar_positive_color{214, 39, 40}, bar_negative_color{31, 119, 180};

// Writes scores as a bar chart, one bar per position (positive red, negative
// blue), with a value axis, position or token labels (thinned) and a title;
// returns the layout.
template <class T>
bar_chart_layout write_bar_chart_png(const std::filesystem::path& file, std::span<const T> scores,
                                     std::span<const std::string> labels = {}, const bar_chart_options& opt = {}) {
  constexpr std::string_view where = "mixlens::io::write_bar_chart_png";
  const index_t L = static_cast<index_t>(scores.size());
  if (L == 0) mixlens::detail::fail(where, "scores", "at least one score", "none");
  if (!labels.empty() && labels.size() != scores.size())
    mixlens::detail::fail(where, "labels", "none or one per score (" + std::to_string(L) + ")", labels.size());
  if (opt.plot_height < 20) mixlens::detail::fail(where, "plot_height", "at least 20 pixels", opt.plot_height);
  if (opt.plot_width < 0) mixlens::detail::fail(where, "plot_width", "0 or a width in pixels", opt.plot_width);
  double lo = 0, hi = 0;
  for (index_t i = 0; i < L; ++i) {
    const double v = static_cast<double>(scores[static_cast<std::size_t>(i)]);
    if (!std::isfinite(v)) mixlens::detail::fail(where, "scores", "finite values", std::to_string(v) + " at " + std::to_string(i));
    lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (!(hi > lo)) hi = 1;  // all zero
  auto& f = detail::font::get(opt.font);
  bar_chart_layout lay;
  lay.vmin = lo, lay.vmax = hi;
  const auto ticks = detail::nice_ticks(lo, hi, 6);
  index_t tick_w = 0;
  for (double t : ticks) tick_w = std::max(tick_w, f.width(detail::format_value(t), detail::tick_px));
  lay.bar_w = opt.plot_width > 0 ? std::max<index_t>(1, opt.plot_width / L) : std::clamp<index_t>(800 / L, 2, 48);
  lay.plot_w = lay.bar_w * L, lay.plot_h = opt.plot_height;
  lay.plot_x = tick_w + 12;
  lay.plot_y = (opt.title.empty() ? 12 : detail::title_px + 16) + (opt.value_label.empty() ? 0 : detail::tick_px + 14);
  lay.width = std::max(lay.plot_x + lay.plot_w + 12, f.width(opt.title, detail::title_px) + 16);
  lay.height = lay.plot_y + lay.plot_h + detail::tick_px + 14;
  auto row = [&](double v) { return lay.plot_y + static_cast<index_t>(std::lround((hi - v) / (hi - lo) * double(lay.plot_h - 1))); };
  lay.zero_y = row(0);

  detail::rgb_image img(lay.width, lay.height);
  for (double t : ticks) {  // grid lines, then bars over them
    img.fill(lay.plot_x, row(t), lay.plot_w, 1, {225, 225, 225});
    const std::string s = detail::format_value(t);
    img.fill(lay.plot_x - 4, row(t), 4, 1, {0, 0, 0});
    f.draw(img, lay.plot_x - 6 - f.width(s, detail::tick_px), row(t) + detail::tick_px / 2 - 1, s, detail::tick_px);
  }
  const index_t gap = lay.bar_w >= 4 ? 1 : 0;
  for (index_t i = 0; i < L; ++i) {
    const double v = static_cast<double>(scores[static_cast<std::size_t>(i)]);
    const index_t y = row(v), y0 = std::min(y, lay.zero_y), y1 = std::max(y, lay.zero_y);
    if (v != 0)
      img.fill(lay.plot_x + i * lay.bar_w + gap, y0, lay.bar_w - 2 * gap, y1 - y0 + 1,
               v > 0 ? bar_positive_color : bar_negative_color);
  }
  img.fill(lay.plot_x, lay.zero_y, lay.plot_w, 1, {0, 0, 0});
  img.fill(lay.plot_x - 1, lay.plot_y, 1, lay.plot_h, {0, 0, 0});
  std::vector<std::string> names(labels.begin(), labels.end());
  detail::axis_ticks(img, f, L, lay.plot_x, lay.plot_y + lay.plot_h, lay.plot_w, true, names);
  // The glyphs are drawn horizontally: the axis caption goes above the axis.
  if (!opt.value_label.empty()) f.draw(img, 4, lay.plot_y - 12, opt.value_label, detail::tick_px, {80, 80, 80});
  if (!opt.title.empty()) f.draw(img, 8, detail::title_px + 4, opt.title, detail::title_px);
  write_png(file, img.width, img.height, img.pixels);
  return lay;
}

}  // namespace mixlens::io
