#define BOOST_TEST_MODULE mamba_model
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/mamba_model.hpp"

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;
using namespace mixlens::testing;

namespace {

const fs::path data_dir = test_data_dir();

template <class T>
void check_fixture(const fixture_case& fx, double tol) {
  testing::check_fixture(load_mamba<T>(data_dir / fx.name), fx, tol, [&](const mamba_layer_signals<T>& sig, const std::string& p) {
    const auto xz = io::read_npy(reference(fx.name, p + "in_proj_out.npy"));
    return std::max({compare(sig.x, xz, true, 0), compare(sig.z, xz, true, sig.x.extent(0)),
                     compare(sig.u, io::read_npy(reference(fx.name, p + "ssm_in.npy")), true),
                     compare(sig.y, io::read_npy(reference(fx.name, p + "ssm_out.npy")), true)});
  });
}

}  // namespace

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_transformers_float) {
  for (const auto& fx : mamba_fixtures) check_fixture<float>(fx, 1e-4);
}

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_transformers_double) {
  // The reference itself is fp32, so double agrees only to fp32 accuracy.
  for (const auto& fx : mamba_fixtures) check_fixture<double>(fx, 1e-5);
}

BOOST_AUTO_TEST_CASE(configs_in_both_layouts) {
  const auto hf = load_mamba_config(data_dir / "mamba_bias_bf16" / "config.json");
  BOOST_TEST((hf.naming == mamba_naming::hugging_face));
  BOOST_TEST(hf.vocab_size == 131);
  BOOST_TEST(hf.hidden_size == 40);
  BOOST_TEST(hf.state_size == 5);
  BOOST_TEST(hf.intermediate_size == 120);
  BOOST_TEST(hf.conv_kernel == 3);
  BOOST_TEST(hf.time_step_rank == 7);
  BOOST_TEST(hf.num_layers == 3);
  BOOST_TEST(hf.use_bias);
  BOOST_TEST(!hf.tie_embeddings);
  BOOST_TEST(hf.norm_eps == 1e-6);

  const auto ss = load_mamba_config(data_dir / "mamba_ss_f16" / "config.json");
  BOOST_TEST((ss.naming == mamba_naming::state_spaces));
  BOOST_TEST(ss.vocab_size == 104);  // 100 padded to a multiple of 8
  BOOST_TEST(ss.hidden_size == 32);
  BOOST_TEST(ss.intermediate_size == 32);
  BOOST_TEST(ss.state_size == 4);
  BOOST_TEST(ss.conv_kernel == 2);
  BOOST_TEST(ss.time_step_rank == 2);
  BOOST_TEST(ss.use_conv_bias);
  BOOST_TEST(!ss.use_bias);

  // "auto" rank and defaults.
  const auto a = parse_mamba_config(R"({"hidden_size": 33, "num_hidden_layers": 2, "vocab_size": 10, "time_step_rank": "auto"})");
  BOOST_TEST(a.time_step_rank == 3);
  BOOST_TEST(a.intermediate_size == 66);
  BOOST_TEST(a.state_size == 16);
  const auto b = parse_mamba_config(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "pad_vocab_size_multiple": 8})");
  BOOST_TEST(b.vocab_size == 50280);
  BOOST_TEST(b.time_step_rank == 48);
  BOOST_TEST(b.intermediate_size == 1536);
}

BOOST_AUTO_TEST_CASE(falcon_mamba_config_and_norms) {
  const auto f = load_mamba_config(data_dir / "falcon_mamba_fp32" / "config.json");
  BOOST_TEST(f.bc_dt_norm);
  BOOST_TEST(f.mixer_rms_eps == 1e-3);
  BOOST_TEST(f.family() == "Falcon-Mamba");
  BOOST_TEST(f.vocab_size == 75);
  BOOST_TEST(f.time_step_rank == 5);
  BOOST_TEST(!load_mamba_config(data_dir / "mamba_tied_fp32" / "config.json").bc_dt_norm);
  const auto s = load_mamba_config(data_dir / "falcon_mamba_sharded_bf16" / "config.json");
  BOOST_TEST(s.mixer_rms_eps == 1e-6);
  BOOST_TEST(s.use_bias);
  // Without the δ, B, C norms (or with another epsilon) the logits leave the
  // reference: the fixture exercises both.
  for (const auto change : {+[](mamba_config& c) { c.bc_dt_norm = false; }, +[](mamba_config& c) { c.mixer_rms_eps = 1e-6; }}) {
    auto model = load_mamba<double>(data_dir / "falcon_mamba_fp32");
    change(model.config);
    const auto tokens = tokens_of("falcon_mamba_fp32", 1);
    const double err = compare(mamba_forward(model, std::span<const index_t>(tokens)),
                               io::read_npy(reference("falcon_mamba_fp32", "logits_1.npy")));
    BOOST_TEST(err > 1e-3, "changed model still matches (" << err << ")");
  }
}

BOOST_AUTO_TEST_CASE(bad_configs) {
  expect_error([] { (void)parse_mamba_config("{\"hidden_size\": 4,", "c.json"); }, "at byte");
  expect_error([] { (void)parse_mamba_config("[1, 2]", "c.json"); }, "JSON object");
  expect_error([] { (void)parse_mamba_config(R"({"hidden_size": 4, "vocab_size": 5})", "c.json"); },
                       "num_hidden_layers");
  expect_error(
      [] { (void)parse_mamba_config(R"({"hidden_size": "4", "num_hidden_layers": 1, "vocab_size": 5})", "c.json"); },
      "hidden_size");
  expect_error(
      [] { (void)parse_mamba_config(R"({"hidden_size": -4, "num_hidden_layers": 1, "vocab_size": 5})", "c.json"); },
      "positive");
  expect_error([] {
    (void)parse_mamba_config(R"({"model_type": "mamba2", "hidden_size": 4, "num_hidden_layers": 1, "vocab_size": 5})");
  }, "mamba2");
  expect_error([] { (void)parse_mamba_config(R"({"model_type": "falcon_mamba", "hidden_size": 4, "num_hidden_layers": 1, "vocab_size": 5, "mixer_rms_eps": -1})"); },
               "mixer_rms_eps");
  expect_error([] {
    (void)parse_mamba_config(R"({"hidden_act": "gelu", "hidden_size": 4, "num_hidden_layers": 1, "vocab_size": 5})");
  }, "hidden_act");
  expect_error([] { (void)parse_mamba_config(R"({"d_model": 4, "n_layer": 1, "vocab_size": 5, "ssm_cfg": {"layer": "Mamba2"}})"); },
                       "Mamba2");
  expect_error([] { (void)parse_mamba_config(R"({"d_model": 4, "n_layer": 1, "vocab_size": 5, "rms_norm": false})"); },
                       "rms_norm");
  expect_error([] { (void)load_mamba_config("/nonexistent/config.json"); }, "cannot open");
}

BOOST_AUTO_TEST_CASE(bad_checkpoints) {
  expect_error([] { (void)load_mamba<float>("/nonexistent/model"); }, "does not exist");
  {
    scratch_model m("mamba_tied_fp32");
    fs::remove(m.dir / "config.json");
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "no config.json");
  }
  {
    scratch_model m("mamba_tied_fp32");
    fs::remove(m.dir / "model.safetensors");
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "no model.safetensors");
  }
  {  // a config that disagrees with the weights: the tensor and expected shape are named
    scratch_model m("mamba_tied_fp32");
    std::string text = read_text(m.dir / "config.json");
    text.replace(text.find("\"state_size\": 8"), 15, "\"state_size\": 9");
    m.write_config(text);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "backbone.layers.0.mixer.x_proj.weight' has shape [19, 48], expected [21, 48]");
  }
  {  // more layers than stored
    scratch_model m("mamba_tied_fp32");
    std::string text = read_text(m.dir / "config.json");
    text.replace(text.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": 3");
    m.write_config(text);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "missing tensor 'backbone.layers.2.norm.weight' (expected shape [24])");
  }
  {  // untied without lm_head
    scratch_model m("mamba_tied_fp32");
    std::string text = read_text(m.dir / "config.json");
    text.replace(text.find("\"tie_word_embeddings\": true"), 27, "\"tie_word_embeddings\": false");
    m.write_config(text);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "missing tensor 'lm_head.weight' (expected shape [97, 24])");
  }
  {  // biases the config does not announce
    scratch_model m("mamba_bias_bf16");
    std::string text = read_text(m.dir / "config.json");
    text.replace(text.find("\"use_bias\": true"), 16, "\"use_bias\": false");
    m.write_config(text);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "unexpected tensor 'backbone.layers.0.mixer.in_proj.bias'");
  }
  {  // truncated weights
    scratch_model m("mamba_tied_fp32");
    fs::resize_file(m.dir / "model.safetensors", 5000);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "past the end");
  }
}

BOOST_AUTO_TEST_CASE(bad_tokens) {
  const auto model = load_mamba<float>(data_dir / "mamba_tied_fp32");
  const std::vector<index_t> none, high{1, 97}, negative{-1};
  expect_error([&] { (void)mamba_forward(model, std::span<const index_t>(none)); }, "no tokens");
  expect_error([&] { (void)mamba_forward(model, std::span<const index_t>(high)); }, "token 97 at position 1");
  expect_error([&] { (void)mamba_forward(model, std::span<const index_t>(negative)); }, "token -1 at position 0");
}

// ---- hardening: sizes, conversions, files, mismatches -----------------------------

namespace {
// A copy of `file` with extra empty F32 tensors in its header (the data are kept:
// offsets are relative to the data start).
void add_tensors(const fs::path& file, const std::vector<std::string>& names) {
  const std::string bytes = read_text(file);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  std::string header = "{";
  for (const auto& name : names) header += "\"" + name + "\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}, ";
  header += bytes.substr(9, n - 1);
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  out << header << bytes.substr(8 + n);
}
}  // namespace

BOOST_AUTO_TEST_CASE(config_sizes_and_numbers_are_checked) {
  // Padding INT64_MAX to a multiple of 8 returned a negative vocabulary.
  expect_error([] { (void)parse_mamba_config(R"({"d_model": 4, "n_layer": 1, "vocab_size": 9223372036854775807,
                                               "pad_vocab_size_multiple": 8})", "c.json"); },
               "padded to a multiple of 8 exceeds 2^63");
  // expand · d_model was cast to an integer unchecked (undefined out of range).
  expect_error([] { (void)parse_mamba_config(R"({"d_model": 4, "n_layer": 1, "vocab_size": 5, "ssm_cfg": {"expand": 1e300}})"); },
               "is not a positive size below 2^62");
  expect_error([] { (void)parse_mamba_config(R"({"hidden_size": 4, "num_hidden_layers": 1, "vocab_size": 5, "expand": -2})"); },
               "expand");
  // Sizes whose products overflow.
  expect_error([] { (void)parse_mamba_config(R"({"hidden_size": 4611686018427387904, "num_hidden_layers": 1,
                                               "vocab_size": 5, "intermediate_size": 4})"); },
               "exceeds 2^63");
  // nlohmann's own exceptions leaked without the file or the field.
  expect_error([] { (void)parse_mamba_config(R"({"hidden_size": 1e400})", "c.json"); }, "Mamba config 'c.json'");
  expect_error([] { (void)parse_mamba_config(R"({"hidden_size": 18446744073709551615, "num_hidden_layers": 1,
                                               "vocab_size": 5})"); },
               "field 'hidden_size' must fit in 64 bits");
  expect_error([] { (void)parse_mamba_config("{\"hidden_act\": \"\xff\"}", "c.json"); }, "c.json' at byte 17: malformed JSON");
}

BOOST_AUTO_TEST_CASE(config_and_weights_must_be_regular_files) {
  scratch_model m("mamba_tied_fp32");
  fs::remove(m.dir / "config.json");
  fs::create_directory(m.dir / "config.json");  // was reported as malformed JSON
  expect_error([&] { (void)load_mamba<float>(m.dir); }, "config.json' is not a regular file (it is a directory)");
  fs::remove(m.dir / "config.json");
  BOOST_REQUIRE(::mkfifo((m.dir / "config.json").c_str(), 0600) == 0);  // open() blocked forever
  expect_error([&] { (void)load_mamba<float>(m.dir); }, "is not a regular file (it is a FIFO)");
}

BOOST_AUTO_TEST_CASE(stored_shapes_are_checked_before_allocation) {
  // A config claiming 5·10^9 rows allocated 480 GB (bad_alloc) before the shape check.
  scratch_model m("mamba_tied_fp32");
  std::string text = read_text(m.dir / "config.json");
  text.replace(text.find("\"vocab_size\": 97"), 16, "\"vocab_size\": 5000000000");
  m.write_config(text);
  expect_error([&] { (void)load_mamba<float>(m.dir); }, "has shape [97, 24], expected [5000000000, 24]");
}

BOOST_AUTO_TEST_CASE(layer_counts_must_agree_and_unused_tensors_are_listed) {
  {  // fewer layers in the config: the first ones ran silently
    scratch_model m("mamba_tied_fp32");
    std::string text = read_text(m.dir / "config.json");
    text.replace(text.find("\"num_hidden_layers\": 2"), 22, "\"num_hidden_layers\": 1");
    m.write_config(text);
    expect_error([&] { (void)load_mamba<float>(m.dir); }, "holds 2 layers (backbone.layers.1.*), but the config has 1 layers");
  }
  {
    scratch_model m("mamba_tied_fp32");
    add_tensors(m.dir / "model.safetensors", {"extra.weight", "backbone.layers.0.mixer.extra"});
    const auto model = load_mamba<float>(m.dir);
    BOOST_TEST((model.unused_tensors == std::vector<std::string>{"extra.weight", "backbone.layers.0.mixer.extra"}));
    BOOST_TEST(load_mamba<float>(data_dir / "mamba_tied_fp32").unused_tensors.empty());
  }
}
