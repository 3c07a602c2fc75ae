// mixlens._core: the extension module behind the Python package mixlens.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <tuple>

#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {

void bind_operator_class(nb::module_& m) {
  nb::class_<py_operator>(m, "Operator",
                          "A bound sequence mixer y = M(x)·x: the library's operator view over the arrays it was\n"
                          "built from (kept alive by this object). Signals are (channels × length); every block of\n"
                          "M is a lower-triangular L × L matrix.")
      .def_prop_ro("name", &py_operator::name, "The operator's name (operator_traits<Op>::name).")
      .def_prop_ro("key", [](const py_operator& op) { return op.key; },
                   "The constructor or registry key the operator was made by.")
      .def_prop_ro("control", &py_operator::control,
                   "Data control class: 'fixed', 'diagonal' or 'non_diagonal' (the paper's classes i, ii, iii).")
      .def_prop_ro("time_invariant", &py_operator::time_invariant, "True when M is (block) Toeplitz.")
      .def_prop_ro("channel_mixing", &py_operator::channel_mixing, "True when M couples different channels.")
      .def_prop_ro("state_size", &py_operator::state_size, "State size N behind each matrix, or None.")
      .def_prop_ro("heads", &py_operator::heads, "Number of heads (channels of a head share one matrix), or None.")
      .def_prop_ro("length", &py_operator::length, "Sequence length L.")
      .def_prop_ro("in_channels", &py_operator::in_channels, "Input channels.")
      .def_prop_ro("out_channels", &py_operator::out_channels, "Output channels.")
      .def_prop_ro("dtype", &py_operator::dtype, "Element type of the arithmetic and results: 'float64' or 'float32'.")
      .def_prop_ro("input_signal", [](const py_operator& op) { return op.input_signal; },
                   nb::for_getter(nb::sig("def input_signal(self, /) -> numpy.typing.NDArray[typing.Any] | None")),
                   "The signal the operator acts on, when its bind computed it from a layer's input\n"
                   "(mixlens.from_module: Hyena's value v, Mamba-2's SSM input u, Mamba's x as given), so that\n"
                   "apply(input_signal) is the layer's mixer output; None for other operators.")
      .def_prop_ro("device",
                   [](const py_operator& op) {
                     return op.device_index() < 0 ? std::string("cpu") : "cuda:" + std::to_string(op.device_index());
                   },
                   "'cpu', or 'cuda:N' for an operator made by to(): then apply takes CUDA tensors of that device\n"
                   "and every result is one.")
      .def(
          "to",
          [](nb::handle self, nb::handle device) -> nb::object {
            const py_operator& op = nb::cast<const py_operator&>(self);
            const int d = device_index("mixlens.Operator.to", device);
            if (d == op.device_index()) return nb::borrow(self);
            if (d < 0)
              fail("mixlens.Operator.to", "device",
                   "the operator's own device (a device operator is not copied back: keep the host operator it was "
                   "made from)",
                   "'cpu'");
            return nb::cast(op.to_device(d));
          },
          "device"_a, nb::sig("def to(self, device: str | typing.Any) -> Operator"),
          "The operator on `device` ('cuda', 'cuda:N' or a torch.device; itself when it is there already):\n"
          "its data copied to that GPU once, then apply, materialize, materialize_full and rows run on the\n"
          "CUDA backend (gpu::apply / materialize / rows) and return torch CUDA tensors.")
      .def_prop_ro("shape", [](const py_operator& op) { return std::make_tuple(op.out_channels(), op.in_channels(), op.length()); },
                   "(out_channels, in_channels, length).")
      .def("apply", &py_operator::apply, "x"_a,
           nb::sig("def apply(self, x: numpy.typing.ArrayLike) -> numpy.typing.NDArray[typing.Any]"),
           "y = M·x by the operator's fast algorithm (scan, FFT convolution, recurrence), never the dense\n"
           "matrix. x is (in_channels × length); returns (out_channels × length) in the operator's dtype,\n"
           "as a torch tensor when x is one, else a numpy array.")
      .def("materialize", &py_operator::materialize, "out"_a = nb::none(), "in_"_a = nb::none(),
           nb::sig("def materialize(self, out: int | None = None, in_: int | None = None) -> numpy.typing.NDArray[typing.Any]"),
           "The mixing matrix. With out (and in_, default out): the L × L block from input channel in_ to\n"
           "output channel out. Without: the diagonal blocks (channels × L × L) when the operator does not\n"
           "mix channels — S6's α per channel, a layer's attention matrices — else every block\n"
           "(out_channels × in_channels × L × L).")
      .def("materialize_full", &py_operator::materialize_full, nb::sig("def materialize_full(self) -> numpy.typing.NDArray[typing.Any]"),
           "The whole operator as one (out_channels·L × in_channels·L) matrix, entry (o·L + t, i·L + s):\n"
           "apply(x).ravel() == materialize_full() @ x.ravel().")
      .def("rows", &py_operator::rows, "positions"_a, "out"_a = nb::none(), "in_"_a = nb::none(),
           nb::sig("def rows(self, positions: collections.abc.Sequence[int], out: int | None = None, in_: int | None = None) -> numpy.typing.NDArray[typing.Any]"),
           "Rows t ∈ positions of the blocks, each in O(L·N) without forming the matrix. With out (and\n"
           "in_): (len(positions) × L); without: (channels × len(positions) × L) for operators that do not\n"
           "mix channels, else (out_channels × in_channels × len(positions) × L).")
      .def("__repr__", [](const py_operator& op) {
        return "<mixlens.Operator " + op.name() + " (" + op.key + "): " + std::to_string(op.out_channels()) + " x " +
               std::to_string(op.in_channels()) + " channels, L " + std::to_string(op.length()) + ", " + op.dtype() +
               (op.device_index() < 0 ? std::string() : ", cuda:" + std::to_string(op.device_index())) + ">";
      });
}

}  // namespace mixlens::python

NB_MODULE(_core, m) {
  m.doc() =
      "mixlens: sequence mixers as data-controlled linear operators, their hidden attention, and\n"
      "Mamba / Falcon-Mamba / Mamba-2 checkpoints, on the host and (where built with nvcc) the GPU.";
  // mixlens::error (bad shapes, parameters and files; the message names the
  // argument) arrives as mixlens.Error, a ValueError.
  nb::exception<mixlens::error>(m, "Error", PyExc_ValueError);
  mixlens::python::bind_operator_class(m);
  mixlens::python::bind_direct_operators(m);
  mixlens::python::bind_registry(m);
  mixlens::python::bind_models(m);
  mixlens::python::bind_tokens(m);
  mixlens::python::bind_reference_modules(m);
}
