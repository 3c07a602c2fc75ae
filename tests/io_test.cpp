#define BOOST_TEST_MODULE io
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/oracles.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/figure.hpp"

using namespace mixlens;
namespace fs = std::filesystem;

namespace {
const fs::path data_dir = MIXLENS_TEST_DATA_DIR "/npy";

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mixlens_io_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::uint32_t be32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}
}  // namespace

BOOST_AUTO_TEST_CASE(npy_round_trip_every_dtype) {
  auto m = testing::random_matrix<double>(3, 5, 1);
  io::write_npy(scratch("m.npy"), m);
  auto back = io::read_npy(scratch("m.npy"));
  BOOST_TEST(back.descr == "<f8");
  BOOST_TEST((back.shape == std::vector<index_t>{3, 5}));
  auto values = back.as<double>();
  BOOST_TEST(testing::relative_error(values.data(), m.data(), 15) == 0.0);

  tensor<float, 3> t(2, 3, 4);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = float(i) / 3;
  io::write_npy(scratch("t.npy"), t);
  auto tf = io::read_npy(scratch("t.npy")).as<float>();
  BOOST_TEST(testing::relative_error(tf.data(), t.data(), t.size()) == 0.0);

  std::vector<std::int32_t> ids = {1, -2, 300};
  io::write_npy(scratch("ids.npy"), ids.data(), {3});
  BOOST_TEST((io::read_npy(scratch("ids.npy")).as<std::int64_t>() == std::vector<std::int64_t>{1, -2, 300}));
  // The header is padded to a multiple of 64 bytes, as NumPy requires.
  BOOST_TEST((slurp(scratch("ids.npy")).size() - 12) % 64 == 0u);
}

BOOST_AUTO_TEST_CASE(npy_reads_files_written_by_numpy) {
  auto f = io::read_npy(data_dir / "numpy_f4_2x3.npy");
  BOOST_TEST((f.shape == std::vector<index_t>{2, 3}));
  BOOST_TEST((f.as<float>() == std::vector<float>{0, 0.25, 0.5, 0.75, 1.0, 1.25}));
  auto i = io::read_npy(data_dir / "numpy_i8_5.npy");
  BOOST_TEST((i.shape == std::vector<index_t>{5}));
  BOOST_TEST((i.as<std::int64_t>() == std::vector<std::int64_t>{3, 17, 5, 0, -2}));
}

BOOST_AUTO_TEST_CASE(npy_rejects_malformed_files_naming_file_and_offset) {
  testing::check_error([] { io::read_npy(data_dir / "numpy_f8_fortran.npy"); }, {"numpy_f8_fortran.npy", "byte 10", "Fortran"});
  testing::check_error([] { io::read_npy(scratch("missing.npy")); }, {"cannot open", "missing.npy"});
  std::ofstream(scratch("bad.npy")) << "not numpy";
  testing::check_error([] { io::read_npy(scratch("bad.npy")); }, {"bad.npy", "byte 0", "magic"});
  std::string whole = slurp(data_dir / "numpy_f4_2x3.npy");
  std::ofstream(scratch("short.npy"), std::ios::binary) << whole.substr(0, whole.size() - 4);
  testing::check_error([] { io::read_npy(scratch("short.npy")); }, {"short.npy", "byte 128", "truncated data"});
  testing::check_error([] { io::write_npy(fs::path("/nonexistent-dir/x.npy"), matrix<float>(1, 1)); },
                       {"cannot open", "/nonexistent-dir/x.npy"});
}

BOOST_AUTO_TEST_CASE(png_heatmap_is_a_valid_png_with_viridis_colours) {
  const index_t L = 16;
  matrix<double> m(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) m(i, j) = double(j + 1);
  const auto lay = io::write_heatmap_png(scratch("h.png"), matrix_view<const double>(m.view()), {.colorbar = false});
  const index_t W = lay.width, H = lay.height;
  const std::string png = slurp(scratch("h.png"));
  BOOST_REQUIRE(png.size() > 33);
  BOOST_TEST(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  BOOST_TEST(png.substr(12, 4) == "IHDR");
  BOOST_TEST(be32(png, 16) == std::uint32_t(W));
  BOOST_TEST(be32(png, 20) == std::uint32_t(H));
  BOOST_TEST(lay.map_w == 512);  // 16 cells enlarged 32×
  BOOST_TEST(lay.map_h == 512);
  // Every chunk's CRC is right, and the deflate stream holds the pixels.
  std::string idat;
  for (std::size_t at = 8; at < png.size();) {
    const std::uint32_t len = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const auto* body = reinterpret_cast<const std::uint8_t*>(png.data() + at + 4);
    BOOST_TEST(io::detail::crc32(body, len + 4) == be32(png, at + 8 + len), type);
    if (type == "IDAT") idat += png.substr(at + 8, len);
    at += 12 + len;
  }
  std::string raw(static_cast<std::size_t>(H * (3 * W + 1)), '\0');
  uLongf raw_size = raw.size();
  BOOST_REQUIRE(uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_size,
                           reinterpret_cast<const Bytef*>(idat.data()), idat.size()) == Z_OK);
  raw.resize(raw_size);
  BOOST_TEST(png.size() < 40000u);  // compressed: the heatmap is 16 flat 32×32 blocks and tick labels
  BOOST_TEST(raw.size() == std::size_t(H * (3 * W + 1)));
  auto pixel = [&](index_t x, index_t y) {
    x += lay.map_x, y += lay.map_y;
    const std::size_t at = static_cast<std::size_t>(y * (3 * W + 1) + 1 + 3 * x);
    return std::array<std::uint8_t, 3>{std::uint8_t(raw[at]), std::uint8_t(raw[at + 1]), std::uint8_t(raw[at + 2])};
  };
  BOOST_TEST((pixel(511, 511) == io::detail::viridis(1.0)));  // the maximum, bottom right
  BOOST_TEST((pixel(511, 0) == io::detail::viridis(0.0)));    // zeros above the diagonal
  BOOST_TEST((io::detail::viridis(0.0) == std::array<std::uint8_t, 3>{68, 1, 84}));
}

BOOST_AUTO_TEST_CASE(png_log_scale_and_large_matrices) {
  matrix<float> big(3000, 2000);
  for (index_t i = 0; i < big.size(); ++i) big.data()[i] = std::exp(-float(i % 997) / 50.0f);
  const auto lay = io::write_heatmap_png(scratch("big.png"), matrix_view<const float>(big.view()),
                                         {.scale = io::color_scale::log_magnitude});
  const std::string png = slurp(scratch("big.png"));
  BOOST_TEST(be32(png, 20) == std::uint32_t(lay.height));
  BOOST_TEST(lay.map_h == 1000);  // 3000 rows averaged in blocks of 3
  testing::check_error([] { io::write_heatmap_png(scratch("e.png"), matrix_view<const float>(nullptr, 0, 3)); }, {"'m'", "non-empty"});
}

// ---- hardening: sizes and conversions are checked before anything is allocated -----

namespace {
// A .npy file with the given header dict (version 1, or 2 with a 4-byte length) and data.
fs::path npy_with(const std::string& name, const std::string& dict, const std::string& data = "", int version = 1,
                  std::optional<std::uint32_t> length = std::nullopt) {
  std::string file("\x93NUMPY", 6);
  file.push_back(static_cast<char>(version));
  file.push_back('\0');
  const std::uint32_t n = length.value_or(static_cast<std::uint32_t>(dict.size()));
  for (int i = 0; i < (version == 1 ? 2 : 4); ++i) file.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  const fs::path p = scratch(name);
  std::ofstream(p, std::ios::binary) << file << dict << data;
  return p;
}
std::string dict_of(const std::string& descr, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }\n";
}
}  // namespace

BOOST_AUTO_TEST_CASE(npy_shapes_are_checked) {
  // Negative extents were accepted; (-1,) ended in vector::_M_default_append.
  testing::check_error([] { io::read_npy(npy_with("neg2.npy", dict_of("<f4", "(-1, -1)"))); },
                       {"neg2.npy", "malformed shape (-1, -1)", "non-negative"});
  testing::check_error([] { io::read_npy(npy_with("neg1.npy", dict_of("<f4", "(-1,)"))); }, {"malformed shape (-1,)"});
  testing::check_error([] { io::read_npy(npy_with("wrap.npy", dict_of("<f4", "(4611686018427387904, 4)"))); },
                       {"wrap.npy", "more than 2^63 elements"});
  testing::check_error([] { io::read_npy(npy_with("junk.npy", dict_of("<f4", "(3x, 2)"))); }, {"malformed shape"});
  // A shape without parentheses threw std::out_of_range from substr.
  testing::check_error([] { io::read_npy(npy_with("bare.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': 5}")); },
                       {"malformed shape 5"});
  testing::check_error([] { io::read_npy(npy_with("descr.npy", "{'descr': '', 'fortran_order': False, 'shape': ()}")); },
                       {"malformed descr"});
  const auto scalar = io::read_npy(npy_with("scalar.npy", dict_of("<f8", "()"), std::string(8, '\0')));
  BOOST_TEST(scalar.shape.empty());
  BOOST_TEST(scalar.as<double>().size() == 1u);
}

BOOST_AUTO_TEST_CASE(npy_sizes_are_checked_against_the_file_first) {
  // 500 M int64 claimed by a tiny file: refused before 4 GB are allocated.
  testing::check_error([] { io::read_npy(npy_with("claim.npy", dict_of("<i8", "(500000000,)"), "12345678")); },
                       {"claim.npy", "truncated data", "500000000 x 8 bytes", "holds 8"});
  // A v2 header may claim a 4 GiB header string.
  testing::check_error([] { io::read_npy(npy_with("header.npy", dict_of("<f4", "(1,)"), "", 2, 0xfffffff0u)); },
                       {"header.npy' at byte 8", "header length 4294967280", "exceeds"});
}

BOOST_AUTO_TEST_CASE(npy_integer_conversion_refuses_what_does_not_fit) {
  const auto ints = [](const std::vector<double>& v) {
    io::write_npy(scratch("conv.npy"), v.data(), {static_cast<index_t>(v.size())});
    return io::read_npy(scratch("conv.npy")).as<std::int64_t>();
  };
  BOOST_TEST((ints({-3.0, 0.0, 9007199254740992.0}) == std::vector<std::int64_t>{-3, 0, 9007199254740992}));
  // NaN and out-of-range values were cast with undefined behaviour.
  testing::check_error([&] { ints({1.0, std::nan("")}); }, {"conv.npy", "element 1", "not a 64-bit integer"});
  testing::check_error([&] { ints({1e300}); }, {"element 0", "not a 64-bit integer"});
  testing::check_error([&] { ints({9223372036854775808.0}); }, {"element 0"});
  testing::check_error([&] { ints({2.5}); }, {"element 0"});
  const std::vector<std::int64_t> wide = {1, std::int64_t(1) << 40};
  io::write_npy(scratch("wide.npy"), wide.data(), {2});
  testing::check_error([] { (void)io::read_npy(scratch("wide.npy")).as<std::int32_t>(); }, {"element 1", "32-bit"});
}

BOOST_AUTO_TEST_CASE(inputs_must_be_regular_files) {
  const fs::path fifo = scratch("fifo.npy");
  fs::remove(fifo);
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opening a FIFO blocks until a writer appears: refused from its type.
  testing::check_error([&] { io::read_npy(fifo); }, {"fifo.npy", "is not a regular file", "FIFO"});
  testing::check_error([] { io::read_npy(scratch("")); }, {"is not a regular file", "directory"});
}

BOOST_AUTO_TEST_CASE(tensor_extents_whose_product_overflows_are_refused) {
  // (2^62, 4) wrapped to 0 elements, then indexing wrote out of bounds.
  testing::check_error([] { tensor<float, 2> t(index_t(1) << 62, 4); }, {"mixlens::tensor", "fits in 64 bits"});
  testing::check_error([] { tensor<float, 3> t(index_t(1) << 31, index_t(1) << 32, 0); }, {"fits in 64 bits"});
  testing::check_error([] { matrix<float> m(-1, 2); }, {"non-negative"});
  BOOST_TEST(matrix<float>(0, 5).size() == 0);
}
