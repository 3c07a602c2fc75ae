// PNG heatmaps of mixing matrices: viridis colours, linear or log-magnitude
// scale, a colour bar with its end values; a map laid over an image (Vision
// Mamba's patch maps). Image data is deflated with zlib.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/npy.hpp"
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
};

namespace detail {

// Viridis sampled at 17 evenly spaced points (matplotlib's map, CC0),
// interpolated linearly in between.
inline std::array<std::uint8_t, 3> viridis(double x) {
  static constexpr double anchors[17][3] = {
      {0.2670, 0.0049, 0.3294}, {0.2823, 0.0950, 0.4173}, {0.2788, 0.1755, 0.4834}, {0.2590, 0.2515, 0.5247},
      {0.2297, 0.3224, 0.5457}, {0.1994, 0.3876, 0.5546}, {0.1727, 0.4488, 0.5579}, {0.1490, 0.5081, 0.5573},
      {0.1276, 0.5669, 0.5506}, {0.1206, 0.6258, 0.5335}, {0.1579, 0.6838, 0.5017}, {0.2461, 0.7389, 0.4520},
      {0.3692, 0.7889, 0.3829}, {0.5160, 0.8312, 0.2943}, {0.6785, 0.8637, 0.1895}, {0.8456, 0.8873, 0.0997},
      {0.9932, 0.9062, 0.1439}};
  if (!std::isfinite(x)) x = 0;
  x = std::clamp(x, 0.0, 1.0) * 16.0;
  const int i = std::min(15, static_cast<int>(x));
  const double f = x - i;
  std::array<std::uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c)
    rgb[c] = static_cast<std::uint8_t>(std::lround(255.0 * ((1 - f) * anchors[i][c] + f * anchors[i + 1][c])));
  return rgb;
}

inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

inline void png_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out += body;
  put_u32(out, crc32(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
}

// A 3×5 bitmap font for the colour bar's numbers.
inline std::array<std::uint8_t, 5> glyph(char c) {
  switch (c) {
    case '0': return {7, 5, 5, 5, 7};
    case '1': return {2, 6, 2, 2, 7};
    case '2': return {7, 1, 7, 4, 7};
    case '3': return {7, 1, 7, 1, 7};
    case '4': return {5, 5, 7, 1, 1};
    case '5': return {7, 4, 7, 1, 7};
    case '6': return {7, 4, 7, 5, 7};
    case '7': return {7, 1, 1, 1, 1};
    case '8': return {7, 5, 7, 5, 7};
    case '9': return {7, 5, 7, 1, 7};
    case '.': return {0, 0, 0, 0, 2};
    case '-': return {0, 0, 7, 0, 0};
    case '+': return {0, 2, 7, 2, 0};
    case 'e': return {0, 3, 7, 4, 3};
    default: return {0, 0, 0, 0, 0};
  }
}

struct rgb_image {
  index_t width, height;
  std::vector<std::uint8_t> pixels;  // row-major RGB

  rgb_image(index_t w, index_t h) : width(w), height(h), pixels(static_cast<std::size_t>(3 * w * h), 255) {}
  void set(index_t x, index_t y, std::array<std::uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    for (int k = 0; k < 3; ++k) pixels[static_cast<std::size_t>(3 * (y * width + x) + k)] = c[k];
  }
  void text(index_t x, index_t y, const std::string& s, int scale = 2) {
    for (char ch : s) {
      const auto g = glyph(ch);
      for (int r = 0; r < 5; ++r)
        for (int b = 0; b < 3; ++b)
          if (g[r] & (4 >> b))
            for (int dy = 0; dy < scale; ++dy)
              for (int dx = 0; dx < scale; ++dx) set(x + b * scale + dx, y + r * scale + dy, {0, 0, 0});
      x += 4 * scale;
    }
  }
};

}  // namespace detail

// Writes an RGB image (row-major, 3 bytes per pixel) as a PNG file.
inline void write_png(const std::filesystem::path& file, index_t width, index_t height,
                      const std::vector<std::uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || rgb.size() != static_cast<std::size_t>(3 * width * height))
    mixlens::detail::fail("mixlens::io::write_png", "rgb", "3·width·height bytes with positive sizes", rgb.size());
  std::string raw;  // scanlines, each with filter byte 0
  raw.reserve(static_cast<std::size_t>(height * (3 * width + 1)));
  for (index_t y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(rgb.data() + 3 * y * width), static_cast<std::size_t>(3 * width));
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string z(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION) != Z_OK)
    throw error("cannot compress the image data of '" + file.string() + "'");
  z.resize(size);
  std::string png("\x89PNG\r\n\x1a\n", 8), ihdr;
  detail::put_u32(ihdr, static_cast<std::uint32_t>(width));
  detail::put_u32(ihdr, static_cast<std::uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
  detail::png_chunk(png, "IHDR", ihdr);
  detail::png_chunk(png, "IDAT", z);
  detail::png_chunk(png, "IEND", "");
  detail::write_atomically(file, png, nullptr, 0);
}

// Writes matrix m as a viridis heatmap (row 0 at the top), with a colour bar
// labelled with the values at its ends.
template <class T>
void write_heatmap_png(const std::filesystem::path& file, matrix_view<const T> m, const heatmap_options& opt = {}) {
  const index_t rows = m.extent(0), cols = m.extent(1);
  if (rows <= 0 || cols <= 0) mixlens::detail::fail("mixlens::io::write_heatmap_png", "m", "a non-empty matrix", "0 rows or columns");
  const bool log = opt.scale == color_scale::log_magnitude;
  // Pixel grid: enlarge small matrices by an integer factor, average blocks of large ones.
  const index_t n = std::max(rows, cols);
  const index_t up = std::max<index_t>(1, opt.target_pixels / n);
  const index_t down = std::max<index_t>(1, (n + opt.max_pixels - 1) / opt.max_pixels);
  const index_t grid_r = (rows + down - 1) / down, grid_c = (cols + down - 1) / down;
  std::vector<double> cell(static_cast<std::size_t>(grid_r * grid_c), 0.0);
  for (index_t r = 0; r < grid_r; ++r)
    for (index_t c = 0; c < grid_c; ++c) {
      double acc = 0, count = 0;
      for (index_t i = r * down; i < std::min(rows, (r + 1) * down); ++i)
        for (index_t j = c * down; j < std::min(cols, (c + 1) * down); ++j) {
          const double v = static_cast<double>(m(i, j));
          if (!std::isfinite(v)) continue;
          acc = log ? std::max(acc, std::abs(v)) : acc + v;  // log: largest magnitude in the block
          count += 1;
        }
      cell[static_cast<std::size_t>(r * grid_c + c)] = log || count == 0 ? acc : acc / count;
    }
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : cell) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (log) {
    hi = hi > 0 ? std::log10(hi) : 0.0;
    lo = hi - opt.decades;
    for (double& v : cell) v = v > 0 ? std::max(lo, std::log10(v)) : lo;
  } else {
    if (opt.vmin) lo = *opt.vmin;
    if (opt.vmax) hi = *opt.vmax;
  }
  const double span = hi > lo ? hi - lo : 1.0;

  const index_t map_w = grid_c * up, map_h = grid_r * up;
  const index_t bar_x = map_w + 12, bar_w = 16, label_w = opt.colorbar ? 84 : 0;
  const index_t height = std::max<index_t>(map_h, opt.colorbar ? 64 : 1);
  detail::rgb_image img(opt.colorbar ? bar_x + bar_w + 6 + label_w : map_w, height);
  for (index_t r = 0; r < grid_r; ++r)
    for (index_t c = 0; c < grid_c; ++c) {
      const auto colour = detail::viridis((cell[static_cast<std::size_t>(r * grid_c + c)] - lo) / span);
      for (index_t dy = 0; dy < up; ++dy)
        for (index_t dx = 0; dx < up; ++dx) img.set(c * up + dx, r * up + dy, colour);
    }
  if (opt.colorbar) {
    for (index_t y = 0; y < height; ++y)
      for (index_t x = 0; x < bar_w; ++x) img.set(bar_x + x, y, detail::viridis(1.0 - double(y) / double(height - 1)));
    char top[32], bottom[32];
    std::snprintf(top, sizeof top, "%.3g", log ? std::pow(10.0, hi) : hi);
    std::snprintf(bottom, sizeof bottom, "%.3g", log ? std::pow(10.0, lo) : lo);
    img.text(bar_x + bar_w + 6, 0, top);
    img.text(bar_x + bar_w + 6, height - 10, bottom);
  }
  write_png(file, img.width, img.height, img.pixels);
}

// Writes `map` (rows × columns over the image, e.g. a patch grid) in viridis,
// min–max scaled, blended over `image` (height × width × 3, values in [0, 1],
// clipped): each pixel takes the map cell it falls in, colour = (1 − alpha)·image
// + alpha·viridis(map). Images smaller than 256 pixels are enlarged by an
// integer factor.
template <class T>
void write_overlay_png(const std::filesystem::path& file, tensor_view<const T, 3> image, matrix_view<const T> map,
                       double alpha = 0.5) {
  constexpr std::string_view where = "mixlens::io::write_overlay_png";
  const index_t H = image.extent(0), W = image.extent(1), rows = map.extent(0), cols = map.extent(1);
  if (H <= 0 || W <= 0 || image.extent(2) != 3) mixlens::detail::fail(where, "image", "a non-empty height × width × 3 image", image.extent(2));
  if (rows <= 0 || cols <= 0) mixlens::detail::fail(where, "map", "a non-empty matrix", "0 rows or columns");
  if (!(alpha >= 0 && alpha <= 1)) mixlens::detail::fail(where, "alpha", "a value in [0, 1]", alpha);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c)
      if (const double v = double(map(r, c)); std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  const double span = hi > lo ? hi - lo : 1.0;
  const index_t up = std::max<index_t>(1, 256 / std::max(H, W)), width = W * up;
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(3 * H * W * up * up));
  for (index_t y = 0; y < H * up; ++y)
    for (index_t x = 0; x < width; ++x) {
      const index_t iy = y / up, ix = x / up;
      const double v = double(map(std::min(rows - 1, iy * rows / H), std::min(cols - 1, ix * cols / W)));
      const auto colour = detail::viridis(std::isfinite(v) ? (v - lo) / span : 0.0);
      for (index_t ch = 0; ch < 3; ++ch) {
        const double px = std::clamp(double(image(iy, ix, ch)), 0.0, 1.0) * 255.0;
        rgb[static_cast<std::size_t>(3 * (y * width + x) + ch)] =
            static_cast<std::uint8_t>(std::lround((1 - alpha) * px + alpha * colour[static_cast<std::size_t>(ch)]));
      }
    }
  write_png(file, width, H * up, rgb);
}

}  // namespace mixlens::io
