// The reference modules' parameters, handed over from memory (a PyTorch
// module's state_dict, by mixlens.from_module): the tensors are viewed in place
// (io::tensor_views) and read by the library's loaders (io/reference_params.hpp,
// io/reference_params_mamba2.hpp), the same code that reads their safetensors
// files; the mixers are bound to a length or an input and returned as
// mixlens.Operator objects.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "mixlens/io/reference_params.hpp"
#include "mixlens/io/reference_params_mamba2.hpp"
#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {
namespace {

constexpr std::string_view where = "mixlens.from_module";
const std::string key = "from_module";

std::string dtype_text(const nb::dlpack::dtype& dt) {
  const auto code = static_cast<nb::dlpack::dtype_code>(dt.code);
  const char* kind = code == nb::dlpack::dtype_code::Float     ? "float"
                     : code == nb::dlpack::dtype_code::Int     ? "int"
                     : code == nb::dlpack::dtype_code::UInt    ? "uint"
                     : code == nb::dlpack::dtype_code::Bfloat  ? "bfloat"
                     : code == nb::dlpack::dtype_code::Complex ? "complex"
                     : code == nb::dlpack::dtype_code::Bool    ? "bool"
                                                               : nullptr;
  if (!kind) return "DLPack type code " + std::to_string(dt.code) + " of " + std::to_string(dt.bits) + " bits";
  return std::string(kind) + std::to_string(dt.bits);
}

bool is_float(const nb::dlpack::dtype& dt) {
  return dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) && (dt.bits == 32 || dt.bits == 64);
}

// The module's tensors as views of their memory (no copy); `keep` holds the arrays.
struct module_tensors {
  io::tensor_views views;
  std::vector<any_array> keep;
  bool all_float32 = true;  // every floating-point tensor is float32
};

module_tensors view_tensors(nb::dict tensors, const std::string& origin) {
  module_tensors out{io::tensor_views(origin), {}, true};
  using host_array = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
  for (auto [k, v] : tensors) {
    const std::string name = nb::cast<std::string>(k);
    host_array a;
    if (!nb::try_cast(v, a, false))
      fail(where, "module", "tensor '" + name + "' as a C-contiguous CPU array", python_type(v));
    const auto dt = a.dtype();
    std::vector<index_t> shape;
    for (std::size_t i = 0; i < a.ndim(); ++i) shape.push_back(static_cast<index_t>(a.shape(i)));
    const bool integer = dt.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Int) && (dt.bits == 32 || dt.bits == 64);
    if (is_float(dt) && dt.bits == 32) out.views.insert(name, shape, static_cast<const float*>(a.data()));
    else if (is_float(dt)) out.views.insert(name, shape, static_cast<const double*>(a.data()));
    else if (integer && dt.bits == 32) out.views.insert(name, shape, static_cast<const std::int32_t*>(a.data()));
    else if (integer) out.views.insert(name, shape, static_cast<const std::int64_t*>(a.data()));
    else
      fail(where, "module", "tensor '" + name + "' of float32 or float64 (module.double() or module.float())",
           dtype_text(dt));
    if (is_float(dt) && dt.bits != 32) out.all_float32 = false;
    out.keep.emplace_back(a);
  }
  return out;
}

// The loaders' options from a dict {name: value}; None leaves the default. Every
// name must be one the module kind has.
class option_reader {
 public:
  option_reader(nb::dict d, std::string module) : dict_(d), module_(std::move(module)) {}

  template <class V>
  void get(const char* name, V& value) {
    known_.insert(name);
    if (!dict_.contains(name)) return;
    nb::handle h = dict_[name];
    if (h.is_none()) return;
    if constexpr (std::is_same_v<V, std::optional<double>>) {
      double v = 0;
      if (!nb::try_cast(h, v)) bad(name, "a number", h);
      value = v;
    } else if constexpr (std::is_same_v<V, bool>) {
      if (!nb::isinstance<nb::bool_>(h)) bad(name, "True or False", h);
      value = nb::cast<bool>(h);
    } else {
      if (!nb::try_cast(h, value)) bad(name, std::is_same_v<V, std::string> ? "a string" : "a number", h);
    }
  }

  // Unknown names: an error listing the known ones.
  void finish() const {
    for (auto [k, v] : dict_) {
      const std::string name = nb::cast<std::string>(k);
      if (known_.count(name)) continue;
      std::string list;
      for (const auto& n : known_) list += (list.empty() ? "" : ", ") + n;
      fail(where, name, "an option of " + module_ + " (" + (list.empty() ? "it has none" : list) + ")", "unknown option");
    }
  }

 private:
  [[noreturn]] void bad(const char* name, const std::string& expected, nb::handle h) const {
    fail(where, name, expected + " (option of " + module_ + ")", python_type(h) + " " + str_of(nb::repr(h)));
  }

  nb::dict dict_;
  std::string module_;
  std::set<std::string> known_;
};

struct inputs {
  std::optional<index_t> length;
  nb::handle x, z;
};

index_t need_length(const inputs& in, std::string_view module) {
  if (!in.length)
    fail(where, "length", "the sequence length L to bind " + std::string(module) + "'s kernel to", "None");
  mixlens::detail::check_positive(where, "length", *in.length);
  return *in.length;
}

template <class T>
in_array<T> need_signal(const inputs& in, std::string_view module, std::string_view layout) {
  if (is_none(in.x))
    fail(where, "x", "the input signal of " + std::string(module) + " (" + std::string(layout) + "): its operator depends on it",
         "None");
  auto a = get<T>(in.x, where, "x");
  check_ndim(where, "x", a, 2, layout);
  if (in.length && *in.length != static_cast<index_t>(a.shape(1)))
    fail(where, "length", "None or the length of x (" + std::to_string(a.shape(1)) + ")", std::to_string(*in.length));
  return a;
}

void no_signal(const inputs& in, std::string_view module) {
  if (!is_none(in.x) || !is_none(in.z))
    fail(where, is_none(in.x) ? "z" : "x", "None: " + std::string(module) + " is time invariant (pass length)", "an array");
}

template <class Mixer>
nb::object bind_each(const std::vector<Mixer>& mixers, index_t L) {
  nb::list out;
  for (const auto& m : mixers) out.append(nb::cast(from_owner(m.bind(L), key, framework::torch)));
  return out;
}

// Mamba-2: the mixer and its run on x, kept together (the operator views both).
template <class T>
struct mamba2_holder {
  io::mamba2_mixer<T> mixer;
  std::optional<typename io::mamba2_mixer<T>::run> run;
};

template <class T>
nb::object load(const std::string& kind, const io::tensor_views& src, option_reader& opt, const inputs& in) {
  if (kind == "s4d") {
    opt.finish();
    no_signal(in, "S4D");
    const index_t L = need_length(in, "S4D");
    return nb::cast(from_owner(io::load_s4d_module<T>(src).bind(L), key, framework::torch));
  }
  if (kind == "ssm_kernel_diag") {
    io::ssm_kernel_diag_options o;
    bool bidirectional = false;
    opt.get("dt_transform", o.dt_transform), opt.get("real_transform", o.real_transform);
    opt.get("imag_transform", o.imag_transform), opt.get("disc", o.disc), opt.get("dt_fast", o.dt_fast);
    opt.get("bandlimit", o.bandlimit), opt.get("is_real", o.is_real), opt.get("force_real", o.force_real);
    opt.get("bidirectional", bidirectional);
    opt.finish();
    no_signal(in, "FFTConv");
    const index_t L = need_length(in, "FFTConv");
    if (bidirectional) return bind_each(io::load_ssm_kernel_diag_bidirectional<T>(src, o), L);
    return bind_each(io::load_ssm_kernel_diag<T>(src, o), L);
  }
  if (kind == "ssm_kernel_dplr") {
    io::ssm_kernel_dplr_options o;
    bool bidirectional = false;
    opt.get("dt_transform", o.dt_transform), opt.get("real_transform", o.real_transform);
    opt.get("imag_transform", o.imag_transform), opt.get("dt_fast", o.dt_fast), opt.get("bandlimit", o.bandlimit);
    opt.get("is_real", o.is_real), opt.get("force_real", o.force_real), opt.get("bidirectional", bidirectional);
    opt.finish();
    no_signal(in, "FFTConv");
    const index_t L = need_length(in, "FFTConv");
    if (bidirectional) return bind_each(io::load_ssm_kernel_dplr_bidirectional<T>(src, o), L);
    return bind_each(io::load_ssm_kernel_dplr<T>(src, o), L);
  }
  if (kind == "dss") {
    io::dss_module_options o;
    bool bidirectional = false;
    opt.get("version", o.version), opt.get("epsilon", o.epsilon), opt.get("max_real_lambda", o.max_real_lambda);
    opt.get("hyper", o.hyper), opt.get("max_kernel_length", o.max_kernel_length), opt.get("bidirectional", bidirectional);
    opt.finish();
    no_signal(in, "DSS");
    const index_t L = need_length(in, "DSS");
    if (bidirectional) return bind_each(io::load_dss_module_bidirectional<T>(src, o), L);
    return bind_each(io::load_dss_module<T>(src, o), L);
  }
  if (kind == "hyena") {
    io::hyena_operator_options o;
    opt.get("filter_cls", o.filter_cls), opt.get("num_heads", o.num_heads), opt.get("num_blocks", o.num_blocks);
    opt.get("inner_factor", o.inner_factor), opt.get("outer_mixing", o.outer_mixing);
    opt.get("post_order_ffn", o.post_order_ffn), opt.get("activation", o.activation), opt.get("normalized", o.normalized);
    opt.get("bias", o.bias), opt.get("modulate", o.modulate), opt.get("shift", o.shift);
    opt.finish();
    if (!is_none(in.z)) fail(where, "z", "None: HyenaOperator has no gate input", "an array");
    const auto mixer = io::load_hyena_operator<T>(src, o);
    const auto x = need_signal<T>(in, "HyenaOperator", "d_model x length");
    auto bound = mixer.bind(as_matrix(x));
    const auto& v = bound.storage().value;
    nb::object signal = copy_output(v.data(), {static_cast<std::size_t>(v.extent(0)), static_cast<std::size_t>(v.extent(1))},
                                    framework_of(in.x));
    auto op = from_owner(std::move(bound), key, framework::torch);
    op->input_signal = signal;
    op->inputs.emplace_back(x);
    return nb::cast(std::move(op));
  }
  if (kind == "mamba") {
    io::mamba_mixer_options o;
    opt.get("b_c_dt_rms", o.b_c_dt_rms), opt.get("mixer_rms_eps", o.mixer_rms_eps), opt.get("rms_norm_eps", o.rms_norm_eps);
    opt.get("delta_softplus", o.delta_softplus), opt.get("is_variable_B", o.is_variable_B);
    opt.get("is_variable_C", o.is_variable_C);
    opt.finish();
    const auto mixer = io::load_mamba_mixer<T>(src, o);
    const auto x = need_signal<T>(in, "Mamba", "d_inner x length: the conv's output, x_proj's input");
    std::optional<in_array<T>> z;
    if (!is_none(in.z)) {
      z = get<T>(in.z, where, "z");
      check_ndim(where, "z", *z, 2, "d_inner x length: the gate's input");
    }
    const s6_fold fold{.skip = true, .gate = z.has_value()};
    auto op = with_names({{"u", "x"}}, [&] {
      return from_owner(mixer.bind(as_matrix(x), fold, z ? as_matrix(*z) : matrix_view<const T>{}), key, framework::torch);
    });
    op->input_signal = nb::borrow(in.x);
    op->inputs.emplace_back(x);
    if (z) op->inputs.emplace_back(*z);
    return nb::cast(std::move(op));
  }
  if (kind == "mamba2") {
    io::mamba2_mixer_options o;
    opt.get("ngroups", o.ngroups), opt.get("chunk_size", o.chunk_size), opt.get("dt_min", o.dt_min);
    opt.get("dt_max", o.dt_max), opt.get("norm_eps", o.norm_eps), opt.get("norm_group_size", o.norm_group_size);
    opt.get("rmsnorm", o.rmsnorm), opt.get("norm_before_gate", o.norm_before_gate);
    opt.finish();
    if (!is_none(in.z)) fail(where, "z", "None: Mamba2 computes its gate from x", "an array");
    auto holder = std::make_shared<mamba2_holder<T>>(mamba2_holder<T>{io::load_mamba2_mixer<T>(src, o), std::nullopt});
    const auto x = need_signal<T>(in, "Mamba2", "d_model x length: the layer's input");
    with_names({{"u", "x"}}, [&] { holder->run.emplace(holder->mixer.bind(as_matrix(x))); });
    const auto& s = holder->run->signals;
    nb::object signal = copy_output(s.u.data_handle(), {static_cast<std::size_t>(s.u.extent(0)), static_cast<std::size_t>(s.u.extent(1))},
                                    framework_of(in.x));
    std::vector<any_array> keep;
    keep.emplace_back(x);
    auto op = from_view(s.ssm(s6_fold{.skip = true, .gate = true}), std::move(keep), key, framework::torch,
                        std::shared_ptr<const void>(holder));
    op->input_signal = signal;
    return nb::cast(std::move(op));
  }
  fail(where, "kind", "s4d, ssm_kernel_diag, ssm_kernel_dplr, dss, hyena, mamba or mamba2", "'" + kind + "'");
}

nb::object load_module(const std::string& kind, const std::string& module, nb::dict tensors, nb::dict options,
                       std::optional<index_t> length, nb::handle x, nb::handle z, std::optional<std::string> dtype) {
  try {
    auto t = view_tensors(tensors, "torch module " + module);
    option_reader opt(options, module);
    const inputs in{length, x, z};
    bool single = false;
    if (dtype) {
      if (*dtype != "float32" && *dtype != "float64") fail(where, "dtype", "None, 'float32' or 'float64'", "'" + *dtype + "'");
      single = *dtype == "float32";
    } else {
      single = t.all_float32 && (is_none(x) || single_precision({x, z}));
    }
    return single ? load<float>(kind, t.views, opt, in) : load<double>(kind, t.views, opt, in);
  } catch (const mixlens::error& e) {
    const std::string msg = e.what();
    if (msg.rfind(where, 0) == 0) throw;
    throw mixlens::error(std::string(where) + ": " + msg);
  }
}

}  // namespace

void bind_reference_modules(nb::module_& m) {
  m.def("_load_reference_module", &load_module, "kind"_a, "module"_a, "tensors"_a, "options"_a, "length"_a = nb::none(),
        "x"_a = nb::none(), "z"_a = nb::none(), "dtype"_a = nb::none(),
        nb::sig("def _load_reference_module(kind: str, module: str, tensors: dict[str, typing.Any], options: dict[str, typing.Any], "
                "length: int | None = None, x: numpy.typing.ArrayLike | None = None, z: numpy.typing.ArrayLike | None = None, "
                "dtype: str | None = None) -> Operator | list[Operator]"),
        "The loader of reference module `kind` (io/reference_params.hpp) on `tensors` (a state_dict: name to\n"
        "C-contiguous CPU array, viewed in place), with the loader's `options`, bound to `length` or to x\n"
        "(and z). `module` names the module in messages. Called by mixlens.from_module, which recognises\n"
        "the module and gathers its options.");
}

}  // namespace mixlens::python
