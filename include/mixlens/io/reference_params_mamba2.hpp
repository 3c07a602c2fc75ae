// A Mamba-2 mixer from its stored parameters, as io/reference_params.hpp loads
// the other reference modules: state-spaces/mamba mamba_ssm/modules/mamba2.py,
// Mamba2 (the same names in transformers' Mamba2Mixer). The layer is the one
// the Mamba-2 language model runs (models::mamba2_mixer_forward): in_proj split
// into [z0, x0 | z | xBC | dt], the causal depthwise conv1d over xBC and SiLU,
// Δ = softplus(dt + dt_bias) clamped to dt_limit, the SSD per head with groups
// (ssd_operator) + D, the gated RMSNorm with z, the gated MLP part when d_mlp >
// 0, and out_proj. Needs mixlens::models (nlohmann-json, through the config).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/io/reference_params.hpp"
#include "mixlens/models/mamba2_forward.hpp"
#include "mixlens/models/mamba2_model.hpp"

namespace mixlens::io {

// What a Mamba2 module keeps in its constructor arguments, not in the
// state_dict; defaults are state-spaces' Mamba2. The sizes (d_model, d_ssm,
// d_mlp, nheads, headdim, ngroups·d_state, d_conv) are read from the shapes.
struct mamba2_mixer_options {
  std::string prefix = {};          // <prefix>in_proj.weight, … ("backbone.layers.0.mixer." in a model)
  index_t ngroups = 1;              // Mamba2 `ngroups` (transformers: n_groups): splits ngroups·d_state
  index_t chunk_size = 256;         // of the chunked SSD (the result does not depend on it)
  double dt_min = 0;                // dt_limit = (dt_min, dt_max): Δ clamped after the softplus
  double dt_max = std::numeric_limits<double>::infinity();
  double norm_eps = 1e-5;           // the gated RMSNorm's ε
  index_t norm_group_size = 0;      // its group: 0 is state-spaces' d_ssm / ngroups; transformers 5: d_ssm
  bool rmsnorm = true;              // false (z gates the scan instead of the norm): refused
  bool norm_before_gate = false;    // true: refused
};

// The loaded layer: the model's weight layout (models::mamba2_layer) and its
// sizes (models::mamba2_config), run by the model's own mixer code.
template <class T>
class mamba2_mixer {
 public:
  using value_type = T;

  mamba2_mixer(models::mamba2_config config, models::mamba2_layer<T> layer) : config_(std::move(config)), layer_(std::move(layer)) {
    for (T v : layer_.a_log) a_.push_back(-std::exp(v));
    taps_ = models::detail::taps_by_lag(layer_.conv_weight);
  }

  [[nodiscard]] const models::mamba2_config& config() const { return config_; }
  [[nodiscard]] const models::mamba2_layer<T>& layer() const { return layer_; }
  [[nodiscard]] index_t d_model() const { return config_.hidden_size; }

  // The weights as the forward pass reads them.
  [[nodiscard]] models::mamba2_layer_weights<T> weights() const {
    using models::vector_view_of;
    return {vector_view<const T>{}, layer_.in_proj.view(), vector_view_of(layer_.in_proj_bias), taps_.view(),
            vector_view_of(layer_.conv_bias), vector_view_of(layer_.dt_bias), vector_view_of(a_), vector_view_of(layer_.skip),
            vector_view_of(layer_.norm_weight), layer_.out_proj.view(), vector_view_of(layer_.out_proj_bias)};
  }

  // One run on u (d_model × L): the output (d_model × L, = Mamba2.forward) and
  // the layer's signals (views into the run's buffers and this mixer's weights),
  // whose ssm() is the SSD per head (the paper's α) and ssm(s6_fold{.skip,
  // .gate}) the per-channel operator with D and the gated norm as a diagonal:
  // its apply on signals.u is out_proj's SSM input, signals.y.
  struct run {
    matrix<T> output;
    models::mamba2_mixer_buffers<host_backend<T>, T> buffers;
    models::mamba2_layer_signals<T> signals;
  };

  [[nodiscard]] run bind(matrix_view<const T> u) const {
    constexpr std::string_view where = "mixlens::io::mamba2_mixer::bind";
    detail_check(where, u);
    const index_t H = d_model(), L = u.extent(1);
    const host_backend<T> be;
    std::vector<T> hn(static_cast<std::size_t>(L * H)), h(static_cast<std::size_t>(L * H), T(0));
    for (index_t c = 0; c < H; ++c)
      for (index_t t = 0; t < L; ++t) hn[static_cast<std::size_t>(t * H + c)] = u(c, t);  // time-major
    run r{matrix<T>(H, L), models::mamba2_mixer_buffers<host_backend<T>, T>(be, config_, L), {}};
    const auto w = weights();
    r.signals = models::mamba2_mixer_forward(be, config_, w, hn.data(), L, r.buffers, h.data());
    for (index_t c = 0; c < H; ++c)
      for (index_t t = 0; t < L; ++t) r.output(c, t) = h[static_cast<std::size_t>(t * H + c)];
    return r;
  }

  // Mamba2.forward on u (d_model × L): d_model × L.
  [[nodiscard]] matrix<T> forward(matrix_view<const T> u) const { return bind(u).output; }

 private:
  void detail_check(std::string_view where, matrix_view<const T> u) const {
    mixlens::detail::check_equal(where, "u", "channels (extent 0, d_model)", d_model(), u.extent(0));
    mixlens::detail::check_positive(where, "u (length, extent 1)", u.extent(1));
  }

  models::mamba2_config config_;
  models::mamba2_layer<T> layer_;
  std::vector<T> a_;   // A = −exp(A_log)
  matrix<T> taps_;     // conv1d taps by lag
};

// The mamba2_mixer of a Mamba2 module's state_dict. Tensors, with d_in_proj =
// 2·d_mlp + 2·d_ssm + 2·ngroups·d_state + nheads and conv_dim = d_ssm +
// 2·ngroups·d_state: in_proj.weight (d_in_proj, d_model), in_proj.bias when
// stored (bias = True), conv1d.weight (conv_dim, 1, d_conv), conv1d.bias when
// stored (conv_bias), dt_bias (nheads), A_log (nheads), D (nheads, or d_ssm with
// D_has_hdim), norm.weight (d_ssm), out_proj.weight (d_model, d_mlp + d_ssm),
// out_proj.bias when stored. d_ssm is norm.weight's size, headdim = d_ssm /
// nheads, d_mlp from in_proj and out_proj.
template <class T, tensor_source Source>
[[nodiscard]] mamba2_mixer<T> load_mamba2_mixer(const Source& src, const mamba2_mixer_options& o = {}) {
  detail::param_reader r(src, "Mamba2", o.prefix);
  if (!o.rmsnorm)
    r.unsupported("rmsnorm", "false", "z gating the scan output is not modeled; the gated RMSNorm (rmsnorm = True) is");
  if (o.norm_before_gate)
    r.unsupported("norm_before_gate", "true", "the norm is modeled after the gate, RMSNormGated's default");
  if (o.ngroups <= 0) r.unsupported("ngroups", std::to_string(o.ngroups), "expected > 0");
  if (o.chunk_size <= 0) r.unsupported("chunk_size", std::to_string(o.chunk_size), "expected > 0");
  if (!(o.dt_min >= 0 && o.dt_min < o.dt_max))
    r.unsupported("dt_limit", "(" + std::to_string(o.dt_min) + ", " + std::to_string(o.dt_max) + ")", "expected 0 <= min < max");
  if (!(o.norm_eps >= 0)) r.unsupported("norm_eps", std::to_string(o.norm_eps), "expected >= 0");
  if (r.has("x_proj.weight") || r.has("dt_proj.weight"))
    r.fail("tensor '" + r.full(r.has("x_proj.weight") ? "x_proj.weight" : "dt_proj.weight") +
           "' is stored: a Mamba (Mamba-1) layer, load it with io::load_mamba_mixer");

  // Sizes from the shapes, all checked before anything is read.
  const auto a_shape = r.shape("A_log", "log(−A), one per head (nheads,)");
  if (a_shape.size() != 1 || a_shape[0] <= 0)
    r.fail("tensor '" + r.full("A_log") + "' has shape " + detail::shape_text(a_shape) + ", expected (nheads,)");
  const index_t Hd = a_shape[0];
  const auto nw_shape = r.shape("norm.weight", "the gated RMSNorm's weight (d_ssm,)");
  if (nw_shape.size() != 1 || nw_shape[0] <= 0 || nw_shape[0] % Hd != 0)
    r.fail("tensor '" + r.full("norm.weight") + "' has shape " + detail::shape_text(nw_shape) +
           ", expected (d_ssm,) with d_ssm a multiple of nheads = " + std::to_string(Hd));
  const index_t S = nw_shape[0], P = S / Hd;
  const auto in_shape = r.shape("in_proj.weight", "in_proj (d_in_proj, d_model)");
  const auto conv_shape = r.shape("conv1d.weight", "the depthwise conv over xBC (conv_dim, 1, d_conv)");
  const auto out_shape = r.shape("out_proj.weight", "out_proj (d_model, d_mlp + d_ssm)");
  if (in_shape.size() != 2 || in_shape[1] <= 0)
    r.fail("tensor '" + r.full("in_proj.weight") + "' has shape " + detail::shape_text(in_shape) + ", expected (d_in_proj, d_model)");
  const index_t dm = in_shape[1];
  if (conv_shape.size() != 3 || conv_shape[1] != 1 || conv_shape[2] <= 0 || conv_shape[0] <= S || (conv_shape[0] - S) % 2 != 0)
    r.fail("tensor '" + r.full("conv1d.weight") + "' has shape " + detail::shape_text(conv_shape) + ", expected (" +
           std::to_string(S) + " + 2·ngroups·d_state, 1, d_conv)");
  const index_t X = conv_shape[0], GN = (X - S) / 2, K = conv_shape[2];
  if (out_shape.size() != 2 || out_shape[0] != dm || out_shape[1] < S)
    r.fail("tensor '" + r.full("out_proj.weight") + "' has shape " + detail::shape_text(out_shape) + ", expected (" +
           std::to_string(dm) + ", d_mlp + " + std::to_string(S) + ")");
  const index_t M = out_shape[1] - S;
  if (GN % o.ngroups != 0)
    r.unsupported("ngroups", std::to_string(o.ngroups),
                  "it does not divide ngroups·d_state = " + std::to_string(GN) + " (conv1d's channels less d_ssm, halved)");
  if (Hd % o.ngroups != 0)
    r.unsupported("ngroups", std::to_string(o.ngroups), "it does not divide nheads = " + std::to_string(Hd));
  const index_t rows = 2 * M + S + X + Hd;
  r.expect("in_proj.weight", {rows, dm}, "in_proj (2·d_mlp + 2·d_ssm + 2·ngroups·d_state + nheads, d_model)");
  r.expect("conv1d.weight", conv_shape, "the depthwise conv over xBC");
  r.expect("out_proj.weight", out_shape, "out_proj");
  r.expect("norm.weight", {S}, "the gated RMSNorm's weight");
  r.expect("A_log", {Hd}, "log(−A)");
  r.expect("dt_bias", {Hd}, "the Δ bias, one per head");
  const auto d_shape = r.shape("D", "the D skip (nheads,), or (d_ssm,) with D_has_hdim");
  if (d_shape != std::vector<index_t>{Hd} && d_shape != std::vector<index_t>{S})
    r.fail("tensor '" + r.full("D") + "' has shape " + detail::shape_text(d_shape) + ", expected " +
           detail::shape_text({Hd}) + " (per head) or " + detail::shape_text({S}) + " (D_has_hdim: per channel)");
  r.expect("D", d_shape, "the D skip");
  const bool in_bias = r.has("in_proj.bias"), conv_bias = r.has("conv1d.bias"), out_bias = r.has("out_proj.bias");
  if (in_bias) r.expect("in_proj.bias", {rows}, "in_proj bias");
  if (conv_bias) r.expect("conv1d.bias", {X}, "conv1d bias");
  if (out_bias) r.expect("out_proj.bias", {dm}, "out_proj bias");
  const index_t group = o.norm_group_size == 0 ? S / o.ngroups : o.norm_group_size;
  if (group <= 0 || S % group != 0)
    r.unsupported("norm_group_size", std::to_string(o.norm_group_size), "it does not divide d_ssm = " + std::to_string(S));

  models::mamba2_config c;
  c.hidden_size = dm, c.num_heads = Hd, c.head_dim = P, c.state_size = GN / o.ngroups, c.n_groups = o.ngroups;
  c.conv_kernel = K, c.chunk_size = o.chunk_size, c.d_mlp = M, c.norm_group_size = group;
  c.dt_min = o.dt_min, c.dt_max = o.dt_max, c.norm_eps = o.norm_eps;
  c.use_bias = in_bias || out_bias, c.use_conv_bias = conv_bias;

  auto vec = [&](std::string_view name) {
    std::vector<T> out;
    for (double x : r.read(name)) out.push_back(static_cast<T>(x));
    return out;
  };
  auto mat = [&](std::string_view name, index_t rows_, index_t cols) {
    const auto v = r.read(name);
    matrix<T> out(rows_, cols);
    for (index_t k = 0; k < rows_ * cols; ++k) out.data()[k] = static_cast<T>(v[static_cast<std::size_t>(k)]);
    return out;
  };
  models::mamba2_layer<T> l;
  l.in_proj = mat("in_proj.weight", rows, dm);
  if (in_bias) l.in_proj_bias = vec("in_proj.bias");
  l.conv_weight = mat("conv1d.weight", X, K);
  if (conv_bias) l.conv_bias = vec("conv1d.bias");
  l.dt_bias = vec("dt_bias");
  l.a_log = vec("A_log");
  l.skip = vec("D");
  l.norm_weight = vec("norm.weight");
  l.out_proj = mat("out_proj.weight", dm, M + S);
  if (out_bias) l.out_proj_bias = vec("out_proj.bias");
  return mamba2_mixer<T>(std::move(c), std::move(l));
}

template <class T>
[[nodiscard]] mamba2_mixer<T> load_mamba2_mixer(const std::filesystem::path& file, const mamba2_mixer_options& o = {}) {
  return load_mamba2_mixer<T>(safetensors_file(file), o);
}

}  // namespace mixlens::io
