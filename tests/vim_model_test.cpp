#define BOOST_TEST_MODULE vim_model
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/vim_maps.hpp"
#include "common/oracles.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/vim_attention.hpp"

using namespace mixlens;
using namespace mixlens::models;
using namespace mixlens::testing;
namespace fs = std::filesystem;
using analysis::bidirectional_mode;

namespace {

const fs::path data_dir = test_data_dir();

// Made by tests/data/make_vim_fixtures.py (float64 PyTorch reference); see its docstring.
struct vim_fixture {
  const char* name;
  int layers;
  index_t cls;  // −1: none
};
constexpr vim_fixture fixtures[] = {
    {"vim_mid_odd", 2, 4}, {"vim_mid_stride_bf16", 2, 12}, {"vim_head_nodiv", 1, 0}, {"vim_mean_nopos", 1, -1}};

io::npy_array ref(const vim_fixture& fx, const std::string& file) { return io::read_npy(reference(fx.name, file + ".npy")); }

template <class T>
tensor<T, 3> image_of(const vim_fixture& fx) {
  return read_image_npy<T>(reference(fx.name, "image.npy"));
}

template <class T>
double compare_vector(const std::vector<T>& got, const io::npy_array& want) {
  const auto w = want.as<double>();
  BOOST_REQUIRE_EQUAL(w.size(), got.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - w[i]));
    scale = std::max(scale, std::abs(w[i]));
  }
  return diff / (scale > 0 ? scale : 1);
}

// Every layer's signals, copied out of the forward pass's buffers.
template <class T>
std::vector<bound<vim_layer_signals<T>, host_storage>> signals_of(const vim_model<T>& m, const tensor<T, 3>& image,
                                                                  std::vector<T>* logits = nullptr) {
  std::vector<bound<vim_layer_signals<T>, host_storage>> out;
  auto l = vim_forward(m, tensor_view<const T, 3>(image.view()), [&](const auto& s) { out.push_back(owned_copy(s)); });
  if (logits) *logits = std::move(l);
  return out;
}

template <class T>
void check_against_reference(double tol) {
  for (const auto& fx : fixtures) {
    const auto model = load_vim<T>(data_dir / fx.name);
    BOOST_REQUIRE_EQUAL(model.num_layers(), fx.layers);
    BOOST_TEST(model.config.cls_index() == fx.cls);
    BOOST_TEST(model.unused_tensors.empty());
    std::vector<T> logits;
    const auto signals = signals_of(model, image_of<T>(fx), &logits);
    const double err = compare_vector(logits, ref(fx, "logits"));
    double worst = 0;
    for (const auto& b : signals) {
      const auto& s = b.view();
      const std::string p = "layer" + std::to_string(s.layer) + "_";
      const auto xz = ref(fx, p + "xz");
      worst = std::max({worst, compare(s.forward.x, xz),  // the first D rows; z: the test below
                        compare(s.forward.u, ref(fx, p + "u_f")), compare(s.backward.u, ref(fx, p + "u_b")),
                        compare(s.forward.delta, ref(fx, p + "delta_f")), compare(s.backward.delta, ref(fx, p + "delta_b")),
                        compare(s.forward.y, ref(fx, p + "y_f")), compare(s.backward.y, ref(fx, p + "y_b")),
                        compare(s.y, ref(fx, p + "y"))});
    }
    BOOST_TEST(err <= tol, fx.name << ": logits error " << err);
    BOOST_TEST(worst <= tol, fx.name << ": layer signals error " << worst);
    BOOST_TEST_MESSAGE(fx.name << " (" << (sizeof(T) == 4 ? "float" : "double") << "): max relative error vs the "
                               << "PyTorch reference: logits " << err << ", layer signals " << worst);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_the_reference_float) { check_against_reference<float>(1e-4); }

BOOST_AUTO_TEST_CASE(logits_and_layer_signals_match_the_reference_double) { check_against_reference<double>(1e-10); }

BOOST_AUTO_TEST_CASE(z_half_and_backward_input_are_the_flipped_in_proj_output) {
  const auto& fx = fixtures[0];
  const auto model = load_vim<double>(data_dir / fx.name);
  const auto signals = signals_of(model, image_of<double>(fx));
  const auto xz = ref(fx, "layer0_xz").as<double>();
  const auto& s = signals[0].view();
  const index_t D = s.channels(), L = s.length();
  double err = 0;
  for (index_t d = 0; d < D; ++d)
    for (index_t t = 0; t < L; ++t) {
      const double z = xz[static_cast<std::size_t>((D + d) * L + t)];
      err = std::max({err, std::abs(s.forward.z(d, t) - z), std::abs(s.backward.z(d, L - 1 - t) - z),
                      std::abs(s.backward.x(d, L - 1 - t) - s.forward.x(d, t))});
    }
  BOOST_TEST(err <= 1e-12);
}

BOOST_AUTO_TEST_CASE(branch_matrices_match_the_reference) {
  const auto& fx = fixtures[0];  // the one fixture with α references
  const auto model = load_vim<double>(data_dir / fx.name);
  const auto signals = signals_of(model, image_of<double>(fx));
  for (const auto& b : signals) {
    const auto& s = b.view();
    const std::string p = "layer" + std::to_string(s.layer) + "_";
    const auto want_f = ref(fx, p + "alpha_f").as<double>(), want_b = ref(fx, p + "alpha_b").as<double>();
    const auto f = layer_attention(s.forward, attention_form::paper), own_b = layer_attention(s.backward, attention_form::paper);
    const auto mapped = vim_branch_attention(s, vim_direction::backward, attention_form::paper);
    BOOST_TEST(relative_error(f.data(), want_f.data(), f.size()) <= 1e-12);
    BOOST_TEST(relative_error(own_b.data(), want_b.data(), own_b.size()) <= 1e-12);
    const index_t D = s.channels(), L = s.length();
    double flip = 0;
    for (index_t d = 0; d < D; ++d)
      for (index_t i = 0; i < L; ++i)
        for (index_t j = 0; j < L; ++j) {
          flip = std::max(flip, std::abs(mapped(d, i, j) - own_b(d, L - 1 - i, L - 1 - j)));
          if (j < i) BOOST_TEST(mapped(d, i, j) == 0.0);  // the backward matrix is upper triangular in image order
        }
    BOOST_TEST(flip == 0.0);
  }
}

// Each branch's matrices reproduce its own output (paper and unified form), and
// the combined unified operator the block's out_proj input.
template <class T>
void check_self_test(double tol) {
  for (const auto& fx : fixtures) {
    const auto model = load_vim<T>(data_dir / fx.name);
    double worst = 0;
    for (const auto& b : signals_of(model, image_of<T>(fx))) {
      const auto e = check_reconstruction(b.view());
      worst = std::max({worst, e.forward.paper, e.forward.unified, e.backward.paper, e.backward.unified, e.combined});
    }
    BOOST_TEST(worst <= tol, fx.name << ": reconstruction error " << worst);
    BOOST_TEST_MESSAGE(fx.name << " (" << (sizeof(T) == 4 ? "float" : "double") << "): self-test error " << worst);
  }
}

BOOST_AUTO_TEST_CASE(matrices_reconstruct_every_branch_and_the_block_float) { check_self_test<float>(1e-5); }

BOOST_AUTO_TEST_CASE(matrices_reconstruct_every_branch_and_the_block_double) { check_self_test<double>(1e-10); }

// analysis::aggregate_bidirectional (what mixlens-attn runs on either backend)
// equals the host's combined matrices, their channel mean and range.
template <class T>
void check_combined_maps(double tol) {
  for (const auto& fx : fixtures) {
    const auto model = load_vim<T>(data_dir / fx.name);
    for (const auto& b : signals_of(model, image_of<T>(fx)))
      for (const auto form : {attention_form::paper, attention_form::unified}) {
        const double e = combined_map_error(host_backend<T>{}, b.view(), b.view(), form);
        BOOST_TEST(e <= tol, fx.name << " layer " << b->layer << " " << to_string(form) << ": " << e);
      }
  }
}

BOOST_AUTO_TEST_CASE(combined_maps_in_chunks_float) { check_combined_maps<float>(1e-6); }

BOOST_AUTO_TEST_CASE(combined_maps_in_chunks_double) { check_combined_maps<double>(1e-13); }

BOOST_AUTO_TEST_CASE(cls_row_is_the_row_of_the_full_matrix) {
  for (const auto& fx : fixtures) {
    if (fx.cls < 0) continue;
    const auto model = load_vim<double>(data_dir / fx.name);
    for (const auto& b : signals_of(model, image_of<double>(fx))) {
      const auto& s = b.view();
      const index_t D = s.channels(), L = s.length();
      for (const auto form : {attention_form::paper, attention_form::unified})
        for (const auto mode : {bidirectional_mode::sum, bidirectional_mode::mean, bidirectional_mode::splice}) {
          const auto full = vim_layer_attention(s, form, mode);
          const auto rows = vim_cls_rows(s, form, mode);
          double err = 0, scale = 0;
          for (index_t d = 0; d < D; ++d)
            for (index_t j = 0; j < L; ++j) {
              err = std::max(err, std::abs(rows(d, j) - full(d, s.cls, j)));
              scale = std::max(scale, std::abs(full(d, s.cls, j)));
            }
          BOOST_TEST(err <= 1e-14 * scale, fx.name << " layer " << s.layer << " form " << to_string(form));
        }
      // Python's row of the full matrices (α_f + flip(α_b)).
      const auto want = ref(fx, "layer" + std::to_string(s.layer) + "_cls_row").as<double>();
      const auto rows = vim_cls_rows(s, attention_form::paper, bidirectional_mode::sum);
      BOOST_TEST(relative_error(rows.data(), want.data(), rows.size()) <= 1e-12);
    }
  }
}

BOOST_AUTO_TEST_CASE(paper_cls_vector_reproduces_the_paper_code_and_drops_the_cls_decay) {
  for (const auto& fx : fixtures) {
    if (fx.cls < 0) continue;
    const auto model = load_vim<double>(data_dir / fx.name);
    for (const auto& b : signals_of(model, image_of<double>(fx))) {
      const auto& s = b.view();
      const index_t D = s.channels(), L = s.length(), cls = s.cls;
      const auto paper = paper_cls_rows(s);
      const auto want = ref(fx, "layer" + std::to_string(s.layer) + "_paper_cls").as<double>();
      BOOST_TEST(relative_error(paper.data(), want.data(), paper.size()) <= 1e-12, fx.name);
      // It is not the CLS row of the matrix ...
      const auto correct = vim_cls_rows(s, attention_form::paper, bidirectional_mode::splice);
      BOOST_TEST(relative_error(paper.data(), correct.data(), paper.size()) > 1e-3, fx.name);
      // ... but it is that row once Δ at the CLS position is 0, Ā_cls = exp(0·A) = 1
      // (in each branch's time), apart from the CLS column itself, which the paper
      // leaves at 0.
      const auto without_cls_decay = [&](const mamba_layer_signals<double>& m, index_t at, index_t d) {
        matrix<double> delta(D, L);
        for (index_t c = 0; c < D; ++c)
          for (index_t t = 0; t < L; ++t) delta(c, t) = t == at ? 0.0 : m.delta(c, t);
        const s6_operator<double> op(delta.view(), m.a, m.b, m.c);
        std::vector<double> r(static_cast<std::size_t>(L));
        op.alpha_row(d, at, vector_view<double>(r.data(), r.size()));
        return r;
      };
      double err = 0, scale = 0;
      for (index_t d = 0; d < D; ++d) {
        const auto f = without_cls_decay(s.forward, cls, d), bk = without_cls_decay(s.backward, L - 1 - cls, d);
        for (index_t j = 0; j < L; ++j) {
          const double expect = j < cls ? f[static_cast<std::size_t>(j)] : j > cls ? bk[static_cast<std::size_t>(L - 1 - j)] : 0.0;
          err = std::max(err, std::abs(paper(d, j) - expect));
          scale = std::max(scale, std::abs(expect));
        }
      }
      BOOST_TEST(err <= 1e-14 * scale, fx.name << " layer " << s.layer);
    }
  }
}

BOOST_AUTO_TEST_CASE(patch_maps_and_rollout_over_the_grid) {
  const auto& fx = fixtures[1];  // 4 × 6 patches, CLS at 12
  const auto model = load_vim<double>(data_dir / fx.name);
  const auto signals = signals_of(model, image_of<double>(fx));
  const auto& cfg = model.config;
  BOOST_TEST(cfg.grid_height() == 4);
  BOOST_TEST(cfg.grid_width() == 6);
  std::vector<matrix<double>> maps;
  for (const auto& b : signals) {
    const auto& s = b.view();
    const auto rows = vim_cls_rows(s);
    const auto row = aggregate_rows(matrix_view<const double>(rows.view()));
    const auto map = patch_map(cfg, std::span<const double>(row));
    BOOST_TEST(map.extent(0) == 4);
    BOOST_TEST(map.extent(1) == 6);
    BOOST_TEST(map(0, 0) == row[0]);
    BOOST_TEST(map(2, 0) == row[13]);  // patch 12 follows the CLS token
    BOOST_TEST(map(3, 5) == row[24]);
    const auto full = vim_layer_attention(s, attention_form::paper);
    maps.push_back(analysis::aggregate_channels(tensor_view<const double, 3>(full.view())));
  }
  const auto rho = analysis::rollout(maps);
  std::vector<double> cls_row(static_cast<std::size_t>(rho.extent(1)));
  for (index_t j = 0; j < rho.extent(1); ++j) cls_row[static_cast<std::size_t>(j)] = rho(cfg.cls_index(), j);
  const auto map = patch_map(cfg, std::span<const double>(cls_row));
  const fs::path file = fs::temp_directory_path() / ("mixlens_vim_map_" + std::to_string(::getpid()) + ".npy");
  io::write_npy(file, map.data(), {map.extent(0), map.extent(1)});
  const auto back = io::read_npy(file);
  fs::remove(file);
  BOOST_TEST((back.shape == std::vector<index_t>{4, 6}));
  BOOST_TEST(compare(map, back) == 0.0);
  expect_error([&] { (void)patch_map(cfg, std::span<const double>(cls_row.data(), 5)); }, "sequence length");
}

BOOST_AUTO_TEST_CASE(configs) {
  const auto c = load_vim_config(data_dir / "vim_mid_stride_bf16" / "config.json");
  BOOST_TEST(c.hidden_size == 12);
  BOOST_TEST(c.num_layers == 2);
  BOOST_TEST(c.intermediate_size == 24);
  BOOST_TEST(c.state_size == 3);
  BOOST_TEST(c.conv_kernel == 3);
  BOOST_TEST(c.time_step_rank == 2);
  BOOST_TEST(c.image_height == 10);
  BOOST_TEST(c.image_width == 14);
  BOOST_TEST(c.patch_size == 4);
  BOOST_TEST(c.stride == 2);
  BOOST_TEST(c.num_patches() == 24);
  BOOST_TEST(c.sequence_length() == 25);
  BOOST_TEST(c.num_classes == 5);
  BOOST_TEST((c.cls == vim_cls_position::middle));
  BOOST_TEST(c.divide_out);
  BOOST_TEST(c.use_bias);
  const auto head = load_vim_config(data_dir / "vim_head_nodiv" / "config.json");
  BOOST_TEST((head.cls == vim_cls_position::head));
  BOOST_TEST(!head.divide_out);
  BOOST_TEST(!head.use_conv_bias);
  BOOST_TEST(head.intermediate_size == 12);  // expand 1.5
  const auto mean = load_vim_config(data_dir / "vim_mean_nopos" / "config.json");
  BOOST_TEST((mean.cls == vim_cls_position::none));
  BOOST_TEST((mean.pooling == vim_pooling::mean));
  BOOST_TEST(!mean.position_embedding);
  BOOST_TEST(mean.cls_index() == -1);
  BOOST_TEST(mean.token_of_patch(3) == 3);
  // VisionMamba's defaults: the released models' block settings, a middle CLS token.
  const auto d = parse_vim_config(R"({"embed_dim": 192, "depth": 24, "img_size": 224, "patch_size": 16, "num_classes": 1000})");
  BOOST_TEST(d.sequence_length() == 197);
  BOOST_TEST(d.cls_index() == 98);
  BOOST_TEST(d.token_of_patch(98) == 99);
  BOOST_TEST(d.time_step_rank == 12);
  BOOST_TEST(d.intermediate_size == 384);
  BOOST_TEST(d.state_size == 16);
  BOOST_TEST(d.divide_out);
  const auto s8 = parse_vim_config(R"({"embed_dim": 384, "depth": 24, "img_size": 224, "patch_size": 16, "stride": 8,
                                       "num_classes": 1000})");
  BOOST_TEST(s8.num_patches() == 729);
  BOOST_TEST(s8.cls_index() == 364);  // the backward branch sees it at 365
}

BOOST_AUTO_TEST_CASE(bad_configs) {
  const std::string base = R"("embed_dim": 8, "depth": 1, "img_size": 8, "patch_size": 4, "num_classes": 3)";
  const auto with = [&](const std::string& extra) { return "{" + base + ", " + extra + "}"; };
  const auto refused = [&](const std::string& extra, const std::string& fragment) {
    expect_error([&] { (void)parse_vim_config(with(extra), "c.json"); }, fragment);
  };
  refused(R"("model_type": "mamba")", "model_type");
  refused(R"("rms_norm": false)", "rms_norm");
  refused(R"("bimamba_type": "v1")", "bimamba_type");
  refused(R"("if_rope": true)", "if_rope");
  refused(R"("if_bidirectional": true)", "if_bidirectional");
  refused(R"("use_double_cls_token": true)", "use_double_cls_token");
  refused(R"("init_layer_scale": 0.1)", "init_layer_scale");
  refused(R"("flip_img_sequences_ratio": 0.5)", "flip_img_sequences_ratio");
  refused(R"("if_cls_token": false, "final_pool_type": "max")", "final_pool_type");
  refused(R"("final_pool_type": "avg")", "final_pool_type");
  refused(R"("img_size": [8])", "img_size");
  refused(R"("img_size": [8, -1])", "width");
  refused(R"("patch_size": 9)", "patch_size 9 exceeds the image");
  refused(R"("stride": 0)", "stride");
  refused(R"("expand": "2")", "expand");
  // The family is detected; the language-model loader points to load_vim.
  BOOST_TEST((parse_family(R"({"model_type": "vim", "embed_dim": 8})", "c.json") == model_family::vim));
  BOOST_TEST((parse_family(R"({"architectures": ["VisionMamba"]})", "c.json") == model_family::vim));
  expect_error([] { (void)load_language_model<float>(data_dir / "vim_mid_odd"); }, "load_vim");
  expect_error([] { (void)parse_vim_config(R"({"depth": 1, "img_size": 8, "patch_size": 4, "num_classes": 3})", "c.json"); },
               "embed_dim");
  expect_error([] { (void)parse_vim_config(R"({"embed_dim": 8, "depth": 1, "patch_size": 4, "num_classes": 3})", "c.json"); },
               "img_size");
  expect_error([] { (void)parse_vim_config(R"({"embed_dim": 8, "depth": 1, "img_size": 3037000500, "patch_size": 4,
                                              "num_classes": 3, "channels": 3037000500})"); },
               "exceeds 2^63");
}

BOOST_AUTO_TEST_CASE(bad_checkpoints_and_images) {
  expect_error([] { (void)load_vim<float>("/nonexistent/model"); }, "does not exist");
  {  // a config that disagrees with the weights: the tensor and the expected shape are named
    scratch_model m("vim_mid_odd");
    m.replace("config.json", "\"d_state\": 4", "\"d_state\": 5");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "tensor 'layers.0.mixer.x_proj.weight' has shape [9, 32], expected [11, 32]");
  }
  {  // the image size decides the position embedding's length
    scratch_model m("vim_mid_odd");
    m.replace("config.json", "\"img_size\": 12", "\"img_size\": 16");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "tensor 'pos_embed' has shape [1, 10, 16], expected [1, 17, 16]");
  }
  {  // the patch kernel
    scratch_model m("vim_mid_odd");
    m.replace("config.json", "\"patch_size\": 4", "\"patch_size\": 3");
    m.replace("config.json", "\"stride\": 4", "\"stride\": 3");
    m.replace("config.json", "\"img_size\": 12", "\"img_size\": 9");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "tensor 'patch_embed.proj.weight' has shape [16, 3, 4, 4], expected [16, 3, 3, 3]");
  }
  {  // no CLS token in the config, one in the file
    scratch_model m("vim_head_nodiv");
    m.replace("config.json", "\"if_cls_token\": true", "\"if_cls_token\": false");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "unexpected tensor 'cls_token' (the config sets if_cls_token = false)");
  }
  {  // more layers than stored, fewer than stored
    scratch_model m("vim_mid_odd");
    m.replace("config.json", "\"depth\": 2", "\"depth\": 3");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "missing tensor 'layers.2.norm.weight' (expected shape [16])");
    m.replace("config.json", "\"depth\": 3", "\"depth\": 1");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "holds 2 layers (layers.1.*), but the config has 1 layers");
  }
  {  // biases the config does not announce
    scratch_model m("vim_mid_stride_bf16");
    m.replace("config.json", "\"bias\": true", "\"bias\": false");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "unexpected tensor 'layers.0.mixer.in_proj.bias'");
  }
  {  // a conv bias the config announces and the file lacks: the backward branch's tensor is named
    scratch_model m("vim_head_nodiv");
    m.replace("config.json", "\"conv_bias\": false", "\"conv_bias\": true");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "missing tensor 'layers.0.mixer.conv1d.bias' (expected shape [12])");
  }
  {
    scratch_model m("vim_mid_odd");
    m.replace("config.json", "\"model_type\": \"vim\"", "\"model_type\": \"mamba\"");
    expect_error([&] { (void)load_vim<float>(m.dir); }, "model_type");
  }
  // Images of the wrong shape.
  const auto model = load_vim<float>(data_dir / "vim_mid_odd");
  tensor<float, 3> wrong(12, 11, 3), gray(12, 12, 1);
  expect_error([&] { (void)vim_forward(model, tensor_view<const float, 3>(wrong.view())); },
               "image of shape [12, 11, 3], the model takes [12, 12, 3]");
  expect_error([&] { (void)vim_forward(model, tensor_view<const float, 3>(gray.view())); }, "[12, 12, 1]");
  tensor<float, 3> rgb(2, 2, 3);
  imagenet_normalize(rgb);
  BOOST_TEST(std::abs(rgb(1, 1, 0) + 0.485f / 0.229f) <= 1e-6f);
  expect_error([&] { imagenet_normalize(gray); }, "RGB");
}

BOOST_AUTO_TEST_CASE(backward_branch_tensors_are_distinct) {
  // Swapping the forward and backward branches' A leaves the reference: the loader
  // reads each branch from its own tensors.
  auto model = load_vim<double>(data_dir / "vim_mid_odd");
  std::swap(model.layers[0].forward.ssm.a_log, model.layers[0].backward.ssm.a_log);
  const auto image = image_of<double>(fixtures[0]);
  const double err = compare_vector(vim_forward(model, tensor_view<const double, 3>(image.view())), ref(fixtures[0], "logits"));
  BOOST_TEST(err > 1e-3);
  // And the division by 2 matters.
  auto undivided = load_vim<double>(data_dir / "vim_mid_odd");
  undivided.config.divide_out = false;
  BOOST_TEST(compare_vector(vim_forward(undivided, tensor_view<const double, 3>(image.view())), ref(fixtures[0], "logits")) > 1e-3);
}
