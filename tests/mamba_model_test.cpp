#define BOOST_TEST_MODULE mamba_model
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/mamba_model.hpp"

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

namespace {

const fs::path data_dir = fs::path(__FILE__).parent_path() / "data";

struct fixture_case {
  const char* name;
  int sequences;
  int layers;
};
// Made by tests/data/make_mamba_fixtures.py with transformers (see its docstring).
const fixture_case fixtures[] = {
    {"mamba_tied_fp32", 3, 2}, {"mamba_bias_bf16", 2, 3}, {"mamba_ss_f16", 1, 1}, {"mamba_demo", 1, 4}};

fs::path reference(const std::string& model, const std::string& file) { return data_dir / "reference" / model / file; }

std::vector<index_t> tokens_of(const std::string& model, int s) {
  return io::read_npy(reference(model, "tokens_" + std::to_string(s) + ".npy")).as<index_t>();
}

// max |a − b| / max |b| between a (rows × cols) matrix and a reference stored
// either as (rows × cols) or transposed (cols × rows) with column offset `col0`.
// Infinite when either side is not finite. `got` is a matrix or a matrix view.
template <class M>
double compare(const M& got, const io::npy_array& ref, bool transposed = false, index_t col0 = 0) {
  const auto r = ref.as<double>();
  const index_t cols = ref.shape.at(1);
  double diff = 0, scale = 0;
  for (index_t i = 0; i < got.extent(0); ++i)
    for (index_t j = 0; j < got.extent(1); ++j) {
      const double want = transposed ? r[static_cast<std::size_t>(j * cols + col0 + i)]
                                     : r[static_cast<std::size_t>(i * cols + col0 + j)];
      const double d = std::abs(double(got(i, j)) - want);
      if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
      diff = std::max(diff, d);
      scale = std::max(scale, std::abs(want));
    }
  return diff / (scale > 0 ? scale : 1);
}

template <class T>
void check_fixture(const fixture_case& fx, double tol) {
  const auto model = load_mamba<T>(data_dir / fx.name);
  BOOST_REQUIRE_EQUAL(model.num_layers(), fx.layers);
  double worst_logits = 0, worst_signals = 0;
  for (int s = 0; s < fx.sequences; ++s) {
    const auto tokens = tokens_of(fx.name, s);
    std::string tag = std::to_string(s);  // (built in steps: GCC 12 warns falsely on "_" + std::string)
    tag.insert(tag.begin(), '_');
    tag.push_back('_');
    double signals = 0;
    const auto logits = mamba_forward(model, std::span<const index_t>(tokens), [&](const mamba_layer_signals<T>& sig) {
      const std::string p = "layer" + std::to_string(sig.layer) + tag;
      const auto xz = io::read_npy(reference(fx.name, p + "in_proj_out.npy"));
      signals = std::max(signals, compare(sig.x, xz, true, 0));
      signals = std::max(signals, compare(sig.z, xz, true, sig.x.extent(0)));
      signals = std::max(signals, compare(sig.u, io::read_npy(reference(fx.name, p + "ssm_in.npy")), true));
      signals = std::max(signals, compare(sig.y, io::read_npy(reference(fx.name, p + "ssm_out.npy")), true));
    });
    const auto ref = io::read_npy(reference(fx.name, "logits_" + std::to_string(s) + ".npy"));
    BOOST_REQUIRE_EQUAL(ref.shape.at(0), static_cast<index_t>(tokens.size()));
    BOOST_REQUIRE_EQUAL(ref.shape.at(1), logits.extent(1));
    const double err = compare(logits, ref);
    BOOST_TEST(err <= tol, fx.name << " sequence " << s << ": logits error " << err);
    BOOST_TEST(signals <= tol, fx.name << " sequence " << s << ": layer signals error " << signals);
    worst_logits = std::max(worst_logits, err);
    worst_signals = std::max(worst_signals, signals);
  }
  BOOST_TEST_MESSAGE(fx.name << " (" << (std::is_same_v<T, float> ? "float" : "double")
                             << "): max relative error vs transformers: logits " << worst_logits << ", layer signals "
                             << worst_signals);
}

// A scratch copy of a fixture folder whose files a test may break.
struct scratch_model {
  fs::path dir;
  explicit scratch_model(const std::string& from) {
    dir = fs::temp_directory_path() / ("mixlens_mamba_model_test_" + std::to_string(::getpid()) + "_" + from);
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy(data_dir / from, dir, fs::copy_options::recursive);
  }
  ~scratch_model() { fs::remove_all(dir); }
  void write_config(const std::string& text) const { std::ofstream(dir / "config.json") << text; }
};

template <class F>
void expect_error(F&& f, const std::string& fragment) {
  testing::check_error(std::forward<F>(f), {fragment});
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_transformers_float) {
  for (const auto& fx : fixtures) check_fixture<float>(fx, 1e-4);
}

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_transformers_double) {
  // The reference itself is fp32, so double agrees only to fp32 accuracy.
  for (const auto& fx : fixtures) check_fixture<double>(fx, 1e-5);
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
