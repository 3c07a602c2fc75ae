// PNG output without text: an RGB buffer written as PNG, the viridis map, and a
// map laid over an image (Vision Mamba's patch maps). Image data is deflated with
// zlib. The heatmaps and bar charts with titles, ticks and colour bars are in
// mixlens/io/figure.hpp (FreeType, mixlens::figures).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

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

struct rgb_image {
  index_t width, height;
  std::vector<std::uint8_t> pixels;  // row-major RGB

  rgb_image(index_t w, index_t h) : width(w), height(h), pixels(static_cast<std::size_t>(3 * w * h), 255) {}
  void set(index_t x, index_t y, std::array<std::uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    for (int k = 0; k < 3; ++k) pixels[static_cast<std::size_t>(3 * (y * width + x) + k)] = c[k];
  }
  // Mixes colour c over pixel (x, y) with coverage a in [0, 1] (anti-aliased text).
  void blend(index_t x, index_t y, std::array<std::uint8_t, 3> c, double a) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    for (int k = 0; k < 3; ++k) {
      auto& p = pixels[static_cast<std::size_t>(3 * (y * width + x) + k)];
      p = static_cast<std::uint8_t>(std::lround((1 - a) * p + a * c[k]));
    }
  }
  void fill(index_t x0, index_t y0, index_t w, index_t h, std::array<std::uint8_t, 3> c) {
    for (index_t y = y0; y < y0 + h; ++y)
      for (index_t x = x0; x < x0 + w; ++x) set(x, y, c);
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
