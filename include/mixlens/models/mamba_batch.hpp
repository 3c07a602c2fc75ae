// Many sequences of one length through a Mamba, Falcon-Mamba or Mamba-2
// language model in one pass, for the perturbation tests (models/attribute.hpp,
// batch_target_evaluator): only the logits at one position of each sequence
// are formed. Written once against a backend (the host's or the device's).
//
// The batch is a leading dimension: the residual stream is (B, L, H), every
// mixer signal (B, rows, L). The projections are strided-batched products with
// the weight shared (gemm_batched), one per block of rows that a later step
// needs contiguous; the depthwise conv runs once over the B·rows rows with its
// taps and bias repeated B times (made once per object, for up to max_batch
// sequences). Mamba's selective scan with softplus and gate is one batched call
// (mamba_scan: on the device the fused kernel, which keeps Δ and the gate out
// of memory); Mamba-2's SSD is one operator of B·heads heads in B·groups groups
// (group b·G + g reads sequence b's B and C) with its per-head weights repeated.
// batch_forward_t<Backend, Weights> names the class for a family's weights.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixlens/error.hpp"
#include "mixlens/models/mamba2_forward.hpp"
#include "mixlens/models/mamba_forward.hpp"

namespace mixlens::models {

namespace detail {

// What both families share: the repeated weights and the target rows.
template <class Backend, class T>
class batch_forward_base {
 protected:
  using array = typename Backend::template array<T>;

  batch_forward_base(const Backend& be, index_t max_batch) : be_(be), max_batch_(max_batch) {
    mixlens::detail::check_positive("mixlens::models::batch_forward", "max_batch", max_batch);
  }

  // n values at p, repeated max_batch times (empty for n = 0).
  [[nodiscard]] array repeat(const T* p, index_t n) const {
    array out = be_.alloc(n * max_batch_);
    for (index_t b = 0; b < max_batch_ && n > 0; ++b) be_.copy(p, n, out.data() + b * n);
    return out;
  }
  // The first B repeats of `a` (per values each) as a vector; empty stays empty.
  [[nodiscard]] static vector_view<const T> first(const array& a, index_t B, index_t per) {
    return vector_view<const T>(a.data(), a.size() ? B * per : 0);
  }

  // The checks of target_logits; returns L.
  [[nodiscard]] index_t check(index_t vocab, std::span<const index_t> tokens, std::span<const index_t> positions) const {
    constexpr std::string_view where = "mixlens::models::batch_forward::target_logits";
    const index_t B = static_cast<index_t>(positions.size());
    if (B < 1 || B > max_batch_)
      mixlens::detail::fail(where, "positions", "1 to " + std::to_string(max_batch_) + " sequences", B);
    if (tokens.empty() || tokens.size() % positions.size() != 0)
      mixlens::detail::fail(where, "tokens", "B·L ids for B = " + std::to_string(B), tokens.size());
    check_tokens(vocab, tokens);
    const index_t L = static_cast<index_t>(tokens.size()) / B;
    for (const index_t p : positions)
      if (p < 0 || p >= L) mixlens::detail::fail(where, "positions", "positions in [0, " + std::to_string(L) + ")", p);
    return L;
  }

  // The final norm and the head at the target rows of h (B, L, H): B × V.
  template <class Weights>
  [[nodiscard]] array target_head(const Weights& w, const T* h, index_t L, std::span<const index_t> positions,
                                  double eps) const {
    const index_t B = static_cast<index_t>(positions.size()), H = w.config.hidden_size, V = w.vocab_size();
    auto rows = be_.alloc(B * H), normed = be_.alloc(B * H), logits = be_.alloc(B * V);
    for (index_t b = 0; b < B; ++b)
      be_.copy(h + (b * L + positions[static_cast<std::size_t>(b)]) * H, H, rows.data() + b * H);
    be_.rms_norm(rows.data(), B, H, w.norm_f, eps, normed.data());
    be_.gemm(false, true, B, V, H, normed.data(), w.output_embedding.data_handle(), T(0), logits.data());
    be_.synchronize();
    return logits;
  }

  const Backend& be_;
  index_t max_batch_;
};

}  // namespace detail

// ---- Mamba and Falcon-Mamba ----------------------------------------------------------

template <class Backend, class T>
class mamba_batch_forward : detail::batch_forward_base<Backend, T> {
  using base = detail::batch_forward_base<Backend, T>;
  using typename base::array;

 public:
  // `be` must outlive the object.
  mamba_batch_forward(const Backend& be, const mamba_weights<T>& w, index_t max_batch) : base(be, max_batch), w_(w) {
    const index_t D = w.config.intermediate_size;
    for (const auto& l : w.layers) {
      layer_tiles t{this->repeat(l.conv_taps.data_handle(), l.conv_taps.size()),
                    this->repeat(l.conv_bias.data(), static_cast<index_t>(l.conv_bias.size())), {}, {}};
      if (!l.in_proj_bias.empty()) {
        t.x_bias = this->repeat(l.in_proj_bias.data(), D);
        t.z_bias = this->repeat(l.in_proj_bias.data() + D, D);
      }
      tiles_.push_back(std::move(t));
    }
  }

  [[nodiscard]] index_t max_batch() const { return this->max_batch_; }

  // logits[positions[b]] of sequence b (B × V, row-major, backend memory) for
  // the B = positions.size() sequences in `tokens` (B·L ids, sequence b at
  // b·L); the ids and positions are checked.
  [[nodiscard]] array target_logits(std::span<const index_t> tokens, std::span<const index_t> positions) const {
    const index_t L = this->check(w_.vocab_size(), tokens, positions);
    const mamba_config& cfg = w_.config;
    const index_t B = static_cast<index_t>(positions.size()), H = cfg.hidden_size, D = cfg.intermediate_size,
                  N = cfg.state_size, R = cfg.time_step_rank, BD = B * D;
    const Backend& be = this->be_;
    const auto tok = be.upload(tokens);
    auto h = be.alloc(B * L * H), hn = be.alloc(B * L * H);
    auto x = be.alloc(BD * L), z = be.alloc(BD * L), u = be.alloc(BD * L), dt_full = be.alloc(BD * L),
         dt = be.alloc(B * R * L), bm = be.alloc(B * N * L), cm = be.alloc(B * N * L);
    T* y = x.data();  // the conv input is spent once u is formed
    be.embed(tok, w_.embedding, h.data());
    for (index_t k = 0; k < w_.num_layers(); ++k) {
      const mamba_layer_weights<T>& w = w_.layers[static_cast<std::size_t>(k)];
      const layer_tiles& t = tiles_[static_cast<std::size_t>(k)];
      be.rms_norm(h.data(), B * L, H, w.norm, cfg.norm_eps, hn.data());
      const T* in = w.in_proj.data_handle();
      be.gemm_batched(false, true, D, L, H, in, 0, hn.data(), L * H, T(0), x.data(), D * L, B);
      be.gemm_batched(false, true, D, L, H, in + D * H, 0, hn.data(), L * H, T(0), z.data(), D * L, B);
      if (!w.in_proj_bias.empty()) {
        be.add_row_bias(x.data(), base::first(t.x_bias, B, D), BD, L);
        be.add_row_bias(z.data(), base::first(t.z_bias, B, D), BD, L);
      }
      const causal_conv_operator<T, mamba_conv_kind> conv(
          matrix_view<const T>(t.taps.data(), BD, w.conv_taps.extent(1)), {}, L);
      be.conv_silu(conv, base::first(t.conv_bias, B, D), x.data(), u.data(), nullptr);
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
    return this->target_head(w_, h.data(), L, positions, cfg.norm_eps);
  }

 private:
  struct layer_tiles {
    array taps, conv_bias, x_bias, z_bias;
  };

  mamba_weights<T> w_;
  std::vector<layer_tiles> tiles_;
};

// ---- Mamba-2 -------------------------------------------------------------------------

template <class Backend, class T>
class mamba2_batch_forward : detail::batch_forward_base<Backend, T> {
  using base = detail::batch_forward_base<Backend, T>;
  using typename base::array;

 public:
  // `be` must outlive the object.
  mamba2_batch_forward(const Backend& be, const mamba2_weights<T>& w, index_t max_batch)
      : base(be, max_batch), w_(w) {
    const mamba2_config& c = w.config;
    const index_t S = c.ssm_channels(), GN = c.n_groups * c.state_size, M = c.d_mlp, H = c.hidden_size;
    for (const auto& l : w.layers) {
      const index_t K = l.conv_taps.extent(1), width = c.intermediate_size();
      layer_tiles t;
      // in_proj's rows [z0, x0 | z | x, B, C | dt] as blocks; the conv's x, B and C rows.
      for (const auto& [row, rows] : sections(c))
        t.bias.push_back(l.in_proj_bias.empty() ? array() : this->repeat(l.in_proj_bias.data() + row, rows));
      const index_t conv_rows[] = {0, S, S + GN}, conv_counts[] = {S, GN, GN};
      for (int i = 0; i < 3; ++i) {
        t.taps.push_back(this->repeat(l.conv_taps.data_handle() + conv_rows[i] * K, conv_counts[i] * K));
        t.conv_bias.push_back(l.conv_bias.empty() ? array() : this->repeat(l.conv_bias.data() + conv_rows[i], conv_counts[i]));
      }
      t.dt_bias = this->repeat(l.dt_bias.data(), c.num_heads);
      t.a = this->repeat(l.a.data(), c.num_heads);
      t.skip = this->repeat(l.skip.data(), c.num_heads);
      t.norm_weight = l.norm_weight.empty() ? array() : this->repeat(l.norm_weight.data(), S);
      // out_proj's columns [MLP | SSM] as two contiguous matrices (H × M, H × S).
      t.out_mlp = be.alloc(H * M), t.out_ssm = be.alloc(H * S);
      for (index_t r = 0; r < H; ++r) {
        if (M) be.copy(l.out_proj.data_handle() + r * width, M, t.out_mlp.data() + r * M);
        be.copy(l.out_proj.data_handle() + r * width + M, S, t.out_ssm.data() + r * S);
      }
      tiles_.push_back(std::move(t));
    }
  }

  [[nodiscard]] index_t max_batch() const { return this->max_batch_; }

  // As mamba_batch_forward::target_logits.
  [[nodiscard]] array target_logits(std::span<const index_t> tokens, std::span<const index_t> positions) const {
    const index_t L = this->check(w_.vocab_size(), tokens, positions);
    const mamba2_config& c = w_.config;
    const index_t B = static_cast<index_t>(positions.size()), H = c.hidden_size, S = c.ssm_channels(),
                  G = c.n_groups, N = c.state_size, GN = G * N, M = c.d_mlp, Hd = c.num_heads;
    const Backend& be = this->be_;
    const auto tok = be.upload(tokens);
    auto h = be.alloc(B * L * H), hn = be.alloc(B * L * H);
    // The in_proj blocks, in sections() order, then the conv outputs of x, B and C, the SSD output
    // and the norm's.
    const auto blocks = sections(c);
    std::vector<array> in;
    for (const auto& block : blocks) in.push_back(be.alloc(B * block.second * L));
    auto ux = be.alloc(B * S * L), ub = be.alloc(B * GN * L), uc = be.alloc(B * GN * L), ssm_out = be.alloc(B * S * L),
         normed = be.alloc(B * S * L);
    auto &z0 = in[0], &x0 = in[1], &z = in[2], &x = in[3], &bm = in[4], &cm = in[5], &dt = in[6];
    T* mlp = z0.data();  // SiLU(z0) ⊙ x0 in place
    be.embed(tok, w_.embedding, h.data());
    for (index_t k = 0; k < w_.num_layers(); ++k) {
      const mamba2_layer_weights<T>& w = w_.layers[static_cast<std::size_t>(k)];
      const layer_tiles& t = tiles_[static_cast<std::size_t>(k)];
      be.rms_norm(h.data(), B * L, H, w.norm, c.norm_eps, hn.data());
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        const auto [row, rows] = blocks[i];
        if (rows == 0) continue;
        be.gemm_batched(false, true, rows, L, H, w.in_proj.data_handle() + row * H, 0, hn.data(), L * H, T(0),
                        in[i].data(), rows * L, B);
        if (!w.in_proj_bias.empty()) be.add_row_bias(in[i].data(), base::first(t.bias[i], B, rows), B * rows, L);
      }
      const index_t conv_counts[] = {S, GN, GN};
      const T* conv_in[] = {x.data(), bm.data(), cm.data()};
      T* conv_out[] = {ux.data(), ub.data(), uc.data()};
      for (int i = 0; i < 3; ++i) {
        const causal_conv_operator<T, mamba_conv_kind> conv(
            matrix_view<const T>(t.taps[static_cast<std::size_t>(i)].data(), B * conv_counts[i], w.conv_taps.extent(1)),
            {}, L);
        be.conv_silu(conv, base::first(t.conv_bias[static_cast<std::size_t>(i)], B, conv_counts[i]), conv_in[i],
                     conv_out[i], nullptr);
      }
      be.softplus_bias(dt.data(), base::first(t.dt_bias, B, Hd), B * Hd, L, static_cast<T>(c.dt_min),
                       static_cast<T>(c.dt_max));
      const ssd_operator<T> ssd(matrix_view<const T>(dt.data(), B * Hd, L), base::first(t.a, B, Hd),
                                tensor_view<const T, 3>(ub.data(), B * G, N, L),
                                tensor_view<const T, 3>(uc.data(), B * G, N, L), c.head_dim, base::first(t.skip, B, Hd),
                                c.chunk_size);
      if constexpr (Backend::on_host) ssd.validate();  // Δ > 0, A < 0
      be.apply(ssd, ux.data(), ssm_out.data());
      be.gated_rms_norm(ssm_out.data(), z.data(), B * S, L, c.norm_group_size, base::first(t.norm_weight, B, S),
                        c.norm_eps, normed.data(), nullptr);
      be.gemm_batched(true, true, L, H, S, normed.data(), S * L, t.out_ssm.data(), 0, T(1), h.data(), L * H, B);
      if (M > 0) {  // the gated MLP: SiLU(z0) ⊙ x0 through out_proj's first columns
        be.silu(z0.data(), mlp, B * M * L);
        be.multiply(mlp, x0.data(), B * M * L);
        be.gemm_batched(true, true, L, H, M, mlp, M * L, t.out_mlp.data(), 0, T(1), h.data(), L * H, B);
      }
      if (!w.out_proj_bias.empty()) be.add_column_bias(h.data(), w.out_proj_bias, B * L, H);
    }
    return this->target_head(w_, h.data(), L, positions, c.norm_eps);
  }

 private:
  struct layer_tiles {
    std::vector<array> bias;                 // in_proj's bias per section (empty without one)
    std::vector<array> taps, conv_bias;      // the conv's x, B and C rows
    array dt_bias, a, skip, norm_weight;     // per head; the norm's per SSM channel
    array out_mlp, out_ssm;                  // out_proj's two column blocks
  };

  // in_proj's row blocks (first row, rows): z0, x0, z, x, B, C, dt.
  [[nodiscard]] static std::vector<std::pair<index_t, index_t>> sections(const mamba2_config& c) {
    const index_t M = c.d_mlp, S = c.ssm_channels(), GN = c.n_groups * c.state_size;
    return {{0, M}, {M, M}, {2 * M, S}, {2 * M + S, S}, {2 * M + 2 * S, GN}, {2 * M + 2 * S + GN, GN},
            {2 * M + 2 * S + 2 * GN, c.num_heads}};
  }

  mamba2_weights<T> w_;
  std::vector<layer_tiles> tiles_;
};

// The batched forward of a family's weights.
template <class Backend, class Weights>
struct batch_forward_of;
template <class Backend, class T>
struct batch_forward_of<Backend, mamba_weights<T>> {
  using type = mamba_batch_forward<Backend, T>;
};
template <class Backend, class T>
struct batch_forward_of<Backend, mamba2_weights<T>> {
  using type = mamba2_batch_forward<Backend, T>;
};
template <class Backend, class Weights>
using batch_forward_t = typename batch_forward_of<Backend, Weights>::type;

}  // namespace mixlens::models
