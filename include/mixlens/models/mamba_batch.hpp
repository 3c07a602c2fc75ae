// Many sequences of one length through a Mamba or Falcon-Mamba language model
// in one pass, for the perturbation tests (models/attribute.hpp,
// batch_target_evaluator): only the logits at one position of each sequence
// are formed. Written once against a backend (the host's or the device's).
//
// The batch is a leading dimension: the residual stream is (B, L, H), every
// mixer signal (B, D, L). The projections are strided-batched products with
// the weight shared (gemm_batched); the depthwise conv runs once over the B·D
// rows with its taps and bias repeated B times, and the selective scan with
// softplus and gate is one batched call (mamba_scan: on the device Mamba's
// fused kernel, which keeps Δ and the gate out of memory).
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/models/mamba_forward.hpp"

namespace mixlens::models {

template <class Backend, class T>
class mamba_batch_forward {
  using array = typename Backend::template array<T>;

 public:
  // The conv's weights (and in_proj's bias) repeated for up to `max_batch`
  // sequences per pass. `be` must outlive the object.
  mamba_batch_forward(const Backend& be, const mamba_weights<T>& w, index_t max_batch)
      : be_(be), w_(w), max_batch_(max_batch) {
    mixlens::detail::check_positive("mixlens::models::mamba_batch_forward", "max_batch", max_batch);
    for (const auto& l : w.layers) {
      layer_tiles t;
      t.taps = repeat(l.conv_taps.data_handle(), l.conv_taps.size());
      t.conv_bias = repeat(l.conv_bias.data(), static_cast<index_t>(l.conv_bias.size()));
      const index_t D = w.config.intermediate_size;
      if (!l.in_proj_bias.empty()) {
        t.x_bias = repeat(l.in_proj_bias.data(), D);
        t.z_bias = repeat(l.in_proj_bias.data() + D, D);
      }
      tiles_.push_back(std::move(t));
    }
  }

  [[nodiscard]] index_t max_batch() const { return max_batch_; }

  // logits[positions[b]] of sequence b (B × V, row-major, backend memory) for
  // the B = positions.size() sequences in `tokens` (B·L ids, sequence b at
  // b·L); the ids and positions are checked.
  [[nodiscard]] array target_logits(std::span<const index_t> tokens, std::span<const index_t> positions) const {
    constexpr std::string_view where = "mixlens::models::mamba_batch_forward::target_logits";
    const index_t B = static_cast<index_t>(positions.size());
    if (B < 1 || B > max_batch_)
      mixlens::detail::fail(where, "positions", "1 to " + std::to_string(max_batch_) + " sequences", B);
    if (tokens.empty() || tokens.size() % positions.size() != 0)
      mixlens::detail::fail(where, "tokens", "B·L ids for B = " + std::to_string(B), tokens.size());
    check_tokens(w_.vocab_size(), tokens);
    const mamba_config& cfg = w_.config;
    const index_t L = static_cast<index_t>(tokens.size()) / B, H = cfg.hidden_size, D = cfg.intermediate_size,
                  N = cfg.state_size, R = cfg.time_step_rank, V = w_.vocab_size(), BD = B * D;
    for (const index_t p : positions)
      if (p < 0 || p >= L) mixlens::detail::fail(where, "positions", "positions in [0, " + std::to_string(L) + ")", p);

    const Backend& be = be_;
    const auto tok = be.upload(tokens);
    auto h = be.alloc(B * L * H), hn = be.alloc(B * L * H);
    auto x = be.alloc(BD * L), z = be.alloc(BD * L), u = be.alloc(BD * L), dt_full = be.alloc(BD * L),
         dt = be.alloc(B * R * L), bm = be.alloc(B * N * L), cm = be.alloc(B * N * L);
    T* y = x.data();  // the conv input is spent once u is formed
    be.embed(tok, w_.embedding, h.data());
    for (index_t k = 0; k < w_.num_layers(); ++k) {
      const mamba_layer_weights<T>& w = w_.layers[static_cast<std::size_t>(k)];
      const layer_tiles& t = tiles_[static_cast<std::size_t>(k)];
      const auto tiled = [&](const array& a, index_t per) { return vector_view<const T>(a.data(), a.size() ? B * per : 0); };
      be.rms_norm(h.data(), B * L, H, w.norm, cfg.norm_eps, hn.data());
      const T* in = w.in_proj.data_handle();
      be.gemm_batched(false, true, D, L, H, in, 0, hn.data(), L * H, T(0), x.data(), D * L, B);
      be.gemm_batched(false, true, D, L, H, in + D * H, 0, hn.data(), L * H, T(0), z.data(), D * L, B);
      if (!w.in_proj_bias.empty()) {
        be.add_row_bias(x.data(), tiled(t.x_bias, D), BD, L);
        be.add_row_bias(z.data(), tiled(t.z_bias, D), BD, L);
      }
      const index_t K = w.conv_taps.extent(1);
      const causal_conv_operator<T, mamba_conv_kind> conv(matrix_view<const T>(t.taps.data(), BD, K), {}, L);
      be.conv_silu(conv, tiled(t.conv_bias, D), x.data(), u.data(), nullptr);
      const T* xp = w.x_proj.data_handle();
      be.gemm_batched(false, false, R, L, D, xp, 0, u.data(), D * L, T(0), dt.data(), R * L, B);
      be.gemm_batched(false, false, N, L, D, xp + R * D, 0, u.data(), D * L, T(0), bm.data(), N * L, B);
      be.gemm_batched(false, false, N, L, D, xp + (R + N) * D, 0, u.data(), D * L, T(0), cm.data(), N * L, B);
      if (cfg.bc_dt_norm) {  // Falcon-Mamba: δ, B and C RMS-normalized at every position of every sequence
        be.gated_rms_norm(dt.data(), nullptr, B * R, L, R, {}, cfg.mixer_rms_eps, dt.data(), nullptr);
        be.gated_rms_norm(bm.data(), nullptr, B * N, L, N, {}, cfg.mixer_rms_eps, bm.data(), nullptr);
        be.gated_rms_norm(cm.data(), nullptr, B * N, L, N, {}, cfg.mixer_rms_eps, cm.data(), nullptr);
      }
      // Δ before bias and softplus, which the scan applies
      be.gemm_batched(false, false, D, L, R, w.dt_proj.data_handle(), 0, dt.data(), R * L, T(0), dt_full.data(), D * L, B);
      be.mamba_scan(B, L, u.data(), dt_full.data(), w.dt_bias, w.a, bm.data(), cm.data(), w.skip, z.data(), y);
      be.gemm_batched(true, true, L, H, D, y, D * L, w.out_proj.data_handle(), 0, T(1), h.data(), L * H, B);
      if (!w.out_proj_bias.empty()) be.add_column_bias(h.data(), w.out_proj_bias, B * L, H);
    }
    // The final norm and the head at the target rows only.
    auto rows = be.alloc(B * H);
    for (index_t b = 0; b < B; ++b)
      be.copy(h.data() + (b * L + positions[static_cast<std::size_t>(b)]) * H, H, rows.data() + b * H);
    be.rms_norm(rows.data(), B, H, w_.norm_f, cfg.norm_eps, hn.data());
    auto logits = be.alloc(B * V);
    be.gemm(false, true, B, V, H, hn.data(), w_.output_embedding.data_handle(), T(0), logits.data());
    be.synchronize();
    return logits;
  }

 private:
  struct layer_tiles {
    array taps, conv_bias, x_bias, z_bias;
  };

  // n values at p, repeated max_batch times (empty for n = 0).
  [[nodiscard]] array repeat(const T* p, index_t n) const {
    array out = be_.alloc(n * max_batch_);
    for (index_t b = 0; b < max_batch_ && n > 0; ++b) be_.copy(p, n, out.data() + b * n);
    return out;
  }

  const Backend& be_;
  mamba_weights<T> w_;
  index_t max_batch_;
  std::vector<layer_tiles> tiles_;
};

}  // namespace mixlens::models
