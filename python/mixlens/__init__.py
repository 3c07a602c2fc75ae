"""mixlens: sequence mixers as data-controlled linear operators.

Every operator of the C++ library (S4, S4D, DSS, S5, GSS, Hyena, S6/Mamba, the Mamba block,
causal convolutions, SSD/Mamba-2, RG-LRU, RWKV-4, RetNet, linear and softmax attention) as a
:class:`Operator` with the fast ``apply`` and the exact ``materialize`` / ``rows`` of its mixing
matrix (its "hidden attention"), Mamba / Falcon-Mamba / Mamba-2 checkpoints and Vision Mamba
classifiers with their attention maps and attributions (:func:`load`); ``mixlens.hf`` computes them from a live transformers model through
forward hooks; :func:`from_module` gives the operators of a live reference PyTorch module (S4D, S4,
DSS, Hyena, Mamba, Mamba-2 layers) from its parameters. Models run on the CPU or, where the
package was built with nvcc, on a CUDA GPU (``mixlens.load(path, device="cuda")``, ``Model.to``;
:func:`cuda_available`); the operators run on the CPU.

Arrays are the library's layouts: signals (channels × length); B and C (groups × N × length).
float32 inputs give float32 arithmetic and results, anything else float64; C-contiguous inputs of
the operator's dtype are used in place (numpy arrays, or CPU torch tensors through DLPack).
"""

from ._core import (
    Attention,
    Error,
    Model,
    Operator,
    VisionModel,
    causal_conv,
    from_registry,
    load,
    read_image,
    registry_keys,
    s4d,
    s6,
    s6_alpha,
    ssd,
    token_strings,
)
from ._core import cuda_unavailable as _cuda_unavailable
from .modules import from_module


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
