#!/usr/bin/env python3
"""Creates the fixtures of tests/io/reference_params_test.cpp: parameters of S4D, DSS, S5 and
Hyena modules stored under the names and shapes their reference code gives them, and the output of
each module's linear part for a random input, computed here step by step after that code.

The reference implementations cannot be imported here (no network, and they pull in their
training frameworks), so each one's forward semantics is re-implemented below, in float64 and
complex128, one function per upstream function, in the order the upstream code computes:

  state-spaces/s4 models/s4/s4d.py at 2ed46fc, S4DKernel.forward and S4D.forward (the
      standalone S4D); s4d_module()
  state-spaces/s4 src/models/sequence/kernels/ssm.py at 81a5d38 (option force_real) and
      070384a (option is_real): param_transform, SSMKernelDiag._get_params and
      SSMKernelDiag.forward (disc zoh and bilinear, with log_vandermonde_naive of
      src/models/functional/vandermonde.py at ab287c6); src/models/sequence/kernels/fftconv.py
      at 43f5b0c, FFTConv.forward (the D skip of shape (channels, H), channels flattened as
      (c h)); ssm_kernel_diag()
  state-spaces/s4 models/s4/s4.py at 070384a: nplr('legs', N, B_clip=2.0), the LegS
      initialization with Im B clipped (no random values); hippo_legs_nplr()
  state-spaces/s4 src/models/sequence/kernels/ssm.py at 070384a: SSMKernelDPLR._omega and
      forward with cauchy_naive (C is the stored C̃, l_kernel > 0, state None, rate 1),
      inside FFTConv.forward; ssm_kernel_dplr()
  ag1988/dlr src/models/sequence/ss/standalone/dss.py at 7bd8645 (the DSS author's standalone
      DSS, versions softmax, exp, exp-re-im, exp-no-scale): reciprocal, DSSKernel._Lambda,
      DSSKernel.forward and DSS.forward up to the D skip; dss_module()
  lindermanlab/S5 s5/ssm.py at d133f4d: discretize_zoh, discretize_bilinear, apply_ssm (the
      associative scan is the sequential recurrence) and S5SSM.setup / __call__ (clip_eigs,
      step_rescale, conj_sym); s5_ssm()
  HazyResearch/safari src/models/sequence/hyena.py at c1b5c7b: PositionalEmbedding,
      ExponentialModulation, HyenaFilter.filter and forward with fftconv_ref, and
      HyenaOperator.forward (the whole layer: in_proj, short filter, the gated recurrence,
      out_proj; one head, one block); hyena_operator()
  state-spaces/mamba mamba_ssm/modules/mamba2.py, Mamba2.forward without the fused kernels
      (in_proj split, conv1d, dt_limit, D_has_hdim, RMSNormGated, d_mlp; the SSD of
      mamba_chunk_scan_combined run as the recurrence of Mamba2.step); mamba2_mixer()
  state-spaces/mamba mamba_ssm/modules/mamba_simple.py, Mamba.forward (the unfused path) from
      the conv's output on, and mamba_ssm/ops/selective_scan_interface.py,
      selective_scan_ref (delta_softplus on and off, delta_bias, B or C varying in time or of
      shape (D, N), D, the gate z); with the RMSNorms of δ, B and C of transformers'
      models/jamba/modeling_jamba.py (JambaRMSNorm, JambaMambaMixer.slow_forward) and
      models/falcon_mamba/modeling_falcon_mamba.py (rms_forward, mixer_rms_eps), and an
      x_proj bias; mamba_mixer()

Only the linear part of each module is the mixer: what follows the D skip (activation,
dropout, output_linear, GLU) is not, and the stored output is the sum of the convolution (or
scan) and the D term. For Hyena the output is the whole HyenaOperator's, (d_model, L); for Mamba the scan's,
SiLU(z)-gated, with z (D_inner, L) stored beside the input. The upstream kernels end in .float() (float32); the references here stay
in float64 so that the test can compare to 1e-10.

For each fixture NAME, under reference_params/:
  NAME.safetensors      the module's state_dict (float64), names as the module stores them
                        (under the prefix its make_* function gives)
  NAME_npy/             S5 fixtures also as one .npy per parameter under its flattened flax
                        name: what unzipping numpy.savez(NAME.npz, **params) gives
  s5_zoh.npz, s5_zoh_compressed.npz   the same as numpy.savez and numpy.savez_compressed
                        archives; s5_zoh_extra.npz adds a member that is not a .npy
  NAME.io.safetensors   input (H, L) and output (channels·H, L), float64, one batch element
                        (and the gate's input z for Mamba); the module's configuration as JSON in the header's __metadata__
                        "config"

Needs numpy and safetensors only (`pip install numpy safetensors`):

    python3 make_reference_module_fixtures.py [OUT_DIR]   # default: reference_params/ beside it
"""

import io as io_module
import json
import math
import os
import sys
import zipfile

import numpy as np
from safetensors.numpy import save_file

L = 16  # sequence length of every fixture


# ---- state-spaces/s4 -----------------------------------------------------------------------

def param_transform(p, transform):
    """ssm.py param_transform: a (positive) parameter under a transform."""
    if transform == "none":
        return p
    if transform == "exp":
        return np.exp(p)
    if transform == "relu":
        return np.maximum(p, 0.0) + 1e-4
    if transform == "sigmoid":
        return 1.0 / (1.0 + np.exp(-p))
    if transform == "softplus":  # torch.nn.functional.softplus: beta 1, threshold 20
        return np.where(p > 20.0, p, np.log1p(np.exp(np.minimum(p, 20.0))))
    raise ValueError(transform)


def log_vandermonde_naive(v, x, length):
    """vandermonde.py log_vandermonde_naive with conj=True: 2·Re Σ_n v_n exp(x_n l)."""
    vandermonde_matrix = np.exp(x[..., None] * np.arange(length))
    return 2 * np.einsum("...n,...nl->...l", v, vandermonde_matrix).real


def fft_conv(k, u, d):
    """FFTConv.forward (and S4D.forward, DSS.forward): k (C, H, L), u (H, L), d (C, H) or (H,);
    the causal convolution through an FFT of size 2L, plus the D term; (c h) flattened."""
    length = u.shape[-1]
    k_f = np.fft.rfft(k, n=2 * length)
    u_f = np.fft.rfft(u, n=2 * length)
    y = np.fft.irfft(u_f[None] * k_f, n=2 * length)[..., :length]  # (C H L)
    y = y + u[None] * d.reshape(-1, u.shape[0])[..., None]
    return y.reshape(-1, length)


def s4d_module(sd, u):
    """models/s4/s4d.py: S4DKernel.forward, then S4D.forward up to the D skip."""
    dt = np.exp(sd["kernel.log_dt"])                                      # (H)
    c = sd["kernel.C"][..., 0] + 1j * sd["kernel.C"][..., 1]             # (H N)
    a = -np.exp(sd["kernel.log_A_real"]) + 1j * sd["kernel.A_imag"]      # (H N)
    dta = a * dt[:, None]
    k = dta[..., None] * np.arange(u.shape[-1])                          # (H N L)
    c = c * (np.exp(dta) - 1.0) / a
    k = 2 * np.einsum("hn,hnl->hl", c, np.exp(k)).real
    return fft_conv(k[None], u, sd["D"])


def ssm_kernel_diag(sd, u, cfg, prefix):
    """ssm.py SSMKernelDiag._get_params and forward (state None, rate 1), inside
    FFTConv.forward."""
    g = lambda name: sd[prefix + "kernel." + name]
    length = u.shape[-1]
    h = u.shape[0]
    if cfg.get("is_real", False):
        a = -param_transform(g("A_real"), cfg["real_transform"]) + 0j
        b = g("B") + 0j
        c = g("C") + 0j
    else:
        a = (-param_transform(g("A_real"), cfg["real_transform"])
             - 1j * param_transform(g("A_imag"), cfg["imag_transform"]))   # (S N)
        b = g("B")[..., 0] + 1j * g("B")[..., 1]                           # (1 S N)
        c = g("C")[..., 0] + 1j * g("C")[..., 1]                           # (C H N)
    inv_dt = np.sinh(g("inv_dt")) if cfg.get("dt_fast", False) else g("inv_dt")
    dt = param_transform(inv_dt, cfg["dt_transform"])                      # (H 1) or (H N)
    if cfg.get("force_real", False):
        a = a.real + 0j
    if cfg.get("bandlimit") is not None:
        freqs = dt * np.abs(a.imag) / (2 * math.pi)
        mask = np.where(freqs < cfg["bandlimit"] * 0.5, 1, 0)
        c = c * mask
    repeat = h // a.shape[0]
    a = np.tile(a, (repeat, 1))                                            # '(v t) n'
    b = np.tile(b, (1, repeat, 1))
    dta = dt * a
    c = (b[:, None, :, :] * c).reshape(-1, h, a.shape[-1])
    if cfg["disc"] == "zoh":
        c = c * (np.exp(dta) - 1.0) / a
        k = log_vandermonde_naive(c, dta, length)
    elif cfg["disc"] == "bilinear":
        c = c * (1.0 / (1.0 - dta / 2)) * dt
        da = (1.0 + dta / 2) / (1.0 - dta / 2)
        k = log_vandermonde_naive(c, np.log(da), length)
    else:
        raise ValueError(cfg["disc"])
    return fft_conv(k, u, sd[prefix + "D"])


def cauchy_naive(v, z, w):
    """functional/cauchy.py (and kernels/ssm.py's fallback) cauchy_naive: Σ_n v_n/(z − w_n)
    over the conjugate-extended v and w."""
    v = np.concatenate([v, v.conj()], -1)
    w = np.concatenate([w, w.conj()], -1)
    return (v[..., None] / (z[..., None, :] - w[..., None])).sum(-2)


def ssm_kernel_dplr(sd, u, cfg, prefix):
    """ssm.py SSMKernelDPLR._get_params, _omega and forward (state None, rate 1, l_kernel > 0
    so that C is the stored C̃ and no _setup_C runs, discrete_L = l_kernel), inside
    FFTConv.forward."""
    g = lambda name: sd[prefix + "kernel." + name]
    length, h = u.shape[-1], u.shape[0]
    a = (-param_transform(g("A_real"), cfg["real_transform"])
         - 1j * param_transform(g("A_imag"), cfg["imag_transform"]))      # (S N)
    b = g("B")[..., 0] + 1j * g("B")[..., 1]                               # (1 S N)
    c = g("C")[..., 0] + 1j * g("C")[..., 1]                               # (C H N): C̃
    inv_dt = np.sinh(g("inv_dt")) if cfg.get("dt_fast", False) else g("inv_dt")
    dt = param_transform(inv_dt, cfg["dt_transform"])                      # (H 1)
    repeat = h // a.shape[0]
    a = np.tile(a, (repeat, 1))
    b = np.tile(b, (1, repeat, 1))
    p = g("P")[..., 0] + 1j * g("P")[..., 1]                               # (R S N)
    p = np.tile(p, (1, repeat, 1))
    q = p.conj()
    rank = p.shape[0]
    discrete_l = int(g("l_kernel"))
    assert length <= discrete_l
    omega = np.exp(-2j * np.pi / discrete_l) ** np.arange(0, discrete_l // 2 + 1)
    z = 2 * (1 - omega) / (1 + omega)
    a = a * dt
    b = np.concatenate([b, p], 0)                                          # (1+R H N)
    c = np.concatenate([c, q], 0)                                          # (C+R H N)
    v = b[:, None] * c[None]                                               # (1+R C+R H N)
    v = v * dt
    r = cauchy_naive(v, z, a)                                              # (1+R C+R H L/2+1)
    if rank == 1:
        k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])
    elif rank == 2:
        r00, r01, r10, r11 = r[:-2, :-2], r[:-2, -2:], r[-2:, :-2], r[-2:, -2:]
        det = (1 + r11[:1, :1]) * (1 + r11[1:, 1:]) - r11[:1, 1:] * r11[1:, :1]
        s = (r01[:, :1] * (1 + r11[1:, 1:]) * r10[:1]
             + r01[:, 1:] * (1 + r11[:1, :1]) * r10[1:]
             - r01[:, :1] * r11[:1, 1:] * r10[1:]
             - r01[:, 1:] * r11[1:, :1] * r10[:1])
        k_f = r00 - s / det
    else:
        r00, r01, r10, r11 = r[:-rank, :-rank], r[:-rank, -rank:], r[-rank:, :-rank], r[-rank:, -rank:]
        r11 = np.linalg.inv(np.eye(rank) + r11.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
        k_f = r00 - np.einsum("ijhn,jkhn,klhn->ilhn", r01, r11, r10)
    k_f = k_f * 2 / (1 + omega)
    k = np.fft.irfft(k_f, n=discrete_l)[..., :length]                       # (1 C H L)
    return fft_conv(k[-1], u, sd[prefix + "D"])


def hippo_legs_nplr(n, b_clip=2.0):
    """models/s4/s4.py at 070384a: transition('legs'), rank_correction('legs') and nplr('legs',
    N, rank=1, B_clip=2.0): Im of the eigenvalues from eigh of −i·(A + P Pᵀ), the half with
    negative imaginary parts, B = V* b and P = V* p, Im B clipped to ±B_clip (None: no clip)."""
    q = np.arange(n, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    r = 2 * q + 1
    m = -(np.where(row >= col, r, 0) - np.diag(q))
    t = np.sqrt(np.diag(2 * q + 1))
    a = t @ m @ np.linalg.inv(t)
    b = np.diag(t).copy()
    p = np.sqrt(0.5 + q)[None]                                           # (1 N)
    ap = a + np.sum(p[:, None, :] * p[:, :, None], axis=0)
    w_re = np.mean(np.diagonal(ap))
    w_im, v = np.linalg.eigh(ap * -1j)                                     # LAPACK, as torch
    idx = np.argsort(w_im)
    w = (w_re + 1j * w_im)[idx][:n // 2]
    v = v[:, idx][:, :n // 2]
    b = v.conj().T @ b
    p = (v.conj().T @ p[0])[None]
    if b_clip is not None:
        b = b.real + 1j * np.clip(b.imag, -b_clip, b_clip)
    return w, p, b


# ---- ag1988 DSS ------------------------------------------------------------------------------

def reciprocal(x, epsilon=1e-7, clamp=False):
    """dss.py reciprocal: a bounded 1 / x."""
    x_conj = x.conj()
    norm_sq = np.maximum((x * x_conj).real, epsilon) if clamp else (x * x_conj + epsilon)
    return x_conj / norm_sq


def dss_module(sd, u, cfg):
    """dss.py DSSKernel._Lambda and forward, then DSS.forward up to the D skip."""
    version = cfg["version"]
    length = u.shape[-1]
    if "exp" in version:
        if "im" in version:
            lam = -np.exp(sd["kernel.Lambda_log_neg_re"]) + 1j * np.exp(sd["kernel.Lambda_log_im"])
        else:
            lam = -np.exp(sd["kernel.Lambda_log_neg_re"]) + 1j * sd["kernel.Lambda_im"]
    else:
        lam = sd["kernel.Lambda"][:, 0] + 1j * sd["kernel.Lambda"][:, 1]
    w = sd["kernel.W"][..., 0] + 1j * sd["kernel.W"][..., 1]               # (C H N)
    log_dt = sd["kernel.log_dt"]
    if log_dt.ndim <= 1:
        dt_lambda = np.exp(log_dt)[:, None] * lam                         # (H N)
    else:
        re_im = np.exp(log_dt)[:, None, :] * np.stack([lam.real, lam.imag], -1)[None]
        dt_lambda = re_im[..., 0] + 1j * re_im[..., 1]
    p = dt_lambda[..., None] * np.arange(length)                          # (H N L)
    if version == "softmax":
        gt0 = lam.real > 0
        if gt0.any():
            p = p - (dt_lambda * (gt0 * (length - 1)))[..., None]
        s = np.exp(p)
        neg = dt_lambda * (1 - 2 * gt0)
        num = np.exp(neg) - 1
        den = np.exp(neg * length) - 1
        w = w * num * reciprocal(den * lam, cfg["epsilon"])
    else:
        s = np.exp(p)
        if "no-scale" not in version:
            w = w * (np.exp(dt_lambda) - 1) * reciprocal(lam, clamp=True)
    k = np.einsum("chn,hnl->chl", w, s).real
    return fft_conv(k, u, sd["D"])


# ---- lindermanlab/S5 -------------------------------------------------------------------------

def s5_ssm(sd, u, cfg, prefix):
    """ssm.py S5SSM.setup (clip_eigs, step_rescale, discretization) and __call__ through
    apply_ssm, with the scan run as the recurrence x_k = Λ̄ x_{k−1} + B̄ u_k. u is (H, L)."""
    g = lambda name: sd[prefix + name]
    lam_re = np.minimum(g("Lambda_re"), -1e-4) if cfg["clip_eigs"] else g("Lambda_re")
    lam = lam_re + 1j * g("Lambda_im")
    b_tilde = g("B")[..., 0] + 1j * g("B")[..., 1]                         # (P H)
    c_tilde = g("C")[..., 0] + 1j * g("C")[..., 1]                         # (H P)
    step = cfg["step_rescale"] * np.exp(g("log_step")[:, 0])
    if cfg["discretization"] == "zoh":
        lam_bar = np.exp(lam * step)
        b_bar = (1 / lam * (lam_bar - 1))[..., None] * b_tilde
    else:
        bl = 1 / (1 - (step / 2.0) * lam)
        lam_bar = bl * (1 + (step / 2.0) * lam)
        b_bar = (bl * step)[..., None] * b_tilde
    x = np.zeros(lam.shape, dtype=complex)
    ys = []
    for k in range(u.shape[-1]):
        x = lam_bar * x + b_bar @ u[:, k]
        y = c_tilde @ x
        ys.append(2 * y.real if cfg["conj_sym"] else y.real)
    return np.stack(ys, -1) + g("D")[:, None] * u


# ---- HazyResearch/safari HyenaOperator -------------------------------------------------------

def hyena_positional_embedding(emb_dim, seq_len):
    """hyena.py PositionalEmbedding.__init__: z (1, L, E) and t (1, L, 1)."""
    t = np.linspace(0, 1, seq_len)[None, :, None]
    bands = (emb_dim - 1) // 2
    t_rescaled = np.linspace(0, seq_len - 1, seq_len)[None, :, None]
    w = 2 * math.pi * t_rescaled / seq_len
    f = np.linspace(1e-4, bands - 1, bands)[None, None]
    z = np.exp(-1j * f * w)
    return np.concatenate([t, z.real, z.imag], -1), t


def fftconv_ref(u, k, d):
    """hyena.py fftconv_ref (gelu False, no dropout): u (D, L), k (D, L), d (D)."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = np.fft.rfft(k, n=fft_size) / fft_size
    u_f = np.fft.rfft(u, n=fft_size)
    y = np.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return y + u * d[:, None]


def hyena_operator(sd, u, cfg):
    """hyena.py HyenaOperator.forward (one head, one block, inner_factor 1, no outer mixing or
    post-order FFN, identity activation, dropout off), HyenaFilter.filter and forward with
    fftconv_ref. u is (L, D), one batch element; returns (L, D)."""
    g = lambda name: sd[name]
    length, d_model = u.shape
    order = g("in_proj.weight").shape[0] // d_model - 1
    l_max = g("filter_fn.pos_emb.z").shape[1]
    l_filter = min(length, l_max)
    x = u @ g("in_proj.weight").T + g("in_proj.bias")                   # b l d
    x = x.T                                                             # b d l
    w = g("short_filter.weight")[:, 0, :]                               # Conv1d, groups = channels
    kk = w.shape[-1]
    xp = np.concatenate([np.zeros((x.shape[0], kk - 1)), x, np.zeros((x.shape[0], kk - 1))], -1)
    conv = np.stack([(xp[:, t:t + kk] * w).sum(-1) for t in range(length + kk - 1)], -1)
    uc = (conv + g("short_filter.bias")[:, None])[..., :l_filter]
    *xs, v = np.split(uc, order + 1, axis=0)
    # HyenaFilter.filter(l_filter)
    z, t = g("filter_fn.pos_emb.z")[:, :l_filter], g("filter_fn.pos_emb.t")[:, :l_filter]
    h = z
    i = 0
    while "filter_fn.implicit_filter.%d.weight" % (i + 2) in sd:     # Linear, Sin pairs
        h = h @ g("filter_fn.implicit_filter.%d.weight" % i).T + g("filter_fn.implicit_filter.%d.bias" % i)
        freq = sd.get("filter_fn.implicit_filter.%d.freq" % (i + 1), sd["filter_fn.implicit_filter.1.freq"])
        h = np.sin(freq * h)                                            # one shared Sin
        i += 2
    h = h @ g("filter_fn.implicit_filter.%d.weight" % i).T             # no bias
    if cfg["normalized"]:
        h = h / np.abs(h).sum(-1, keepdims=True)
    if cfg["modulate"]:
        decay = np.exp(-t * np.abs(g("filter_fn.modulation.deltas")))
        h = h * (decay + cfg["shift"])
    k = h[0].T.reshape(d_model, order - 1, l_filter).transpose(1, 0, 2)  # 'c l (v o) -> c o v l'
    bias = g("filter_fn.bias").reshape(d_model, order - 1).T              # '(v o) -> o v'
    if not cfg["bias"]:
        bias = 0 * bias
    for o, x_i in enumerate(reversed(xs[1:])):
        v = v * x_i
        v = fftconv_ref(v, k[o], bias[o])
    y = (v * xs[0]).T                                                   # b (z l) (h v)
    return y @ g("out_proj.weight").T + g("out_proj.bias")


def make_hyena(rng, cfg, d_model, order, filter_order, emb_dim, num_inner_mlps, k_short, l_max,
               length, all_freqs=True):
    w_total, df = (order + 1) * d_model, d_model * (order - 1)
    z, t = hyena_positional_embedding(emb_dim, l_max)
    z = z + rng.normal(scale=0.01, size=z.shape)  # trained (lr_pos_emb): not the formula's values
    freq = rng.uniform(0.5, 1.5, (1, filter_order))
    sd = {"in_proj.weight": rng.normal(scale=0.5, size=(w_total, d_model)),
          "in_proj.bias": rng.normal(scale=0.1, size=w_total),
          "short_filter.weight": rng.normal(scale=0.5, size=(w_total, 1, k_short)),
          "short_filter.bias": rng.normal(scale=0.1, size=w_total),
          "filter_fn.pos_emb.z": z, "filter_fn.pos_emb.t": t,
          "filter_fn.bias": rng.normal(size=df),
          "out_proj.weight": rng.normal(scale=0.5, size=(d_model, d_model)),
          "out_proj.bias": rng.normal(scale=0.1, size=d_model)}
    fan_in = emb_dim
    for i in range(num_inner_mlps + 1):
        sd["filter_fn.implicit_filter.%d.weight" % (2 * i)] = rng.normal(scale=1 / math.sqrt(fan_in),
                                                                         size=(filter_order, fan_in))
        sd["filter_fn.implicit_filter.%d.bias" % (2 * i)] = rng.normal(scale=0.3, size=filter_order)
        if all_freqs or i == 0:  # safetensors' save_model keeps one name of a shared tensor
            sd["filter_fn.implicit_filter.%d.freq" % (2 * i + 1)] = freq
        fan_in = filter_order
    sd["filter_fn.implicit_filter.%d.weight" % (2 * num_inner_mlps + 2)] = rng.normal(
        scale=1 / math.sqrt(filter_order), size=(df, filter_order))
    target, fast, slow = 1e-2, 0.3, 1.5
    deltas = np.linspace(math.log(target) / slow, math.log(target) / fast, df)[None, None]
    sd["filter_fn.modulation.deltas"] = deltas * rng.uniform(0.8, 1.2, deltas.shape)
    u = rng.normal(size=(length, d_model))
    y = hyena_operator(sd, u, cfg)
    return sd, u.T, y.T, dict(cfg, d_model=d_model, order=order, l_max=l_max)


# ---- state-spaces/mamba Mamba ----------------------------------------------------------------

def softplus(x):
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def selective_scan_ref(u, delta, a, b, c, d, z, delta_bias, delta_softplus=True):
    """selective_scan_interface.py selective_scan_ref (real A, one group): u, delta, z (D, L);
    a (D, N); b, c (N, L) when varying in time (is_variable_B / _C: B.dim() >= 3 upstream) or
    (D, N) when not; d, delta_bias (D)."""
    delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = softplus(delta)
    delta_a = np.exp(np.einsum("dl,dn->dln", delta, a))
    if b.shape == a.shape:                                              # time-invariant B
        delta_b_u = np.einsum("dl,dn,dl->dln", delta, b, u)
    else:
        delta_b_u = np.einsum("dl,nl,dl->dln", delta, b, u)
    x = np.zeros(a.shape)
    ys = []
    for i in range(u.shape[-1]):
        x = delta_a[:, i] * x + delta_b_u[:, i]
        if c.shape == a.shape:                                          # time-invariant C
            ys.append(np.einsum("dn,dn->d", x, c))
        else:
            ys.append(np.einsum("dn,n->d", x, c[:, i]))
    y = np.stack(ys, -1)
    out = y + u * d[:, None]
    return out * (z / (1 + np.exp(-z)))                                 # * silu(z)


def rms_norm(x, weight, eps):
    """transformers' JambaRMSNorm (weight) and FalconMamba's rms_forward (weight None): over the
    last axis, x / sqrt(mean(x²) + eps) · weight."""
    y = x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)
    return y if weight is None else y * weight


def mamba_mixer(sd, x, z, prefix, cfg=None):
    """mamba_simple.py Mamba.forward (the path without the fused kernels) from the conv's
    output x (D, L) and the gate z (D, L) on: x_proj, the split, dt_proj, selective_scan_fn.
    cfg adds the relatives' options: x_proj.bias (nn.Linear's bias, when stored); transformers'
    JambaMambaMixer.slow_forward norms (dt_layernorm, b_layernorm, c_layernorm, each on its part
    of x_proj's output, before dt_proj) and FalconMambaMixer's weightless ones (b_c_dt_rms,
    mixer_rms_eps); selective_scan_fn's delta_softplus and time-invariant B or C (stored here
    as B / C of shape (D, N), x_proj yielding only the varying ones)."""
    cfg = cfg or {}
    g = lambda name: sd[prefix + name]
    rank, n = g("dt_proj.weight").shape[1], g("A_log").shape[1]
    var_b, var_c = cfg.get("is_variable_B", True), cfg.get("is_variable_C", True)
    x_dbl = x.T @ g("x_proj.weight").T                                  # (l, R + N·varying)
    if prefix + "x_proj.bias" in sd:
        x_dbl = x_dbl + g("x_proj.bias")
    dt = x_dbl[:, :rank]
    at = rank
    b = x_dbl[:, at:at + n] if var_b else None
    at += n if var_b else 0
    c = x_dbl[:, at:at + n] if var_c else None
    norm = lambda name: sd.get(prefix + name)
    if cfg.get("b_c_dt_rms", False):
        eps = cfg["mixer_rms_eps"]
        dt = rms_norm(dt, None, eps)
        b = rms_norm(b, None, eps) if var_b else None
        c = rms_norm(c, None, eps) if var_c else None
    else:
        eps = cfg.get("rms_norm_eps", 1e-6)
        if norm("dt_layernorm.weight") is not None:
            dt = rms_norm(dt, norm("dt_layernorm.weight"), eps)
        if norm("b_layernorm.weight") is not None:
            b = rms_norm(b, norm("b_layernorm.weight"), eps)
        if norm("c_layernorm.weight") is not None:
            c = rms_norm(c, norm("c_layernorm.weight"), eps)
    dt = g("dt_proj.weight") @ dt.T                                     # (D, L)
    a = -np.exp(g("A_log"))
    b = b.T if var_b else g("B")
    c = c.T if var_c else g("C")
    return selective_scan_ref(x, dt, a, b, c, g("D"), z, g("dt_proj.bias"),
                              cfg.get("delta_softplus", True))


def make_mamba(rng, prefix="backbone.layers.0.mixer.", cfg=None, x_bias=False, norms=False, dt_bias=None):
    cfg = cfg or {}
    d_model, d_inner, n, rank, k = 2, 4, 3, 2, 4
    var_b, var_c = cfg.get("is_variable_B", True), cfg.get("is_variable_C", True)
    rows = rank + n * (var_b + var_c)
    dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), d_inner))
    sd = {prefix + "in_proj.weight": rng.normal(size=(2 * d_inner, d_model)),  # not part of the mixer
          prefix + "conv1d.weight": rng.normal(size=(d_inner, 1, k)),
          prefix + "conv1d.bias": rng.normal(size=d_inner),
          prefix + "x_proj.weight": rng.normal(scale=0.5, size=(rows, d_inner)),
          prefix + "dt_proj.weight": rng.normal(scale=rank ** -0.5, size=(d_inner, rank)),
          prefix + "dt_proj.bias": dt + np.log(-np.expm1(-dt)),
          prefix + "A_log": np.log(np.arange(1, n + 1))[None] + rng.normal(scale=0.2, size=(d_inner, n)),
          prefix + "D": rng.normal(size=d_inner),
          prefix + "out_proj.weight": rng.normal(size=(d_model, d_inner))}
    if dt_bias is not None:  # delta_softplus off: Δ = dt_proj·δ + bias must stay positive
        sd[prefix + "dt_proj.weight"] *= 0.01
        sd[prefix + "dt_proj.bias"] = np.full(d_inner, dt_bias)
    if x_bias:
        sd[prefix + "x_proj.bias"] = rng.normal(scale=0.3, size=rows)
    if norms:  # Jamba's
        sd[prefix + "dt_layernorm.weight"] = rng.uniform(0.5, 1.5, rank)
        sd[prefix + "b_layernorm.weight"] = rng.uniform(0.5, 1.5, n)
        sd[prefix + "c_layernorm.weight"] = rng.uniform(0.5, 1.5, n)
    if not var_b:
        sd[prefix + "B"] = rng.normal(size=(d_inner, n))
    if not var_c:
        sd[prefix + "C"] = rng.normal(size=(d_inner, n))
    x = rng.normal(size=(d_inner, L))
    z = rng.normal(size=(d_inner, L))
    y = mamba_mixer(sd, x, z, prefix, cfg)
    return sd, (x, z), y, dict(cfg, prefix=prefix, module="Mamba (mamba_ssm/modules/mamba_simple.py)")


# ---- state-spaces/mamba Mamba2 ----------------------------------------------------------------

def silu(x):
    return x / (1 + np.exp(-x))


def mamba2_mixer(sd, u, cfg, prefix):
    """mamba2.py Mamba2.forward (the path without the fused kernels: in_proj, the split
    [z0, x0, z, xBC, dt], conv1d with padding d_conv − 1 cut to the length, SiLU, the split
    [x, B, C], mamba_chunk_scan_combined with dt_bias, dt_softplus and dt_limit, D per head or per
    channel (D_has_hdim), RMSNormGated with norm_before_gate False and group_size d_ssm / ngroups
    (or cfg's), the gated MLP part, out_proj). The SSD is run as its recurrence (Mamba2.step):
    h = exp(Δ·A) h + Δ·B x, y = C·h + D x, per head, B and C of the head's group. u is (L, d_model)."""
    g = lambda name: sd[prefix + name]
    length = u.shape[0]
    a = -np.exp(g("A_log"))
    nheads, d_ssm = a.shape[0], g("norm.weight").shape[0]
    headdim, ngroups = d_ssm // nheads, cfg["ngroups"]
    conv_dim, k = g("conv1d.weight").shape[0], g("conv1d.weight").shape[2]
    d_state = (conv_dim - d_ssm) // 2 // ngroups
    zxbcdt = u @ g("in_proj.weight").T
    if prefix + "in_proj.bias" in sd:
        zxbcdt = zxbcdt + g("in_proj.bias")
    d_mlp = (zxbcdt.shape[-1] - 2 * d_ssm - 2 * ngroups * d_state - nheads) // 2
    sizes = np.cumsum([d_mlp, d_mlp, d_ssm, conv_dim])
    z0, x0, z, xbc, dt = np.split(zxbcdt, sizes, axis=-1)
    w = g("conv1d.weight")[:, 0, :]                                      # (conv_dim, k)
    padded = np.concatenate([np.zeros((k - 1, conv_dim)), xbc], 0)
    xbc = np.stack([np.einsum("ck,kc->c", w, padded[t:t + k]) for t in range(length)], 0)
    if prefix + "conv1d.bias" in sd:
        xbc = xbc + g("conv1d.bias")
    xbc = silu(xbc)
    x, b, c = np.split(xbc, [d_ssm, d_ssm + ngroups * d_state], axis=-1)
    x = x.reshape(length, nheads, headdim)
    b = b.reshape(length, ngroups, d_state)
    c = c.reshape(length, ngroups, d_state)
    dt = softplus(dt + g("dt_bias"))
    dt = np.clip(dt, cfg.get("dt_min", 0.0), cfg.get("dt_max", np.inf))
    d = g("D").reshape(nheads, headdim) if g("D").shape[0] == d_ssm else g("D")[:, None]
    state = np.zeros((nheads, headdim, d_state))
    ys = []
    for t in range(length):
        grp = np.arange(nheads) // (nheads // ngroups)
        decay = np.exp(dt[t] * a)                                         # (nheads)
        state = decay[:, None, None] * state + np.einsum("h,hp,hn->hpn", dt[t], x[t], b[t, grp])
        ys.append(np.einsum("hpn,hn->hp", state, c[t, grp]) + d * x[t])
    y = np.stack(ys, 0).reshape(length, d_ssm)
    group = cfg.get("norm_group_size") or d_ssm // ngroups
    gated = (y * silu(z)).reshape(length, d_ssm // group, group)
    y = gated / np.sqrt(np.mean(gated * gated, -1, keepdims=True) + cfg["norm_eps"])
    y = y.reshape(length, d_ssm) * g("norm.weight")
    if d_mlp > 0:
        y = np.concatenate([silu(z0) * x0, y], -1)
    out = y @ g("out_proj.weight").T
    if prefix + "out_proj.bias" in sd:
        out = out + g("out_proj.bias")
    return out


def make_mamba2(rng, cfg, d_model, nheads, headdim, d_state, d_conv, d_mlp, d_has_hdim, bias, conv_bias,
                prefix="backbone.layers.0.mixer."):
    ngroups, d_ssm = cfg["ngroups"], nheads * headdim
    conv_dim = d_ssm + 2 * ngroups * d_state
    d_in_proj = 2 * d_mlp + 2 * d_ssm + 2 * ngroups * d_state + nheads
    dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), nheads))
    sd = {prefix + "in_proj.weight": rng.normal(scale=0.5, size=(d_in_proj, d_model)),
          prefix + "conv1d.weight": rng.normal(scale=0.5, size=(conv_dim, 1, d_conv)),
          prefix + "dt_bias": dt + np.log(-np.expm1(-dt)),
          prefix + "A_log": np.log(rng.uniform(1, 16, nheads)),
          prefix + "D": rng.normal(size=d_ssm if d_has_hdim else nheads),
          prefix + "norm.weight": rng.uniform(0.5, 1.5, d_ssm),
          prefix + "out_proj.weight": rng.normal(scale=0.5, size=(d_model, d_mlp + d_ssm)),
          "backbone.layers.0.norm.weight": np.ones(d_model)}  # the block's, not the mixer's
    if conv_bias:
        sd[prefix + "conv1d.bias"] = rng.normal(scale=0.3, size=conv_dim)
    if bias:
        sd[prefix + "in_proj.bias"] = rng.normal(scale=0.3, size=d_in_proj)
        sd[prefix + "out_proj.bias"] = rng.normal(scale=0.3, size=d_model)
    u = rng.normal(size=(L, d_model))
    y = mamba2_mixer(sd, u, cfg, prefix)
    return sd, u.T, y.T, dict(cfg, prefix=prefix, module="Mamba2 (mamba_ssm/modules/mamba2.py)")


# ---- the fixtures ----------------------------------------------------------------------------

def c2r(z):
    return np.stack([z.real, z.imag], -1)


def log_dt_values(rng, shape, lo=1e-3, hi=1e-1):
    return rng.uniform(math.log(lo), math.log(hi), shape)


def make_s4d_module(rng):
    h, n2 = 3, 4
    sd = {
        "D": rng.normal(size=h),
        "kernel.log_dt": log_dt_values(rng, h, 1e-2, 0.5),
        "kernel.C": rng.normal(size=(h, n2, 2)),
        "kernel.log_A_real": np.log(rng.uniform(0.1, 1.5, (h, n2))),
        "kernel.A_imag": math.pi * np.arange(n2) + rng.normal(scale=0.3, size=(h, n2)),
        "output_linear.0.weight": rng.normal(size=(2 * h, h, 1)),  # not part of the mixer
        "output_linear.0.bias": rng.normal(size=2 * h),
    }
    u = rng.normal(size=(h, L))
    return sd, u, s4d_module(sd, u), {"module": "S4D (models/s4/s4d.py)"}


def inv_transform_values(values, transform):
    """ssm.py inv_transform without its clamp: the stored value of a positive parameter."""
    if transform in ("none", "relu"):
        return values
    if transform == "exp":
        return np.log(values)
    if transform == "sigmoid":
        return np.log(values / (1 - values))
    if transform == "softplus":
        return np.log(np.expm1(values))
    raise ValueError(transform)


def make_diag(rng, cfg, h, n2, channels, n_ssm, prefix="layer."):
    dt_shape = (h, 1) if cfg.get("dt_tie", True) else (h, n2)
    dt = np.exp(log_dt_values(rng, dt_shape, 1e-2, 0.5))
    if cfg["dt_transform"] == "sigmoid":
        dt = np.minimum(dt, 0.9)
    inv_dt = inv_transform_values(dt, cfg["dt_transform"])
    if cfg.get("dt_fast", False):
        inv_dt = np.arcsinh(inv_dt)
    neg_re = rng.uniform(0.1, 0.9, (n_ssm, n2))
    neg_im = math.pi * np.arange(n2) + rng.uniform(0.05, 0.5, (n_ssm, n2))  # −Im A ≥ 0, as stored
    kp = prefix + "kernel."
    sd = {prefix + "D": rng.normal(size=(channels, h)),
          kp + "inv_dt": inv_dt,
          kp + "A_real": inv_transform_values(neg_re, cfg["real_transform"])}
    if cfg.get("is_real", False):
        sd[kp + "B"] = rng.normal(size=(1, n_ssm, n2))
        sd[kp + "C"] = rng.normal(size=(channels, h, n2))
    else:
        sd[kp + "A_imag"] = inv_transform_values(neg_im, cfg["imag_transform"])
        sd[kp + "B"] = rng.normal(size=(1, n_ssm, n2, 2))
        sd[kp + "C"] = rng.normal(size=(channels, h, n2, 2))
    u = rng.normal(size=(h, L))
    return sd, u, ssm_kernel_diag(sd, u, cfg, prefix), dict(cfg, prefix=prefix, n_ssm=n_ssm)


def make_dplr(rng, cfg, h, n2, channels, n_ssm, rank, l_kernel, length, prefix="layer."):
    dt = np.exp(log_dt_values(rng, (h, 1), 1e-2, 0.5))
    neg_re = rng.uniform(0.1, 0.9, (n_ssm, n2))
    neg_im = math.pi * np.arange(n2) + rng.uniform(0.05, 0.5, (n_ssm, n2))
    kp = prefix + "kernel."
    sd = {prefix + "D": rng.normal(size=(channels, h)),
          kp + "inv_dt": inv_transform_values(dt, cfg["dt_transform"]),
          kp + "A_real": inv_transform_values(neg_re, cfg["real_transform"]),
          kp + "A_imag": inv_transform_values(neg_im, cfg["imag_transform"]),
          kp + "B": rng.normal(size=(1, n_ssm, n2, 2)),
          kp + "P": rng.normal(scale=0.5, size=(rank, n_ssm, n2, 2)),
          kp + "C": rng.normal(size=(channels, h, n2, 2)),                 # C̃, as trained
          kp + "l_kernel": np.array(l_kernel)}
    u = rng.normal(size=(h, length))
    return sd, u, ssm_kernel_dplr(sd, u, cfg, prefix), dict(cfg, prefix=prefix, n_ssm=n_ssm, rank=rank)


def make_dss(rng, version, channels, sep_dt, positive_re=False):
    h, n = 3, 4
    lam = -rng.uniform(0.1, 0.9, n) + 1j * (math.pi * np.arange(n) + rng.uniform(0.1, 0.5, n))
    if positive_re:
        lam[1] = 0.3 + 1j * lam[1].imag  # DSS-softmax allows Re Λ > 0
    log_dt = log_dt_values(rng, h, 1e-2, 0.5)
    if sep_dt:
        log_dt = np.stack([log_dt, log_dt + rng.normal(scale=0.3, size=h)], -1)
    sd = {"D": rng.normal(size=(channels, h)), "kernel.log_dt": log_dt,
          "kernel.W": rng.normal(size=(channels, h, n, 2)),
          "output_linear.weight": rng.normal(size=(h, h * channels)),  # not part of the mixer
          "output_linear.bias": rng.normal(size=(h, 1))}
    if "exp" in version:
        sd["kernel.Lambda_log_neg_re"] = np.log(-lam.real)
        if "im" in version:
            sd["kernel.Lambda_log_im"] = np.log(lam.imag)
        else:
            sd["kernel.Lambda_im"] = lam.imag
    else:
        sd["kernel.Lambda"] = c2r(lam)
    cfg = {"version": version, "epsilon": 1e-7, "channels": channels}
    u = rng.normal(size=(h, L))
    return sd, u, dss_module(sd, u, cfg), cfg


def make_s5(rng, cfg, prefix="layers_0/seq/", positive_re=False):
    p, h = 4, 3
    lam_re = -rng.uniform(0.1, 0.8, p)
    if cfg["clip_eigs"] or positive_re:
        lam_re[2] = 0.05  # clipped to −1e-4; without clip_eigs a growing state
    sd = {prefix + "Lambda_re": lam_re,
          prefix + "Lambda_im": rng.uniform(-3, 3, p),
          prefix + "B": rng.normal(scale=0.5, size=(p, h, 2)),
          prefix + "C": rng.normal(scale=0.5, size=(h, p, 2)),
          prefix + "D": rng.normal(size=h),
          prefix + "log_step": log_dt_values(rng, (p, 1), 1e-2, 0.5)}
    u = rng.normal(size=(h, L))
    return sd, u, s5_ssm(sd, u, cfg, prefix), dict(cfg, prefix=prefix)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "reference_params")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240611)
    diag = lambda **kw: dict({"dt_transform": "exp", "real_transform": "exp",
                              "imag_transform": "none", "disc": "zoh"}, **kw)
    fixtures = {
        "s4d_module": make_s4d_module(rng),
        # FFTConv + SSMKernelDiag: 2 channels, (A, B) shared by all H (n_ssm 1), the defaults
        "diag_zoh": make_diag(rng, diag(), h=3, n2=4, channels=2, n_ssm=1),
        # bilinear, a Δ per state (dt_tie off) under softplus and dt_fast, every transform
        # changed, and a bandlimit that masks the fast states
        "diag_bilinear": make_diag(rng, diag(disc="bilinear", dt_transform="softplus", dt_tie=False,
                                             dt_fast=True, real_transform="relu",
                                             imag_transform="softplus", bandlimit=0.1),
                                   h=4, n2=3, channels=1, n_ssm=1),
        # is_real (070384a): real B and C, no A_imag; sigmoid transforms
        "diag_is_real": make_diag(rng, diag(is_real=True, dt_transform="sigmoid",
                                            real_transform="sigmoid"), h=2, n2=3, channels=1, n_ssm=1),
        # force_real (81a5d38): A_imag stored, Im A dropped; n_ssm 2 of H 4
        "diag_force_real": make_diag(rng, diag(force_real=True, imag_transform="exp"), h=4, n2=3,
                                     channels=1, n_ssm=2),
        "dss_softmax": make_dss(rng, "softmax", channels=2, sep_dt=True, positive_re=True),
        "dss_exp": make_dss(rng, "exp", channels=1, sep_dt=False),
        "dss_exp_re_im": make_dss(rng, "exp-re-im", channels=1, sep_dt=True),
        "dss_exp_no_scale": make_dss(rng, "exp-no-scale", channels=1, sep_dt=False),
        "s5_zoh": make_s5(rng, {"discretization": "zoh", "conj_sym": True, "clip_eigs": True,
                                "step_rescale": 2.0}),
        "s5_bilinear": make_s5(rng, {"discretization": "bilinear", "conj_sym": False,
                                     "clip_eigs": False, "step_rescale": 1.0}),
        # HyenaOperator: order 3 (two long filters, the '(v o)' layout), an input shorter than
        # l_max, every Sin's freq stored; then normalized, a shifted window, no filter bias, one
        # inner MLP, a 4-tap short filter and one freq stored (as save_model keeps it)
        "hyena_order3": make_hyena(rng, {"normalized": False, "modulate": True, "shift": 0.0, "bias": True},
                                   d_model=3, order=3, filter_order=4, emb_dim=5, num_inner_mlps=2,
                                   k_short=3, l_max=16, length=12),
        "hyena_normalized": make_hyena(rng, {"normalized": True, "modulate": True, "shift": 0.1,
                                             "bias": False},
                                       d_model=2, order=2, filter_order=3, emb_dim=3, num_inner_mlps=1,
                                       k_short=4, l_max=16, length=16, all_freqs=False),
        # Mamba's selective scan under a model's prefix, with the layer's other tensors stored
        "mamba_mixer": make_mamba(rng),
        # FFTConv + SSMKernelDPLR (S4): C̃ stored with l_kernel 16; rank 1, n_ssm 1, the input as
        # long as l_kernel; then rank 2, n_ssm 2 of H 4, 2 channels, softplus Δ, an input of 12
        "dplr_rank1": make_dplr(rng, diag(), h=3, n2=4, channels=1, n_ssm=1, rank=1, l_kernel=16,
                                length=16),
        "dplr_rank2": make_dplr(rng, diag(dt_transform="softplus", imag_transform="exp"), h=4, n2=3,
                                channels=2, n_ssm=2, rank=2, l_kernel=16, length=12),
        # (new fixtures go last: the earlier ones keep their random values)
        # Jamba's weighted RMSNorms of δ, B and C with an x_proj bias; Falcon-Mamba's weightless
        # norms; Δ without softplus with a time-invariant B; a time-invariant C
        "mamba_jamba": make_mamba(rng, cfg={"rms_norm_eps": 1e-6}, x_bias=True, norms=True),
        "mamba_falcon": make_mamba(rng, cfg={"b_c_dt_rms": True, "mixer_rms_eps": 1e-3}),
        "mamba_fixed_b": make_mamba(rng, cfg={"delta_softplus": False, "is_variable_B": False},
                                    dt_bias=0.05),
        "mamba_fixed_c": make_mamba(rng, cfg={"is_variable_C": False}),
        # Mamba2: 4 heads of 2 channels in 2 groups of d_state 3, a gated-MLP part, conv bias,
        # dt_limit; then D per channel (D_has_hdim), in_proj and out_proj biases, no conv bias,
        # one group, the norm over the whole width (transformers 5's MambaRMSNormGated)
        "mamba2_groups": make_mamba2(rng, {"ngroups": 2, "norm_eps": 1e-5, "dt_min": 0.002, "dt_max": 0.05},
                                     d_model=3, nheads=4, headdim=2, d_state=3, d_conv=4, d_mlp=2,
                                     d_has_hdim=False, bias=False, conv_bias=True),
        "mamba2_hdim": make_mamba2(rng, {"ngroups": 1, "norm_eps": 1e-5, "norm_group_size": 6},
                                   d_model=2, nheads=3, headdim=2, d_state=2, d_conv=3, d_mlp=0,
                                   d_has_hdim=True, bias=True, conv_bias=False),
        # S5SSM trained without clip_eigs, one state with Re Λ > 0 (growing over the length)
        "s5_unstable": make_s5(rng, {"discretization": "zoh", "conj_sym": True, "clip_eigs": False,
                                     "step_rescale": 1.0}, positive_re=True),
    }
    # S4's LegS initialization (no random values): Λ, P and the clipped and unclipped B
    legs = {}
    for n in (16, 64):
        w, p, b = hippo_legs_nplr(n)
        legs["lambda_%d" % n], legs["p_%d" % n], legs["b_%d" % n] = c2r(w), c2r(p[0]), c2r(b)
        legs["b_unclipped_%d" % n] = c2r(hippo_legs_nplr(n, None)[2])
    save_file(legs, os.path.join(out, "s4_legs_nplr.safetensors"),
              metadata={"config": json.dumps({"B_clip": 2.0, "module": "nplr (models/s4/s4.py)"})})
    for name, (sd, u, y, cfg) in fixtures.items():
        sd = {k: np.ascontiguousarray(v, dtype=np.int64 if k.endswith("l_kernel") else np.float64)
              for k, v in sd.items()}  # l_kernel: a registered torch.tensor(0) buffer, int64
        save_file(sd, os.path.join(out, name + ".safetensors"))
        if name in ("s5_zoh", "s5_bilinear"):  # as `unzip` lays out numpy.savez(NAME.npz, **sd)
            for key, value in sd.items():
                path = os.path.join(out, name + "_npy", key + ".npy")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                np.save(path, value)
        if name == "s5_zoh":  # the archives themselves: stored (savez) and deflated (savez_compressed)
            np.savez(os.path.join(out, name + ".npz"), **sd)
            np.savez_compressed(os.path.join(out, name + "_compressed.npz"), **sd)
            with zipfile.ZipFile(os.path.join(out, name + "_extra.npz"), "w") as z:  # a member not .npy
                for key, value in sd.items():
                    buf = io_module.BytesIO()
                    np.save(buf, value)
                    z.writestr(key + ".npy", buf.getvalue())
                z.writestr("README.txt", "not an array")
        meta = {"config": json.dumps(cfg, sort_keys=True)}
        if isinstance(u, tuple):  # the gate's input too
            io = {"input": np.ascontiguousarray(u[0]), "z": np.ascontiguousarray(u[1]),
                  "output": np.ascontiguousarray(y)}
        else:
            io = {"input": np.ascontiguousarray(u), "output": np.ascontiguousarray(y)}
        save_file(io,
                  os.path.join(out, name + ".io.safetensors"), metadata=meta)
        print(f"{name}: {len(sd)} tensors, output {y.shape}, max |y| {np.abs(y).max():.3g}")


if __name__ == "__main__":
    main()
