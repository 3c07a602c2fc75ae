// mixlens.load and mixlens.Model: every language-model family the library reads
// (models/language_model.hpp), its forward pass, and the hidden attention of
// its layers as mixlens-attn computes it on the host: per layer the matrices and
// their channel mean, the raw attention averaged over layers and the rollout.
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "arrays.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/rows.hpp"
#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {
namespace {

using models::attention_form;

// What Model.attention returns.
struct attention_result {
  nb::object logits, raw, rollout, rows;  // rows: the selected positions (a list), or None
  std::vector<index_t> layers;
  std::string form, raw_range;
  nb::dict alpha, maps;  // layer → array
};

// The results in host memory, made with the GIL released.
template <class T>
struct attention_data {
  std::vector<index_t> rows;  // the selected rows (empty: whole maps)
  std::vector<T> logits, raw, roll;
  std::vector<std::pair<index_t, std::vector<T>>> maps;
  struct tensor3 {
    index_t layer, matrices;
    std::vector<T> values;
  };
  std::vector<tensor3> alpha;
};

// What Model.attribute returns.
struct attribution_output {
  std::string method;
  index_t position = 0, token = 0;
  double value = 0;
  nb::object scores, matrix;  // matrix: the whole rollout (L × L), or None
};

bool contains(const std::vector<index_t>& v, index_t k) { return std::find(v.begin(), v.end(), k) != v.end(); }

models::attribution_method method_of(std::string_view where, const std::string& name) {
  const auto m = models::parse_attribution_method(name);
  if (!m) fail(where, "method", models::attribution_method_list(), "'" + name + "'");
  return *m;
}

// The faithfulness curves as a dict: {'morf': {'logit', 'probability' (float64
// arrays), 'auc_logit', 'auc_probability'}, 'lerf': …, 'delta_logit',
// 'delta_probability'}.
nb::dict curves_dict(const analysis::faithfulness_result& r) {
  const auto curve = [](const analysis::perturbation_curve& c) {
    nb::dict d;
    d["logit"] = copy_output(c.logit.data(), {c.logit.size()}, framework::numpy);
    d["probability"] = copy_output(c.probability.data(), {c.probability.size()}, framework::numpy);
    d["auc_logit"] = c.auc_logit;
    d["auc_probability"] = c.auc_probability;
    return d;
  };
  nb::dict d;
  d["morf"] = curve(r.morf);
  d["lerf"] = curve(r.lerf);
  d["delta_logit"] = r.delta_logit;
  d["delta_probability"] = r.delta_probability;
  return d;
}

// Selected rows instead of whole maps (Model.attention's rows): the positions
// and what the raw rows are normalized by (the whole tensor's range, or the rows').
struct row_selection {
  std::vector<index_t> rows;  // empty: the whole maps
  bool tensor_range = true;
};

// The per-layer body of mixlens-attn's run_on, on the host backend: each
// analysed layer's maps (and its matrices when saved), then the raw attention
// averaged over the layers and the rollout; with rows only those rows of the
// maps, matrices and raw attention, and no L × L array.
template <class T>
class attention_collector {
 public:
  using backend = host_backend<T>;

  attention_collector(index_t L, const std::vector<index_t>& layers, const std::vector<index_t>& save,
                      attention_form form, channel_reduction reduction, row_selection rows = {})
      : L_(L), R_(static_cast<index_t>(rows.rows.size())), layers_(layers), save_(save), form_(form),
        reduction_(reduction), rows_(std::move(rows)), map_(be_.alloc(R_ ? R_ * L : L * L)),
        raw_(be_.alloc(R_ ? R_ * L : L * L)), minmax_(be_.alloc(3)), row_minmax_(be_.alloc(3)) {
    if (R_) row_maps_.emplace(be_, R_, L);
    else roll_.emplace(be_, L), raw_average_.emplace(be_, L * L);
    data_.rows = rows_.rows;
  }

  [[nodiscard]] bool wants(index_t layer) const { return contains(layers_, layer); }

  template <class Signals>
  void add(const Signals& s) {
    if (!wants(s.layer)) return;
    const bool keep = contains(save_, s.layer);
    std::vector<T> alpha;
    index_t D = 0;
    const T* range = minmax_.data();
    const auto maps = [&](const auto& op) {
      D = view_of(op).out_channels();
      if (keep) alpha.resize(static_cast<std::size_t>(D * (R_ ? R_ : L_) * L_));
      if (R_) {
        analysis::aggregate_rows(be_, op, std::span<const index_t>(rows_.rows), reduction_, map_.data(),
                                 row_minmax_.data(), keep ? alpha.data() : nullptr);
        if (rows_.tensor_range) analysis::tensor_range(be_, op, minmax_.data());
        else range = row_minmax_.data();
      } else {
        analysis::aggregate_operator(be_, op, reduction_, map_.data(), minmax_.data(), keep ? alpha.data() : nullptr);
      }
      try {  // raw attention is undefined on NaN / inf: name the first one
        analysis::check_finite_blocks(be_, op, range, "mixlens::analysis::raw_attention");
      } catch (const mixlens::error& e) {
        throw mixlens::error("layer " + std::to_string(s.layer) + ": " + e.what());
      }
    };
    if (form_ == attention_form::paper) maps(s.ssm());
    else maps(models::unified_operator(be_, s, {.offset = false}));
    if (R_) {
      row_maps_->add(map_.data(), range);
    } else {
      analysis::raw_attention(be_, map_.data(), minmax_.data(), L_, raw_.data());
      raw_average_->add(raw_.data());
      roll_->add(map_.data());
    }
    data_.maps.emplace_back(s.layer, std::vector<T>(map_.begin(), map_.end()));
    if (keep) data_.alpha.push_back({s.layer, D, std::move(alpha)});
  }

  [[nodiscard]] attention_data<T> finish(std::vector<T> logits) {
    data_.logits = std::move(logits);
    if (!layers_.empty() && R_) {
      row_maps_->raw(raw_.data());
      data_.raw.assign(raw_.begin(), raw_.end());
    } else if (!layers_.empty()) {
      raw_average_->result(raw_.data());
      data_.raw.assign(raw_.begin(), raw_.end());
      data_.roll.assign(roll_->result(), roll_->result() + L_ * L_);
    }
    return std::move(data_);
  }

 private:
  backend be_;
  index_t L_, R_;
  std::vector<index_t> layers_, save_;
  attention_form form_;
  channel_reduction reduction_;
  row_selection rows_;
  std::optional<analysis::rollout_accumulator<backend>> roll_;
  std::optional<analysis::map_average<backend>> raw_average_;
  std::optional<analysis::model_row_maps<backend>> row_maps_;
  typename backend::template array<T> map_, raw_, minmax_, row_minmax_;
  attention_data<T> data_;
};

template <class Model>
attention_data<typename Model::value_type> run_attention(const Model& model, const std::vector<index_t>& tokens,
                                                         const std::vector<index_t>& layers,
                                                         const std::vector<index_t>& save, attention_form form,
                                                         channel_reduction reduction, row_selection rows) {
  using T = typename Model::value_type;
  const auto weights = models::host_weights(model);
  attention_collector<T> collect(static_cast<index_t>(tokens.size()), layers, save, form, reduction, std::move(rows));
  auto logits = models::mamba_forward(host_backend<T>{}, weights.view(), std::span<const index_t>(tokens),
                                      [&](const auto& s) { collect.add(s); });
  return collect.finish(std::vector<T>(logits.begin(), logits.end()));
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

// What a live model's forward handed to its hooks, per analysed layer (host
// memory, the layouts of the library: channel-major): the mixer's in_proj
// output, and the signal the check compares with the library's own (Mamba:
// the scan input u; Mamba-2: SSD(u) + D·u, the gated norm's input).
template <class T>
struct captured_layer {
  index_t layer = 0;
  std::vector<T> projection, check;
};

// The maps from a live model's projections: each layer's branch is computed by
// the library from the captured in_proj output (mamba_branch, or Mamba-2's
// mamba2_mixer_from_projection) with the model's weights; `deviation` receives
// per layer the relative distance of the captured check signal from the
// library's.
template <class T>
attention_data<T> run_attention_from_projections(const models::mamba_model<T>& model, index_t L,
                                                 const std::vector<captured_layer<T>>& captured,
                                                 const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                                 attention_form form, channel_reduction reduction,
                                                 std::vector<T> logits, std::vector<double>& deviation) {
  const host_backend<T> be;
  const auto weights = models::host_weights(model);
  const auto& cfg = model.config;
  auto branch = models::alloc_mamba_branch(be, cfg, L);
  attention_collector<T> collect(L, layers, save, form, reduction);
  for (const auto& c : captured) {
    const auto s = models::mamba_branch(be, cfg, weights.view().layers[static_cast<std::size_t>(c.layer)], c.layer,
                                        c.projection.data(), L, branch);
    deviation.push_back(relative_deviation(c.check.data(), s.u.data_handle(), cfg.intermediate_size * L));
    collect.add(s);
  }
  return collect.finish(std::move(logits));
}
template <class T>
attention_data<T> run_attention_from_projections(const models::mamba2_model<T>& model, index_t L,
                                                 const std::vector<captured_layer<T>>& captured,
                                                 const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                                 attention_form form, channel_reduction reduction,
                                                 std::vector<T> logits, std::vector<double>& deviation) {
  using backend = host_backend<T>;
  const backend be;
  const auto weights = models::host_weights(model);
  const auto& cfg = model.config;
  models::mamba2_mixer_buffers<backend, T> buf(be, cfg, L);
  attention_collector<T> collect(L, layers, save, form, reduction);
  for (const auto& c : captured) {
    std::copy(c.projection.begin(), c.projection.end(), buf.zx.begin());
    auto s = models::mamba2_mixer_from_projection(be, cfg, weights.view().layers[static_cast<std::size_t>(c.layer)],
                                                  L, buf);
    s.layer = c.layer;
    deviation.push_back(relative_deviation(c.check.data(), s.ssm_out.data_handle(), cfg.ssm_channels() * L));
    collect.add(s);
  }
  return collect.finish(std::move(logits));
}

// Token ids: a 1-D (or 1 × L) integer array, tensor or sequence.
std::vector<index_t> token_ids(nb::handle h, std::string_view where) {
  nb::object np = nb::module_::import_("numpy");
  nb::object arr;
  try {
    arr = np.attr("asarray")(h);
  } catch (const nb::python_error&) {
    fail(where, "tokens", "integer token ids (1-D array, tensor or sequence)", python_type(h));
  }
  if (nb::cast<std::size_t>(arr.attr("size")) == 0) return {};  // refused by check_tokens: "no tokens"
  const std::string kind = nb::cast<std::string>(arr.attr("dtype").attr("kind"));
  const auto shape = nb::cast<std::vector<index_t>>(arr.attr("shape"));
  const bool vector = shape.size() == 1 || (shape.size() == 2 && shape[0] == 1);
  if (kind != "i" && kind != "u")
    fail(where, "tokens", "integer token ids", "dtype " + str_of(arr.attr("dtype")));
  if (!vector) fail(where, "tokens", "a 1-D array of token ids (or 1 x L)", str_of(arr.attr("shape")));
  nb::object flat = np.attr("ascontiguousarray")(arr.attr("reshape")(-1), "dtype"_a = "int64");
  const auto a = nb::cast<in_array<std::int64_t>>(flat);
  return std::vector<index_t>(a.data(), a.data() + a.size());
}

attention_form form_of(const std::string& form) {
  if (form == "paper") return attention_form::paper;
  if (form == "unified") return attention_form::unified;
  fail("mixlens.Model.attention", "form", "'paper' or 'unified'", "'" + form + "'");
}

channel_reduction reduction_of(const std::string& r) {
  if (r == "mean") return channel_reduction::mean;
  if (r == "abs_mean") return channel_reduction::abs_mean;
  if (r == "relu_mean") return channel_reduction::relu_mean;
  fail("mixlens.Model.attention", "reduction", "'mean', 'abs_mean' or 'relu_mean'", "'" + r + "'");
}

nb::dict config_dict(const models::mamba_config& c) {
  nb::dict d;
  d["state_size"] = c.state_size;
  d["intermediate_size"] = c.intermediate_size;
  d["conv_kernel"] = c.conv_kernel;
  d["time_step_rank"] = c.time_step_rank;
  d["bc_dt_norm"] = c.bc_dt_norm;
  if (c.bc_dt_norm) d["mixer_rms_eps"] = c.mixer_rms_eps;
  return d;
}
nb::dict config_dict(const models::mamba2_config& c) {
  nb::dict d;
  d["num_heads"] = c.num_heads;
  d["head_dim"] = c.head_dim;
  d["state_size"] = c.state_size;
  d["n_groups"] = c.n_groups;
  d["conv_kernel"] = c.conv_kernel;
  d["chunk_size"] = c.chunk_size;
  d["d_mlp"] = c.d_mlp;
  d["norm_group_size"] = c.norm_group_size;
  d["dt_min"] = c.dt_min;
  d["dt_max"] = c.dt_max;
  return d;
}

class py_model {
 public:
  using any_model = std::variant<models::language_model<float>, models::language_model<double>>;

  py_model(any_model m, std::filesystem::path path) : model_(std::move(m)), path_(std::move(path)) {}

  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit([&](const auto& lm) -> decltype(auto) { return std::visit(f, lm); }, model_);
  }

  [[nodiscard]] std::string family() const {
    return visit([](const auto& m) { return std::string(m.config.family()); });
  }
  [[nodiscard]] std::string dtype() const { return model_.index() == 0 ? "float32" : "float64"; }
  [[nodiscard]] index_t num_layers() const { return visit([](const auto& m) { return m.num_layers(); }); }
  [[nodiscard]] index_t vocab_size() const { return visit([](const auto& m) { return m.vocab_size(); }); }
  [[nodiscard]] index_t parameter_count() const { return visit([](const auto& m) { return m.parameter_count(); }); }
  [[nodiscard]] std::vector<std::string> unused_tensors() const {
    return visit([](const auto& m) { return m.unused_tensors; });
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  [[nodiscard]] nb::dict config() const {
    return visit([&](const auto& m) {
      const auto& c = m.config;
      nb::dict d = config_dict(c);
      d["family"] = std::string(c.family());
      d["layout"] = c.naming == models::mamba_naming::state_spaces ? "state-spaces" : "Hugging Face";
      d["vocab_size"] = c.vocab_size;
      d["hidden_size"] = c.hidden_size;
      d["num_layers"] = c.num_layers;
      d["norm_eps"] = c.norm_eps;
      d["use_bias"] = c.use_bias;
      d["use_conv_bias"] = c.use_conv_bias;
      d["tie_embeddings"] = c.tie_embeddings;
      return d;
    });
  }

  [[nodiscard]] nb::object forward(nb::handle tokens) const {
    const auto ids = token_ids(tokens, "mixlens.Model.forward");
    const framework fw = framework_of(tokens);
    return visit([&](const auto& m) -> nb::object {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      const auto L = ids.size(), V = static_cast<std::size_t>(m.vocab_size());
      return make_output<T>({L, V}, fw, [&](T* out) {
        const auto logits = models::mamba_forward(m, std::span<const index_t>(ids));
        std::copy_n(logits.data(), logits.size(), out);
      });
    });
  }

  [[nodiscard]] attention_result attention(nb::handle tokens, std::optional<std::vector<index_t>> layers_arg,
                                           const std::string& form_name, nb::handle alpha_arg,
                                           const std::string& reduction_name, nb::handle rows_arg,
                                           const std::string& raw_range) const {
    constexpr std::string_view where = "mixlens.Model.attention";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const auto [layers, save] = selection(where, layers_arg, alpha_arg);
    if (raw_range != "tensor" && raw_range != "rows") fail(where, "raw_range", "'tensor' or 'rows'", "'" + raw_range + "'");
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      row_selection rows{row_positions(rows_arg, static_cast<index_t>(ids.size())), raw_range == "tensor"};
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
        data = run_attention(m, ids, layers, save, form, reduction, std::move(rows));
      }
      auto r = to_result(data, layers, form_name, static_cast<index_t>(ids.size()), m.vocab_size(), fw);
      r.raw_range = data.rows.empty() ? "tensor" : raw_range;
      return r;
    });
  }

  [[nodiscard]] attribution_output attribute(nb::handle tokens, const std::string& method_name,
                                             std::optional<index_t> target_position, std::optional<index_t> target_token,
                                             index_t start_layer, bool matrix, bool attn_grad_without_d,
                                             std::uint64_t seed) const {
    constexpr std::string_view where = "mixlens.Model.attribute";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const models::attribution_method method = method_of(where, method_name);
    const bool rolled = method == models::attribution_method::mamba_attr || method == models::attribution_method::attn_grad;
    if (matrix && !rolled)
      fail(where, "matrix", "False for method '" + method_name + "' (mamba-attr and attn-grad keep their whole rollout)",
           "True");
    if (attn_grad_without_d && method != models::attribution_method::attn_grad)
      fail(where, "attn_grad_without_d", "False for method '" + method_name + "' (it is attn-grad's)", "True");
    if (start_layer < 0 || start_layer >= num_layers())
      mixlens::detail::fail(where, "start_layer", "a layer in [0, " + std::to_string(num_layers()) + ")", start_layer);
    const models::gradient_target target{target_position.value_or(-1), target_token.value_or(-1)};
    const models::attribute_options options{
        .mamba_attr = {.start_layer = start_layer, .full_matrix = matrix, .unified_skip = !attn_grad_without_d},
        .seed = seed};
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      models::attribution_result r;
      {
        nb::gil_scoped_release release;
        r = models::attribute(m, std::span<const index_t>(ids), method, target, options);
      }
      const auto L = ids.size();
      const std::vector<T> scores(r.scores.begin(), r.scores.end()), full(r.matrix.begin(), r.matrix.end());
      return attribution_output{method_name, r.target.position, r.target.token, r.value,
                                copy_output(scores.data(), {L}, fw),
                                full.empty() ? nb::none() : copy_output(full.data(), {L, L}, fw)};
    });
  }

  [[nodiscard]] nb::dict faithfulness(nb::handle tokens, std::optional<std::vector<std::string>> method_names,
                                      index_t steps, const std::string& mode, index_t replace_token,
                                      std::optional<index_t> target_position, std::optional<index_t> target_token,
                                      index_t random_draws, std::uint64_t seed, index_t start_layer,
                                      bool attn_grad_without_d, int threads) const {
    constexpr std::string_view where = "mixlens.Model.faithfulness";
    const auto ids = token_ids(tokens, where);
    std::vector<models::attribution_method> methods;
    if (!method_names)
      for (std::size_t i = 0; i < models::attribution_method_count; ++i)
        methods.push_back(static_cast<models::attribution_method>(i));
    else
      for (const auto& n : *method_names)
        if (const auto m = method_of(where, n); !contains_method(methods, m)) methods.push_back(m);
    if (methods.empty()) fail(where, "methods", "at least one method", "an empty list");
    if (steps < 1) mixlens::detail::fail(where, "steps", "at least 1", steps);
    if (mode != "replace" && mode != "remove") fail(where, "mode", "'replace' or 'remove'", "'" + mode + "'");
    if (random_draws < 1) mixlens::detail::fail(where, "random_draws", "at least 1", random_draws);
    if (replace_token < 0 || replace_token >= vocab_size())
      mixlens::detail::fail(where, "replace_token", "a token in [0, " + std::to_string(vocab_size()) + ")", replace_token);
    if (start_layer < 0 || start_layer >= num_layers())
      mixlens::detail::fail(where, "start_layer", "a layer in [0, " + std::to_string(num_layers()) + ")", start_layer);
    if (attn_grad_without_d && !contains_method(methods, models::attribution_method::attn_grad))
      fail(where, "attn_grad_without_d", "False unless methods include 'attn-grad'", "True");
    const models::faithfulness_run_options run{
        .curves = {.steps = steps,
                   .mode = mode == "remove" ? analysis::perturbation_mode::remove : analysis::perturbation_mode::replace,
                   .replacement_token = replace_token},
        .random_draws = random_draws,
        .attribute = {.mamba_attr = {.start_layer = start_layer, .unified_skip = !attn_grad_without_d}, .seed = seed}};
    const models::gradient_target target{target_position.value_or(-1), target_token.value_or(-1)};
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      std::vector<models::method_faithfulness> results;
      {
        nb::gil_scoped_release release;
        const auto weights = models::host_weights(m);
        results = models::faithfulness_of_methods(
            host_backend<T>{}, weights.view(), std::span<const index_t>(ids),
            std::span<const models::attribution_method>(methods), target, run,
            [&](std::span<const analysis::perturbed_sequence> batch, index_t token) {
              return models::target_evaluator(m, token, threads)(batch);
            });
      }
      nb::dict out, per_method;
      out["position"] = results.front().attribution.target.position;
      out["token"] = results.front().attribution.target.token;
      out["value"] = results.front().attribution.value;
      for (const auto& r : results) {
        nb::dict d = curves_dict(r.result);
        if (r.method != models::attribution_method::random)
          d["scores"] = copy_output(r.attribution.scores.data(), {r.attribution.scores.size()}, framework::numpy);
        per_method[nb::str(std::string(models::to_string(r.method)).c_str())] = d;
      }
      out["methods"] = per_method;
      return out;
    });
  }

  // mixlens.hf's entry: the maps from what a live model's forward handed to
  // its hooks (mixlens/hf.py arranges them): per layer of `layers` its in_proj
  // output (in_proj_rows × L) and check signal (Mamba: u, D × L; Mamba-2:
  // SSD(u) + D·u, H·P × L), and the model's logits (L × V). Returns the
  // Attention and per layer the check signal's relative deviation from the
  // library's.
  [[nodiscard]] std::pair<attention_result, std::vector<double>> attention_from_capture(
      const std::vector<index_t>& layers_arg, const std::vector<nb::object>& projections,
      const std::vector<nb::object>& checks, nb::handle logits_arg, const std::string& form_name, nb::handle alpha_arg,
      const std::string& reduction_name) const {
    constexpr std::string_view where = "mixlens.hf.attention";
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const auto [layers, save] = selection(where, layers_arg, alpha_arg);
    if (projections.size() != layers_arg.size() || checks.size() != layers_arg.size() || layers != layers_arg)
      mixlens::detail::fail(where, "projections",
                            "one projection and one check per layer, layers ascending and distinct (" +
                                std::to_string(layers_arg.size()) + " layers)",
                            std::to_string(projections.size()) + " projections, " + std::to_string(checks.size()) +
                                " checks");
    return visit([&](const auto& m) {
      using M = std::remove_cvref_t<decltype(m)>;
      using T = typename M::value_type;
      const auto logits = get<T>(logits_arg, where, "logits");
      check_ndim(where, "logits", logits, 2, "L x V");
      const index_t L = static_cast<index_t>(logits.shape(0)), V = m.vocab_size();
      if (static_cast<index_t>(logits.shape(1)) != V)
        mixlens::detail::fail(where, "logits", "vocab_size = " + std::to_string(V) + " columns",
                              static_cast<index_t>(logits.shape(1)));
      index_t rows = 0, check_rows = 0;
      if constexpr (std::is_same_v<M, models::mamba_model<T>>)
        rows = 2 * m.config.intermediate_size, check_rows = m.config.intermediate_size;
      else
        rows = m.config.in_proj_rows(), check_rows = m.config.ssm_channels();
      std::vector<captured_layer<T>> captured;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::string name = "projections[" + std::to_string(i) + "]", check_name = "checks[" + std::to_string(i) + "]";
        const auto a = get<T>(projections[i], where, name), c = get<T>(checks[i], where, check_name);
        check_ndim(where, name, a, 2, "in_proj rows x L");
        check_ndim(where, check_name, c, 2, "channels x L");
        for (const auto& [arr, arg, want] : {std::tuple{&a, &name, rows}, std::tuple{&c, &check_name, check_rows}})
          if (static_cast<index_t>(arr->shape(0)) != want || static_cast<index_t>(arr->shape(1)) != L)
            mixlens::detail::fail(where, *arg, "shape (" + std::to_string(want) + ", " + std::to_string(L) + ")",
                                  "shape (" + std::to_string(arr->shape(0)) + ", " + std::to_string(arr->shape(1)) + ")");
        captured.push_back({layers[i], std::vector<T>(a.data(), a.data() + a.size()), std::vector<T>(c.data(), c.data() + c.size())});
      }
      std::vector<double> deviation;
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
        data = run_attention_from_projections(m, L, captured, layers, save, form, reduction,
                                              std::vector<T>(logits.data(), logits.data() + logits.size()), deviation);
      }
      return std::pair{to_result(data, layers, form_name, L, V, framework_of(logits_arg)), deviation};
    });
  }

 private:
  [[nodiscard]] static bool contains_method(const std::vector<models::attribution_method>& v, models::attribution_method m) {
    return std::find(v.begin(), v.end(), m) != v.end();
  }

  // Model.attention's rows: None (whole maps), 'last', a comma-separated str as
  // --rows takes it, an int or a sequence of ints (and 'last'); resolved by
  // models::resolve_rows, whose errors name `rows`.
  [[nodiscard]] static std::vector<index_t> row_positions(nb::handle rows, index_t L) {
    if (is_none(rows)) return {};
    std::string text;
    if (nb::isinstance<nb::str>(rows)) {
      text = nb::cast<std::string>(rows);
    } else if (nb::isinstance<nb::int_>(rows)) {
      text = str_of(rows);
    } else {
      if (!nb::isinstance<nb::sequence>(rows))
        fail("mixlens.Model.attention", "rows", "None, 'last', a position or a sequence of positions", python_type(rows));
      bool first = true;
      for (nb::handle item : nb::cast<nb::sequence>(rows)) {
        if (!nb::isinstance<nb::str>(item) && !nb::isinstance<nb::int_>(item))
          fail("mixlens.Model.attention", "rows", "positions (int) or 'last'", python_type(item));
        text += (first ? "" : ",") + str_of(item);
        first = false;
      }
    }
    return models::resolve_rows(text, L, false, -1, "mixlens.Model.attention: rows");
  }

  // The analysed layers (default all; sorted, distinct, in range) and those whose
  // matrices are returned (alpha: True for all, False for none, or a list).
  [[nodiscard]] std::pair<std::vector<index_t>, std::vector<index_t>> selection(
      std::string_view where, std::optional<std::vector<index_t>> layers_arg, nb::handle alpha_arg) const {
    const index_t layer_count = num_layers();
    std::vector<index_t> layers;
    if (!layers_arg) {
      for (index_t k = 0; k < layer_count; ++k) layers.push_back(k);
    } else {
      for (index_t k : *layers_arg)
        if (k < 0 || k >= layer_count)
          mixlens::detail::fail(where, "layers", "layer indices in [0, " + std::to_string(layer_count) + ")", k);
      layers = *layers_arg;
      std::sort(layers.begin(), layers.end());
      layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    }
    std::vector<index_t> save;
    if (nb::isinstance<nb::bool_>(alpha_arg)) {
      if (nb::cast<bool>(alpha_arg)) save = layers;
    } else {
      std::vector<index_t> wanted;
      if (!nb::try_cast(alpha_arg, wanted))
        fail(where, "alpha", "True, False or a list of layer indices", python_type(alpha_arg));
      for (index_t k : wanted)
        if (!contains(layers, k)) mixlens::detail::fail(where, "alpha", "layers among the analysed ones (layers)", k);
      save = wanted;
    }
    return {layers, save};
  }

  template <class T>
  [[nodiscard]] static attention_result to_result(const attention_data<T>& data, const std::vector<index_t>& layers,
                                                  const std::string& form_name, index_t L_, index_t V, framework fw) {
    const auto L = static_cast<std::size_t>(L_);
    const std::size_t R = data.rows.empty() ? L : data.rows.size();  // the rows of every map
    attention_result r;
    r.layers = layers;
    r.form = form_name;
    r.raw_range = "tensor";
    r.rows = data.rows.empty() ? nb::none() : nb::object(nb::cast(data.rows));
    r.logits = copy_output(data.logits.data(), {L, static_cast<std::size_t>(V)}, fw);
    r.raw = layers.empty() ? nb::none() : copy_output(data.raw.data(), {R, L}, fw);
    r.rollout = layers.empty() || !data.rows.empty() ? nb::none() : copy_output(data.roll.data(), {L, L}, fw);
    for (const auto& [k, map] : data.maps) r.maps[nb::int_(k)] = copy_output(map.data(), {R, L}, fw);
    for (const auto& a : data.alpha)
      r.alpha[nb::int_(a.layer)] = copy_output(a.values.data(), {static_cast<std::size_t>(a.matrices), R, L}, fw);
    return r;
  }

  any_model model_;
  std::filesystem::path path_;
};

std::unique_ptr<py_model> load(const std::filesystem::path& path, nb::handle dtype) {
  std::string name = "float32";
  if (!is_none(dtype)) {
    try {
      name = str_of(nb::module_::import_("numpy").attr("dtype")(dtype));
    } catch (const nb::python_error&) {
      name = str_of(dtype);
    }
  }
  if (name != "float32" && name != "float64") fail("mixlens.load", "dtype", "float32 or float64", name);
  py_model::any_model m = [&]() -> py_model::any_model {
    nb::gil_scoped_release release;
    if (name == "float32") return models::load_language_model<float>(path);
    return models::load_language_model<double>(path);
  }();
  return std::make_unique<py_model>(std::move(m), path);
}

}  // namespace

void bind_models(nb::module_& m) {
  nb::class_<attention_result>(m, "Attention",
                               "The hidden attention of a model on one token sequence, as mixlens-attn writes it.")
      .def_prop_ro("logits", [](const attention_result& r) { return r.logits; },
                   nb::sig("def logits(self) -> numpy.typing.NDArray[typing.Any]"), "Logits (L × V).")
      .def_ro("layers", &attention_result::layers, "The analysed layers, ascending.")
      .def_ro("form", &attention_result::form, "'paper' or 'unified'.")
      .def_prop_ro("rows", [](const attention_result& r) { return r.rows; },
                   nb::sig("def rows(self) -> list[int] | None"),
              "The selected rows (ascending positions; rows.json) when `rows` was given, else None: then every\n"
              "map holds only those rows (maps R × L, alpha D × R × L, raw R × L) and rollout is None.")
      .def_ro("raw_range", &attention_result::raw_range,
              "What raw attention is normalized by: 'tensor' (each layer's whole tensor, always without rows)\n"
              "or 'rows' (the selected rows' own range).")
      .def_prop_ro("alpha", [](const attention_result& r) { return r.alpha; },
                   nb::sig("def alpha(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"),
              "Layer → its matrices (matrices × L × L; alpha_{k}.npy): per channel (Mamba; Mamba-2's unified\n"
              "form) or per head (Mamba-2's paper form); only the layers asked for with `alpha`.")
      .def_prop_ro("maps", [](const attention_result& r) { return r.maps; },
                   nb::sig("def maps(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"), "Layer → the channel aggregate of its matrices (L × L; alpha_{k}.png).")
      .def_prop_ro("raw", [](const attention_result& r) { return r.raw; },
                   nb::sig("def raw(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Raw attention (L × L; raw.npy): each layer's map min–max normalized by its tensor's range,\n"
              "averaged over the analysed layers; None when no layer is analysed. With rows: those rows (R × L;\n"
              "raw_rows.npy, or raw_rows_rowrange.npy for raw_range='rows').")
      .def_prop_ro("rollout", [](const attention_result& r) { return r.rollout; },
                   nb::sig("def rollout(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Attention rollout (L × L; rollout.npy): rownorm(I + map_last) ⋯ rownorm(I + map_first);\n"
              "None when no layer is analysed, and with rows (every row needs every layer's whole map).")
      .def("__repr__", [](const attention_result& r) {
        return "<mixlens.Attention " + r.form + ", " + std::to_string(r.layers.size()) + " layer(s)>";
      });

  nb::class_<attribution_output>(m, "Attribution", "An explanation of one logit over the input positions (Model.attribute).")
      .def_ro("method", &attribution_output::method, "The method's name, as mixlens-attn --method spells it.")
      .def_ro("position", &attribution_output::position, "The target logit's position P.")
      .def_ro("token", &attribution_output::token, "The target logit's token T.")
      .def_ro("value", &attribution_output::value, "logits[P][T] of the unperturbed forward pass.")
      .def_prop_ro("scores", [](const attribution_output& a) { return a.scores; },
                   nb::sig("def scores(self) -> numpy.typing.NDArray[typing.Any]"),
                   "The explanation over the input positions (L; attribution.npy).")
      .def_prop_ro("matrix", [](const attribution_output& a) { return a.matrix; },
                   nb::sig("def matrix(self) -> numpy.typing.NDArray[typing.Any] | None"),
                   "The whole rollout (L × L; mamba_attr.npy / attn_grad.npy) with matrix=True, else None.")
      .def("__repr__", [](const attribution_output& a) {
        return "<mixlens.Attribution " + a.method + " of logits[" + std::to_string(a.position) + "][" +
               std::to_string(a.token) + "]>";
      });

  nb::class_<py_model>(m, "Model", "A Mamba, Falcon-Mamba or Mamba-2 language model loaded by mixlens.load.")
      .def_prop_ro("family", &py_model::family, "'Mamba', 'Falcon-Mamba' or 'Mamba-2'.")
      .def_prop_ro("dtype", &py_model::dtype, "'float32' or 'float64': weights and arithmetic.")
      .def_prop_ro("num_layers", &py_model::num_layers)
      .def_prop_ro("vocab_size", &py_model::vocab_size)
      .def_prop_ro("parameter_count", &py_model::parameter_count)
      .def_prop_ro("unused_tensors", &py_model::unused_tensors,
                   "Checkpoint tensors the model does not use (mixlens-attn warns about them).")
      .def_prop_ro("path", &py_model::path)
      .def_prop_ro("config", &py_model::config, "The fields of config.json the model uses, as a dict.")
      .def("forward", &py_model::forward, "tokens"_a,
           nb::sig("def forward(self, tokens: numpy.typing.ArrayLike) -> numpy.typing.NDArray[typing.Any]"),
           "Logits (L × V) for token ids (1-D integer array, tensor or sequence).")
      .def("attention", &py_model::attention, "tokens"_a, "layers"_a = nb::none(), "form"_a = "paper",
           "alpha"_a = true, "reduction"_a = "mean", "rows"_a = nb::none(), "raw_range"_a = "tensor",
           nb::sig("def attention(self, tokens: numpy.typing.ArrayLike, layers: collections.abc.Sequence[int] | None = None, "
                   "form: str = 'paper', alpha: bool | collections.abc.Sequence[int] = True, "
                   "reduction: str = 'mean', rows: str | int | collections.abc.Sequence[int | str] | None = None, "
                   "raw_range: str = 'tensor') -> Attention"),
           "Runs the model on tokens and returns mixlens.Attention: the logits and, for each layer of\n"
           "`layers` (default all), its hidden attention in `form` — 'paper': S6's α per channel (Mamba-2:\n"
           "per head); 'unified': the whole block diag(g)(α + D)diag(σ)M_conv per channel — with the\n"
           "channel aggregate (`reduction`: 'mean' as mixlens-attn, 'abs_mean', 'relu_mean'), the raw\n"
           "attention and the rollout over those layers. `alpha`: True returns every analysed layer's\n"
           "matrices, False none, a list those layers'. `rows` ('last', positions, or a str as --rows takes it,\n"
           "'last,0,7'): only those rows of every map, matrix and the raw attention, straight from the signals\n"
           "(O(D·R·L·N) per layer, no L × L array) and no rollout; `raw_range` 'tensor' normalizes the raw rows\n"
           "by each layer's whole-tensor range (one pass over every entry: the time of the whole maps, not\n"
           "their memory), 'rows' by the rows' own range.")
      .def("attribute", &py_model::attribute, "tokens"_a, "method"_a, "target_position"_a = nb::none(),
           "target_token"_a = nb::none(), "start_layer"_a = 0, "matrix"_a = false, "attn_grad_without_d"_a = false,
           "seed"_a = 0,
           nb::sig("def attribute(self, tokens: numpy.typing.ArrayLike, method: str, target_position: int | None = None, "
                   "target_token: int | None = None, start_layer: int = 0, matrix: bool = False, "
                   "attn_grad_without_d: bool = False, seed: int = 0) -> Attribution"),
           "Explains the logit logits[P][T] over the input positions with `method` ('raw', 'rollout',\n"
           "'mamba-attr', 'grad-input', 'random', 'attn-grad' or 'lrp'; docs/attribution.md), as\n"
           "mixlens-attn --method does: P = target_position (None or negative: the last), T = target_token\n"
           "(None or negative: the argmax at P). start_layer: the first layer of mamba-attr's and attn-grad's\n"
           "rollout; matrix: also their whole rollout; attn_grad_without_d: attn-grad's unified matrices\n"
           "without D, as the authors' code; seed: the random scores'. On the host; returns Attribution\n"
           "with the scores in the caller's framework and the model's dtype.")
      .def("faithfulness", &py_model::faithfulness, "tokens"_a, "methods"_a = nb::none(), "steps"_a = 10,
           "mode"_a = "replace", "replace_token"_a = 0, "target_position"_a = nb::none(), "target_token"_a = nb::none(),
           "random_draws"_a = 10, "seed"_a = 0, "start_layer"_a = 0, "attn_grad_without_d"_a = false, "threads"_a = 1,
           nb::sig("def faithfulness(self, tokens: numpy.typing.ArrayLike, methods: collections.abc.Sequence[str] | None = None, "
                   "steps: int = 10, mode: str = 'replace', replace_token: int = 0, target_position: int | None = None, "
                   "target_token: int | None = None, random_draws: int = 10, seed: int = 0, start_layer: int = 0, "
                   "attn_grad_without_d: bool = False, threads: int = 1) -> dict[str, typing.Any]"),
           "The perturbation tests of mixlens-eval on one sequence: the target resolved once (as attribute),\n"
           "every method of `methods` (default all) scored for it, its positions perturbed most relevant first\n"
           "(MoRF) and least relevant first (LeRF) in `steps` steps (mode 'replace' with replace_token, or\n"
           "'remove'), and the target logit and probability read after each. Returns {'position', 'token',\n"
           "'value', 'methods': {name: {'morf': {'logit', 'probability', 'auc_logit', 'auc_probability'},\n"
           "'lerf': ..., 'delta_logit', 'delta_probability', 'scores'}}} (float64 arrays; 'random' averages\n"
           "random_draws draws and has no scores). threads: perturbed sequences run side by side.")
      .def("_attention_from_capture", &py_model::attention_from_capture, "layers"_a, "projections"_a, "checks"_a,
           "logits"_a, "form"_a, "alpha"_a, "reduction"_a,
           "mixlens.hf's entry (use mixlens.hf.attention): the maps from a live model's captured in_proj outputs.")
      .def("__repr__", [](const py_model& p) {
        return "<mixlens.Model " + p.family() + " '" + p.path().string() + "': " + std::to_string(p.num_layers()) +
               " layers, vocab " + std::to_string(p.vocab_size()) + ", " + p.dtype() + ">";
      });

  m.def("_resolve_rows", &models::resolve_rows, "text"_a, "length"_a, "vision"_a, "cls"_a, "option"_a,
        "python -m mixlens's --rows (models::resolve_rows): the positions, or mixlens.Error naming `option`.");
  m.def("load", &load, "path"_a, "dtype"_a = "float32",
        nb::sig("def load(path: str | os.PathLike[str], dtype: numpy.typing.DTypeLike = 'float32') -> Model"),
        "Loads the language model in the folder `path` (config.json + model.safetensors or its shards):\n"
        "Mamba, Falcon-Mamba or Mamba-2, Hugging Face or state-spaces layout, told by config.json.\n"
        "dtype: 'float32' (as mixlens-attn) or 'float64'.");
}

}  // namespace mixlens::python
