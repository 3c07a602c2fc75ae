// Operators built from the caller's arrays: S6 (real or complex A), SSD, the
// causal convolution, and S4D from its parameters. Every array the view reads
// is the caller's when it is C-contiguous of the operator's dtype (no copy).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "arrays.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/s4d.hpp"
#include "mixlens/ops/s6.hpp"
#include "mixlens/ops/ssd.hpp"
#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {
namespace {

// B or C: (groups × N × L), or (N × L) for one group.
template <class S>
tensor_view<const S, 3> groups_state_length(const in_array<S>& a, std::string_view where, std::string_view name) {
  if (a.ndim() == 2)
    return tensor_view<const S, 3>(a.data(), 1, static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1)));
  check_ndim(where, name, a, 3, "groups x state x length, or state x length");
  return as_tensor3(a);
}

template <class T>
vector_view<const T> optional_vector(nb::handle h, std::string_view where, std::string_view name,
                                     std::vector<any_array>& keep) {
  if (is_none(h)) return {};
  const auto a = get<T>(h, where, name);
  check_ndim(where, name, a, 1, "one value per channel");
  keep.emplace_back(a);
  return as_vector(a);
}

// The gate diag(g) on the left: SiLU(z) computed here (owned), or g as given.
template <class T>
matrix_view<const T> gate_from(nb::handle z, nb::handle gate, std::string_view where, std::vector<any_array>& keep,
                               std::shared_ptr<std::vector<T>>& owned) {
  if (!is_none(z) && !is_none(gate)) fail(where, "gate", "either z (gate = SiLU(z)) or gate, not both", "both");
  if (!is_none(gate)) {
    const auto g = get<T>(gate, where, "gate");
    check_ndim(where, "gate", g, 2, "channels x length");
    keep.emplace_back(g);
    return as_matrix(g);
  }
  if (is_none(z)) return {};
  const auto zv = get<T>(z, where, "z");
  check_ndim(where, "z", zv, 2, "channels x length");
  owned = std::make_shared<std::vector<T>>(zv.size());
  for (std::size_t i = 0; i < zv.size(); ++i) (*owned)[i] = mixlens::detail::silu(zv.data()[i]);
  return matrix_view<const T>(owned->data(), static_cast<index_t>(zv.shape(0)), static_cast<index_t>(zv.shape(1)));
}

const name_map s6_names = {{"a", "A"}, {"b", "B"}, {"c", "C"}, {"skip", "D"}};

template <class T, class State>
std::unique_ptr<py_operator> make_s6(nb::handle delta, nb::handle a, nb::handle b, nb::handle c, nb::handle d,
                                     nb::handle z, nb::handle gate, std::string key) {
  const std::string where = "mixlens." + key;
  std::vector<any_array> keep;
  const auto dv = get<T>(delta, where, "delta");
  check_ndim(where, "delta", dv, 2, "channels x length");
  const auto av = get<State>(a, where, "A");
  check_ndim(where, "A", av, 2, "channels x state");
  const auto bv = get<State>(b, where, "B");
  const auto cv = get<State>(c, where, "C");
  keep.emplace_back(dv), keep.emplace_back(av), keep.emplace_back(bv), keep.emplace_back(cv);
  const auto b3 = groups_state_length(bv, where, "B"), c3 = groups_state_length(cv, where, "C");
  const auto skip = optional_vector<T>(d, where, "D", keep);
  std::shared_ptr<std::vector<T>> owned;
  const auto g = gate_from<T>(z, gate, where, keep, owned);
  const auto op = with_names(s6_names, [&] {
    s6_operator<T, State> v(as_matrix(dv), as_matrix(av), b3, c3, skip, g);
    v.validate();
    return v;
  });
  return from_view(op, std::move(keep), key, framework_of(delta), owned);
}

std::unique_ptr<py_operator> s6(nb::handle delta, nb::handle a, nb::handle b, nb::handle c, nb::handle d, nb::handle z,
                                nb::handle gate, std::string key = "s6") {
  const bool single = single_precision({delta, a, b, c, d, z, gate});
  const bool cplx = is_complex_array(a) || is_complex_array(b) || is_complex_array(c);
  if (cplx)
    return single ? make_s6<float, complex<float>>(delta, a, b, c, d, z, gate, key)
                  : make_s6<double, complex<double>>(delta, a, b, c, d, z, gate, key);
  return single ? make_s6<float, float>(delta, a, b, c, d, z, gate, key)
                : make_s6<double, double>(delta, a, b, c, d, z, gate, key);
}

template <class T>
std::unique_ptr<py_operator> make_ssd(nb::handle delta, nb::handle a, nb::handle b, nb::handle c, index_t head_dim,
                                      nb::handle d, nb::handle gate, index_t chunk) {
  constexpr std::string_view where = "mixlens.ssd";
  std::vector<any_array> keep;
  const auto dv = get<T>(delta, where, "delta");
  check_ndim(where, "delta", dv, 2, "heads x length");
  const auto av = get<T>(a, where, "A");
  check_ndim(where, "A", av, 1, "one decay rate per head");
  const auto bv = get<T>(b, where, "B");
  const auto cv = get<T>(c, where, "C");
  keep.emplace_back(dv), keep.emplace_back(av), keep.emplace_back(bv), keep.emplace_back(cv);
  const auto b3 = groups_state_length(bv, where, "B"), c3 = groups_state_length(cv, where, "C");
  const auto skip = optional_vector<T>(d, where, "D", keep);
  std::shared_ptr<std::vector<T>> none;
  const auto g = gate_from<T>(nb::none(), gate, where, keep, none);
  const auto op = with_names(s6_names, [&] {
    ssd_operator<T> v(as_matrix(dv), as_vector(av), b3, c3, head_dim, skip, chunk, g);
    v.validate();
    return v;
  });
  return from_view(op, std::move(keep), "ssd", framework_of(delta));
}

template <class T>
std::unique_ptr<py_operator> make_conv(nb::handle kernel, index_t length, nb::handle d) {
  constexpr std::string_view where = "mixlens.causal_conv";
  std::vector<any_array> keep;
  const auto k = get<T>(kernel, where, "kernel");
  check_ndim(where, "kernel", k, 2, "channels x taps, tap k multiplying x[t - k]");
  keep.emplace_back(k);
  const auto skip = optional_vector<T>(d, where, "D", keep);
  const auto op = with_names(name_map{{"skip", "D"}},
                             [&] { return causal_conv_operator<T, short_conv_kind>(as_matrix(k), skip, length); });
  return from_view(op, std::move(keep), "causal_conv", framework_of(kernel));
}

template <class T>
matrix<complex<T>> complex_matrix(nb::handle h, std::string_view where, std::string_view name) {
  const auto a = get<complex<T>>(h, where, name);
  check_ndim(where, name, a, 2, "channels x state/2, one of each conjugate pair");
  matrix<complex<T>> m(static_cast<index_t>(a.shape(0)), static_cast<index_t>(a.shape(1)));
  std::copy_n(a.data(), a.size(), m.data());
  return m;
}

template <class T>
std::vector<T> real_vector(nb::handle h, std::string_view where, std::string_view name) {
  if (is_none(h)) return {};
  const auto a = get<T>(h, where, name);
  check_ndim(where, name, a, 1, "one value per channel");
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <class T>
std::unique_ptr<py_operator> make_s4d(nb::handle a, nb::handle b, nb::handle c, nb::handle log_dt, index_t length,
                                      nb::handle d, const std::string& discretization) {
  constexpr std::string_view where = "mixlens.s4d";
  ssm_discretization disc = ssm_discretization::zoh;
  if (discretization == "bilinear") disc = ssm_discretization::bilinear;
  else if (discretization != "zoh") fail(where, "discretization", "'zoh' or 'bilinear'", "'" + discretization + "'");
  auto owner = with_names(s6_names, [&] {
    s4d_mixer<T> mixer(complex_matrix<T>(a, where, "A"), complex_matrix<T>(b, where, "B"),
                       complex_matrix<T>(c, where, "C"), real_vector<T>(log_dt, where, "log_dt"),
                       real_vector<T>(d, where, "D"), disc);
    return mixer.bind(length);
  });
  return from_owner(std::move(owner), "s4d", framework_of(a));
}

}  // namespace

void bind_direct_operators(nb::module_& m) {
  m.def(
      "s6",
      [](nb::handle delta, nb::handle a, nb::handle b, nb::handle c, nb::handle d, nb::handle z, nb::handle gate) {
        return s6(delta, a, b, c, d, z, gate);
      },
      "delta"_a, "A"_a, "B"_a, "C"_a, "D"_a = nb::none(), "z"_a = nb::none(), "gate"_a = nb::none(),
      nb::sig("def s6(delta: numpy.typing.ArrayLike, A: numpy.typing.ArrayLike, B: numpy.typing.ArrayLike, C: numpy.typing.ArrayLike, D: numpy.typing.ArrayLike | None = None, z: numpy.typing.ArrayLike | None = None, "
              "gate: numpy.typing.ArrayLike | None = None) -> Operator"),
      "S6, Mamba's selective SSM, from its control signals:\n"
      "  delta (channels × L, > 0, after softplus), A (channels × N, Re A ≤ 0, real or complex),\n"
      "  B, C (groups × N × L, or N × L for one group; channel d reads group d // (channels / groups)),\n"
      "  D (channels,) the skip, optional; z (channels × L) the gate input, gate = SiLU(z), or\n"
      "  gate (channels × L) the gate itself, optional.\n"
      "Without D and the gate, materialize() is the paper's hidden attention α (channels × L × L).\n"
      "Complex A (with complex B, C) implies the conjugate partner of each state: y = 2·Re⟨C, h⟩.\n"
      "float32 arrays give a float32 operator, anything else float64; contiguous arrays of that\n"
      "dtype are used in place (the operator reads them: changing them changes it).");
  m.def(
      "s6_alpha",
      [](nb::handle delta, nb::handle a, nb::handle b, nb::handle c) {
        return s6(delta, a, b, c, nb::none(), nb::none(), nb::none(), "s6_alpha")->materialize({}, {});
      },
      "delta"_a, "A"_a, "B"_a, "C"_a,
      nb::sig("def s6_alpha(delta: numpy.typing.ArrayLike, A: numpy.typing.ArrayLike, B: numpy.typing.ArrayLike, C: numpy.typing.ArrayLike) -> numpy.typing.NDArray[typing.Any]"),
      "The hidden attention α of S6 (Ali, Zimerman, Wolf 2024, eq. 12), channels × L × L:\n"
      "  α[d][i][j] = Σ_n C[g][n][i] · exp(A[d][n] · Σ_{k=j+1..i} delta[d][k]) · delta[d][j] · B[g][n][j]\n"
      "for j ≤ i (0 above the diagonal); arguments as for s6().");
  m.def(
      "ssd",
      [](nb::handle delta, nb::handle a, nb::handle b, nb::handle c, index_t head_dim, nb::handle d, nb::handle gate,
         index_t chunk) -> std::unique_ptr<py_operator> {
        if (single_precision({delta, a, b, c, d, gate})) return make_ssd<float>(delta, a, b, c, head_dim, d, gate, chunk);
        return make_ssd<double>(delta, a, b, c, head_dim, d, gate, chunk);
      },
      "delta"_a, "A"_a, "B"_a, "C"_a, "head_dim"_a, "D"_a = nb::none(), "gate"_a = nb::none(), "chunk"_a = 64,
      nb::sig("def ssd(delta: numpy.typing.ArrayLike, A: numpy.typing.ArrayLike, B: numpy.typing.ArrayLike, C: numpy.typing.ArrayLike, head_dim: int, D: numpy.typing.ArrayLike | None = None, "
              "gate: numpy.typing.ArrayLike | None = None, chunk: int = 64) -> Operator"),
      "Mamba-2's SSD from its control signals: delta (heads × L, > 0), A (heads,) scalar decay ≤ 0,\n"
      "B, C (groups × N × L, or N × L), head_dim P (channels = heads·P), D (heads,) optional, gate\n"
      "(heads·P × L) optional, chunk the chunk length of the SSD algorithm used by apply.\n"
      "M_h[i][j] = (C_i·B_j) · exp(A_h Σ_{k=j+1..i} delta_k) · delta_j (+ D_h on the diagonal).");
  m.def(
      "causal_conv",
      [](nb::handle kernel, index_t length, nb::handle d) -> std::unique_ptr<py_operator> {
        if (single_precision({kernel, d})) return make_conv<float>(kernel, length, d);
        return make_conv<double>(kernel, length, d);
      },
      "kernel"_a, "length"_a, "D"_a = nb::none(),
      nb::sig("def causal_conv(kernel: numpy.typing.ArrayLike, length: int, D: numpy.typing.ArrayLike | None = None) -> Operator"),
      "A depthwise causal convolution y[c][t] = Σ_k kernel[c][k]·x[c][t−k] + D[c]·x[c][t]: the bound\n"
      "form of every LTI mixer (S4, S4D, DSS kernels, short convolutions). kernel is (channels ×\n"
      "taps); the matrix is lower-triangular Toeplitz. Long kernels apply by FFT (size ≥ 2L).");
  m.def(
      "s4d",
      [](nb::handle a, nb::handle b, nb::handle c, nb::handle log_dt, index_t length, nb::handle d,
         const std::string& discretization) -> std::unique_ptr<py_operator> {
        if (single_precision({a, b, c, log_dt, d})) return make_s4d<float>(a, b, c, log_dt, length, d, discretization);
        return make_s4d<double>(a, b, c, log_dt, length, d, discretization);
      },
      "A"_a, "B"_a, "C"_a, "log_dt"_a, "length"_a, "D"_a = nb::none(), "discretization"_a = "zoh",
      nb::sig("def s4d(A: numpy.typing.ArrayLike, B: numpy.typing.ArrayLike, C: numpy.typing.ArrayLike, log_dt: numpy.typing.ArrayLike, length: int, D: numpy.typing.ArrayLike | None = None, "
              "discretization: str = 'zoh') -> Operator"),
      "S4D from its parameters (state-spaces/s4's SSMKernelDiag): A, B, C complex (channels × N/2,\n"
      "one of each conjugate pair, Re A < 0), log_dt (channels,), D (channels,) optional,\n"
      "discretization 'zoh' or 'bilinear'. The kernel K_k = 2·Re Σ_n C_n B̄_n Ā_n^k is computed for\n"
      "`length` steps (a copy); the operator is its causal convolution.");
}

}  // namespace mixlens::python
