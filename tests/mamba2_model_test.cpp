#define BOOST_TEST_MODULE mamba2_model
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
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;
using namespace mixlens::testing;

namespace {

const fs::path data_dir = test_data_dir();

// Logits and every recorded layer signal against transformers; the self-test
// (both forms) on every layer.
template <class T>
void check_fixture(const fixture_case& fx, double tol, double self_tol) {
  const auto model = load_mamba2<T>(data_dir / fx.name);
  const index_t S = model.config.ssm_channels();
  double worst_self = 0;
  testing::check_fixture(model, fx, tol, [&](const mamba2_layer_signals<T>& sig, const std::string& p) {
    const auto e = check_reconstruction(host_backend<T>{}, sig);
    worst_self = std::max({worst_self, e.paper, e.unified});
    BOOST_TEST(e.paper <= self_tol, fx.name << " layer " << sig.layer << ": per-head alpha reconstruction " << e.paper);
    BOOST_TEST(e.unified <= self_tol, fx.name << " layer " << sig.layer << ": unified reconstruction " << e.unified);
    // transformers' in_proj output is [z | x, B, C | dt] (no MLP part: see the script).
    const auto in_proj = io::read_npy(reference(fx.name, p + "in_proj_out.npy"));
    return std::max({compare(sig.z, in_proj, true, 0), compare(sig.x, in_proj, true, S),
                     compare(sig.ssm_out, io::read_npy(reference(fx.name, p + "ssm_out.npy")), true),
                     compare(sig.y, io::read_npy(reference(fx.name, p + "norm_out.npy")), true)});
  });
  BOOST_TEST_MESSAGE(fx.name << ": worst self-test error " << worst_self);
}

// The SSD matrix term by term in long double from Δ, A, B, C: the oracle for α_h.
template <class T>
long double naive_alpha(const mamba2_layer_signals<T>& s, index_t h, index_t i, index_t j) {
  if (j > i) return 0;
  const index_t g = h / (s.heads() / s.b.extent(0));
  long double decay = 0, cb = 0;
  for (index_t k = j + 1; k <= i; ++k) decay += s.delta(h, k);
  for (index_t n = 0; n < s.b.extent(1); ++n) cb += static_cast<long double>(s.c(g, n, i)) * s.b(g, n, j);
  return cb * std::exp(static_cast<long double>(s.a[static_cast<std::size_t>(h)]) * decay) * s.delta(h, j);
}

const std::string hf = R"("model_type": "mamba2", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 5, "num_heads": 4, "head_dim": 4, "n_groups": 2)";
const std::string ss = R"("d_model": 8, "n_layer": 1, "vocab_size": 5)";

}  // namespace

BOOST_AUTO_TEST_CASE(logits_signals_and_self_test_match_transformers_float) {
  for (const auto& fx : mamba2_fixtures) check_fixture<float>(fx, 1e-4, 1e-5);
}

BOOST_AUTO_TEST_CASE(logits_signals_and_self_test_match_transformers_double) {
  // The reference itself is fp32, so double agrees only to fp32 accuracy.
  for (const auto& fx : mamba2_fixtures) check_fixture<double>(fx, 1e-5, 1e-11);
}

BOOST_AUTO_TEST_CASE(per_head_alpha_rows_and_channels) {
  const auto model = load_mamba2<double>(data_dir / "mamba2_groups_bf16");
  const auto tokens = tokens_of("mamba2_groups_bf16", 1);
  const index_t L = static_cast<index_t>(tokens.size());
  for (const auto& owner : all_signals(model, tokens)) {
    const auto& s = owner.view();
    const auto heads = s.ssm();
    BOOST_TEST(heads.out_channels() == model.config.num_heads);
    tensor<double, 3> alpha(heads.out_channels(), L, L);
    materialize_channels(heads, 0, heads.out_channels(), alpha.data());
    double diff = 0;
    for (index_t h = 0; h < heads.out_channels(); ++h)
      for (index_t i = 0; i < L; ++i)
        for (index_t j = 0; j < L; ++j) diff = std::max(diff, static_cast<double>(std::abs(alpha(h, i, j) - naive_alpha(s, h, i, j))));
    BOOST_TEST(diff <= 1e-12, "layer " << s.layer << ": alpha vs the term-by-term oracle " << diff);
    // The host conveniences: per head in the paper form, per channel unified.
    const auto paper = layer_attention(s, attention_form::paper);
    BOOST_TEST(std::equal(paper.data(), paper.data() + paper.size(), alpha.data()));
    BOOST_TEST(layer_attention(s, attention_form::unified).extent(0) == s.channels());
    const auto row = layer_attention_row(s, attention_form::paper, 5, L - 1);
    for (index_t j = 0; j < L; ++j) BOOST_TEST(std::abs(row[static_cast<std::size_t>(j)] - alpha(5, L - 1, j)) <= 1e-12 * (1 + std::abs(alpha(5, L - 1, j))));
    BOOST_TEST(check_reconstruction(s).paper <= 1e-12);
    // Every channel of a head is mixed by its head's matrix; rows equal the
    // matrices' rows in both forms.
    const auto channels = s.ssm(s6_fold{});
    const auto unified = unified_operator(host_backend<double>{}, s);
    matrix<double> m(L, L), u(L, L);
    std::vector<double> r(static_cast<std::size_t>(L));
    for (const index_t c : {index_t(0), s.head_dim + 3, s.channels() - 1}) {
      channels.materialize(c, c, m.view());
      unified->materialize(c, c, u.view());
      for (index_t t : {index_t(0), L / 2, L - 1}) {
        unified->row(c, c, t, vector_view<double>(r.data(), r.size()));
        for (index_t j = 0; j < L; ++j) {
          BOOST_TEST(m(t, j) == alpha(c / s.head_dim, t, j));
          BOOST_TEST(std::abs(r[static_cast<std::size_t>(j)] - u(t, j)) <= 1e-12 * (1 + std::abs(u(t, j))));
        }
      }
    }
    // The chunked SSD and the recurrence agree with the matrices (apply = M·u).
    const auto op = s.ssm(s6_fold{.skip = true, .gate = true});
    matrix<double> y1(s.channels(), L), y2(s.channels(), L);
    op.apply(s.u, y1.view());
    op.apply_recurrent(s.u, y2.view());
    BOOST_TEST(testing::relative_error(y1, y2) <= 1e-12);
    std::vector<double> y(s.y.data_handle(), s.y.data_handle() + s.y.size());
    BOOST_TEST(testing::relative_error(y1.data(), y.data(), y1.size()) <= 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(time_step_limit_and_gated_norm_matter) {
  // Without the clamp, or with the other codebase's norm groups, the logits
  // leave the reference: the fixtures exercise both.
  const auto check = [](const char* name, auto change) {
    auto model = load_mamba2<double>(data_dir / name);
    change(model.config);
    const int sequence = name == std::string("mamba2_ss_mlp") ? 0 : 1;
    const auto tokens = tokens_of(name, sequence);
    const auto logits = mamba_forward(model, std::span<const index_t>(tokens));
    const double err = compare_logits(logits, name, sequence);
    BOOST_TEST(err > 1e-3, name << ": changed model still matches (" << err << ")");
  };
  check("mamba2_groups_bf16", [](mamba2_config& c) { c.dt_min = 0, c.dt_max = std::numeric_limits<double>::infinity(); });
  check("mamba2_groups_bf16", [](mamba2_config& c) { c.norm_group_size = c.ssm_channels() / c.n_groups; });
  check("mamba2_ss_mlp", [](mamba2_config& c) { c.norm_group_size = c.ssm_channels(); });
}

BOOST_AUTO_TEST_CASE(configs_in_both_layouts) {
  const auto c = load_mamba2_config(data_dir / "mamba2_groups_bf16" / "config.json");
  BOOST_TEST((c.naming == mamba_naming::hugging_face));
  BOOST_TEST(c.vocab_size == 101);
  BOOST_TEST(c.hidden_size == 24);
  BOOST_TEST(c.num_heads == 6);
  BOOST_TEST(c.head_dim == 12);
  BOOST_TEST(c.state_size == 6);
  BOOST_TEST(c.n_groups == 2);
  BOOST_TEST(c.conv_kernel == 3);
  BOOST_TEST(c.chunk_size == 5);
  BOOST_TEST(c.num_layers == 3);
  BOOST_TEST(c.use_bias);
  BOOST_TEST(!c.tie_embeddings);
  BOOST_TEST(c.norm_eps == 1e-6);
  BOOST_TEST(c.dt_min == 0.02);
  BOOST_TEST(c.dt_max == 0.4);
  BOOST_TEST(c.d_mlp == 0);
  BOOST_TEST(c.norm_group_size == 72);  // transformers 5.17: the whole width
  {  // transformers 5.23 and later normalize per group, as mamba_ssm
    std::string text = mixlens::models::detail::read_config_text(data_dir / "mamba2_groups_bf16" / "config.json");
    const auto at = text.find("\"5.17.0\"");
    BOOST_TEST_REQUIRE(at != std::string::npos);
    for (const auto& [version, group] : {std::pair{"\"5.23.0\"", 36}, {"\"5.22.2\"", 72}, {"\"6.0\"", 36}}) {
      std::string t = text;
      t.replace(at, 8, version);
      BOOST_TEST(parse_mamba2_config(t).norm_group_size == group, version);
    }
    std::string bad = text;
    bad.replace(at, 8, "\"five\"");
    BOOST_CHECK_EXCEPTION((void)parse_mamba2_config(bad), mixlens::error, [](const mixlens::error& e) {
      return std::string(e.what()).find("'transformers_version' = \"five\" is not a version") != std::string::npos;
    });
  }
  BOOST_TEST(c.in_proj_rows() == 72 + 72 + 24 + 6);

  const auto t = load_mamba2_config(data_dir / "mamba2_tied_fp32" / "config.json");
  BOOST_TEST(std::isinf(t.dt_max));  // {"__float__": "Infinity"}
  BOOST_TEST(t.tie_embeddings);

  const auto s = load_mamba2_config(data_dir / "mamba2_ss_mlp" / "config.json");
  BOOST_TEST((s.naming == mamba_naming::state_spaces));
  BOOST_TEST(s.vocab_size == 72);  // 70 padded to a multiple of 8
  BOOST_TEST(s.num_heads == 4);
  BOOST_TEST(s.head_dim == 8);
  BOOST_TEST(s.d_mlp == 16);
  BOOST_TEST(s.intermediate_size() == 48);
  BOOST_TEST(s.norm_group_size == 16);  // mamba_ssm: d_ssm / ngroups
  BOOST_TEST(s.chunk_size == 6);
  BOOST_TEST(s.tie_embeddings);

  const auto d = parse_mamba2_config("{" + ss + R"(, "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "dt_limit": [0.001, 0.1]}})");
  BOOST_TEST(d.num_heads == 4);  // expand 2 · d_model 8 / headdim 4
  BOOST_TEST(d.dt_min == 0.001);
  BOOST_TEST(d.n_groups == 1);
  BOOST_TEST(d.state_size == 128);
  // Infinity as older transformers (Python's bare token), strings or transformers 5 write it.
  for (const std::string inf : {"Infinity", R"("Infinity")", R"({"__float__": "Infinity"})", "1e300"}) {
    const auto e = parse_mamba2_config("{" + hf + R"(, "note": "NaN and Infinity in a string", "time_step_limit": [0.0, )" + inf + "]}");
    BOOST_TEST(e.dt_max >= 1e300, inf);
  }
}

BOOST_AUTO_TEST_CASE(bad_configs_name_the_variant) {
  const auto expect = [](const std::string& text, std::initializer_list<std::string> fragments) {
    testing::check_error([&] { (void)parse_mamba2_config(text, "c.json"); }, fragments);
  };
  expect("{" + hf + R"(, "expand": 3})", {"expand · hidden_size = 24", "num_heads · head_dim = 16"});
  expect("{" + hf + R"(, "n_groups": 3})", {"3 groups", "4 heads"});
  expect("{" + hf + R"(, "hidden_act": "gelu"})", {"hidden_act"});
  expect("{" + hf + R"(, "time_step_limit": [0.5, 0.1]})", {"time_step_limit", "min < max"});
  expect("{" + hf + R"(, "time_step_limit": [0, "x"]})", {"time_step_limit[1]"});
  expect(R"({"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 5})", {"not a Mamba-2 model"});
  const std::string layer = R"("layer": "Mamba2", "headdim": 4)";
  expect("{" + ss + R"(, "d_intermediate": 32, "ssm_cfg": {)" + layer + "}}", {"d_intermediate = 32", "MLP blocks"});
  expect("{" + ss + R"(, "attn_layer_idx": [1], "ssm_cfg": {)" + layer + "}}", {"attn_layer_idx", "attention layers"});
  expect("{" + ss + R"(, "rms_norm": false, "ssm_cfg": {)" + layer + "}}", {"rms_norm = false", "LayerNorm"});
  expect("{" + ss + R"(, "ssm_cfg": {)" + layer + R"(, "rmsnorm": false}})", {"rmsnorm = false"});
  expect("{" + ss + R"(, "ssm_cfg": {)" + layer + R"(, "norm_before_gate": true}})", {"norm_before_gate = true"});
  expect("{" + ss + R"(, "ssm_cfg": {)" + layer + R"(, "D_has_hdim": true}})", {"D_has_hdim = true", "D per channel"});
  expect("{" + ss + R"(, "ssm_cfg": {)" + layer + R"(, "d_ssm": 6}})", {"d_ssm = 6", "headdim 4"});
  expect("{" + ss + R"(, "ssm_cfg": {)" + layer + R"(, "d_ssm": 32}})", {"d_ssm = 32 exceeds"});
  expect("{" + ss + R"(, "ssm_cfg": {"layer": "Mamba1"}})", {"ssm_cfg.layer", "Mamba1"});
  expect("{" + ss + R"(, "ssm_cfg": {"layer": "Mamba2"}})", {"d_ssm = 16", "headdim 64"});
  // Sizes whose products do not fit are refused before anything is formed from them.
  const std::string base = R"("model_type": "mamba2", "num_hidden_layers": 1, )";
  expect("{" + base + R"("hidden_size": 8, "vocab_size": 5, "num_heads": 4611686018427387904, "head_dim": 4, "n_groups": 1})",
         {"num_heads · head_dim exceeds"});
  expect("{" + base + R"("hidden_size": 8, "vocab_size": 5, "num_heads": 4, "head_dim": 4, "n_groups": 2, "state_size": 2305843009213693952})",
         {"n_groups · state_size (B, C) exceeds"});
  expect("{" + base + R"("hidden_size": 8, "vocab_size": 1152921504606846976, "num_heads": 4, "head_dim": 4, "n_groups": 2})",
         {"vocab_size · d_model (embedding) exceeds"});
}

BOOST_AUTO_TEST_CASE(family_detection) {
  BOOST_TEST((detect_family(data_dir / "mamba2_tied_fp32" / "config.json") == model_family::mamba2));
  BOOST_TEST((detect_family(data_dir / "mamba2_ss_mlp" / "config.json") == model_family::mamba2));
  BOOST_TEST((detect_family(data_dir / "falcon_mamba_fp32" / "config.json") == model_family::falcon_mamba));
  BOOST_TEST((detect_family(data_dir / "mamba_tied_fp32" / "config.json") == model_family::mamba));
  BOOST_TEST((detect_family(data_dir / "mamba_ss_f16" / "config.json") == model_family::mamba));
  BOOST_TEST((parse_family(R"({"architectures": ["Mamba2ForCausalLM"]})") == model_family::mamba2));
  BOOST_TEST((parse_family(R"({"architectures": ["FalconMambaForCausalLM"]})") == model_family::falcon_mamba));
  BOOST_TEST((parse_family(R"({"hidden_size": 4})") == model_family::mamba));
  testing::check_error([] { (void)parse_family(R"({"model_type": "jamba"})", "c.json"); }, {"c.json", "\"jamba\"", "mamba2"});
  testing::check_error([] { (void)parse_family(R"({"architectures": ["LlamaForCausalLM"]})"); }, {"LlamaForCausalLM"});
  const auto m = load_language_model<float>(data_dir / "mamba2_sharded");
  BOOST_TEST((std::visit([](const auto& x) { return family_of(x); }, m) == model_family::mamba2));
  const auto f = load_language_model<float>(data_dir / "falcon_mamba_fp32");
  BOOST_TEST((std::visit([](const auto& x) { return family_of(x); }, f) == model_family::falcon_mamba));
}

BOOST_AUTO_TEST_CASE(bad_checkpoints) {
  {  // a shard missing
    scratch_model m("mamba2_sharded");
    fs::remove(m.dir / "model-00003-of-00005.safetensors");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); },
                         {"model.safetensors.index.json", "shard 'model-00003-of-00005.safetensors'", "does not exist"});
  }
  {  // the index names the wrong shard for a tensor
    scratch_model m("mamba2_sharded");
    m.replace("model.safetensors.index.json", R"("backbone.norm_f.weight": "model-00005-of-00005.safetensors")",
              R"("backbone.norm_f.weight": "model-00001-of-00005.safetensors")");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); },
                         {"tensor 'backbone.norm_f.weight' is not in its shard 'model-00001-of-00005.safetensors'"});
  }
  {  // a name the shard does not hold
    scratch_model m("mamba2_sharded");
    m.replace("model.safetensors.index.json", R"("backbone.norm_f.weight")", R"("backbone.norm_f.weight_renamed")");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); },
                         {"model.safetensors.index.json", "tensor 'backbone.norm_f.weight_renamed' is not in its shard"});
  }
  {
    scratch_model m("mamba2_sharded");
    m.write("model.safetensors.index.json", R"({"metadata": {}})");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); }, {"weight_map"});
    m.write("model.safetensors.index.json", R"({"weight_map": {"a": "../x.safetensors"}})");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); }, {"not a file name in the folder"});
    m.write("model.safetensors.index.json", R"({"weight_map": )");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); }, {"malformed JSON"});
  }
  {  // a PyTorch pickle: refused, with the conversion to run
    scratch_model m("mamba2_tied_fp32");
    fs::rename(m.dir / "model.safetensors", m.dir / "pytorch_model.bin");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); },
                         {"pytorch_model.bin", "save_pretrained(", "safe_serialization=True", "save_file"});
  }
  {  // a config that disagrees with the weights
    scratch_model m("mamba2_tied_fp32");
    m.replace("config.json", "\"state_size\": 8", "\"state_size\": 9");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); },
                         {"backbone.layers.0.mixer.in_proj.weight' has shape [152, 32], expected [154, 32]"});
  }
  {  // biases the config does not announce
    scratch_model m("mamba2_groups_bf16");
    m.replace("config.json", "\"use_bias\": true", "\"use_bias\": false");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); }, {"unexpected tensor 'backbone.layers.0.mixer.in_proj.bias'"});
  }
  {
    scratch_model m("mamba2_tied_fp32");
    m.replace("config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    testing::check_error([&] { (void)load_mamba2<float>(m.dir); }, {"missing tensor 'lm_head.weight' (expected shape [89, 32])"});
  }
  const auto model = load_mamba2<float>(data_dir / "mamba2_tied_fp32");
  const std::vector<index_t> high{1, 89};
  testing::check_error([&] { (void)mamba_forward(model, std::span<const index_t>(high)); }, {"token 89 at position 1"});
}
