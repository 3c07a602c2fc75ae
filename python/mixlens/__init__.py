"""mixlens: sequence mixers as data-controlled linear operators.

Every operator of the C++ library (S4, S4D, DSS, S5, GSS, Hyena, S6/Mamba, the Mamba block,
causal convolutions, SSD/Mamba-2, RG-LRU, RWKV-4, RetNet, linear and softmax attention) as a
:class:`Operator` with the fast ``apply`` and the exact ``materialize`` / ``rows`` of its mixing
matrix (its "hidden attention"), Mamba / Falcon-Mamba / Mamba-2 checkpoints and Vision Mamba
classifiers with their attention maps and attributions (:func:`load`); ``mixlens.hf`` computes them from a live transformers model through
forward hooks; :func:`from_module` gives the operators of a live reference PyTorch module (S4D, S4,
DSS, Hyena, Mamba, Mamba-2 layers) from its parameters. Where the package was built with nvcc,
language models and operators also run on a CUDA GPU (``mixlens.load(path, device="cuda")``,
``Model.to``, ``Operator.to``; constructors given CUDA tensors build on their device;
:func:`cuda_available`).

Arrays are the library's layouts: signals (channels × length); B and C (groups × N × length).
float32 inputs give float32 arithmetic and results, anything else float64; C-contiguous inputs of
the operator's dtype are used in place (numpy arrays, or CPU torch tensors through DLPack).
"""

import functools as _functools

from . import _core
from ._core import (
    Attention,
    Error,
    Model,
    Operator,
    VisionModel,
    load,
    read_image,
    registry_keys,
    token_strings,
)
from ._core import cuda_unavailable as _cuda_unavailable
from .modules import _cuda_device
from .modules import from_module


def _on_the_inputs_device(build):
    """An operator constructor of _core that also takes CUDA tensors: they are copied to the host
    for the constructor's checks, and the operator it builds is moved to their device once
    (Operator.to), where apply and every result stay."""

    @_functools.wraps(build)
    def constructor(*args, **kwargs):
        values = [*args, *kwargs.values()]
        device = _cuda_device(values)
        if device is None:
            return build(*args, **kwargs)
        host = lambda v: v.cpu() if getattr(getattr(v, "device", None), "type", "cpu") == "cuda" else v  # noqa: E731
        return build(*map(host, args), **{k: host(v) for k, v in kwargs.items()}).to(device)

    return constructor


s6 = _on_the_inputs_device(_core.s6)
ssd = _on_the_inputs_device(_core.ssd)
s4d = _on_the_inputs_device(_core.s4d)
causal_conv = _on_the_inputs_device(_core.causal_conv)
from_registry = _on_the_inputs_device(_core.from_registry)


@_functools.wraps(_core.s6_alpha)
def s6_alpha(delta, A, B, C):  # noqa: N803 - the paper's names
    if _cuda_device([delta, A, B, C]) is None:
        return _core.s6_alpha(delta, A, B, C)
    return s6(delta, A, B, C).materialize()  # on the inputs' GPU


def cuda_available(device: int = 0) -> bool:
    """True when this mixlens was built with its CUDA backend and CUDA device `device` can run its
    kernels; ``mixlens._core.cuda_unavailable(device)`` says why not."""
    return not _cuda_unavailable(device)


__version__ = "0.1.0"

__all__ = [
    "Attention",
    "Error",
    "Model",
    "Operator",
    "VisionModel",
    "causal_conv",
    "cuda_available",
    "from_module",
    "from_registry",
    "load",
    "read_image",
    "registry_keys",
    "s4d",
    "s6",
    "s6_alpha",
    "ssd",
    "token_strings",
]
