// What Model.attention, VisionModel.attention, mixlens.hf.attention and Model.gradients compute, written once against the
// backend so that the host build (models.cpp) and the CUDA build (device.cu) share
// it: per analysed layer the channel aggregate of its matrices (and the matrices
// when asked), then the raw attention averaged over the layers and the rollout;
// with rows only those rows, and no L × L array. Nothing here knows Python: the
// results are result_arrays, in the memory of the backend that made them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/analysis/layer_maps.hpp"
#include "results.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba2_backward.hpp"
#include "mixlens/models/mamba2_forward.hpp"
#include "mixlens/models/mamba_backward.hpp"
#include "mixlens/models/vim_attention.hpp"
#include "mixlens/models/vim_backward.hpp"
#include "mixlens/models/vim_forward.hpp"

namespace mixlens::python {

// Selected rows instead of whole maps (Model.attention's rows): the positions
// and what the raw rows are normalized by (the whole tensor's range, or the rows').
struct row_selection {
  std::vector<index_t> rows;  // empty: the whole maps
  bool tensor_range = true;
};

template <class T>
struct attention_data {
  std::vector<index_t> rows;  // the selected rows (empty: whole maps)
  result_array<T> logits, raw, rollout;  // raw, rollout: empty without layers; rollout also with rows
  std::vector<std::pair<index_t, result_array<T>>> maps, alpha;
};

// True for a backend whose copies of a layer's matrices (the aggregates'
// host_copy) stay in its own memory (device.cu's resident_backend).
template <class Backend>
constexpr bool copies_stay_on_backend = false;

// The per-layer body of mixlens-attn's run_on: add(signals) for every layer the
// forward pass hands over (it keeps the analysed ones), then finish(logits).
template <class Backend>
class attention_collector {
 public:
  using T = typename Backend::value_type;

  attention_collector(const Backend& be, int device, index_t L, const std::vector<index_t>& layers,
                      const std::vector<index_t>& save, models::attention_form form, channel_reduction reduction,
                      row_selection rows = {})
      : be_(be), device_(device), L_(L), R_(static_cast<index_t>(rows.rows.size())), layers_(layers), save_(save),
        form_(form), reduction_(reduction), rows_(std::move(rows)), minmax_(be.alloc(3)), row_minmax_(be.alloc(3)) {
    if (R_) row_maps_.emplace(be, R_, L);
    else maps_.emplace(be, L);
    data_.rows = rows_.rows;
  }

  [[nodiscard]] bool wants(index_t layer) const { return contains(layers_, layer); }

  template <class Signals>
  void add(const Signals& s) {
    if (!wants(s.layer)) return;
    if (form_ == models::attention_form::paper) add(s.layer, s.ssm());
    else add(s.layer, models::unified_operator(be_, s, {.offset = false}));
  }

  // A Vision Mamba layer: the combined matrices of its two branches, scale · (M_f + J·M_b·J).
  void add(const models::vim_layer_signals<T>& s) {
    if (!wants(s.layer)) return;
    if (form_ == models::attention_form::paper) add(s.layer, s.forward.ssm(), s.backward.ssm(), s.scale);
    else
      add(s.layer, models::unified_operator(be_, s.forward, {.offset = false}),
          models::unified_operator(be_, s.backward, {.offset = false}), s.scale);
  }

  // logits_shape: (L, V) of a language model, (classes) of a classifier.
  [[nodiscard]] attention_data<T> finish(typename Backend::template array<T> logits,
                                         std::vector<std::size_t> logits_shape) {
    data_.logits = keep_result(std::move(logits), std::move(logits_shape), device_);
    const index_t n = (R_ ? R_ : L_) * L_;
    if (R_ && row_maps_->layers()) {
      auto raw = be_.alloc(n);
      row_maps_->raw(raw.data());
      data_.raw = keep_result(std::move(raw), {size(R_), size(L_)}, device_);
    } else if (!R_ && maps_->layers()) {
      auto raw = be_.alloc(n), roll = be_.alloc(n);
      maps_->raw(raw.data());
      be_.copy(maps_->rollout(), n, roll.data());
      data_.raw = keep_result(std::move(raw), {size(L_), size(L_)}, device_);
      data_.rollout = keep_result(std::move(roll), {size(L_), size(L_)}, device_);
    }
    be_.synchronize();
    return std::move(data_);
  }

 private:
  static bool contains(const std::vector<index_t>& v, index_t k) { return std::find(v.begin(), v.end(), k) != v.end(); }
  static std::size_t size(index_t n) { return static_cast<std::size_t>(n); }

  // The matrices' copy (alpha): backend memory where the backend keeps its copies there, else host memory.
  [[nodiscard]] auto copy_buffer(index_t n) const {
    if constexpr (copies_stay_on_backend<Backend>) return be_.alloc(n);
    else return std::vector<T>(size(n));
  }

  [[nodiscard]] std::span<const index_t> positions() const { return std::span<const index_t>(rows_.rows); }

  template <class Op>
  void add(index_t layer, const Op& op) {
    add_layer(
        layer, view_of(op).out_channels(),
        [&](T* map, T* minmax, T* copy) { analysis::aggregate_operator(be_, op, reduction_, map, minmax, copy); },
        [&](T* map, T* minmax, T* copy) { analysis::aggregate_rows(be_, op, positions(), reduction_, map, minmax, copy); },
        [&](T* minmax) { analysis::tensor_range(be_, op, minmax); },
        [&](const T* minmax) { analysis::check_finite_blocks(be_, op, minmax, "mixlens::analysis::raw_attention"); });
  }

  template <class Forward, class Backward>
  void add(index_t layer, const Forward& f, const Backward& b, T scale) {
    add_layer(
        layer, view_of(f).out_channels(),
        [&](T* map, T* minmax, T* copy) {
          analysis::aggregate_bidirectional(be_, f, b, scale, reduction_, map, minmax, copy);
        },
        [&](T* map, T* minmax, T* copy) {
          analysis::aggregate_rows_bidirectional(be_, f, b, scale, positions(), reduction_, map, minmax, copy);
        },
        [&](T* minmax) { analysis::tensor_range_bidirectional(be_, f, b, scale, minmax); },
        [&](const T* minmax) { analysis::check_finite_blocks(be_, f, b, minmax, "mixlens::analysis::raw_attention"); });
  }

  // One layer of D matrices: aggregate(map, minmax, copy or nullptr) the whole
  // maps, aggregate_rows(…) the selected rows, range(minmax) the whole tensor's
  // range, check_finite(minmax) throws naming a non-finite entry.
  template <class Aggregate, class AggregateRows, class Range, class CheckFinite>
  void add_layer(index_t layer, index_t D, Aggregate&& aggregate, AggregateRows&& aggregate_rows, Range&& range_of,
                 CheckFinite&& check_finite) {
    const bool keep = contains(save_, layer);
    const index_t R = R_ ? R_ : L_;
    auto map = be_.alloc(R * L_);
    auto alpha = copy_buffer(keep ? D * R * L_ : 0);
    const T* range = minmax_.data();
    if (R_) {
      aggregate_rows(map.data(), row_minmax_.data(), keep ? alpha.data() : nullptr);
      if (rows_.tensor_range) range_of(minmax_.data());
      else range = row_minmax_.data();
    } else {
      aggregate(map.data(), minmax_.data(), keep ? alpha.data() : nullptr);
    }
    try {  // raw attention is undefined on NaN / inf: name the first one
      check_finite(range);
    } catch (const mixlens::error& e) {
      throw mixlens::error("layer " + std::to_string(layer) + ": " + e.what());
    }
    if (R_) row_maps_->add(map.data(), range);
    else maps_->add(map.data(), range);
    data_.maps.emplace_back(layer, keep_result(std::move(map), {size(R), size(L_)}, device_));
    if (keep) {
      const int where = copies_stay_on_backend<Backend> ? device_ : -1;
      data_.alpha.emplace_back(layer, keep_result(std::move(alpha), {size(D), size(R), size(L_)}, where));
    }
  }

  const Backend& be_;
  int device_;
  index_t L_, R_;
  std::vector<index_t> layers_, save_;
  models::attention_form form_;
  channel_reduction reduction_;
  row_selection rows_;
  std::optional<analysis::model_maps<Backend>> maps_;
  std::optional<analysis::model_row_maps<Backend>> row_maps_;
  typename Backend::template array<T> minmax_, row_minmax_;
  attention_data<T> data_;
};

// Model.attention: the forward pass on `be` with the collector as its observer.
template <class Backend, class Weights>
attention_data<typename Backend::value_type> run_attention(const Backend& be, const Weights& weights, int device,
                                                           std::span<const index_t> tokens,
                                                           const std::vector<index_t>& layers,
                                                           const std::vector<index_t>& save, models::attention_form form,
                                                           channel_reduction reduction, row_selection rows) {
  const auto L = static_cast<index_t>(tokens.size());
  attention_collector<Backend> collect(be, device, L, layers, save, form, reduction, std::move(rows));
  auto logits = models::mamba_forward(be, weights, tokens, [&](const auto& s) { collect.add(s); });
  return collect.finish(std::move(logits), {tokens.size(), static_cast<std::size_t>(weights.vocab_size())});
}

// VisionModel.attention: a Vision Mamba classifier's forward pass on `be`.
template <class Backend>
attention_data<typename Backend::value_type> run_vim_attention(
    const Backend& be, const models::vim_weights<typename Backend::value_type>& weights, int device,
    tensor_view<const typename Backend::value_type, 3> image, const std::vector<index_t>& layers,
    const std::vector<index_t>& save, models::attention_form form, channel_reduction reduction, row_selection rows) {
  attention_collector<Backend> collect(be, device, weights.config.sequence_length(), layers, save, form, reduction,
                                       std::move(rows));
  auto logits = models::vim_forward(be, weights, image, [&](const auto& s) { collect.add(s); });
  return collect.finish(std::move(logits), {static_cast<std::size_t>(weights.config.num_classes)});
}

// max |a − b| / max |b| over n values: how far a captured signal is from the one
// the library computes from the same projection.
template <class T>
double relative_deviation(const T* a, const T* b, index_t n) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// What a live model's forward handed to its hooks for one analysed layer, in
// the backend's memory and the library's layouts (channel-major): the mixer's
// in_proj output (in_proj rows × L), and the signal the check compares with the
// library's own (Mamba: the scan input u; Mamba-2: SSD(u) + D·u, the gated
// norm's input).
template <class T>
struct captured_layer {
  index_t layer = 0;
  const T* projection = nullptr;
  const T* check = nullptr;
};

// The maps from a live model's projections (mixlens.hf): each layer's branch is
// computed by the library from the captured in_proj output (mamba_branch, or
// Mamba-2's mamba2_mixer_from_projection) with the model's weights; `deviation`
// receives per layer the relative distance of the captured check signal from
// the library's. `logits`: the model's (L × V), in backend memory, kept as they are.
template <class Backend, class Weights>
attention_data<typename Backend::value_type> run_attention_from_projections(
    const Backend& be, const Weights& weights, int device, index_t L,
    const std::vector<captured_layer<typename Backend::value_type>>& captured, const std::vector<index_t>& layers,
    const std::vector<index_t>& save, models::attention_form form, channel_reduction reduction,
    typename Backend::template array<typename Backend::value_type> logits, std::vector<double>& deviation) {
  using T = typename Backend::value_type;
  const auto& cfg = weights.config;
  attention_collector<Backend> collect(be, device, L, layers, save, form, reduction);
  const auto check = [&](const T* captured_signal, const T* computed, index_t n) {
    const auto a = be.download(captured_signal, n), b = be.download(computed, n);
    deviation.push_back(relative_deviation(a.data(), b.data(), n));
  };
  if constexpr (std::is_same_v<std::remove_cvref_t<decltype(cfg)>, models::mamba_config>) {
    auto branch = models::alloc_mamba_branch(be, cfg, L);
    for (const auto& c : captured) {
      const auto s = models::mamba_branch(be, cfg, weights.layers[static_cast<std::size_t>(c.layer)], c.layer,
                                          c.projection, L, branch);
      check(c.check, s.u.data_handle(), cfg.intermediate_size * L);
      collect.add(s);
    }
  } else {
    models::mamba2_mixer_buffers<Backend, T> buf(be, cfg, L);
    for (const auto& c : captured) {
      be.copy(c.projection, cfg.in_proj_rows() * L, buf.zx.data());
      auto s = models::mamba2_mixer_from_projection(be, cfg, weights.layers[static_cast<std::size_t>(c.layer)], L, buf);
      s.layer = c.layer;
      check(c.check, s.ssm_out.data_handle(), cfg.ssm_channels() * L);
      collect.add(s);
    }
  }
  return collect.finish(std::move(logits), {static_cast<std::size_t>(L), static_cast<std::size_t>(weights.vocab_size())});
}

// Model.gradients: the gradients of one logit with respect to the activations
// (models::mamba_gradients), each in the layout of its forward signal: the
// embedding and the residual stream time-major (L × H), u, Δ and ssm_out
// channel-major (rows × L), B and C (groups × N × L). Layers hold (name, array)
// for the signals asked for.
template <class T>
struct gradients_data {
  models::gradient_target target;
  double value = 0;
  result_array<T> embedding;
  std::vector<std::vector<std::pair<std::string, result_array<T>>>> layers;
};

namespace detail {

// One branch's (or a language model's layer's) mixer gradients as (name, array) pairs.
template <class Arrays, class T>
void add_mixer_gradients(Arrays& a, std::size_t L, std::size_t N, int device, const std::string& suffix,
                         std::vector<std::pair<std::string, result_array<T>>>& out) {
  const auto add = [&](const char* name, auto& v, std::vector<std::size_t> shape) {
    if (v.size()) out.emplace_back(name + suffix, keep_result(std::move(v), std::move(shape), device));
  };
  const auto rows = [&](const auto& v) { return static_cast<std::size_t>(v.size()) / L; };
  add("u", a.u, {rows(a.u), L});
  add("delta", a.delta, {rows(a.delta), L});
  add("b", a.b, {rows(a.b) / N, N, L});
  add("c", a.c, {rows(a.c) / N, N, L});
  add("ssm_out", a.ssm_out, {rows(a.ssm_out), L});
}

}  // namespace detail

template <class Backend, class Weights>
gradients_data<typename Backend::value_type> run_gradients(const Backend& be, const Weights& w, int device,
                                                           std::span<const index_t> tokens,
                                                           models::gradient_target target,
                                                           const models::gradient_options& options) {
  using T = typename Backend::value_type;
  auto g = models::mamba_gradients(be, w, tokens, target, options);
  be.synchronize();
  const auto L = tokens.size(), H = static_cast<std::size_t>(w.config.hidden_size),
             N = static_cast<std::size_t>(w.config.state_size);
  gradients_data<T> d{g.target, g.value, {}, {}};
  if (g.embedding.size()) d.embedding = keep_result(std::move(g.embedding), {L, H}, device);
  for (auto& lg : g.layers) {
    auto& out = d.layers.emplace_back();
    if (lg.residual.size()) out.emplace_back("residual", keep_result(std::move(lg.residual), {L, H}, device));
    detail::add_mixer_gradients(lg, L, N, device, "", out);
  }
  return d;
}

// VisionModel.gradients: a Vision Mamba's (models::vim_gradients), the branches'
// mixer signals in each branch's own time, named with _f (forward) and _b (backward).
template <class Backend>
gradients_data<typename Backend::value_type> run_vim_gradients(
    const Backend& be, const models::vim_weights<typename Backend::value_type>& w, int device,
    tensor_view<const typename Backend::value_type, 3> image, index_t target_class,
    const models::gradient_options& options) {
  using T = typename Backend::value_type;
  auto g = models::vim_gradients(be, w, image, target_class, options);
  be.synchronize();
  const auto L = static_cast<std::size_t>(w.config.sequence_length()), E = static_cast<std::size_t>(w.config.hidden_size),
             N = static_cast<std::size_t>(w.config.state_size);
  gradients_data<T> d{g.target, g.value, {}, {}};
  if (g.embedding.size()) d.embedding = keep_result(std::move(g.embedding), {L, E}, device);
  for (auto& lg : g.layers) {
    auto& out = d.layers.emplace_back();
    if (lg.residual.size()) out.emplace_back("residual", keep_result(std::move(lg.residual), {L, E}, device));
    detail::add_mixer_gradients(lg.forward, L, N, device, "_f", out);
    detail::add_mixer_gradients(lg.backward, L, N, device, "_b", out);
  }
  return d;
}

}  // namespace mixlens::python
