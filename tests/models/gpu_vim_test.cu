// Vision Mamba classifiers and their hidden attention on both backends: one run
// body (forward pass, every layer's signals of both branches, each branch's α
// and self-test, the CLS rows, the block's combined self-test) executed by
// mixlens::host_backend and by gpu::device_backend for the committed Vim
// fixtures (tests/data/vim_*), the results compared with each other and the
// device logits with the PyTorch references in tests/data/reference. The run
// body on the host alone is checked against the references without a device.
#define BOOST_TEST_MODULE gpu_vim
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "common/vim_maps.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/gpu/models/vim.cuh"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/vim_attention.hpp"
#include "mixlens/models/vim_attribution.hpp"
#include "mixlens/models/vim_backward.hpp"

namespace {

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

const fs::path data_dir = testing::test_data_dir();

// Made by tests/data/make_vim_fixtures.py (as in vim_model_test.cpp).
struct vim_fixture {
  const char* name;
  int layers;
  index_t cls;  // −1: none
  bool alpha_reference;
};
constexpr vim_fixture fixtures[] = {{"vim_mid_odd", 2, 4, true},
                                    {"vim_mid_stride_bf16", 2, 12, false},
                                    {"vim_head_nodiv", 1, 0, false},
                                    {"vim_mean_nopos", 1, -1, false}};

io::npy_array ref(const vim_fixture& fx, const std::string& file) {
  return io::read_npy(testing::reference(fx.name, file + ".npy"));
}

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return testing::relative_error(got.data(), want.data(), static_cast<index_t>(got.size()));
}

double rel(const std::vector<float>& got, const std::vector<double>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return testing::relative_error(got.data(), want.data(), static_cast<index_t>(got.size()));
}

std::vector<float> flat(const matrix<float>& m) { return std::vector<float>(m.data(), m.data() + m.size()); }

// One branch's results, in host memory.
struct branch_result {
  std::vector<float> x, z, u, delta, y;
  std::vector<float> alpha;  // D × L × L, the paper form, in the branch's own time
  reconstruction_error self_test;
};

// One layer's results, in host memory.
struct layer_result {
  branch_result forward, backward;
  std::vector<float> y;                        // the out_proj input (D × L)
  std::vector<float> cls_from_alpha;           // α_f row cls + flipped α_b row (sum), from the backend's α
  std::vector<float> cls_paper, cls_unified;   // vim_cls_rows of the signals (the block's mode)
  std::vector<float> paper_cls;                // paper_cls_rows
  vim_reconstruction_error self_test;
  double combined_paper = 0, combined_unified = 0;  // aggregate_bidirectional on the backend vs the host's
};

struct run_result {
  std::vector<float> logits;
  std::vector<layer_result> layers;
};

// The signals in host memory, from either backend.
template <class Backend>
bound<vim_layer_signals<float>, host_storage> host_copy(const Backend& be, const vim_layer_signals<float>& s) {
  if constexpr (Backend::on_host) {
    return owned_copy(s);
  } else {
    be.synchronize();
    return gpu::to_host(s);
  }
}

// The one run body, on either backend.
template <class Backend, class Weights>
run_result run(const Backend& be, const Weights& w, const tensor<float, 3>& image) {
  run_result r;
  const index_t L = w.view().config.sequence_length();
  auto map = be.alloc(L * L), minmax = be.alloc(3);
  const auto logits =
      models::vim_forward(be, w.view(), tensor_view<const float, 3>(image.view()), [&](const vim_layer_signals<float>& s) {
        const index_t D = s.channels();
        BOOST_REQUIRE_EQUAL(s.length(), L);
        const auto get = [&](matrix_view<const float> m) { return be.download(m.data_handle(), m.size()); };
        const auto branch = [&](const mamba_layer_signals<float>& m) {
          branch_result b;
          b.x = get(m.x), b.z = get(m.z), b.u = get(m.u), b.delta = get(m.delta), b.y = get(m.y);
          b.alpha.resize(static_cast<std::size_t>(D * L * L));
          analysis::aggregate_operator(be, m.ssm(), channel_reduction::mean, map.data(), minmax.data(), b.alpha.data());
          b.self_test = check_reconstruction(be, m);
          return b;
        };
        layer_result l;
        l.forward = branch(s.forward);
        l.backward = branch(s.backward);
        l.y = get(s.y);
        if (s.cls >= 0) {
          const index_t c = s.cls;
          l.cls_from_alpha.resize(static_cast<std::size_t>(D * L));
          for (index_t d = 0; d < D; ++d)
            for (index_t j = 0; j < L; ++j)
              l.cls_from_alpha[static_cast<std::size_t>(d * L + j)] =
                  l.forward.alpha[static_cast<std::size_t>((d * L + c) * L + j)] +
                  l.backward.alpha[static_cast<std::size_t>((d * L + (L - 1 - c)) * L + (L - 1 - j))];
        }
        const auto hs = host_copy(be, s);
        l.self_test = check_reconstruction(hs.view());
        l.combined_paper = testing::combined_map_error(be, s, hs.view(), attention_form::paper);
        l.combined_unified = testing::combined_map_error(be, s, hs.view(), attention_form::unified);
        if (s.cls >= 0) {
          l.cls_paper = flat(vim_cls_rows(hs.view(), attention_form::paper));
          l.cls_unified = flat(vim_cls_rows(hs.view(), attention_form::unified));
          l.paper_cls = flat(paper_cls_rows(hs.view()));
        }
        r.layers.push_back(std::move(l));
      });
  r.logits = be.download(logits.data(), w.view().config.num_classes);
  return r;
}

double worst_self_test(const layer_result& l) {
  return std::max({l.forward.self_test.paper, l.forward.self_test.unified, l.backward.self_test.paper,
                   l.backward.self_test.unified, l.self_test.combined});
}

// A run's results against the PyTorch reference (float64) of the fixture.
void check_reference(const vim_fixture& fx, const run_result& r, const std::string& what) {
  BOOST_REQUIRE_EQUAL(static_cast<int>(r.layers.size()), fx.layers);
  const double e = rel(r.logits, ref(fx, "logits").as<double>());
  BOOST_TEST(e <= 1e-4, what << ": logits vs the reference " << e);
  double worst = 0;
  for (std::size_t k = 0; k < r.layers.size(); ++k) {
    const auto& l = r.layers[k];
    const std::string p = "layer" + std::to_string(k) + "_", layer = what + " layer " + std::to_string(k) + ": ";
    const double signals = std::max({rel(l.forward.u, ref(fx, p + "u_f").as<double>()),
                                     rel(l.backward.u, ref(fx, p + "u_b").as<double>()),
                                     rel(l.forward.delta, ref(fx, p + "delta_f").as<double>()),
                                     rel(l.backward.delta, ref(fx, p + "delta_b").as<double>()),
                                     rel(l.forward.y, ref(fx, p + "y_f").as<double>()),
                                     rel(l.backward.y, ref(fx, p + "y_b").as<double>()),
                                     rel(l.y, ref(fx, p + "y").as<double>())});
    BOOST_TEST(signals <= 1e-4, layer << "signals vs the reference " << signals);
    BOOST_TEST(std::max(l.combined_paper, l.combined_unified) <= 1e-5,
               layer << "combined maps vs the host's: paper " << l.combined_paper << ", unified " << l.combined_unified);
    worst = std::max(worst, signals);
    if (fx.alpha_reference) {
      const double a = std::max(rel(l.forward.alpha, ref(fx, p + "alpha_f").as<double>()),
                                rel(l.backward.alpha, ref(fx, p + "alpha_b").as<double>()));
      BOOST_TEST(a <= 1e-4, layer << "α of both branches vs the reference " << a);
      const double c = std::max({rel(l.cls_from_alpha, ref(fx, p + "cls_row").as<double>()),
                                 rel(l.paper_cls, ref(fx, p + "paper_cls").as<double>())});
      BOOST_TEST(c <= 1e-4, layer << "CLS rows vs the reference " << c);
      worst = std::max({worst, a, c});
    }
  }
  BOOST_TEST_MESSAGE(what << ": max relative error vs the reference: logits " << e << ", layers " << worst);
}

// Runs the body on both backends and compares every result; returns the worst
// device-vs-host error.
double check_host_device(const vim_fixture& fx) {
  const auto m = load_vim<float>(data_dir / fx.name);
  const auto image = read_image_npy<float>(testing::reference(fx.name, "image.npy"));
  const auto hw = host_weights(m);
  const auto dw = gpu::to_device(m);
  const run_result h = run(host_backend<float>{}, hw, image), d = run(gpu::device_backend{}, dw, image);
  const std::string what = fx.name;
  double worst = 0;
  const auto expect = [&](double e, double tol, const std::string& part) {
    BOOST_TEST(e <= tol, what << ": " << part << " device vs host " << e);
    worst = std::max(worst, e);
  };
  expect(rel(d.logits, h.logits), 1e-5, "logits");
  BOOST_REQUIRE_EQUAL(d.layers.size(), h.layers.size());
  for (std::size_t k = 0; k < h.layers.size(); ++k) {
    const auto &hl = h.layers[k], &dl = d.layers[k];
    const std::string layer = "layer " + std::to_string(k) + " ";
    for (const auto& [hb, db, name] : {std::tuple{&hl.forward, &dl.forward, "forward"},
                                       std::tuple{&hl.backward, &dl.backward, "backward"}}) {
      expect(std::max({rel(db->x, hb->x), rel(db->z, hb->z), rel(db->u, hb->u), rel(db->delta, hb->delta),
                       rel(db->y, hb->y)}),
             1e-5, layer + name + " branch signals");
      expect(rel(db->alpha, hb->alpha), 1e-4, layer + name + " branch α");
    }
    expect(rel(dl.y, hl.y), 1e-5, layer + "out_proj input");
    if (fx.cls >= 0) {
      expect(rel(dl.cls_from_alpha, hl.cls_from_alpha), 1e-4, layer + "CLS row of the α");
      expect(std::max({rel(dl.cls_paper, hl.cls_paper), rel(dl.cls_unified, hl.cls_unified),
                       rel(dl.paper_cls, hl.paper_cls)}),
             1e-4, layer + "CLS rows (paper, unified, paper code)");
    }
    BOOST_TEST(worst_self_test(hl) <= 1e-5, what << ": host self-test " << layer << worst_self_test(hl));
    BOOST_TEST(worst_self_test(dl) <= 1e-4, what << ": device self-test " << layer << worst_self_test(dl));
  }
  check_reference(fx, d, what + " (device)");
  return worst;
}

// ---- gradients and attributions (models/vim_backward.hpp, vim_attribution.hpp) ----

// Everything the backward pass and the attribution recipes give, in host memory.
struct gradient_run {
  index_t position = 0, cls = 0;
  double value = 0;
  std::vector<float> embedding, input;
  std::vector<std::vector<float>> residual;     // per layer (L × E)
  std::vector<std::vector<float>> branch[2];   // per layer, forward / backward: u, delta, b, c, ssm_out concatenated
  std::vector<float> lrp_embedding;
  std::vector<double> grad_input, lrp, mamba_attr, mamba_attr_rollout, attn_grad, attn_grad_rollout;
};

// One body for both backends: vim_gradients (every option, the argmax class and
// class 1 under LRP's rules) and the four recipes.
template <class Backend, class Weights>
gradient_run run_gradients(const Backend& be, const Weights& weights, const tensor<float, 3>& image) {
  const auto& w = weights.view();
  const tensor_view<const float, 3> iv(image.view());
  const gradient_options all{.embedding = true, .residual = true, .u = true, .delta = true, .b = true, .c = true,
                             .ssm_out = true};
  const auto g = vim_gradients(be, w, iv, -1, all);
  gradient_run r;
  r.position = g.target.position, r.cls = g.target.token, r.value = g.value;
  const auto host = [&](const auto& a) { return be.download(a.data(), static_cast<index_t>(a.size())); };
  r.embedding = host(g.embedding), r.input = host(g.input);
  for (const auto& l : g.layers) {
    r.residual.push_back(host(l.residual));
    for (int d = 0; d < 2; ++d) {
      const auto& b = d == 0 ? l.forward : l.backward;
      std::vector<float> all_of;
      for (const auto* a : {&b.u, &b.delta, &b.b, &b.c, &b.ssm_out}) {
        const auto v = host(*a);
        all_of.insert(all_of.end(), v.begin(), v.end());
      }
      r.branch[d].push_back(std::move(all_of));
    }
  }
  r.lrp_embedding = host(vim_gradients(be, w, iv, 1, {.rule = propagation::lrp, .embedding = true}).embedding);
  r.grad_input = grad_input(be, w, iv).scores;
  r.lrp = lrp(be, w, iv).scores;
  const mamba_attr_options full{.full_matrix = true};
  const auto a = mamba_attr(be, w, iv, -1, full), b = attn_grad(be, w, iv, -1, full);
  r.mamba_attr = a.scores, r.mamba_attr_rollout = a.matrix, r.attn_grad = b.scores, r.attn_grad_rollout = b.matrix;
  return r;
}

double rel(const std::vector<double>& got, const std::vector<double>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return testing::relative_error(got.data(), want.data(), static_cast<index_t>(got.size()));
}

// The worst relative error between two runs, each quantity checked against tol.
double compare_gradient_runs(const gradient_run& got, const gradient_run& want, double tol, const std::string& what) {
  BOOST_TEST(got.position == want.position, what);
  BOOST_TEST(got.cls == want.cls, what);
  double worst = std::abs(got.value - want.value) / std::max(std::abs(want.value), 1e-30);
  const auto check = [&](double e, const std::string& q) {
    BOOST_TEST(e <= tol, what << " " << q << ": relative error " << e);
    worst = std::max(worst, e);
  };
  check(rel(got.embedding, want.embedding), "embedding");
  check(rel(got.input, want.input), "input");
  check(rel(got.lrp_embedding, want.lrp_embedding), "LRP embedding");
  BOOST_REQUIRE_EQUAL(got.residual.size(), want.residual.size());
  for (std::size_t k = 0; k < want.residual.size(); ++k) {
    check(rel(got.residual[k], want.residual[k]), "residual layer " + std::to_string(k));
    for (int d = 0; d < 2; ++d)
      check(rel(got.branch[d][k], want.branch[d][k]), std::string(d == 0 ? "forward" : "backward") +
                                                         " branch u, delta, b, c, ssm_out layer " + std::to_string(k));
  }
  check(rel(got.grad_input, want.grad_input), "grad-input");
  check(rel(got.lrp, want.lrp), "lrp");
  check(rel(got.mamba_attr, want.mamba_attr), "mamba-attr");
  check(rel(got.mamba_attr_rollout, want.mamba_attr_rollout), "mamba-attr rollout");
  check(rel(got.attn_grad, want.attn_grad), "attn-grad");
  check(rel(got.attn_grad_rollout, want.attn_grad_rollout), "attn-grad rollout");
  return worst;
}

// vim_mid_odd's run against the PyTorch autograd references
// (tests/data/make_vim_gradient_fixtures.py).
void check_gradient_reference(const gradient_run& r, double tol, const std::string& what) {
  const auto stored = [](const std::string& f) {
    return io::read_npy(testing::reference("vim_mid_odd", f + ".npy")).as<double>();
  };
  const auto check = [&](const std::vector<float>& got, const std::string& f) {
    const auto want = stored(f);
    const double e = rel(got, want);
    BOOST_TEST(e <= tol, what << " " << f << ": relative error " << e);
  };
  const auto check_d = [&](const std::vector<double>& got, const std::string& f) {
    const double e = rel(got, stored(f));
    BOOST_TEST(e <= tol, what << " " << f << ": relative error " << e);
  };
  BOOST_TEST(r.position == 4);
  BOOST_TEST(r.cls == stored("vgrad_argmax_target")[1]);
  check(r.embedding, "vgrad_argmax_embedding");
  for (std::size_t k = 0; k < r.residual.size(); ++k)
    check(r.residual[k], "vgrad_argmax_layer" + std::to_string(k) + "_residual");
  check_d(r.grad_input, "vattr_grad_input");
  check_d(r.lrp, "vattr_lrp");
  check_d(r.mamba_attr, "vattr_mamba_attr_start0");
  check_d(r.mamba_attr_rollout, "vattr_mamba_attr_start0_rollout");
  check_d(r.attn_grad, "vattr_attn_grad_start0");
  check_d(r.attn_grad_rollout, "vattr_attn_grad_start0_rollout");
}

}  // namespace

// The run body on the host alone (no device needed): it reproduces the reference.
BOOST_AUTO_TEST_CASE(host_run_body_matches_the_reference) {
  for (const auto& fx : fixtures) {
    const auto m = load_vim<float>(data_dir / fx.name);
    const auto image = read_image_npy<float>(testing::reference(fx.name, "image.npy"));
    const run_result h = run(host_backend<float>{}, host_weights(m), image);
    check_reference(fx, h, std::string(fx.name) + " (host)");
    for (const auto& l : h.layers) BOOST_TEST(worst_self_test(l) <= 1e-5, fx.name << ": host self-test");
  }
}

// The gradient run body on the host alone against the autograd references.
BOOST_AUTO_TEST_CASE(host_gradient_body_matches_autograd) {
  const auto m = load_vim<float>(data_dir / "vim_mid_odd");
  const auto image = read_image_npy<float>(testing::reference("vim_mid_odd", "image.npy"));
  check_gradient_reference(run_gradients(host_backend<float>{}, host_weights(m), image), 1e-5, "vim_mid_odd (host)");
}

BOOST_AUTO_TEST_SUITE(gpu_vim, *mixlens::testing::requires_device())

// vim_gradients and the attribution recipes on the device against the host run
// body, every fixture; vim_mid_odd's also against the autograd references.
BOOST_AUTO_TEST_CASE(gradients_and_attributions_match_host_and_autograd) {
  const gpu::device_backend be;
  for (const auto& fx : fixtures) {
    const auto m = load_vim<float>(data_dir / fx.name);
    const auto image = read_image_npy<float>(testing::reference(fx.name, "image.npy"));
    const gradient_run h = run_gradients(host_backend<float>{}, host_weights(m), image);
    const gradient_run d = run_gradients(be, gpu::to_device(m), image);
    const double e = compare_gradient_runs(d, h, 1e-4, fx.name);
    BOOST_TEST_MESSAGE(fx.name << ": gradients and attributions, device vs host max relative error " << e);
    if (std::string(fx.name) == "vim_mid_odd") check_gradient_reference(d, 1e-4, "vim_mid_odd (device)");
  }
}

BOOST_AUTO_TEST_CASE(fixtures_match_host_and_reference) {
  for (const auto& fx : fixtures)
    BOOST_TEST_MESSAGE(fx.name << ": device vs host max relative error " << check_host_device(fx));
}

BOOST_AUTO_TEST_CASE(device_primitives_match_the_host) {
  const gpu::device_backend be;
  const host_backend<float> host;
  for (const auto& [rows, cols] : {std::pair<index_t, index_t>{1, 1}, {3, 7}, {40, 197}, {5, 70001}}) {
    const auto x = testing::random_matrix<float>(rows, cols, static_cast<std::uint64_t>(rows * cols));
    const auto dx = be.upload(std::span<const float>(x.data(), static_cast<std::size_t>(x.size())));
    BOOST_TEST(be.download(dx.data(), dx.size()) == std::vector<float>(x.data(), x.data() + x.size()));
    auto dout = be.alloc(rows * cols);
    be.reverse_columns(dx.data(), rows, cols, dout.data());
    std::vector<float> want(static_cast<std::size_t>(rows * cols));
    host.reverse_columns(x.data(), rows, cols, want.data());
    BOOST_TEST(be.download(dout.data(), dout.size()) == want, rows << " × " << cols);
  }
  const auto empty = be.upload(std::span<const float>());
  BOOST_TEST(empty.size() == 0);
}

BOOST_AUTO_TEST_CASE(device_forward_checks_the_image) {
  const auto m = load_vim<float>(data_dir / fixtures[0].name);
  const auto dw = gpu::to_device(m);
  const gpu::device_backend be;
  const tensor<float, 3> wrong(m.config.image_height + 1, m.config.image_width, m.config.channels);
  testing::check_error([&] { (void)gpu::vim_forward(be, dw, tensor_view<const float, 3>(wrong.view())); },
                       {"Vision Mamba", "image of shape"});
}

BOOST_AUTO_TEST_SUITE_END()
