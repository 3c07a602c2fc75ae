// Text and colours for mixlens/io/figure.hpp: a FreeType face drawn anti-aliased
// into an RGB buffer (UTF-8 strings), the diverging colour map, nice axis ticks.
#pragma once

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/png.hpp"

#ifndef MIXLENS_FONT_FILE  // set by mixlens::figures from the configure-time lookup
#define MIXLENS_FONT_FILE "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#endif

namespace mixlens::io::detail {

using rgb = std::array<std::uint8_t, 3>;

// The font file: the caller's, else $MIXLENS_FONT, else the configured one.
inline std::filesystem::path figure_font(const std::filesystem::path& requested) {
  if (!requested.empty()) return requested;
  if (const char* env = std::getenv("MIXLENS_FONT"); env && *env) return env;
  return MIXLENS_FONT_FILE;
}

// Code points of a UTF-8 string; malformed bytes become U+FFFD so that any token
// string draws.
inline std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    char32_t c = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
    bool ok = n > 0 && i + static_cast<std::size_t>(n) <= s.size();
    for (int k = 1; ok && k < n; ++k) {
      const auto t = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((t >> 6) != 2) ok = false;
      else c = (c << 6) | (t & 0x3f);
    }
    if (ok) out.push_back(c), i += static_cast<std::size_t>(n);
    else out.push_back(0xfffd), i += 1;
  }
  return out;
}

// Shortens s to at most `max` code points, ending in an ellipsis when cut.
inline std::string utf8_truncate(std::string_view s, std::size_t max) {
  std::size_t i = 0, count = 0;
  while (i < s.size() && count < max) {
    ++i;
    while (i < s.size() && (static_cast<unsigned char>(s[i]) >> 6) == 2) ++i;
    ++count;
  }
  return i >= s.size() ? std::string(s) : std::string(s.substr(0, i)) + "\u2026";
}

// One FreeType face, shared by the figures of a process (FreeType objects are
// not thread-safe: every use holds the mutex).
class font {
 public:
  static font& get(const std::filesystem::path& requested) {
    static std::mutex m;
    static std::map<std::string, std::unique_ptr<font>> faces;
    const auto file = figure_font(requested);
    std::lock_guard lock(m);
    auto& f = faces[file.string()];
    if (!f) f.reset(new font(file));
    return *f;
  }
  font(const font&) = delete;
  font& operator=(const font&) = delete;
  ~font() {
    if (face_) FT_Done_Face(face_);
    if (lib_) FT_Done_FreeType(lib_);
  }

  // Width in pixels of s at `px` pixels per em.
  index_t width(std::string_view s, int px) {
    std::lock_guard lock(m_);
    FT_Set_Pixel_Sizes(face_, 0, static_cast<FT_UInt>(px));
    long x = 0;
    for (char32_t c : utf8_decode(s))
      if (FT_Load_Char(face_, c, FT_LOAD_DEFAULT) == 0) x += face_->glyph->advance.x;
    return static_cast<index_t>((x + 63) / 64);
  }

  // Draws s with its left end at x and its baseline at y.
  void draw(rgb_image& img, index_t x, index_t y, std::string_view s, int px, rgb colour = {0, 0, 0}) {
    std::lock_guard lock(m_);
    FT_Set_Pixel_Sizes(face_, 0, static_cast<FT_UInt>(px));
    long pen = 64 * x;
    for (char32_t c : utf8_decode(s)) {
      if (FT_Load_Char(face_, c, FT_LOAD_RENDER) != 0) continue;
      const FT_GlyphSlot g = face_->glyph;
      const FT_Bitmap& b = g->bitmap;
      const index_t x0 = pen / 64 + g->bitmap_left, y0 = y - g->bitmap_top;
      for (unsigned r = 0; r < b.rows; ++r)
        for (unsigned q = 0; q < b.width; ++q)
          if (const unsigned char a = b.buffer[static_cast<long>(r) * b.pitch + q])
            img.blend(x0 + static_cast<index_t>(q), y0 + static_cast<index_t>(r), colour, a / 255.0);
      pen += g->advance.x;
    }
  }

 private:
  explicit font(const std::filesystem::path& file) {
    constexpr std::string_view where = "mixlens::io figures";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec))
      mixlens::detail::fail(where, "font", "an existing TrueType font file (DejaVu Sans: Debian fonts-dejavu-core; "
                                           "choose another with the options' font or MIXLENS_FONT)",
                            "'" + file.string() + "', which does not exist");
    if (FT_Init_FreeType(&lib_) != 0) throw error("mixlens::io figures: FreeType cannot be initialised");
    if (FT_New_Face(lib_, file.c_str(), 0, &face_) != 0)
      mixlens::detail::fail(where, "font", "a font file FreeType reads", "'" + file.string() + "'");
  }
  FT_Library lib_ = nullptr;
  FT_Face face_ = nullptr;
  std::mutex m_;
};

// Blue – white – red, centred at x = 0.5 (value 0 of a symmetric range):
// matplotlib's RdBu reversed, 9 anchors, interpolated linearly.
inline rgb diverging(double x) {
  static constexpr double anchors[9][3] = {
      {0.1922, 0.2118, 0.5843}, {0.2706, 0.4588, 0.7059}, {0.4549, 0.6784, 0.8196}, {0.6706, 0.8510, 0.9137},
      {1.0000, 1.0000, 1.0000}, {0.9922, 0.6824, 0.3804}, {0.9569, 0.4275, 0.2627}, {0.8431, 0.1882, 0.1529},
      {0.6471, 0.0000, 0.1490}};
  if (!std::isfinite(x)) x = 0.5;
  x = std::clamp(x, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(x));
  const double f = x - i;
  rgb out{};
  for (int c = 0; c < 3; ++c)
    out[c] = static_cast<std::uint8_t>(std::lround(255.0 * ((1 - f) * anchors[i][c] + f * anchors[i + 1][c])));
  return out;
}

// Tick values in [lo, hi] at a step of 1, 2 or 5 × 10^k, about `count` of them.
inline std::vector<double> nice_ticks(double lo, double hi, int count = 5) {
  std::vector<double> out;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, count), mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step)
    out.push_back(std::abs(t) < 1e-12 * step ? 0.0 : t);
  return out;
}

inline std::string format_value(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The index step between labelled positions so that labels `extent` pixels wide
// sit at least that far apart when positions are `spacing` pixels apart: 1, 2, 5, 10, ...
inline index_t tick_step(double spacing, double extent) {
  for (index_t step = 1;; step *= 10)
    for (index_t m : {1, 2, 5})
      if (spacing * double(step * m) >= extent) return step * m;
}

}  // namespace mixlens::io::detail
