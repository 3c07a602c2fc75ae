// Tutorial 04: the hidden attention of a Vision Mamba classifier over the patch
// grid. Loads a folder written by tools/convert_vim.py (default: a bundled random
// fixture), reads an image (.png, or .npy of height × width × 3), runs the model on the CPU
// (or, with --device cuda in a build with CUDA, on the GPU, each layer's signals
// copied back to the host for the maps) and, per layer, combines the forward
// branch's α with the backward branch's α mapped back to image positions. It
// writes into OUT_DIR:
//
//   logits.npy        the class scores
//   cls_raw.npy       the CLS row of the combined matrices, channel mean, averaged
//                     over the layers from --start-layer on (grid height × width)
//   cls_rollout.npy   the CLS row of the attention rollout of the channel-mean maps
//   paper_cls.npy     as cls_raw, with the CLS vector the paper's code computes
//   overlay.png       cls_rollout over the image
//
// Without a CLS token the rows' mean stands for the CLS row (the mean-pooled
// feature reads every position alike).
//
//   04_vim_attention [MODEL_DIR IMAGE] [OUT_DIR] [--normalize] [--unified] [--start-layer K]
//                    [--device cpu|cuda]
//
// A PNG's pixels / 255 take the ImageNet normalization of Vim's evaluation
// transform; a .npy is the model input as it is, unless --normalize (for values
// in [0, 1]).
#include <mixlens/analysis/attention_maps.hpp>
#include <mixlens/io/npy.hpp>
#include <mixlens/io/png.hpp>
#include <mixlens/models/vim_attention.hpp>
#ifdef MIXLENS_EXAMPLE_CUDA
#include <mixlens/gpu/models/vim.cuh>
#endif

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

namespace {

// The row the classifier reads, over the sequence: row cls of m (L × L), or the
// mean of its rows.
std::vector<float> read_row(const matrix<float>& m, index_t cls) {
  const index_t L = m.extent(0);
  std::vector<float> r(static_cast<std::size_t>(L), 0.0f);
  for (index_t i = 0; i < L; ++i)
    if (cls < 0 || i == cls)
      for (index_t j = 0; j < L; ++j) r[static_cast<std::size_t>(j)] += m(i, j) / float(cls < 0 ? L : 1);
  return r;
}

void save_map(const fs::path& file, const matrix<float>& map) {
  io::write_npy(file, map.data(), {map.extent(0), map.extent(1)});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> positional;
    bool normalize = false, unified = false, cuda = false;
    index_t start = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--normalize") normalize = true;
      else if (a == "--unified") unified = true;
      else if (a == "--start-layer" && i + 1 < argc) start = std::stoll(argv[++i]);
      else if (a == "--device" && i + 1 < argc) {
        const std::string d = argv[++i];
        if (d != "cpu" && d != "cuda") throw error("--device expects 'cpu' or 'cuda', got '" + d + "'");
        cuda = d == "cuda";
      }
      else positional.push_back(a);
    }
    const fs::path dir = positional.size() > 0 ? positional[0] : "tests/data/vim_mid_odd";
    const fs::path image_file = positional.size() > 1 ? positional[1] : "tests/data/reference/vim_mid_odd/image.npy";
    const fs::path out = positional.size() > 2 ? positional[2] : "vim_attention_out";
    const attention_form form = unified ? attention_form::unified : attention_form::paper;

    const auto model = load_vim<float>(dir);
    const vim_config& cfg = model.config;
    if (start < 0 || start >= model.num_layers())
      throw error("--start-layer " + std::to_string(start) + " is not a layer in [0, " + std::to_string(model.num_layers()) + ")");
    tensor<float, 3> image = read_image<float>(image_file);
    const tensor<float, 3> shown = image;  // before normalization: what the overlay shows
    if (normalize || image_file.extension() == ".png") imagenet_normalize(image);
    fs::create_directories(out);
    std::printf("%s: %lld layers, %lld x %lld patches, CLS %s, %s form, on the %s\n", dir.string().c_str(),
                static_cast<long long>(model.num_layers()), static_cast<long long>(cfg.grid_height()),
                static_cast<long long>(cfg.grid_width()), std::string(to_string(cfg.cls)).c_str(),
                std::string(to_string(form)).c_str(), cuda ? "GPU" : "CPU");

    const index_t L = cfg.sequence_length(), cls = cfg.cls_index();
    std::vector<matrix<float>> maps;
    std::vector<float> raw(static_cast<std::size_t>(L), 0.0f), paper(static_cast<std::size_t>(L), 0.0f);
    const auto per_layer = [&](const vim_layer_signals<float>& s) {
      const auto e = check_reconstruction(s);
      const auto full = vim_layer_attention(s, form);  // D × L × L, in the block's own combination
      maps.push_back(analysis::aggregate_channels(tensor_view<const float, 3>(full.view())));
      std::printf("layer %lld: the matrices reproduce the block to %.1e (forward %.1e, backward %.1e)\n",
                  static_cast<long long>(s.layer), e.combined, e.forward.paper, e.backward.paper);
      if (s.layer < start) return;
      const auto row = read_row(maps.back(), cls);
      for (index_t j = 0; j < L; ++j) raw[static_cast<std::size_t>(j)] += row[static_cast<std::size_t>(j)];
      if (cls >= 0) {
        const auto p = paper_cls_rows(s);
        const auto pr = aggregate_rows(matrix_view<const float>(p.view()));
        for (index_t j = 0; j < L; ++j) paper[static_cast<std::size_t>(j)] += pr[static_cast<std::size_t>(j)];
      }
    };
    const tensor_view<const float, 3> input(image.view());
    std::vector<float> logits;
    if (cuda) {
#ifdef MIXLENS_EXAMPLE_CUDA
      const gpu::device_backend be;
      const auto weights = gpu::to_device(model);
      const auto d = gpu::vim_forward(be, weights, input, [&](const vim_layer_signals<float>& s) {
        be.synchronize();
        per_layer(gpu::to_host(s).view());  // the maps on the host, from the device signals
      });
      logits = be.download(d.data(), d.size());
#else
      throw error("--device cuda: this build has no CUDA backend");
#endif
    } else {
      logits = vim_forward(model, input, per_layer);
    }
    const auto rho = analysis::rollout(maps, start);
    const auto rollout_map = patch_map(cfg, std::span<const float>(read_row(rho, cls)));
    io::write_npy(out / "logits.npy", logits.data(), {static_cast<index_t>(logits.size())});
    save_map(out / "cls_raw.npy", patch_map(cfg, std::span<const float>(raw)));
    save_map(out / "cls_rollout.npy", rollout_map);
    if (cls >= 0) save_map(out / "paper_cls.npy", patch_map(cfg, std::span<const float>(paper)));
    io::write_overlay_png(out / "overlay.png", tensor_view<const float, 3>(shown.view()),
                          matrix_view<const float>(rollout_map.view()));
    const auto top = std::max_element(logits.begin(), logits.end()) - logits.begin();
    std::printf("class %lld (logit %.4f); maps in %s\n", static_cast<long long>(top), logits[static_cast<std::size_t>(top)],
                out.string().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "04_vim_attention: error: %s\n", e.what());
    return 1;
  }
}
