#define BOOST_TEST_MODULE safetensors
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/io/json.hpp"
#include "mixlens/io/safetensors.hpp"

using namespace mixlens;
namespace fs = std::filesystem;

namespace {

const fs::path data_dir = fs::path(__FILE__).parent_path() / "data";

struct scratch {
  fs::path dir = fs::temp_directory_path() / ("mixlens_safetensors_test_" + std::to_string(::getpid()));
  scratch() { fs::create_directories(dir); }
  ~scratch() { fs::remove_all(dir); }

  // Writes the 8-byte length, the header text and the data bytes.
  fs::path write(const std::string& name, const std::string& header, const std::string& data,
                 std::optional<std::uint64_t> length = std::nullopt) const {
    const fs::path p = dir / name;
    std::ofstream out(p, std::ios::binary);
    std::uint64_t n = length.value_or(header.size());
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
    return p;
  }
};

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)};
}

void expect_error(const fs::path& file, std::initializer_list<std::string> fragments) {
  testing::check_error([&] { io::safetensors_file f(file); }, fragments);
}

}  // namespace

BOOST_AUTO_TEST_CASE(dtypes_are_converted) {
  scratch s;
  const std::vector<float> f32{1.5f, -2.0f, 3.25f};
  const std::vector<double> f64{0.1, -7.0};
  // 1, -2, 65504 (largest half), 2^-24 (smallest subnormal), -0, 0.333251953125
  const std::vector<std::uint16_t> f16{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x3555};
  const std::vector<std::uint16_t> bf16{0x3F80, 0xC040, 0x4049};  // 1, -3, 3.140625
  std::string data = bytes_of(f32) + bytes_of(f64) + bytes_of(f16) + bytes_of(bf16);
  const std::string header =
      R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},)"
      R"( "b": {"dtype": "F64", "shape": [1, 2], "data_offsets": [12, 28]},)"
      R"( "c": {"dtype": "F16", "shape": [2, 3], "data_offsets": [28, 40]},)"
      R"( "d": {"dtype": "BF16", "shape": [3], "data_offsets": [40, 46]},)"
      R"( "e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [46, 46]}}   )";  // trailing spaces are allowed
  const io::safetensors_file f(s.write("ok.safetensors", header, data));
  BOOST_TEST(f.tensors().size() == 5u);
  BOOST_TEST(f.metadata().at("format") == "pt");
  BOOST_TEST(f.at("b").shape == (std::vector<index_t>{1, 2}));
  BOOST_TEST(f.at("e").size() == 0);
  BOOST_TEST(f.read<double>("a") == (std::vector<double>{1.5, -2.0, 3.25}));
  BOOST_TEST(f.read<float>("b") == (std::vector<float>{0.1f, -7.0f}));
  BOOST_TEST(f.read<double>("c") == (std::vector<double>{1.0, -2.0, 65504.0, std::ldexp(1.0, -24), -0.0, 0.333251953125}));
  BOOST_TEST(std::signbit(f.read<double>("c")[4]));
  BOOST_TEST(f.read<float>("d") == (std::vector<float>{1.0f, -3.0f, 3.140625f}));
  BOOST_TEST(!f.contains("z"));
  testing::check_error([&] { (void)f.at("z"); }, {"ok.safetensors", "no tensor named 'z'"});
}

BOOST_AUTO_TEST_CASE(the_fixtures_open) {
  // Files written by Hugging Face save_pretrained and safetensors' save_file.
  for (const char* name : {"mamba_tied_fp32", "mamba_bias_bf16", "mamba_ss_f16", "mamba_demo"}) {
    const io::safetensors_file f(data_dir / name / "model.safetensors");
    BOOST_TEST(f.tensors().size() > 10u);
    const auto& emb = f.tensors().front();
    const auto values = f.read<float>(emb.name);
    BOOST_TEST(std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }));
  }
  const io::safetensors_file bf(data_dir / "mamba_bias_bf16" / "model.safetensors");
  BOOST_TEST(bf.at("backbone.layers.0.mixer.conv1d.weight").dtype == "BF16");
  BOOST_TEST(bf.at("backbone.layers.0.mixer.conv1d.weight").shape == (std::vector<index_t>{120, 1, 3}));
}

BOOST_AUTO_TEST_CASE(defects_name_the_file_and_offset) {
  scratch s;
  const std::string four(16, '\0');
  auto entry = [](const std::string& body) { return "{\"t\": " + body + "}"; };

  expect_error(s.dir / "missing.safetensors", {"cannot open", "missing.safetensors"});
  {
    const fs::path p = s.dir / "short.safetensors";
    std::ofstream(p, std::ios::binary) << "abc";
    expect_error(p, {"short.safetensors' at byte 0", "too short"});
  }
  expect_error(s.write("len.safetensors", "{}", "", 1000), {"at byte 0", "header length 1000"});
  expect_error(s.write("zero.safetensors", "", "", 0), {"at byte 0", "header length 0"});
  // {"t": {"dtype" ... : the stray comma sits at byte 8 + 6.
  expect_error(s.write("json.safetensors", R"({"t",: 1})", ""), {"json.safetensors' at byte 12", "malformed JSON"});
  expect_error(s.write("array.safetensors", "[1, 2]", ""), {"at byte 8", "not a JSON object"});
  expect_error(s.write("entry.safetensors", entry("3"), ""), {"at byte 14", "tensor 't' is not a JSON object"});
  expect_error(s.write("dtype.safetensors", entry(R"({"dtype": "F12", "shape": [2], "data_offsets": [0, 8]})"), four),
               {"unknown dtype 'F12'"});
  expect_error(s.write("nodtype.safetensors", entry(R"({"shape": [2], "data_offsets": [0, 8]})"), four),
               {"lacks 'dtype'"});
  expect_error(s.write("shape.safetensors", entry(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})"), four),
               {"shape entries must be non-negative integers"});
  expect_error(s.write("shapetype.safetensors", entry(R"({"dtype": "F32", "shape": 2, "data_offsets": [0, 8]})"), four),
               {"'shape' is not an array"});
  expect_error(s.write("size.safetensors", entry(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})"), four),
               {"data_offsets span 8 bytes, but shape and F32 need 12"});
  expect_error(s.write("past.safetensors", entry(R"({"dtype": "F32", "shape": [8], "data_offsets": [0, 32]})"), four),
               {"past the end"});
  expect_error(s.write("order.safetensors", entry(R"({"dtype": "F32", "shape": [0], "data_offsets": [8, 4]})"), four),
               {"end before begin"});
  expect_error(s.write("pair.safetensors", entry(R"({"dtype": "F32", "shape": [0], "data_offsets": [0]})"), four),
               {"must hold 2 integers"});
  expect_error(s.write("extra.safetensors", entry(R"({"dtype": "F32", "shape": [0], "data_offsets": [0, 0], "x": 1})"), four),
               {"unknown field 'x'"});
  expect_error(s.write("overlap.safetensors",
                       R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                       R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                       four),
               {"overlaps"});
  expect_error(s.write("dup.safetensors",
                       R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},)"
                       R"( "a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})",
                       ""),
               {"duplicate key 'a'"});
  expect_error(s.write("meta.safetensors", R"({"__metadata__": {"k": 1}})", ""), {"__metadata__ value 'k'"});
  {  // a dtype the reader does not convert
    const io::safetensors_file f(s.write("int.safetensors", entry(R"({"dtype": "I32", "shape": [2], "data_offsets": [0, 8]})"), four));
    testing::check_error([&] { (void)f.read<float>("t"); }, {"int.safetensors", "dtype I32"});
  }
}

BOOST_AUTO_TEST_CASE(json_reader) {
  const auto v = io::parse_json(R"( {"a": [1, -2.5e3, true, null, "x\u00e9\n\ud83d\ude00"], "b": {}} )");
  BOOST_TEST(v.is(io::json_value::kind::object));
  const auto& a = v.find("a")->items;
  BOOST_TEST(a[0].integral);
  BOOST_TEST(a[0].integer == 1);
  BOOST_TEST(!a[1].integral);
  BOOST_TEST(a[1].number == -2500.0);
  BOOST_TEST(a[2].boolean);
  BOOST_TEST(a[3].is(io::json_value::kind::null));
  BOOST_TEST(a[4].string == "x\xc3\xa9\n\xf0\x9f\x98\x80");
  BOOST_TEST(v.find("b")->members.empty());
  BOOST_TEST(io::parse_json("-9223372036854775808").integer == INT64_MIN);
  BOOST_TEST(!io::parse_json("9223372036854775808").integral);
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\q\"", "\"abc", "tru", "{} x", "\"\x01\"", "1e999"})
    BOOST_CHECK_THROW((void)io::parse_json(bad), io::json_error);
  try {
    (void)io::parse_json("[1, 2, x]");
  } catch (const io::json_error& e) {
    BOOST_TEST(e.offset() == 7u);
  }
}

// ---- hardening (issue: sizes, denial of service) --------------------------------

BOOST_AUTO_TEST_CASE(element_counts_that_overflow_are_refused) {
  scratch s;
  // 2^31 · 2^32 · 0 = 0 bytes passes the byte check, but the count of the
  // non-zero extents (2^63) overflows index_t: refused, as are its strides.
  expect_error(s.write("wrap.safetensors",
                       R"({"t": {"dtype": "F32", "shape": [2147483648, 4294967296, 0], "data_offsets": [0, 0]}})", ""),
               {"wrap.safetensors' at byte", "more than 2^63 elements"});
  expect_error(s.write("big.safetensors",
                       R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})", ""),
               {"more than 2^63 elements"});
  // A zero extent beside small ones is a valid empty tensor.
  const io::safetensors_file f(
      s.write("empty.safetensors", R"({"t": {"dtype": "F32", "shape": [3, 0, 5], "data_offsets": [0, 0]}})", ""));
  BOOST_TEST(f.at("t").size() == 0);
}

BOOST_AUTO_TEST_CASE(many_tensors_open_in_n_log_n) {
  // 80 000 empty tensors (a 4.8 MB header) took 22.6 s with a pairwise
  // duplicate-key check.
  scratch s;
  std::string header = "{";
  for (int i = 0; i < 80000; ++i) {  // (appended piecewise: GCC 12 warns falsely on a + chain)
    if (i) header += ", ";
    header += "\"t";
    header += std::to_string(i);
    header += R"(": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]})";
  }
  const auto begin = std::chrono::steady_clock::now();
  const io::safetensors_file f(s.write("many.safetensors", header + "}", ""));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  BOOST_TEST(f.tensors().size() == 80000u);
  BOOST_TEST(seconds < 10.0);
  // The earliest repeated key is still named.
  header += R"(, "t7": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]})";
  header += R"(, "t3": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})";
  expect_error(s.write("dup.safetensors", header, ""), {"duplicate key 't7'"});
}

BOOST_AUTO_TEST_CASE(fifos_and_folders_are_refused_without_blocking) {
  scratch s;
  const fs::path fifo = s.dir / "fifo.safetensors";
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_error(fifo, {"fifo.safetensors", "is not a regular file", "FIFO"});  // open() would block forever
  expect_error(s.dir, {"is not a regular file", "directory"});
}

BOOST_AUTO_TEST_CASE(json_value_members_hold_key_and_offset) {
  const auto v = io::parse_json(R"({"a": 1, "bb": {"c": 2}})");
  BOOST_TEST(v.members.size() == 2u);
  BOOST_TEST(v.members[1].key == "bb");
  BOOST_TEST(v.members[1].key_offset == 9u);
  BOOST_TEST(v.find("bb")->find("c")->integer == 2);
}
