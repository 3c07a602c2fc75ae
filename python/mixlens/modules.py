"""The library's operators of a live PyTorch reference module (:func:`from_module`).

A module is recognised by its state_dict: the parameter and buffer names (and, in the loaders,
the shapes) its reference code gives it. The few options a reference module keeps in its
attributes rather than its state_dict are read where the reference code keeps them; keyword
arguments override them. The tensors go to the C++ loaders of ``mixlens/io/reference_params.hpp``
as they are (CPU, C-contiguous tensors are read in place), the same code that loads the modules'
safetensors files: nothing of the conversion is written here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _core


class _Kind(NamedTuple):
    key: str  # the loader's kind in _core._load_reference_module
    name: str  # the reference class, for messages
    source: str  # where the reference code lives
    required: tuple[str, ...]  # the tensors of its default configuration
    marks: tuple[str, ...]  # present: this kind (checked in order)
    excludes: tuple[str, ...] = ()  # present: not this kind
    optional: tuple[str, ...] = ()  # prefixes of tensors it may hold besides


# In the order recognition tries them.
_KINDS = (
    _Kind("s4d", "S4D", "state-spaces/s4 models/s4/s4d.py",
          ("D", "kernel.log_dt", "kernel.C", "kernel.log_A_real", "kernel.A_imag"),
          ("kernel.log_A_real",), optional=("output_linear.",)),
    _Kind("dss", "DSS", "ag1988/dlr src/models/sequence/ss/standalone/dss.py",
          ("D", "kernel.log_dt", "kernel.W"), ("kernel.W",),
          optional=("kernel.Lambda", "output_linear.")),
    _Kind("ssm_kernel_dplr", "FFTConv with SSMKernelDPLR (S4)",
          "state-spaces/s4 src/models/sequence/kernels/fftconv.py and ssm.py",
          ("D", "kernel.inv_dt", "kernel.A_real", "kernel.A_imag", "kernel.B", "kernel.P", "kernel.C",
           "kernel.l_kernel"), ("kernel.inv_dt", "kernel.A_real", "kernel.P")),
    _Kind("ssm_kernel_diag", "FFTConv with SSMKernelDiag (S4D)",
          "state-spaces/s4 src/models/sequence/kernels/fftconv.py and ssm.py",
          ("D", "kernel.inv_dt", "kernel.A_real", "kernel.A_imag", "kernel.B", "kernel.C"),
          ("kernel.inv_dt", "kernel.A_real"), excludes=("kernel.P",)),
    _Kind("hyena", "HyenaOperator", "HazyResearch/safari src/models/sequence/hyena.py",
          ("in_proj.weight", "in_proj.bias", "short_filter.weight", "short_filter.bias",
           "filter_fn.pos_emb.z", "filter_fn.pos_emb.t", "filter_fn.modulation.deltas", "filter_fn.bias",
           "out_proj.weight", "out_proj.bias"),
          ("short_filter.weight",), optional=("filter_fn.implicit_filter.",)),
    _Kind("mamba2", "Mamba2", "state-spaces/mamba mamba_ssm/modules/mamba2.py",
          ("in_proj.weight", "conv1d.weight", "dt_bias", "A_log", "D", "norm.weight", "out_proj.weight"),
          ("dt_bias", "A_log"), excludes=("init_states",),
          optional=("in_proj.bias", "conv1d.bias", "out_proj.bias")),
    _Kind("mamba", "Mamba", "state-spaces/mamba mamba_ssm/modules/mamba_simple.py",
          ("x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D"), ("x_proj.weight",),
          optional=("in_proj.", "conv1d.", "out_proj.", "x_proj.bias", "dt_layernorm.", "b_layernorm.",
                    "c_layernorm.", "B_layernorm.", "C_layernorm.", "B", "C")),
)


def _class_name(module: Any) -> str:
    t = type(module)
    return t.__name__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"


def _matches(kind: _Kind, present: set[str], prefix: str = "") -> bool:
    return (all(prefix + m in present for m in kind.marks)
            and not any(prefix + e in present for e in kind.excludes))


def _recognise(keys: list[str], module: Any) -> _Kind:
    present = set(keys)
    for kind in _KINDS:
        if _matches(kind, present):
            return kind
    # A container of one (an S4 block, a model): name the submodule to pass.
    for kind in _KINDS:
        for k in keys:
            prefix = k[:-len(kind.marks[0])]
            if k.endswith("." + kind.marks[0]) and _matches(kind, present, prefix):
                path = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in prefix[:-1].split("."))
                raise _core.Error(
                    f"mixlens.from_module: argument 'module': expected the reference module itself, got "
                    f"{_class_name(module)}, whose submodule '{prefix[:-1]}' is a {kind.name}: pass module{path}")
    # Not one of them: the nearest kind's missing and unexpected tensors.
    nearest = max(_KINDS, key=lambda k: len(present & set(k.required)))
    missing = [k for k in nearest.required if k not in present]
    unexpected = [k for k in keys
                  if k not in nearest.required and not any(k.startswith(p) for p in nearest.optional)]
    known = ", ".join(k.name for k in _KINDS)
    shown = lambda names: ", ".join(f"'{n}'" for n in names[:8]) + (", …" if len(names) > 8 else "")
    detail = (f"; nearest: {nearest.name} ({nearest.source}), missing {shown(missing)}"
              + (f", unexpected {shown(unexpected)}" if unexpected else "")) if present & set(nearest.required) else ""
    raise _core.Error(
        f"mixlens.from_module: argument 'module': expected a module whose parameters mixlens reads ({known}), "
        f"got {_class_name(module)} with state_dict keys [{shown(keys) if keys else ''}]{detail}")


def _attr(obj: Any, path: str) -> Any:
    """obj.a.b for path 'a.b', or None where an attribute is missing."""
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _activation(act: Any) -> Any:
    """HyenaOperator's activation: a string, or safari's Activation module (nn.Identity for 'id')."""
    if act is None or isinstance(act, str):
        return act
    name = type(act).__name__
    return "id" if name == "Identity" else name.lower()


def _first(*values: Any) -> Any:
    """The first value that is not None (None when all are)."""
    return next((v for v in values if v is not None), None)


def _norm_group_size(norm: Any) -> Any:
    """The channels per group of a Mamba-2 gated RMSNorm. mamba_ssm's RMSNormGated and
    transformers' MambaRMSNormGated from 5.23 keep `group_size`; RMSNormGated's group_size=None
    (Mamba2Simple) and the MambaRMSNormGated of transformers before 5.23 (no group_size at all)
    normalize the whole width, the norm's weight size. None: no norm."""
    if norm is None:
        return None
    size = getattr(norm, "group_size", None)
    if size is None:
        weight = getattr(norm, "weight", None)
        size = int(weight.shape[0]) if hasattr(weight, "shape") and len(weight.shape) == 1 else None
    return size


def _options(kind: _Kind, module: Any, present: set[str]) -> dict[str, Any]:
    """The loader's options where the reference module keeps them (None: not kept there).
    docs/python.md lists the upstream file and attribute of each."""
    a = lambda path: _attr(module, path)
    if kind.key in ("ssm_kernel_diag", "ssm_kernel_dplr"):
        # SSMKernel keeps dt_transform, SSMKernelDiag (and its subclass SSMKernelDPLR) the rest;
        # a given version of ssm.py has either force_real (earlier) or is_real (later).
        o = {n: a("kernel." + n) for n in ("dt_transform", "real_transform", "imag_transform", "dt_fast",
                                            "bandlimit", "is_real", "force_real")}
        if kind.key == "ssm_kernel_diag":  # SSMKernelDPLR inherits disc but never reads it
            o["disc"] = a("kernel.disc")
        o["bidirectional"] = a("bidirectional")
    elif kind.key == "dss":
        o = {"version": a("kernel.version"), "epsilon": a("kernel.epsilon"),
             "max_real_lambda": a("kernel.max_real_Lambda"), "hyper": a("hyper"),
             "max_kernel_length": a("max_kernel_length"), "bidirectional": a("bidirectional")}
    elif kind.key == "hyena":
        # HyenaOperator does not keep filter_cls (a constructor argument only): the filter_fn.*
        # state_dict names are HyenaFilter's.
        o = {n: a(n) for n in ("num_heads", "num_blocks", "inner_factor", "outer_mixing", "post_order_ffn")}
        o["activation"] = _activation(a("activation"))
        o["normalized"] = a("filter_fn.normalized")
        o["bias"] = a("filter_fn.use_bias")
        o["modulate"] = a("filter_fn.modulation.modulate")
        o["shift"] = a("filter_fn.modulation.shift")
    elif kind.key == "mamba":
        o = {}
        # transformers' FalconMambaMixer: weightless RMSNorms of Δ, B and C, ε = rms_eps (the
        # config's mixer_rms_eps). Its norms hold no state_dict tensor: before transformers 5.24
        # the non-persistent buffers b_c_rms and dt_rms, from then dt_layernorm, b_layernorm and
        # c_layernorm modules whose weight is a non-persistent buffer.
        weightless = a("dt_layernorm") is not None and "dt_layernorm.weight" not in present
        if type(module).__name__.startswith("FalconMamba") or a("b_c_rms") is not None or weightless:
            o = {"b_c_dt_rms": True,
                 "mixer_rms_eps": _first(a("rms_eps"), a("dt_layernorm.eps"), a("config.mixer_rms_eps"))}
        elif "dt_layernorm.weight" in present:  # Jamba's weighted norms: JambaRMSNorm.variance_epsilon
            o["rms_norm_eps"] = _first(a("dt_layernorm.variance_epsilon"), a("dt_layernorm.eps"))
    elif kind.key == "mamba2":
        # mamba_ssm's Mamba2 / Mamba2Simple, or transformers' Mamba2Mixer (n_groups, time_step_limit,
        # norm.variance_epsilon). transformers keeps rms_norm but its forward applies the norm
        # whatever it says: not read.
        limit = _first(a("dt_limit"), a("time_step_limit"))
        o = {"ngroups": _first(a("ngroups"), a("n_groups")), "chunk_size": a("chunk_size"),
             "rmsnorm": a("rmsnorm"), "norm_eps": _first(a("norm.eps"), a("norm.variance_epsilon")),
             "norm_group_size": _norm_group_size(a("norm")),
             "norm_before_gate": _first(a("norm_before_gate"), a("norm.norm_before_gate"))}
        if isinstance(limit, (tuple, list)) and len(limit) == 2:
            o["dt_min"], o["dt_max"] = float(limit[0]), float(limit[1])
    else:
        o = {}
    return {k: v for k, v in o.items() if v is not None}


def _host(t: Any) -> Any:
    """A state_dict tensor as the loaders read it: in place when it is on the CPU and contiguous,
    else a contiguous CPU copy."""
    if not hasattr(t, "is_contiguous"):
        return t
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return t if t.is_contiguous() else t.contiguous()


def from_module(module: Any, length: int | None = None, *, x: Any = None, z: Any = None,
                dtype: str | None = None, **options: Any) -> Any:
    """The library's operator(s) of a reference PyTorch module, from its parameters.

    module: a ``torch.nn.Module`` with the parameter names of one of the reference modules the
    C++ loaders read (``mixlens/io/reference_params.hpp``):

    - state-spaces/s4 ``S4D`` (models/s4/s4d.py): one Operator (H channels) of length ``length``;
    - state-spaces/s4 ``FFTConv`` with ``SSMKernelDiag`` (S4D) or ``SSMKernelDPLR`` (S4), and the
      DSS author's ``DSS``: a list of Operators, one per kernel channel c, bound to ``length``
      (module output channel c·H + h is channel h of operator c; a bidirectional module gives
      non-causal two-sided operators);
    - safari's ``HyenaOperator``: bound to its input ``x`` (d_model × L); the operator acts on the
      value v (``op.input_signal``) and out_proj(op.apply(op.input_signal)) is the layer's output;
    - state-spaces/mamba ``Mamba`` (its selective scan; also transformers' MambaMixer names):
      bound to ``x``, the conv's output (d_inner × L, x_proj's input) and the gate input ``z``
      (optional): op.apply(x) is SiLU(z) ⊙ (scan + D·x);
    - state-spaces/mamba ``Mamba2``: bound to the layer input ``x`` (d_model × L); the operator is
      the SSD per channel with D and the gated norm folded, acting on ``op.input_signal`` (the
      conv output u); its apply gives out_proj's SSM input.

    Only each module's linear part is the operator: what follows the D skip (activation, GLU,
    output_linear) is not. The options the reference keeps in attributes (FFTConv's kernel
    ``disc``, ``dt_transform``…, ``bidirectional``; DSS's kernel ``version``; HyenaFilter's
    ``normalized``…; Mamba2's ``ngroups``, ``dt_limit``…, transformers' Mamba2Mixer ``n_groups``,
    ``time_step_limit``…; docs/python.md names each upstream attribute) are read from the module;
    keyword arguments (the loaders' option names) override them. dtype: 'float32' or
    'float64'; default float32 when every floating-point tensor (and x, z) is float32, else
    float64. The operator owns its parameters: changing the module afterwards does not change it.
    A module on a CUDA device (or x, z there) gives operators on that device (:meth:`Operator.to`),
    where this mixlens has its CUDA backend.
    """
    if not (hasattr(module, "state_dict") and callable(module.state_dict)):
        raise _core.Error("mixlens.from_module: argument 'module': expected a torch.nn.Module, got "
                          + _class_name(module))
    state = {k: v for k, v in module.state_dict().items() if hasattr(v, "shape")}
    kind = _recognise(list(state), module)
    opts = _options(kind, module, set(state))
    opts.update(options)
    tensors = {k: _host(v) for k, v in state.items()}
    ops = _core._load_reference_module(kind.key, _class_name(module), tensors, opts,
                                       length, _host(x), _host(z), dtype)
    device = _cuda_device([*state.values(), x, z])
    if device is None:
        return ops
    return [op.to(device) for op in ops] if isinstance(ops, list) else ops.to(device)


def _cuda_device(tensors: list[Any]) -> Any:
    """The CUDA device of the tensors that are on one (the operators go there too), or None."""
    devices = {str(t.device) for t in tensors if getattr(getattr(t, "device", None), "type", "cpu") == "cuda"}
    if len(devices) > 1:
        raise _core.Error("mixlens: the tensors given are on several CUDA devices: " + ", ".join(sorted(devices)))
    return devices.pop() if devices else None
