// Tutorial 02: the hidden attention of a Mamba checkpoint, written once for the
// host and the GPU. Loads a Hugging Face MambaForCausalLM folder (default: the
// bundled demo model), runs the forward pass on a backend, and per layer reduces
// the paper's α (or the unified form) over channels, rolls the maps out, checks
// that the matrices reproduce the layer, and prints what the last token attends to.
//
//   02_mamba_attention [MODEL_DIR] [--device cpu|cuda] [--unified]
#include <mixlens/analysis/layer_maps.hpp>
#include <mixlens/io/npy.hpp>
#include <mixlens/models/mamba_model.hpp>
#ifdef MIXLENS_EXAMPLE_CUDA
#include <mixlens/gpu/models/mamba.cuh>
#endif

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

using namespace mixlens;
using namespace mixlens::models;

// The whole analysis against any backend: the same code for host and device.
template <class Backend>
void analyse(const Backend& be, const mamba_weights<float>& w, const std::vector<index_t>& tokens, bool unified) {
  const index_t L = static_cast<index_t>(tokens.size());
  analysis::rollout_accumulator<Backend> rollout(be, L);
  auto map = be.alloc(L * L);
  const auto logits = mamba_forward(be, w, std::span<const index_t>(tokens), [&](const mamba_layer_signals<float>& s) {
    // The layer's matrices: S6 alone (the paper's α) or the whole block (unified form).
    if (unified) analysis::aggregate_operator(be, unified_operator(be, s, {.offset = false}), channel_reduction::mean, map.data());
    else analysis::aggregate_operator(be, s.ssm(), channel_reduction::mean, map.data());
    rollout.add(map.data());
    const auto e = check_reconstruction(be, s);
    std::printf("layer %lld: %lld matrices of %lld x %lld; they reproduce the layer to %.1e (paper), %.1e (unified)\n",
                static_cast<long long>(s.layer), static_cast<long long>(s.channels()), static_cast<long long>(L),
                static_cast<long long>(L), e.paper, e.unified);
  });
  const auto rho = be.download(rollout.result(), L * L);
  std::vector<index_t> order(static_cast<std::size_t>(L));
  std::iota(order.begin(), order.end(), 0);
  const float* last = rho.data() + (L - 1) * L;  // the last token's row of the rollout
  std::sort(order.begin(), order.end(), [&](index_t i, index_t j) { return last[i] > last[j]; });
  std::printf("rollout: the last position attends most to positions");
  for (std::size_t k = 0; k < std::min<std::size_t>(5, order.size()); ++k)
    std::printf(" %lld (%.3f)", static_cast<long long>(order[k]), last[order[k]]);
  const auto top = be.download(logits.data() + (L - 1) * w.vocab_size(), w.vocab_size());
  std::printf("\nnext token (argmax of the last logits): %lld\n",
              static_cast<long long>(std::max_element(top.begin(), top.end()) - top.begin()));
}

int main(int argc, char** argv) {
  try {
    std::filesystem::path dir = "tests/data/mamba_demo";
    bool cuda = false, unified = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--device" && i + 1 < argc) cuda = std::string(argv[++i]) == "cuda";
      else if (a == "--unified") unified = true;
      else dir = a;
    }
    const auto model = load_mamba<float>(dir);
    std::vector<index_t> tokens(24);
    for (std::size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<index_t>((7 * t + 3) % model.vocab_size());
    std::printf("%s: %lld layers, d_inner %lld, %zu tokens, %s form, on the %s\n", dir.string().c_str(),
                static_cast<long long>(model.num_layers()), static_cast<long long>(model.config.intermediate_size),
                tokens.size(), unified ? "unified" : "paper", cuda ? "GPU" : "CPU");
    if (!cuda) {
      analyse(host_backend<float>{}, host_weights(model).view(), tokens, unified);
      return 0;
    }
#ifdef MIXLENS_EXAMPLE_CUDA
    analyse(gpu::device_backend{}, gpu::to_device(model).view(), tokens, unified);
    return 0;
#else
    std::fprintf(stderr, "02_mamba_attention: this build has no CUDA backend\n");
    return 1;
#endif
  } catch (const std::exception& e) {
    std::fprintf(stderr, "02_mamba_attention: error: %s\n", e.what());
    return 1;
  }
}
