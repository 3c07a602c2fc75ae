#define BOOST_TEST_MODULE npz
#include <boost/test/unit_test.hpp>

#include <zip.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/oracles.hpp"
#include "mixlens/io/npz.hpp"
#include "mixlens/io/reference_params.hpp"

// The archives: tests/data/make_reference_module_fixtures.py (numpy.savez and
// numpy.savez_compressed of the S5 fixture's flax parameters).

using namespace mixlens;
using mixlens::testing::check_error;

namespace {

const std::filesystem::path dir = std::filesystem::path(MIXLENS_TEST_DATA_DIR) / "reference_params";

std::filesystem::path scratch(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / ("mixlens_npz_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d / name;
}

std::vector<char> bytes_of(const std::filesystem::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write(const std::filesystem::path& f, const std::vector<char>& b) {
  std::ofstream(f, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

// An archive with the given members (stored), written by libzip.
void write_zip(const std::filesystem::path& f, const std::vector<std::pair<std::string, std::string>>& members) {
  std::filesystem::remove(f);
  int code = 0;
  zip_t* z = zip_open(f.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
  BOOST_REQUIRE(z);
  for (const auto& [name, data] : members) {
    zip_source_t* s = zip_source_buffer(z, data.data(), data.size(), 0);
    BOOST_REQUIRE(zip_file_add(z, name.c_str(), s, ZIP_FL_OVERWRITE) >= 0);
  }
  BOOST_REQUIRE(zip_close(z) == 0);
}

void check_same(const io::tensor_map& a, const io::tensor_map& b) {
  BOOST_TEST(a.tensor_names().size() == b.tensor_names().size());
  for (const auto& name : b.tensor_names()) {
    const auto* x = a.find(name);
    BOOST_REQUIRE_MESSAGE(x, "missing " << name);
    BOOST_TEST((x->shape == b.find(name)->shape));
    BOOST_TEST((x->data == b.find(name)->data));
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(savez_and_savez_compressed_read_as_the_unzipped_folder) {
  const auto folder = io::read_npy_folder(dir / "s5_zoh_npy");
  const auto stored = io::read_npz(dir / "s5_zoh.npz");
  const auto deflated = io::read_npz(dir / "s5_zoh_compressed.npz");
  BOOST_TEST(stored.tensor_names().size() == 6u);
  BOOST_TEST(stored.find("layers_0/seq/B") != nullptr);
  check_same(stored, folder);
  check_same(deflated, folder);
  BOOST_TEST(stored.path() == dir / "s5_zoh.npz");
  // And loads the S5SSM it holds, as the reference computes it.
  const io::s5_ssm_options o{.prefix = "layers_0/seq/", .clip_eigs = true, .step_rescale = 2.0};
  const io::safetensors_file f(dir / "s5_zoh.io.safetensors");
  matrix<double> x(f.at("input").shape[0], f.at("input").shape[1]), ref(f.at("output").shape[0], f.at("output").shape[1]);
  f.read(f.at("input"), x.data());
  f.read(f.at("output"), ref.data());
  for (const auto* params : {&stored, &deflated}) {
    const auto m = io::load_s5_ssm<double>(*params, o);
    const auto y = mix(m.bind(x.view()), x.view());
    double err = 0, scale = 0;
    for (index_t k = 0; k < y.size(); ++k) {
      err = std::max(err, std::abs(y.data()[k] - ref.data()[k]));
      scale = std::max(scale, std::abs(ref.data()[k]));
    }
    BOOST_TEST(err / scale < 1e-10);
  }
}

BOOST_AUTO_TEST_CASE(bad_archives_name_the_file_and_member) {
  const auto good = dir / "s5_zoh_compressed.npz";
  check_error([&] { (void)io::read_npz(dir / "s5_zoh_extra.npz"); },
              {"npz archive '", "s5_zoh_extra.npz", "member 'README.txt'", "not a .npy member"});
  check_error([&] { (void)io::read_npz(good, {.max_member_bytes = 100}); },
              {"npz archive '", "member 'layers_0/seq/", "bytes, more than the limit of 100"});
  check_error([&] { (void)io::read_npz(dir / "missing.npz"); }, {"cannot open npz archive '", "missing.npz"});
  // Not a zip archive at all, and one cut short.
  const auto bytes = bytes_of(good);
  const auto cut = scratch("cut.npz");
  write(cut, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2)));
  check_error([&] { (void)io::read_npz(cut); }, {"cannot open npz archive '", "cut.npz"});
  const auto npy = scratch("plain.npz");
  write(npy, bytes_of(dir / "s5_zoh_npy" / "layers_0" / "seq" / "D.npy"));
  check_error([&] { (void)io::read_npz(npy); }, {"cannot open npz archive '", "plain.npz"});
  // Deflated data damaged inside the first member: inflate or its CRC fails, naming the member.
  auto damaged = bytes;
  const std::size_t header = 30 + (static_cast<unsigned char>(bytes[26]) | static_cast<unsigned char>(bytes[27]) << 8) +
                             (static_cast<unsigned char>(bytes[28]) | static_cast<unsigned char>(bytes[29]) << 8);
  for (std::size_t k = header + 4; k < header + 12; ++k) damaged[k] = static_cast<char>(damaged[k] ^ 0x5a);
  const auto bad = scratch("damaged.npz");
  write(bad, damaged);
  check_error([&] { (void)io::read_npz(bad); }, {"npz archive '", "damaged.npz", "member 'layers_0/seq/", "corrupt data"});
  // A .npy member whose content is not an array: the npy reader names archive and member.
  const auto garbage = scratch("garbage.npz");
  write_zip(garbage, {{"a.npy", "not an array"}});
  check_error([&] { (void)io::read_npz(garbage); }, {"garbage.npz:a.npy", "bad magic"});
  write_zip(garbage, {{"folder/", ""}, {"b.npy", ""}});  // a folder entry is skipped; an empty member is no array
  check_error([&] { (void)io::read_npz(garbage); }, {"garbage.npz:b.npy", "bad magic"});
  std::filesystem::remove_all(scratch("").parent_path());
}
