#define BOOST_TEST_MODULE figure
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/io/figure.hpp"
#include "mixlens/io/png_read.hpp"

// The figures are decoded with the PNG reader and checked pixel by pixel at the
// places their returned layout names.

using namespace mixlens;
using mixlens::testing::check_error;
using rgb = std::array<std::uint8_t, 3>;

namespace {

std::filesystem::path scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "mixlens_figure_test";
  std::filesystem::create_directories(dir);
  return dir / name;
}

struct decoded {
  tensor<float, 3> image;
  explicit decoded(const std::filesystem::path& file) : image(io::read_png_rgb<float>(file)) {}
  rgb at(index_t x, index_t y) const {
    rgb c{};
    for (index_t k = 0; k < 3; ++k) c[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(std::lround(image(y, x, k) * 255.0f));
    return c;
  }
  index_t width() const { return image.extent(1); }
  index_t height() const { return image.extent(0); }
};

// The colour at the centre of cell (r, c) of a map drawn `up` pixels per cell.
rgb cell(const decoded& d, const io::heatmap_layout& lay, index_t r, index_t c, index_t up) {
  return d.at(lay.map_x + c * up + up / 2, lay.map_y + r * up + up / 2);
}

}  // namespace

BOOST_AUTO_TEST_CASE(causal_map_masks_the_upper_triangle_and_the_bar_spans_the_data) {
  const index_t L = 8;
  matrix<float> m(L, L);  // the upper triangle holds 0, which is below the data's minimum 1
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) m(i, j) = float(i + j + 1);
  const auto lay = io::write_heatmap_png(scratch("causal.png"), matrix_view<const float>(m.view()),
                                         {.title = "layer 0 \u00b7 paper form \u00b7 channel mean", .mask_upper = true});
  const decoded d(scratch("causal.png"));
  BOOST_TEST(d.width() == lay.width);
  BOOST_TEST(d.height() == lay.height);
  BOOST_TEST(lay.map_w == 512);  // 8 cells enlarged 64×
  BOOST_TEST(!lay.diverging);
  BOOST_TEST(lay.vmin == 1.0);  // masked zeros left out of the range
  BOOST_TEST(lay.vmax == 15.0);
  BOOST_TEST((cell(d, lay, 0, 7, 64) == io::masked_color));
  BOOST_TEST((cell(d, lay, 2, 5, 64) == io::masked_color));
  BOOST_TEST((cell(d, lay, 7, 7, 64) == io::detail::viridis(1.0)));  // the maximum
  BOOST_TEST((cell(d, lay, 0, 0, 64) == io::detail::viridis(0.0)));  // the minimum, not the masked zeros
  BOOST_TEST((cell(d, lay, 4, 2, 64) == io::detail::viridis(6.0 / 14.0)));
  // The colour bar: the maximum's colour at the top, the minimum's at the bottom.
  const index_t bx = lay.bar_x + lay.bar_w / 2;
  BOOST_TEST((d.at(bx, lay.map_y) == io::detail::viridis(1.0)));
  BOOST_TEST((d.at(bx, lay.map_y + lay.map_h - 1) == io::detail::viridis(0.0)));
}

// Regression: past max_pixels the bar showed the block-averaged range (a spike
// of 1.27 averaged down to 0.079), and the brightest block took the top colour.
BOOST_AUTO_TEST_CASE(downsampled_map_keeps_the_full_resolution_range) {
  const index_t L = 64;
  matrix<float> m(L, L);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = 0.0f;
  m(0, 0) = 1.27f;
  m(37, 50) = -0.04f;
  const auto lay = io::write_heatmap_png(scratch("down.png"), matrix_view<const float>(m.view()),
                                         {.target_pixels = 16, .max_pixels = 16, .diverging = false});
  const decoded d(scratch("down.png"));
  BOOST_TEST(lay.map_w == 16);  // blocks of 4 × 4
  BOOST_TEST(lay.vmin == double(-0.04f));
  BOOST_TEST(lay.vmax == double(1.27f));
  const double lo = double(-0.04f), hi = double(1.27f), block = double(1.27f) / 16;
  BOOST_TEST((cell(d, lay, 0, 0, 1) == io::detail::viridis((block - lo) / (hi - lo))));
  BOOST_TEST((cell(d, lay, 0, 0, 1) != io::detail::viridis(1.0)));
  const index_t bx = lay.bar_x + lay.bar_w / 2;
  BOOST_TEST((d.at(bx, lay.map_y) == io::detail::viridis(1.0)));
  BOOST_TEST((d.at(bx, lay.map_y + lay.map_h - 1) == io::detail::viridis(0.0)));
}

BOOST_AUTO_TEST_CASE(signed_map_is_diverging_and_white_at_zero) {
  const index_t L = 8;
  matrix<double> m(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) m(i, j) = double(j - i) / 14.0 + (j == L - 1 && i == 0 ? 0.5 : 0.0);
  // Range [−0.5, 1]: symmetric colours (±1), the bar from −0.5's colour to 1's.
  const auto lay = io::write_heatmap_png(scratch("signed.png"), matrix_view<const double>(m.view()));
  const decoded d(scratch("signed.png"));
  BOOST_TEST(lay.diverging);  // a negative value chooses it
  BOOST_TEST(lay.vmin == -0.5);
  BOOST_TEST(lay.vmax == 1.0);
  BOOST_TEST((io::detail::diverging(0.5) == rgb{255, 255, 255}));
  for (index_t i = 0; i < L; ++i) BOOST_TEST((cell(d, lay, i, i, 64) == rgb{255, 255, 255}));
  BOOST_TEST((cell(d, lay, 0, 7, 64) == io::detail::diverging(1.0)));
  BOOST_TEST((cell(d, lay, 7, 0, 64) == io::detail::diverging(0.25)));
  const rgb red = cell(d, lay, 0, 7, 64), blue = cell(d, lay, 7, 0, 64);
  BOOST_TEST((red[0] > red[2] && blue[2] > blue[0]));
  const index_t bx = lay.bar_x + lay.bar_w / 2;
  BOOST_TEST((d.at(bx, lay.map_y) == io::detail::diverging(1.0)));
  BOOST_TEST((d.at(bx, lay.map_y + lay.map_h - 1) == io::detail::diverging(0.25)));
}

BOOST_AUTO_TEST_CASE(title_and_token_ticks_are_drawn) {
  const index_t L = 6;
  matrix<float> m(L, L);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = float(i % 7);
  const std::vector<std::string> tokens{"The", "caf\xc3\xa9", "na\xc3\xafve", "\xe2\x86\x92", "bad\xff", "end"};
  auto ink = [](const decoded& d, index_t x0, index_t y0, index_t x1, index_t y1) {
    int n = 0;
    for (index_t y = y0; y < y1; ++y)
      for (index_t x = x0; x < x1; ++x) n += d.at(x, y) != rgb{255, 255, 255};
    return n;
  };
  const auto plain = io::write_heatmap_png(scratch("plain.png"), matrix_view<const float>(m.view()));
  const auto lay = io::write_heatmap_png(scratch("titled.png"), matrix_view<const float>(m.view()),
                                         {.title = "layer 3 \u00b7 unified form \u00b7 channel mean", .tick_labels = tokens});
  const decoded d(scratch("titled.png")), p(scratch("plain.png"));
  BOOST_TEST(plain.title_h == 0);
  BOOST_TEST(lay.title_h > 0);
  BOOST_TEST(ink(d, 0, 0, lay.width, lay.title_h) > 100);  // the title's glyphs
  BOOST_TEST(ink(p, 0, 0, plain.width, plain.map_y) == 0);
  // Anti-aliased: grey levels between black and white.
  int grey = 0;
  for (index_t y = 0; y < lay.title_h; ++y)
    for (index_t x = 0; x < lay.width; ++x)
      if (const rgb c = d.at(x, y); c[0] > 40 && c[0] < 215) ++grey;
  BOOST_TEST(grey > 20);
  BOOST_TEST(ink(d, lay.map_x, lay.map_y + lay.map_h + 2, lay.map_x + lay.map_w, lay.height) > 50);  // x ticks
  BOOST_TEST(ink(d, 0, lay.map_y, lay.map_x - 2, lay.map_y + lay.map_h) > 50);                       // y ticks
  // Long inputs: the position labels are thinned, and the figure stays readable.
  matrix<float> big(300, 300);
  for (index_t i = 0; i < big.size(); ++i) big.data()[i] = float(i % 11);
  const auto wide = io::write_heatmap_png(scratch("long.png"), matrix_view<const float>(big.view()));
  BOOST_TEST(wide.map_w == 300);
}

BOOST_AUTO_TEST_CASE(bar_chart_heights_and_colours) {
  const std::vector<float> scores{1.0f, -0.5f, 0.25f, 0.0f};
  const std::vector<std::string> labels{"a", "b", "\xc3\xa9", "d"};
  const auto lay = io::write_bar_chart_png(scratch("bars.png"), std::span<const float>(scores),
                                           std::span<const std::string>(labels),
                                           {.title = "grad-input \u00b7 target position 3", .value_label = "attribution"});
  const decoded d(scratch("bars.png"));
  BOOST_TEST(d.width() == lay.width);
  BOOST_TEST(lay.vmin == -0.5);
  BOOST_TEST(lay.vmax == 1.0);
  auto run = [&](index_t i, rgb colour) {
    int n = 0;
    for (index_t y = lay.plot_y; y < lay.plot_y + lay.plot_h; ++y) n += d.at(lay.plot_x + i * lay.bar_w + lay.bar_w / 2, y) == colour;
    return n;
  };
  const double per_unit = double(lay.plot_h - 1) / 1.5;  // pixels per unit of value
  BOOST_TEST(std::abs(run(0, io::bar_positive_color) - per_unit * 1.0) <= 2);
  BOOST_TEST(std::abs(run(1, io::bar_negative_color) - per_unit * 0.5) <= 2);
  BOOST_TEST(std::abs(run(2, io::bar_positive_color) - per_unit * 0.25) <= 2);
  BOOST_TEST(run(0, io::bar_negative_color) == 0);
  BOOST_TEST(run(1, io::bar_positive_color) == 0);
  BOOST_TEST(run(3, io::bar_positive_color) + run(3, io::bar_negative_color) == 0);
  // Bar 0 reaches the top of the axis, bar 1 its bottom; the zero line is black.
  BOOST_TEST((d.at(lay.plot_x + lay.bar_w / 2, lay.plot_y) == io::bar_positive_color));
  BOOST_TEST((d.at(lay.plot_x + lay.bar_w + lay.bar_w / 2, lay.plot_y + lay.plot_h - 1) == io::bar_negative_color));
  BOOST_TEST((d.at(lay.plot_x + 3 * lay.bar_w + lay.bar_w / 2, lay.zero_y) == rgb{0, 0, 0}));
  int title = 0;
  for (index_t y = 0; y < 24; ++y)
    for (index_t x = 0; x < lay.width; ++x) title += d.at(x, y) != rgb{255, 255, 255};
  BOOST_TEST(title > 100);
  // Long inputs: one bar per position, at least 2 pixels wide.
  std::vector<double> many(2000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = std::sin(double(i));
  const auto wide = io::write_bar_chart_png(scratch("many.png"), std::span<const double>(many));
  BOOST_TEST(wide.plot_w == 4000);
}

BOOST_AUTO_TEST_CASE(bad_input_names_the_argument) {
  matrix<float> m(3, 3);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = 1.0f;
  check_error([] { io::write_heatmap_png(scratch("e.png"), matrix_view<const float>(nullptr, 0, 3)); }, {"'m'", "non-empty"});
  m(1, 2) = std::numeric_limits<float>::quiet_NaN();
  check_error([&] { io::write_heatmap_png(scratch("e.png"), matrix_view<const float>(m.view())); }, {"'m'", "finite", "(1, 2)"});
  m(1, 2) = 0;
  check_error([&] { io::write_heatmap_png(scratch("e.png"), matrix_view<const float>(m.view()), {.tick_labels = {"a", "b"}}); },
              {"'tick_labels'", "2"});
  check_error([&] { io::write_heatmap_png(scratch("e.png"), matrix_view<const float>(m.view()), {.font = "/nonexistent/NoSuch.ttf"}); },
              {"'font'", "/nonexistent/NoSuch.ttf", "fonts-dejavu-core"});
  const std::vector<float> none, nan{1.0f, std::numeric_limits<float>::quiet_NaN()}, two{1.0f, 2.0f};
  const std::vector<std::string> three{"a", "b", "c"};
  check_error([&] { io::write_bar_chart_png(scratch("e.png"), std::span<const float>(none)); }, {"'scores'", "at least one"});
  check_error([&] { io::write_bar_chart_png(scratch("e.png"), std::span<const float>(nan)); }, {"'scores'", "finite", "at 1"});
  check_error([&] { io::write_bar_chart_png(scratch("e.png"), std::span<const float>(two), std::span<const std::string>(three)); },
              {"'labels'", "3"});
  check_error([&] { io::write_bar_chart_png(scratch("e.png"), std::span<const float>(two), {}, {.font = "/nonexistent/NoSuch.ttf"}); },
              {"'font'", "NoSuch.ttf"});
}
