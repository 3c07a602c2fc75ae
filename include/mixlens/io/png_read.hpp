// Reading PNG images through libpng's simplified API (libpng 1.6): any colour
// type, bit depth, palette or interlacing becomes 8-bit RGB as PIL's
// Image.convert("RGB") gives it to Vim's evaluation transform (alpha dropped,
// not composited; 16-bit samples rounded to 8 bits, without gamma conversion),
// then values in [0, 1] (pixel / 255, like torchvision's ToTensor). Needs
// libpng (Debian: libpng-dev; mixlens::models links it).
#pragma once

#include <png.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::io {

// The largest image read: 2^28 pixels (16384 × 16384), 768 MiB as 8-bit RGB.
inline constexpr std::uint64_t max_png_pixels = std::uint64_t(1) << 28;

// The image in `file` as height × width × 3 values in [0, 1]; gray images
// repeat their value in R, G and B.
template <class T>
[[nodiscard]] tensor<T, 3> read_png_rgb(const std::filesystem::path& file) {
  const std::string who = "PNG image '" + file.string() + "'";
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  // png_image_free releases libpng's state on every exit, also after a throw.
  struct release {
    png_image* p;
    ~release() { png_image_free(p); }
  } guard{&image};
  if (!png_image_begin_read_from_file(&image, file.c_str()))
    throw error(who + ": cannot be read: " + image.message);
  const std::uint64_t pixels = std::uint64_t(image.width) * image.height;
  if (image.width == 0 || image.height == 0 || pixels > max_png_pixels)
    throw error(who + ": " + std::to_string(image.width) + " x " + std::to_string(image.height) +
                " pixels, expected between 1 and " + std::to_string(max_png_pixels) + " pixels");
  // RGBA in 8-bit sRGB is the one output that keeps colours as stored: RGB
  // would composite the alpha over black, the 16-bit formats are linear and
  // premultiplied. 16-bit inputs are declared sRGB so that they are not
  // gamma-converted on the way to 8 bits.
  image.format = PNG_FORMAT_RGBA;
  image.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  std::vector<png_byte> rgba(static_cast<std::size_t>(PNG_IMAGE_SIZE(image)));
  if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr))
    throw error(who + ": cannot be decoded: " + image.message);
  const index_t H = image.height, W = image.width;
  tensor<T, 3> out(H, W, 3);
  for (index_t p = 0; p < H * W; ++p)
    for (index_t c = 0; c < 3; ++c) out.data()[3 * p + c] = static_cast<T>(rgba[static_cast<std::size_t>(4 * p + c)]) / T(255);
  return out;
}

}  // namespace mixlens::io
