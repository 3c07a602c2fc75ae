"""torch modules laid out as the reference modules are: their parameters and buffers under the
upstream names (nested submodules, as state_dict names them), the options the upstream classes keep
in attributes where they keep them, and as forward the float64 re-implementation of the upstream
forward in tests/data/make_reference_module_fixtures.py (imported from there; its make_* functions
draw the random weights)."""

import importlib.util
import pathlib

import numpy as np
import torch

_path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "make_reference_module_fixtures.py"
_spec = importlib.util.spec_from_file_location("make_reference_module_fixtures", _path)
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


class ReferenceModule(torch.nn.Module):
    """Holds a state_dict (numpy arrays) as float64 parameters (int64 ones as buffers) under their
    dotted names, and `attributes` {dotted path: value}; forward(*inputs) is
    fn(self.state_dict(), *inputs) without autograd."""

    def __init__(self, state_dict, fn, attributes=None):
        super().__init__()
        for name, value in state_dict.items():
            owner, leaf = self._owner(name)
            t = torch.as_tensor(np.asarray(value))
            if t.dtype in (torch.int32, torch.int64):
                owner.register_buffer(leaf, t)
            else:
                owner.register_parameter(leaf, torch.nn.Parameter(t.to(torch.float64)))
        for path, value in (attributes or {}).items():
            owner, leaf = self._owner(path)
            setattr(owner, leaf, value)
        self._fn = fn

    def _owner(self, dotted):
        *path, leaf = dotted.split(".")
        owner = self
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        return owner, leaf

    def forward(self, *inputs):
        with torch.no_grad():
            return self._fn(self.state_dict(), *[torch.as_tensor(i) for i in inputs])


def reference_module(class_name, state_dict, fn, attributes=None):
    """A ReferenceModule whose class is named as the upstream one (messages name it)."""
    return type(class_name, (ReferenceModule,), {})(state_dict, fn, attributes)


def s4d(rng):
    """S4D (models/s4/s4d.py) of 3 channels, N = 8; input (H, L)."""
    sd, u, _, _ = fixtures.make_s4d_module(rng)
    return reference_module("S4D", sd, fixtures.s4d_module), u


_DIAG = {"dt_transform": "exp", "real_transform": "exp", "imag_transform": "none", "disc": "zoh"}


def _kernel_attributes(cfg):
    """ssm.py: SSMKernel keeps dt_transform; SSMKernelDiag (and SSMKernelDPLR, its subclass) disc,
    dt_fast, the transforms, bandlimit and, by version, force_real (earlier) or is_real (later);
    FFTConv keeps bidirectional."""
    names = ["dt_transform", "real_transform", "imag_transform", "disc", "dt_fast", "bandlimit"]
    attributes = {"kernel." + n: cfg.get(n, None if n == "bandlimit" else False) for n in names}
    if "force_real" in cfg:  # the earlier ssm.py: no is_real
        attributes["kernel.force_real"] = cfg["force_real"]
    else:
        attributes["kernel.is_real"] = cfg.get("is_real", False)
    attributes["bidirectional"] = cfg.get("bidirectional", False)
    return attributes


def fft_conv_diag(rng, channels=2, h=3, n2=4, n_ssm=1, **cfg):
    """FFTConv with SSMKernelDiag; cfg changes _DIAG (disc, transforms, dt_tie, bandlimit,
    bidirectional…); input (H, L), output (channels·H, L)."""
    cfg = dict(_DIAG, **cfg)
    sd, u, _, cfg = fixtures.make_diag(rng, cfg, h=h, n2=n2, channels=channels, n_ssm=n_ssm, prefix="")
    forward = lambda sd_, u_: fixtures.ssm_kernel_diag(sd_, u_, cfg, "")
    return reference_module("FFTConv", sd, forward, _kernel_attributes(cfg)), u


def fft_conv_dplr(rng, channels=2, h=4, n2=3, n_ssm=2, rank=2, l_kernel=16, length=12, **cfg):
    """FFTConv with SSMKernelDPLR (S4): C̃ stored with l_kernel; input (H, length)."""
    cfg = dict(_DIAG, **cfg)
    sd, u, _, cfg = fixtures.make_dplr(rng, cfg, h=h, n2=n2, channels=channels, n_ssm=n_ssm, rank=rank,
                                       l_kernel=l_kernel, length=length, prefix="")
    forward = lambda sd_, u_: fixtures.ssm_kernel_dplr(sd_, u_, cfg, "")
    return reference_module("FFTConv", sd, forward, _kernel_attributes(cfg)), u


def dss(rng, version="softmax", channels=2, sep_dt=True, bidirectional=False):
    """The DSS author's DSS (DSSKernel version); input (H, L)."""
    sd, u, _, cfg = fixtures.make_dss(rng, version, channels=channels, sep_dt=sep_dt, bidirectional=bidirectional)
    forward = lambda sd_, u_: fixtures.dss_module(sd_, u_, cfg)
    attributes = {"kernel.version": version, "kernel.epsilon": cfg["epsilon"], "kernel.max_real_Lambda": 1e-4,
                  "bidirectional": bidirectional, "hyper": False, "max_kernel_length": None}
    return reference_module("DSS", sd, forward, attributes), u


def hyena(rng, normalized=False, shift=0.0, bias=True, order=3, length=12):
    """safari's HyenaOperator (d_model 3, l_max 16); input (L, d_model), as its forward takes it."""
    cfg = {"normalized": normalized, "modulate": True, "shift": shift, "bias": bias}
    sd, u, _, cfg = fixtures.make_hyena(rng, cfg, d_model=3, order=order, filter_order=4, emb_dim=5,
                                        num_inner_mlps=2, k_short=3, l_max=16, length=length)
    forward = lambda sd_, u_: fixtures.hyena_operator(sd_, u_, cfg)
    attributes = {"num_heads": 1, "num_blocks": 1, "inner_factor": 1, "outer_mixing": False,
                  "post_order_ffn": False, "activation": torch.nn.Identity(),
                  "filter_fn.normalized": normalized, "filter_fn.use_bias": bias,
                  "filter_fn.modulation.modulate": True, "filter_fn.modulation.shift": shift}
    return reference_module("HyenaOperator", sd, forward, attributes), u.T


def mamba(rng, class_name="Mamba", **kw):
    """Mamba's selective scan (mamba_simple.py; make_mamba's cfg, x_bias, norms); inputs x, z (D_inner, L).
    With norms (JambaMambaMixer) the JambaRMSNorms keep their ε as variance_epsilon."""
    sd, (x, z), _, cfg = fixtures.make_mamba(rng, prefix="", **kw)
    forward = lambda sd_, x_, z_: fixtures.mamba_mixer(sd_, x_, z_, "", cfg)
    attributes = {}
    if kw.get("norms"):
        eps = cfg.get("rms_norm_eps", 1e-6)
        attributes = {f"{n}_layernorm.variance_epsilon": eps for n in ("dt", "b", "c")}
    return reference_module(class_name, sd, forward, attributes), x, z


def _mamba2_attributes(flavour, ngroups, dt_limit, d_ssm):
    """Where each flavour keeps the options. mamba_ssm: Mamba2 (mamba2.py) ngroups, dt_limit,
    chunk_size, rmsnorm, norm_before_gate and its RMSNormGated (layernorm_gated.py) eps,
    group_size = d_ssm / ngroups, norm_before_gate; Mamba2Simple (mamba2_simple.py) no rmsnorm or
    norm_before_gate of its own and RMSNormGated(group_size=None): one group. transformers'
    Mamba2Mixer: n_groups, time_step_limit, chunk_size, and MambaRMSNormGated's variance_epsilon,
    with group_size = d_ssm / n_groups from 5.23 (transformers5) and no group_size (one group)
    before (transformers4)."""
    if flavour == "mamba_ssm":
        return {"ngroups": ngroups, "dt_limit": dt_limit, "chunk_size": 256, "rmsnorm": True,
                "norm_before_gate": False, "norm.eps": 1e-5, "norm.group_size": d_ssm // ngroups,
                "norm.norm_before_gate": False}
    if flavour == "simple":
        return {"ngroups": ngroups, "dt_limit": dt_limit, "chunk_size": 256, "norm.eps": 1e-5,
                "norm.group_size": None, "norm.norm_before_gate": False}
    attributes = {"n_groups": ngroups, "time_step_limit": dt_limit, "chunk_size": 256, "rms_norm": True,
                  "norm.variance_epsilon": 1e-5}
    if flavour == "transformers5":
        attributes["norm.group_size"] = d_ssm // ngroups
    return attributes


_MAMBA2_CLASS = {"mamba_ssm": "Mamba2", "simple": "Mamba2Simple", "transformers4": "Mamba2Mixer",
                 "transformers5": "Mamba2Mixer"}


def mamba2(rng, ngroups=2, dt_limit=(0.002, 0.05), d_has_hdim=False, flavour="mamba_ssm"):
    """Mamba2 (mamba2.py) without the gated-MLP part, or a relative laid out the same way (flavour:
    _mamba2_attributes): out_proj reads the SSM output alone; input (L, d_model)."""
    nheads, headdim = 4, 2
    d_ssm = nheads * headdim
    one_group = flavour in ("simple", "transformers4")
    cfg = {"ngroups": ngroups, "norm_eps": 1e-5, "dt_min": dt_limit[0], "dt_max": dt_limit[1],
           "norm_group_size": d_ssm if one_group else d_ssm // ngroups}
    sd, u, _, cfg = fixtures.make_mamba2(rng, cfg, d_model=3, nheads=nheads, headdim=headdim, d_state=3, d_conv=4,
                                         d_mlp=0, d_has_hdim=d_has_hdim, bias=True, conv_bias=True, prefix="")
    sd = {k: v for k, v in sd.items() if not k.startswith("backbone.")}  # the block's norm, not the mixer's
    forward = lambda sd_, u_: fixtures.mamba2_mixer(sd_, u_, cfg, "")
    attributes = _mamba2_attributes(flavour, ngroups, dt_limit, d_ssm)
    return reference_module(_MAMBA2_CLASS[flavour], sd, forward, attributes), u.T
