#define BOOST_TEST_MODULE png_read
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <string>

#include "common/oracles.hpp"
#include "mixlens/io/png_read.hpp"
#include "mixlens/models/vim_model.hpp"

// The fixtures: tests/data/make_png_fixtures.py writes one 12 × 12 picture in
// several PNG encodings (and as a .npy of its pixels / 255).

using namespace mixlens;
using mixlens::testing::check_error;

namespace {

const std::filesystem::path dir = std::filesystem::path(MIXLENS_TEST_DATA_DIR) / "images";

// The picture's pixel (x, y), channel c, as the fixture script defines it.
int pixel(index_t x, index_t y, index_t c) {
  switch (c) {
    case 0: return static_cast<int>((17 * x + 5 * y) % 256);
    case 1: return static_cast<int>((3 * x * y + 40) % 256);
    default: return static_cast<int>(((255 - 11 * y) % 256 + 256) % 256);
  }
}

// Every value equals the expected 8-bit value / 255 exactly (both are the same
// float division); `gray` expects channel 0's value in all three channels.
void check_picture(const tensor<float, 3>& image, bool gray = false) {
  BOOST_TEST_REQUIRE(image.extent(0) == 12);
  BOOST_TEST_REQUIRE(image.extent(1) == 12);
  BOOST_TEST_REQUIRE(image.extent(2) == 3);
  int wrong = 0;
  for (index_t y = 0; y < 12; ++y)
    for (index_t x = 0; x < 12; ++x)
      for (index_t c = 0; c < 3; ++c)
        if (image(y, x, c) != static_cast<float>(pixel(x, y, gray ? 0 : c)) / 255.0f) ++wrong;
  BOOST_TEST(wrong == 0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_encoding_gives_the_stored_pixels) {
  check_picture(io::read_png_rgb<float>(dir / "rgb8.png"));
  check_picture(io::read_png_rgb<float>(dir / "rgb16.png"));    // 16-bit samples, no gamma conversion
  check_picture(io::read_png_rgb<float>(dir / "rgba8.png"));    // alpha dropped
  check_picture(io::read_png_rgb<float>(dir / "palette8.png"));  // palette expanded
  check_picture(io::read_png_rgb<float>(dir / "gray8.png"), true);
}

BOOST_AUTO_TEST_CASE(double_precision_and_the_npy_twin) {
  const auto png = io::read_png_rgb<double>(dir / "rgb8.png");
  const auto npy = models::read_image<double>(dir / "rgb8.npy");  // float32 pixels / 255
  BOOST_TEST_REQUIRE(npy.size() == png.size());
  double worst = 0;
  for (index_t i = 0; i < png.size(); ++i) worst = std::max(worst, std::abs(png.data()[i] - npy.data()[i]));
  BOOST_TEST(worst < 1e-7);  // the .npy holds float32 values
  BOOST_TEST(png(3, 5, 1) == double(pixel(5, 3, 1)) / 255.0);
}

BOOST_AUTO_TEST_CASE(read_image_chooses_by_extension) {
  check_picture(models::read_image<float>(dir / "rgb8.png"));
  check_error([] { (void)models::read_image<float>(dir / "rgb8.jpg"); }, {"rgb8.jpg", ".png or .npy", "'.jpg'"});
}

BOOST_AUTO_TEST_CASE(bad_files_name_themselves) {
  check_error([] { (void)io::read_png_rgb<float>(dir / "missing.png"); }, {"missing.png", "cannot be read"});
  check_error([] { (void)io::read_png_rgb<float>(dir / "rgb8.npy"); }, {"rgb8.npy", "cannot be read"});  // not a PNG
  check_error([] { (void)io::read_png_rgb<float>(dir / "truncated.png"); }, {"truncated.png", "cannot be decoded"});
}
