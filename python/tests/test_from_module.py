"""mixlens.from_module on torch modules laid out as the reference modules (reference_modules.py):
every module kind the C++ loaders read, against the module's own forward, in float64."""


import numpy as np
import pytest

import mixlens

torch = pytest.importorskip("torch")
import reference_modules as rm  # noqa: E402  (needs torch)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return np.abs(a - b).max() / np.abs(b).max()


def check_dense(op, x, tol=1e-12):
    """materialize_full()·x = apply(x)."""
    x = np.asarray(x)
    y = np.asarray(op.apply(x))
    dense = np.asarray(op.materialize_full()) @ x.ravel()
    assert np.abs(dense - y.ravel()).max() <= tol * max(1.0, np.abs(y).max())


def stacked(ops, u):
    """FFTConv's and DSS's output: channel c·H + h is channel h of operator c."""
    return np.concatenate([np.asarray(op.apply(u)) for op in ops])


def test_s4d():
    module, u = rm.s4d(np.random.default_rng(1))
    op = mixlens.from_module(module, length=u.shape[1])
    assert isinstance(op, mixlens.Operator)
    assert (op.name, op.control, op.time_invariant, op.dtype) == ("S4D", "fixed", True, "float64")
    assert op.shape == (3, 3, u.shape[1])
    y = op.apply(torch.from_numpy(u))
    assert isinstance(y, torch.Tensor)  # results as the input's framework
    assert rel(y, module(u)) < 1e-10
    check_dense(op, u)
    assert isinstance(op.materialize(), torch.Tensor)  # the module's framework
    assert op.input_signal is None


@pytest.mark.parametrize("cfg", [
    {},  # the defaults: ZOH, 2 kernel channels
    {"disc": "bilinear", "dt_transform": "softplus", "dt_tie": False, "dt_fast": True, "real_transform": "relu",
     "imag_transform": "softplus", "bandlimit": 0.1},
    {"is_real": True, "dt_transform": "sigmoid", "real_transform": "sigmoid"},
    {"force_real": True, "imag_transform": "exp"},
], ids=["zoh", "bilinear", "is_real", "force_real"])
def test_fft_conv_diag(cfg):
    module, u = rm.fft_conv_diag(np.random.default_rng(2), **cfg)
    ops = mixlens.from_module(module, length=u.shape[1])
    assert isinstance(ops, list) and len(ops) == 2
    assert rel(stacked(ops, u), module(u)) < 1e-10
    for op in ops:
        check_dense(op, u)


def test_fft_conv_dplr():
    module, u = rm.fft_conv_dplr(np.random.default_rng(3), dt_transform="softplus", imag_transform="exp")
    ops = mixlens.from_module(module, length=u.shape[1])
    assert [op.name for op in ops] == ["S4", "S4"]
    assert rel(stacked(ops, u), module(u)) < 1e-10
    check_dense(ops[1], u)


@pytest.mark.parametrize("version,sep_dt", [("softmax", True), ("exp", False), ("exp-re-im", True)])
def test_dss(version, sep_dt):
    module, u = rm.dss(np.random.default_rng(4), version=version, sep_dt=sep_dt)
    ops = mixlens.from_module(module, length=u.shape[1])
    assert ops[0].name == "DSS"
    assert rel(stacked(ops, u), module(u)) < 1e-10
    check_dense(ops[0], u)


@pytest.mark.parametrize("make", [
    lambda rng: rm.fft_conv_diag(rng, n_ssm=3, bidirectional=True),
    lambda rng: rm.dss(rng, version="exp", sep_dt=False, bidirectional=True),
], ids=["fft_conv", "dss"])
def test_bidirectional(make):
    module, u = make(np.random.default_rng(5))
    ops = mixlens.from_module(module, length=u.shape[1])
    assert rel(stacked(ops, u), module(u)) < 1e-10
    m = np.asarray(ops[0].materialize(0))
    assert np.abs(np.triu(m, 1)).max() > 0  # the future too: two-sided
    check_dense(ops[0], u)


@pytest.mark.parametrize("kw", [{}, {"normalized": True, "shift": 0.1, "bias": False, "order": 2, "length": 16}],
                         ids=["order3", "normalized"])
def test_hyena(kw):
    module, u = rm.hyena(np.random.default_rng(6), **kw)  # u: (L, d_model), the module's layout
    x = np.ascontiguousarray(u.T)                        # the library's: (d_model, L)
    op = mixlens.from_module(module, x=x)
    assert (op.name, op.control) == ("Hyena", "diagonal")
    v = op.input_signal
    assert v.shape == x.shape
    y = np.asarray(op.apply(v))  # M·v, then out_proj
    out = module.out_proj.weight.detach().numpy() @ y + module.out_proj.bias.detach().numpy()[:, None]
    assert rel(out.T, module(u)) < 1e-10
    check_dense(op, v)


@pytest.mark.parametrize("name,kw,options", [
    ("mamba", {}, {}),
    ("jamba", {"cfg": {"rms_norm_eps": 1e-2}, "x_bias": True, "norms": True}, {}),  # ε read from the norms
    ("falcon", {"cfg": {"b_c_dt_rms": True, "mixer_rms_eps": 1e-3}}, {"b_c_dt_rms": True, "mixer_rms_eps": 1e-3}),
    ("fixed_b", {"cfg": {"delta_softplus": False, "is_variable_B": False}, "dt_bias": 0.05},
     {"delta_softplus": False, "is_variable_B": False}),
])
def test_mamba(name, kw, options):
    module, x, z = rm.mamba(np.random.default_rng(7), **kw)
    op = mixlens.from_module(module, x=x, z=z, **options)
    assert (op.name, op.control, op.time_invariant) == ("S6", "non_diagonal", False)
    assert op.input_signal is x
    assert rel(op.apply(x), module(x, z)) < 1e-10
    check_dense(op, x)


def test_mamba_falcon_mixer_class_sets_its_norms():
    """transformers' FalconMambaMixer keeps mixer_rms_eps as rms_eps: read from the class."""
    module, x, z = rm.mamba(np.random.default_rng(7), class_name="FalconMambaMixer",
                            cfg={"b_c_dt_rms": True, "mixer_rms_eps": 1e-3})
    module.rms_eps = 1e-3
    assert rel(mixlens.from_module(module, x=x, z=z).apply(x), module(x, z)) < 1e-10


def test_mamba_weightless_norms_are_falcon_mamba():
    """transformers 5.24's FalconMambaMixer: dt_layernorm, b_layernorm, c_layernorm modules keeping
    eps, whose weight is a non-persistent buffer (no state_dict tensor); read whatever the class."""
    module, x, z = rm.mamba(np.random.default_rng(7), class_name="Mixer",
                            cfg={"b_c_dt_rms": True, "mixer_rms_eps": 1e-3})
    for n in ("dt", "b", "c"):
        norm = torch.nn.Module()
        norm.eps = 1e-3
        norm.register_buffer("weight", torch.ones(4, dtype=torch.float64), persistent=False)
        setattr(module, f"{n}_layernorm", norm)
    assert "dt_layernorm.weight" not in module.state_dict()
    assert rel(mixlens.from_module(module, x=x, z=z).apply(x), module(x, z)) < 1e-10


@pytest.mark.parametrize("kw", [
    {},
    {"ngroups": 1, "dt_limit": (0.0, float("inf")), "d_has_hdim": True},
    {"flavour": "simple"},         # Mamba2Simple: RMSNormGated(group_size=None), one group of 8
    {"flavour": "transformers5"},  # Mamba2Mixer: n_groups, time_step_limit, norm.variance_epsilon
    {"flavour": "transformers4"},  # Mamba2Mixer before 5.23: MambaRMSNormGated without group_size
], ids=["groups", "hdim", "simple", "transformers5", "transformers4"])
def test_mamba2(kw):
    module, u = rm.mamba2(np.random.default_rng(8), **kw)  # u: (L, d_model)
    x = np.ascontiguousarray(u.T)
    op = mixlens.from_module(module, x=x)
    assert (op.name, op.heads, op.out_channels) == ("Mamba-2 SSD", 4, 8)
    s = op.input_signal  # the conv output u (d_ssm, L)
    y = np.asarray(op.apply(s))  # the gated norm's output: out_proj's input
    out = module.out_proj.weight.detach().numpy() @ y + module.out_proj.bias.detach().numpy()[:, None]
    assert rel(out.T, module(u)) < 1e-10
    check_dense(op, s)


def test_mamba2_options_read_where_kept():
    """A wrong group size, Δ limit or ε from the attributes changes the operator."""
    for flavour, attr, value in [("transformers5", "time_step_limit", (0.0, float("inf"))),
                                 ("transformers4", "n_groups", 1), ("mamba_ssm", "dt_limit", (0.0, float("inf")))]:
        module, u = rm.mamba2(np.random.default_rng(8), flavour=flavour)
        x = np.ascontiguousarray(u.T)
        setattr(module, attr, value)
        op = mixlens.from_module(module, x=x)
        out = module.out_proj.weight.detach().numpy() @ np.asarray(op.apply(op.input_signal))
        out += module.out_proj.bias.detach().numpy()[:, None]
        assert rel(out.T, module(u)) > 1e-6, (flavour, attr)


def test_dss_hyper_read_from_the_module():
    module, u = rm.dss(np.random.default_rng(4))
    module.hyper = True  # DSS.hyper: hyper_act was set
    with pytest.raises(mixlens.Error, match="hyper_act"):
        mixlens.from_module(module, length=u.shape[1])


def test_relatives_with_other_tensors_are_not_mamba2():
    """Mamba2Simple with learnable_init_states (init_states) and mamba3.py's Mamba3 (dt_bias but no
    A_log) are not Mamba2 layers the loader models."""
    module, u = rm.mamba2(np.random.default_rng(8), flavour="simple")
    module.init_states = torch.nn.Parameter(torch.zeros(4, 2, 3, dtype=torch.float64))
    with pytest.raises(mixlens.Error, match=r"nearest: Mamba2 .*unexpected 'init_states'"):
        mixlens.from_module(module, x=np.zeros((3, 4)))
    module, u = rm.mamba2(np.random.default_rng(8))
    del module.A_log
    module.B_bias = torch.nn.Parameter(torch.ones(4, 1, 3, dtype=torch.float64))
    with pytest.raises(mixlens.Error, match=r"nearest: Mamba2 .*missing 'A_log'"):
        mixlens.from_module(module, x=np.zeros((3, 4)))


def test_float32_module_computes_in_float32():
    module, u = rm.s4d(np.random.default_rng(1))
    op = mixlens.from_module(module.float(), length=u.shape[1])
    assert op.dtype == "float32"
    assert rel(op.apply(u.astype(np.float32)), module.double()(u)) < 1e-5
    assert mixlens.from_module(module.float(), length=4, dtype="float64").dtype == "float64"


def test_operator_owns_its_parameters():
    module, u = rm.s4d(np.random.default_rng(1))
    op = mixlens.from_module(module, length=u.shape[1])
    y = np.asarray(op.apply(u))
    with torch.no_grad():
        module.D.add_(1.0)
    assert np.array_equal(np.asarray(op.apply(u)), y)
    del module
    assert np.array_equal(np.asarray(op.apply(u)), y)


# ---- errors ---------------------------------------------------------------------------------

def test_unknown_module_names_class_and_keys():
    with pytest.raises(mixlens.Error) as e:
        mixlens.from_module(torch.nn.Linear(3, 4), length=8)
    msg = str(e.value)
    assert "argument 'module'" in msg and "torch.nn.modules.linear.Linear" in msg
    assert "'weight', 'bias'" in msg and "S4D" in msg and "Mamba2" in msg
    with pytest.raises(mixlens.Error, match="expected a torch.nn.Module, got numpy.ndarray"):
        mixlens.from_module(np.zeros(3), length=8)


def test_container_names_the_submodule():
    conv, _ = rm.fft_conv_diag(np.random.default_rng(2))
    block = torch.nn.Module()
    block.layers = torch.nn.ModuleList([torch.nn.Module()])
    block.layers[0].layer = conv
    with pytest.raises(mixlens.Error, match=r"submodule 'layers.0.layer' is a FFTConv with SSMKernelDiag \(S4D\): "
                                            r"pass module.layers\[0\].layer"):
        mixlens.from_module(block, length=8)


def test_nearest_kind_missing_and_unexpected_keys():
    module, _ = rm.mamba2(np.random.default_rng(8))
    del module.dt_bias  # no longer recognisable as Mamba2: the nearest kind's missing tensors
    module.extra = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    with pytest.raises(mixlens.Error) as e:
        mixlens.from_module(module, x=np.zeros((3, 4)))
    msg = str(e.value)
    assert "got reference_modules.Mamba2 with state_dict keys" in msg
    assert "nearest: Mamba2" in msg and "missing 'dt_bias'" in msg and "unexpected 'extra'" in msg


def test_missing_parameter_names_tensor_and_class():
    module, u = rm.s4d(np.random.default_rng(1))
    del module.kernel.A_imag
    with pytest.raises(mixlens.Error) as e:
        mixlens.from_module(module, length=u.shape[1])
    msg = str(e.value)
    assert msg.startswith("mixlens.from_module: ")
    assert "torch module reference_modules.S4D" in msg and "missing tensor 'kernel.A_imag'" in msg and "(H, N/2)" in msg


def test_wrong_shape_names_tensor():
    module, _ = rm.s4d(np.random.default_rng(1))
    module.D = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    with pytest.raises(mixlens.Error, match=r"tensor 'D' \(the D skip \(H\)\) has shape \(4,\), expected \(3,\)"):
        mixlens.from_module(module, length=8)


def test_wrong_dtype():
    module, _ = rm.s4d(np.random.default_rng(1))
    with pytest.raises(mixlens.Error, match=r"argument 'module': expected tensor '\S+' of float32 or float64.*got float16"):
        mixlens.from_module(module.half(), length=8)
    module, x, z = rm.mamba(np.random.default_rng(7))
    with pytest.raises(mixlens.Error, match="argument 'x'.*complex values"):
        mixlens.from_module(module, x=x + 1j, z=z)
    with pytest.raises(mixlens.Error, match="argument 'dtype': expected None, 'float32' or 'float64', got 'float16'"):
        mixlens.from_module(module, x=x, dtype="float16")


def test_missing_length_and_input():
    module, u = rm.s4d(np.random.default_rng(1))
    with pytest.raises(mixlens.Error, match="argument 'length': expected the sequence length L .*, got None"):
        mixlens.from_module(module)
    with pytest.raises(mixlens.Error, match="argument 'length'.*positive"):
        mixlens.from_module(module, length=0)
    with pytest.raises(mixlens.Error, match="argument 'x': expected None: S4D is time invariant"):
        mixlens.from_module(module, length=4, x=u)
    module, x, z = rm.mamba(np.random.default_rng(7))
    with pytest.raises(mixlens.Error, match="argument 'x': expected the input signal of Mamba"):
        mixlens.from_module(module, length=16)
    with pytest.raises(mixlens.Error, match="argument 'length': expected None or the length of x"):
        mixlens.from_module(module, length=5, x=x)
    with pytest.raises(mixlens.Error, match="argument 'x'"):
        mixlens.from_module(module, x=x[:3], z=z)


def test_options_are_checked():
    module, u = rm.fft_conv_diag(np.random.default_rng(2))
    with pytest.raises(mixlens.Error, match=r"argument 'dics': expected an option of reference_modules.FFTConv \(bandlimit, .*disc.*\), got unknown option"):
        mixlens.from_module(module, length=8, dics="bilinear")
    with pytest.raises(mixlens.Error, match="argument 'disc': expected a string"):
        mixlens.from_module(module, length=8, disc=3)
    module.kernel.disc = "dss"  # read from the module: the loader refuses what it does not model
    with pytest.raises(mixlens.Error, match="unsupported disc 'dss'"):
        mixlens.from_module(module, length=8)
    # A keyword overrides the module's attribute: here, another operator than the module's.
    module.kernel.disc = "zoh"
    ops = mixlens.from_module(module, length=u.shape[1], disc="bilinear")
    assert rel(stacked(ops, u), module(u)) > 1e-6


def test_non_contiguous_and_grad_tensors():
    """Tensors the loaders cannot read in place (non-contiguous) are copied; the result is the same."""
    module, u = rm.s4d(np.random.default_rng(1))
    y = np.asarray(mixlens.from_module(module, length=u.shape[1]).apply(u))
    c = module.kernel.C.detach()
    strided = torch.empty(tuple(reversed(c.shape)), dtype=c.dtype).permute(2, 1, 0)
    strided.copy_(c)
    assert not strided.is_contiguous()
    module.kernel.C = torch.nn.Parameter(strided)
    assert np.array_equal(np.asarray(mixlens.from_module(module, length=u.shape[1]).apply(u)), y)


# ---- transformers' own mixers ---------------------------------------------------------------

def _captured(mixer, u, *names):
    """The inputs of the mixer's submodules `names` during mixer(u) (u: 1 × L × d_model)."""
    seen = {}
    hooks = [getattr(mixer, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0], o)))
             for n in names]
    with torch.no_grad():
        out = mixer(u)
    for h in hooks:
        h.remove()
    return out, seen


@pytest.mark.parametrize("family", ["mamba", "falcon_mamba"])
def test_transformers_mamba_mixer(family):
    """MambaMixer / FalconMambaMixer (its mixer_rms_eps read from the mixer), in float64."""
    transformers = pytest.importorskip("transformers")
    cls = {"mamba": (transformers.MambaConfig, transformers.models.mamba.modeling_mamba.MambaMixer),
           "falcon_mamba": (transformers.FalconMambaConfig,
                            transformers.models.falcon_mamba.modeling_falcon_mamba.FalconMambaMixer)}[family]
    config = cls[0](hidden_size=4, state_size=3, intermediate_size=8, time_step_rank=2, conv_kernel=3,
                    num_hidden_layers=1, mixer_rms_eps=1e-3, use_mambapy=False)
    torch.manual_seed(0)
    # Without the mixer's own initialization where the constructor takes initialize_mixer_weights
    # (transformers 5.25's FalconMambaMixer initializes its norms before making them otherwise). The
    # signature cannot tell: the kernels package wraps the constructor.
    try:
        mixer = cls[1](config, layer_idx=0, initialize_mixer_weights=False)
    except TypeError:  # an older transformers, without the option
        mixer = cls[1](config, layer_idx=0)
    mixer = mixer.double().eval()
    with torch.no_grad():  # the weights as the model's init draws them, perturbed
        mixer.A_log.copy_(torch.log(torch.arange(1.0, 4.0)).expand(8, 3) + 0.2 * torch.randn(8, 3))
        mixer.D.normal_()
        mixer.dt_proj.bias.uniform_(-4.0, -2.0)
    u = torch.randn(1, 7, 4, dtype=torch.float64)
    _, seen = _captured(mixer, u, "in_proj", "x_proj", "out_proj")
    x = seen["x_proj"][0][0].T.contiguous().numpy()  # the conv's SiLU output, d_inner × L
    z = seen["in_proj"][1][0].T[8:].contiguous().numpy()
    y = seen["out_proj"][0][0].T.numpy()
    op = mixlens.from_module(mixer, x=x, z=z)
    assert rel(op.apply(x), y) < 1e-6  # transformers' sequential scan runs B and Δ·B·x in float32
    if family == "falcon_mamba":  # the norms' ε was read: the loader's default (1e-6) is off
        assert rel(mixlens.from_module(mixer, x=x, z=z, mixer_rms_eps=1e-6).apply(x), y) > 1e-5


@pytest.mark.parametrize("n_groups", [1, 2])
def test_transformers_mamba2_mixer(n_groups):
    """Mamba2Mixer: n_groups, time_step_limit, the norm's ε and groups read from the mixer."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Mamba2Config(hidden_size=8, num_heads=4, head_dim=4, n_groups=n_groups, state_size=3,
                                       expand=2, conv_kernel=3, num_hidden_layers=1, chunk_size=4,
                                       time_step_limit=(0.002, 0.05), layer_norm_epsilon=1e-3)
    torch.manual_seed(1)
    mixer = transformers.models.mamba2.modeling_mamba2.Mamba2Mixer(config, layer_idx=0).double().eval()
    with torch.no_grad():
        mixer.norm.weight.uniform_(0.5, 1.5)
    u = torch.randn(1, 9, 8, dtype=torch.float64)
    _, seen = _captured(mixer, u, "out_proj")
    op = mixlens.from_module(mixer, x=u[0].T.contiguous().numpy())
    # MambaRMSNormGated runs in float32 whatever the module's dtype (one group where the library's
    # norm_group_size is wrong: O(1) off)
    assert rel(op.apply(op.input_signal), seen["out_proj"][0][0].T.numpy()) < 1e-6
