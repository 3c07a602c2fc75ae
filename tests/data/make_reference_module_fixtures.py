#!/usr/bin/env python3
"""Creates the fixtures of tests/io/reference_params_test.cpp: parameters of S4D, S4 (diagonal
and DPLR kernels), DSS, S5, Hyena, Mamba and Mamba2 modules stored under the names and shapes their
reference code gives them, and the output of each module's linear part for a random input,
computed here step by step after that code.

The reference implementations cannot be imported here (no network, and they pull in their
training frameworks), so each one's forward semantics is re-implemented below in PyTorch (CPU,
float64 and complex128), one function per upstream function, in the order the upstream code
computes and with the same torch operations where the upstream is torch (torch.fft.rfft/irfft,
einsum, F.pad, F.softplus, F.conv1d, torch.linalg.eigh); S5 is JAX upstream, and its
functions are written here as their torch equivalents. The parameters themselves are drawn with
numpy (the make_* functions) and handed to the torch functions through reference():

  state-spaces/s4 models/s4/s4d.py at 2ed46fc, S4DKernel.forward and S4D.forward (the
      standalone S4D); s4d_module()
  state-spaces/s4 src/models/sequence/kernels/ssm.py at 81a5d38 (option force_real) and
      070384a (option is_real): param_transform, SSMKernelDiag._get_params and
      SSMKernelDiag.forward (disc zoh and bilinear, with log_vandermonde_naive of
      src/models/functional/vandermonde.py at ab287c6); src/models/sequence/kernels/fftconv.py
      at 43f5b0c, FFTConv.forward (the D skip of shape (channels, H), channels flattened as
      (c h); bidirectional: the kernel's 2·channels split '(s c)' into the causal k0 and the
      anti-causal k1, F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0)), FFT size l_kernel + L);
      ssm_kernel_diag() and fft_conv(); fixtures diag_*, diag_bidirectional
  state-spaces/s4 models/s4/s4.py at 070384a: nplr('legs', N, B_clip=2.0), the LegS
      initialization with Im B clipped (no random values; torch.linalg.eigh, so the
      eigenvectors' signs are those of the LAPACK torch calls); hippo_legs_nplr()
  state-spaces/s4 src/models/sequence/kernels/ssm.py at 070384a: SSMKernelDPLR._omega and
      forward with cauchy_naive (C is the stored C̃, l_kernel > 0, state None, rate 1),
      inside FFTConv.forward; ssm_kernel_dplr(); fixtures dplr_rank1, dplr_rank2,
      dplr_bidirectional
  ag1988/dlr src/models/sequence/ss/standalone/dss.py at 7bd8645 (the DSS author's standalone
      DSS, versions softmax, exp, exp-re-im, exp-no-scale): reciprocal, DSSKernel._Lambda,
      DSSKernel.forward and DSS.forward up to the D skip (bidirectional: the same pad and flip
      of the kernel's two halves, FFT size L + Lk); dss_module(); fixtures dss_*,
      dss_bidirectional
  lindermanlab/S5 s5/ssm.py at d133f4d: discretize_zoh, discretize_bilinear, binary_operator,
      apply_ssm (jax.lax.associative_scan folded sequentially; bidirectional: the reverse scan
      too, its states after the forward ones) and S5SSM.setup / __call__ (clip_eigs,
      step_rescale, conj_sym, C or C1/C2 by C_init); s5_ssm(); fixtures s5_zoh, s5_bilinear,
      s5_unstable, s5_bidirectional (C1, C2), s5_bidirectional_complex (one C of 2P columns)
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

The bidirectional fixtures (config "bidirectional": true) draw from a generator of their own, so
that the other fixtures keep their values. In FFTConv and DSS the output at t is
Σ_{s≤t} k0[t−s] u_s + Σ_{s>t} k1[s−t−1] u_s + D·u_t per channel: k1[0] weighs u_{t+1} and
k1[L−1] is never used (the off-by-one that fftconv.py's comment calls deliberate). In S5 the
reverse scan's state at t is Σ_{s≥t} Λ̄^(s−t) B̄ u_s, B̄ u_t included.

For each fixture NAME, under reference_params/:
  NAME.safetensors      the module's state_dict (float64), names as the module stores them
                        (under the prefix its make_* function gives)
  NAME_npy/             s5_zoh and s5_bilinear also as one .npy per parameter under its flattened flax
                        name: what unzipping numpy.savez(NAME.npz, **params) gives
  s5_zoh.npz, s5_zoh_compressed.npz   the same as numpy.savez and numpy.savez_compressed
                        archives; s5_zoh_extra.npz adds a member that is not a .npy
  NAME.io.safetensors   input (H, L) and output (channels·H, L), float64, one batch element
                        (and the gate's input z for Mamba); the module's configuration as JSON in the header's __metadata__
                        "config"

The functions are also the forward passes of the torch modules that python/tests/test_from_module.py
builds (python/tests/reference_modules.py imports this file; the fixtures need safetensors, the
functions do not).

Needs numpy, safetensors and torch (CPU is enough; `pip install numpy safetensors torch`):

    python3 make_reference_module_fixtures.py [OUT_DIR]   # default: reference_params/ beside it
"""

import io as io_module
import json
import math
import os
import sys
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

L = 16  # sequence length of every fixture


def reference(fn, *args, **kwargs):
    """Runs a reference forward function on torch tensors: the make_* functions draw their
    parameters with numpy; numpy arrays (and dicts of them, the state_dicts) go in as CPU float64
    (int64 for l_kernel) tensors, and the torch result comes back as a numpy array."""
    def to_torch(x):
        if isinstance(x, dict):
            return {k: to_torch(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.array(x, dtype=np.int64 if x.dtype.kind in "iu" else np.float64))
        return x
    y = fn(*[to_torch(a) for a in args], **{k: to_torch(v) for k, v in kwargs.items()})
    return y.detach().numpy()


# ---- state-spaces/s4 -----------------------------------------------------------------------

def param_transform(p, transform):
    """ssm.py param_transform: a (positive) parameter under a transform."""
    if transform == "none":
        return p
    if transform == "exp":
        return torch.exp(p)
    if transform == "relu":
        return F.relu(p) + 1e-4
    if transform == "sigmoid":
        return torch.sigmoid(p)
    if transform == "softplus":
        return F.softplus(p)
    raise ValueError(transform)


def log_vandermonde_naive(v, x, length):
    """vandermonde.py log_vandermonde_naive with conj=True: 2·Re Σ_n v_n exp(x_n l)."""
    powers = torch.exp(x.unsqueeze(-1) * torch.arange(length).to(x))     # (... N L)
    return 2 * torch.einsum("...n,...nl->...l", v, powers).real


def fft_conv(k, u, d, bidirectional=False):
    """FFTConv.forward (and S4D.forward, DSS.forward) for one batch element: k (C', H, Lk) with
    C' = C, or 2C when bidirectional; u (H, L); d (C, H), or (H,) for S4D. A bidirectional
    kernel is split '(s c) h l -> s c h l' into the causal k0 and the anti-causal k1, and laid
    out as F.pad(k0, (0, L)) + F.pad(k1.flip(-1), (L, 0)); the product of the FFTs of size
    Lk + L is cut to L, the D term added, and (c h) flattened."""
    length, h = u.shape[-1], u.shape[0]
    l_kernel = k.shape[-1]
    if bidirectional:
        k0, k1 = k.reshape(2, -1, *k.shape[1:])                           # '(s c) h l -> s c h l'
        k = F.pad(k0, (0, length)) + F.pad(k1.flip(-1), (length, 0))
    n = l_kernel + length
    k_f = torch.fft.rfft(k, n=n)                                          # (C H n/2+1)
    u_f = torch.fft.rfft(u, n=n)                                          # (H n/2+1)
    y_f = torch.einsum("hl,chl->chl", u_f, k_f)
    y = torch.fft.irfft(y_f, n=n)[..., :length]                           # (C H L)
    y = y + torch.einsum("hl,ch->chl", u, d.reshape(-1, h))
    return y.reshape(-1, length)                                          # (c h) l


def s4d_module(sd, u):
    """models/s4/s4d.py: S4DKernel.forward, then S4D.forward up to the D skip."""
    length = u.shape[-1]
    dt = torch.exp(sd["kernel.log_dt"])                                   # (H)
    c = torch.view_as_complex(sd["kernel.C"])                             # (H N)
    a = -torch.exp(sd["kernel.log_A_real"]) + 1j * sd["kernel.A_imag"]   # (H N)
    dta = a * dt.unsqueeze(-1)
    k = dta.unsqueeze(-1) * torch.arange(length)                          # (H N L)
    c = c * (torch.exp(dta) - 1.0) / a
    k = 2 * torch.einsum("hn,hnl->hl", c, torch.exp(k)).real
    # S4D.forward: FFT of size 2L, y + u·D
    k_f = torch.fft.rfft(k, n=2 * length)
    u_f = torch.fft.rfft(u, n=2 * length)
    y = torch.fft.irfft(u_f * k_f, n=2 * length)[..., :length]
    return y + u * sd["D"].unsqueeze(-1)


def ssm_kernel_diag(sd, u, cfg, prefix):
    """ssm.py SSMKernelDiag._get_params and forward (state None, rate 1), inside
    FFTConv.forward (bidirectional when cfg says so)."""
    g = lambda name: sd[prefix + "kernel." + name]
    length, h = u.shape[-1], u.shape[0]
    if cfg.get("is_real", False):
        a = -param_transform(g("A_real"), cfg["real_transform"])         # (S N)
        b = g("B")                                                         # (1 S N)
        c = g("C")                                                         # (C H N)
    else:
        a = (-param_transform(g("A_real"), cfg["real_transform"])
             - 1j * param_transform(g("A_imag"), cfg["imag_transform"]))
        b = torch.view_as_complex(g("B"))
        c = torch.view_as_complex(g("C"))
    inv_dt = torch.sinh(g("inv_dt")) if cfg.get("dt_fast", False) else g("inv_dt")
    dt = param_transform(inv_dt, cfg["dt_transform"])                      # (H 1) or (H N)
    if cfg.get("force_real", False):
        a = a.real + 0j
    if cfg.get("bandlimit") is not None:
        freqs = dt * a.imag.abs() / (2 * math.pi)
        mask = torch.where(freqs < cfg["bandlimit"] * 0.5, 1, 0)
        c = c * mask
    repeat = h // a.shape[0]
    a = a.repeat(repeat, 1)                                                # 't n -> (v t) n'
    b = b.repeat(1, repeat, 1)                                             # 'b t n -> b (v t) n'
    dta = dt * a
    c = (b[:, None, :, :] * c).reshape(-1, h, a.shape[-1])                 # (C H N)
    if cfg["disc"] == "zoh":
        c = c * (torch.exp(dta) - 1.0) / a
        k = log_vandermonde_naive(c, dta, length)
    elif cfg["disc"] == "bilinear":
        c = c * (1.0 - dta / 2).reciprocal() * dt
        da = (1.0 + dta / 2) / (1.0 - dta / 2)
        k = log_vandermonde_naive(c, da.log(), length)
    else:
        raise ValueError(cfg["disc"])
    return fft_conv(k, u, sd[prefix + "D"], cfg.get("bidirectional", False))


def cauchy_naive(v, z, w):
    """functional/cauchy.py (and kernels/ssm.py's fallback) cauchy_naive: Σ_n v_n/(z − w_n)
    over the conjugate-extended v and w."""
    v = torch.cat([v, v.conj()], dim=-1)
    w = torch.cat([w, w.conj()], dim=-1)
    return (v.unsqueeze(-1) / (z.unsqueeze(-2) - w.unsqueeze(-1))).sum(dim=-2)


def ssm_kernel_dplr(sd, u, cfg, prefix):
    """ssm.py SSMKernelDPLR._get_params, _omega and forward (state None, rate 1, l_kernel > 0
    so that C is the stored C̃ and no _setup_C runs, discrete_L = l_kernel), inside
    FFTConv.forward (bidirectional when cfg says so)."""
    g = lambda name: sd[prefix + "kernel." + name]
    length, h = u.shape[-1], u.shape[0]
    a = (-param_transform(g("A_real"), cfg["real_transform"])
         - 1j * param_transform(g("A_imag"), cfg["imag_transform"]))      # (S N)
    b = torch.view_as_complex(g("B"))                                      # (1 S N)
    c = torch.view_as_complex(g("C"))                                      # (C H N): C̃
    inv_dt = torch.sinh(g("inv_dt")) if cfg.get("dt_fast", False) else g("inv_dt")
    dt = param_transform(inv_dt, cfg["dt_transform"])                      # (H 1)
    p = torch.view_as_complex(g("P"))                                      # (R S N)
    repeat = h // a.shape[0]
    a = a.repeat(repeat, 1)
    b = b.repeat(1, repeat, 1)
    p = p.repeat(1, repeat, 1)
    q = p.conj()
    rank = p.shape[0]
    discrete_l = int(g("l_kernel").item())
    assert length <= discrete_l
    # _omega: the roots of unity of discrete_L and their bilinear images
    omega = torch.tensor(np.exp(-2j * np.pi / discrete_l), dtype=torch.complex128)
    omega = omega ** torch.arange(0, discrete_l // 2 + 1)
    z = 2 * (1 - omega) / (1 + omega)
    a = a * dt
    b = torch.cat([b, p], dim=-3)                                          # (1+R H N)
    c = torch.cat([c, q], dim=-3)                                          # (C+R H N)
    v = b.unsqueeze(-3) * c.unsqueeze(-4)                                  # (1+R C+R H N)
    v = v * dt
    r = cauchy_naive(v, z, a)                                              # (1+R C+R H L/2+1)
    if rank == 1:
        k_f = r[:-1, :-1] - r[:-1, -1:] * r[-1:, :-1] / (1 + r[-1:, -1:])
    elif rank == 2:
        r00, r01 = r[:-rank, :-rank], r[:-rank, -rank:]
        r10, r11 = r[-rank:, :-rank], r[-rank:, -rank:]
        det = (1 + r11[:1, :1]) * (1 + r11[1:, 1:]) - r11[:1, 1:] * r11[1:, :1]
        s = (r01[:, :1] * (1 + r11[1:, 1:]) * r10[:1]
             + r01[:, 1:] * (1 + r11[:1, :1]) * r10[1:]
             - r01[:, :1] * r11[:1, 1:] * r10[1:]
             - r01[:, 1:] * r11[1:, :1] * r10[:1])
        k_f = r00 - s / det
    else:
        r00, r01 = r[:-rank, :-rank], r[:-rank, -rank:]
        r10, r11 = r[-rank:, :-rank], r[-rank:, -rank:]
        r11 = torch.linalg.inv(torch.eye(rank) + r11.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
        k_f = r00 - torch.einsum("ijhn,jkhn,klhn->ilhn", r01, r11, r10)
    k_f = k_f * 2 / (1 + omega)
    k = torch.fft.irfft(k_f, n=discrete_l)[..., :length]                  # (1 C H L)
    return fft_conv(k[-1], u, sd[prefix + "D"], cfg.get("bidirectional", False))


def hippo_legs_nplr(n, b_clip=2.0):
    """models/s4/s4.py at 070384a: transition('legs'), rank_correction('legs') and nplr('legs',
    N, rank=1, B_clip=2.0): Im of the eigenvalues from torch.linalg.eigh of −i·(A + P Pᵀ), the
    half with negative imaginary parts, B = V* b and P = V* p, Im B clipped to ±B_clip (None:
    no clip). transition() is numpy upstream too."""
    q = np.arange(n, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    r = 2 * q + 1
    m = -(np.where(row >= col, r, 0) - np.diag(q))
    t = np.sqrt(np.diag(2 * q + 1))
    a = torch.as_tensor(t @ m @ np.linalg.inv(t), dtype=torch.float64)     # (N N)
    b = torch.as_tensor(np.diag(t)[:, None].copy(), dtype=torch.float64)[:, 0]  # (N)
    p = torch.sqrt(0.5 + torch.arange(n, dtype=torch.float64)).unsqueeze(0)  # (1 N)
    ap = a + torch.sum(p.unsqueeze(-2) * p.unsqueeze(-1), dim=-3)
    w_re = torch.mean(torch.diagonal(ap), -1, keepdim=True)
    w_im, v = torch.linalg.eigh(ap * -1j)
    w = w_re + 1j * w_im
    _, idx = torch.sort(w.imag)
    w = w[idx][:n // 2]
    v = v[:, idx][:, :n // 2]
    v_inv = v.conj().transpose(-1, -2)
    b = torch.einsum("ij,j->i", v_inv, b.to(v))
    p = torch.einsum("ij,...j->...i", v_inv, p.to(v))
    if b_clip is not None:
        b = b.real + 1j * torch.clamp(b.imag, min=-b_clip, max=b_clip)
    return w, p, b


# ---- ag1988 DSS ------------------------------------------------------------------------------

def reciprocal(x, epsilon=1e-7, clamp=False):
    """dss.py reciprocal: a bounded 1 / x."""
    x_conj = x.conj()
    norm_sq = (x * x_conj).real.clamp(epsilon) if clamp else (x * x_conj + epsilon)
    return x_conj / norm_sq


def dss_lambda(sd, version):
    """dss.py DSSKernel._Lambda (versions softmax and exp*)."""
    if "exp" in version:
        if "im" in version:
            return -sd["kernel.Lambda_log_neg_re"].exp() + 1j * sd["kernel.Lambda_log_im"].exp()
        return -sd["kernel.Lambda_log_neg_re"].exp() + 1j * sd["kernel.Lambda_im"]
    return torch.view_as_complex(sd["kernel.Lambda"])


def dss_module(sd, u, cfg):
    """dss.py DSSKernel.forward, then DSS.forward up to the D skip (bidirectional when cfg says
    so: the kernel's first half of channels causal, the second anti-causal)."""
    version = cfg["version"]
    length = u.shape[-1]
    lam = dss_lambda(sd, version)                                          # (N)
    w = torch.view_as_complex(sd["kernel.W"])                              # (C H N)
    log_dt = sd["kernel.log_dt"]
    if log_dt.ndim <= 1:
        dt_lambda = log_dt.exp().unsqueeze(-1) * lam                       # (H N)
    else:  # Re Λ·Δ0 + i Im Λ·Δ1
        dt_lambda = torch.view_as_complex(
            (log_dt.exp().unsqueeze(1) * torch.view_as_real(lam).unsqueeze(0)).contiguous())
    p = dt_lambda.unsqueeze(-1) * torch.arange(length)                     # (H N L)
    if version == "softmax":
        gt0 = lam.real > 0                                                 # (N)
        if gt0.any():
            p_max = dt_lambda * (gt0 * (length - 1))
            p = p - p_max.unsqueeze(-1)
        s = p.exp()
        neg = dt_lambda * (1 - 2 * gt0.to(torch.float64))
        num = neg.exp() - 1
        den = (neg * length).exp() - 1
        w = w * num * reciprocal(den * lam, cfg["epsilon"])
    else:
        s = p.exp()
        if "no-scale" not in version:
            w = w * (dt_lambda.exp() - 1) * reciprocal(lam, clamp=True)
    k = torch.einsum("chn,hnl->chl", w, s).real                            # (C' H L)
    return fft_conv(k, u, sd["D"], cfg.get("bidirectional", False))       # n = L + Lk, Lk = L


# ---- lindermanlab/S5 -------------------------------------------------------------------------

def discretize_zoh(lam, b_tilde, delta):
    """ssm.py discretize_zoh: Λ̄ = exp(ΛΔ), B̄ = (Λ̄ − 1)/Λ · B̃."""
    identity = torch.ones(lam.shape[0], dtype=torch.float64)
    lam_bar = torch.exp(lam * delta)
    b_bar = (1 / lam * (lam_bar - identity)).unsqueeze(-1) * b_tilde
    return lam_bar, b_bar


def discretize_bilinear(lam, b_tilde, delta):
    """ssm.py discretize_bilinear: Λ̄ = (1 + ΔΛ/2)/(1 − ΔΛ/2), B̄ = Δ/(1 − ΔΛ/2) · B̃."""
    identity = torch.ones(lam.shape[0], dtype=torch.float64)
    bl = 1 / (identity - (delta / 2.0) * lam)
    lam_bar = bl * (identity + (delta / 2.0) * lam)
    b_bar = (bl * delta).unsqueeze(-1) * b_tilde
    return lam_bar, b_bar


def binary_operator(q_i, q_j):
    """ssm.py binary_operator: composes (A_i, b_i) then (A_j, b_j) of x ↦ A x + b."""
    a_i, b_i = q_i
    a_j, b_j = q_j
    return a_j * a_i, a_j * b_i + b_j


def associative_scan(fn, elems, reverse=False):
    """jax.lax.associative_scan over the leading axis, folded sequentially (the same prefixes;
    reverse=True scans the reversed sequence and reverses the result, so that element t
    combines t, t+1, …, L−1)."""
    if reverse:
        elems = tuple(e.flip(0) for e in elems)
    acc = tuple(e[0] for e in elems)
    outs = [acc]
    for t in range(1, elems[0].shape[0]):
        acc = fn(acc, tuple(e[t] for e in elems))
        outs.append(acc)
    scans = tuple(torch.stack([o[i] for o in outs], 0) for i in range(len(elems)))
    if reverse:
        scans = tuple(s.flip(0) for s in scans)
    return scans


def apply_ssm(lam_bar, b_bar, c_tilde, input_sequence, conj_sym, bidirectional):
    """ssm.py apply_ssm: input_sequence (L, H), returns (L, H). Bidirectional: the reverse
    scan's states xs2[t] = Σ_{s≥t} Λ̄^(s−t) B̄ u_s are concatenated to the forward ones and C̃
    has 2P columns."""
    lam_elements = lam_bar * torch.ones(input_sequence.shape[0], lam_bar.shape[0],
                                        dtype=torch.complex128)
    bu_elements = torch.einsum("ph,lh->lp", b_bar, input_sequence.to(b_bar))
    _, xs = associative_scan(binary_operator, (lam_elements, bu_elements))
    if bidirectional:
        _, xs2 = associative_scan(binary_operator, (lam_elements, bu_elements), reverse=True)
        xs = torch.cat([xs, xs2], dim=-1)
    ys = torch.einsum("hp,lp->lh", c_tilde, xs)
    return 2 * ys.real if conj_sym else ys.real


def s5_ssm(sd, u, cfg, prefix):
    """ssm.py S5SSM.setup (clip_eigs, C or C1/C2, step_rescale, discretization) and __call__
    (apply_ssm plus D·u). u is (H, L); returns (H, L)."""
    g = lambda name: sd[prefix + name]
    lam_re = torch.clamp(g("Lambda_re"), max=-1e-4) if cfg["clip_eigs"] else g("Lambda_re")
    lam = lam_re + 1j * g("Lambda_im")                                     # (P)
    b_tilde = g("B")[..., 0] + 1j * g("B")[..., 1]                         # (P H)
    bidirectional = cfg.get("bidirectional", False)
    if bidirectional and prefix + "C1" in sd:                              # trunc_standard_normal
        c1 = g("C1")[..., 0] + 1j * g("C1")[..., 1]
        c2 = g("C2")[..., 0] + 1j * g("C2")[..., 1]
        c_tilde = torch.cat([c1, c2], dim=-1)                              # (H 2P)
    else:                                                                  # (H P), complex_normal (H 2P)
        c_tilde = g("C")[..., 0] + 1j * g("C")[..., 1]
    step = cfg["step_rescale"] * torch.exp(g("log_step")[:, 0])            # (P)
    if cfg["discretization"] == "zoh":
        lam_bar, b_bar = discretize_zoh(lam, b_tilde, step)
    elif cfg["discretization"] == "bilinear":
        lam_bar, b_bar = discretize_bilinear(lam, b_tilde, step)
    else:
        raise ValueError(cfg["discretization"])
    x = u.T                                                                # (L H)
    ys = apply_ssm(lam_bar, b_bar, c_tilde, x, cfg["conj_sym"], bidirectional)
    du = g("D") * x
    return (ys + du).T


# ---- HazyResearch/safari HyenaOperator -------------------------------------------------------

def hyena_positional_embedding(emb_dim, seq_len):
    """hyena.py PositionalEmbedding.__init__: z (1, L, E) and t (1, L, 1) (the stored buffers:
    parameter generation, kept in numpy so that the stored values stay as they were)."""
    t = np.linspace(0, 1, seq_len)[None, :, None]
    bands = (emb_dim - 1) // 2
    t_rescaled = np.linspace(0, seq_len - 1, seq_len)[None, :, None]
    w = 2 * math.pi * t_rescaled / seq_len
    f = np.linspace(1e-4, bands - 1, bands)[None, None]
    z = np.exp(-1j * f * w)
    return np.concatenate([t, z.real, z.imag], -1), t


def fftconv_ref(u, k, d):
    """hyena.py fftconv_ref (gelu False, no dropout mask, no k_rev): u (..., D, L), k (D, L),
    d broadcast against u's (..., D, 1)."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k, n=fft_size) / fft_size
    u_f = torch.fft.rfft(u.to(dtype=k.dtype), n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return y + u * d.unsqueeze(-1)


def hyena_filter(sd, l_filter, cfg):
    """hyena.py HyenaFilter.filter: PositionalEmbedding.forward, the implicit MLP (Linear, Sin
    pairs sharing one Sin, a last Linear without bias), the L1 normalization, then
    ExponentialModulation.forward. Returns (1, L, D·(order−1))."""
    g = lambda name: sd[name]
    z, t = g("filter_fn.pos_emb.z")[:, :l_filter], g("filter_fn.pos_emb.t")[:, :l_filter]
    h = z
    i = 0
    while "filter_fn.implicit_filter.%d.weight" % (i + 2) in sd:
        h = F.linear(h, g("filter_fn.implicit_filter.%d.weight" % i),
                     g("filter_fn.implicit_filter.%d.bias" % i))
        freq = sd.get("filter_fn.implicit_filter.%d.freq" % (i + 1), sd["filter_fn.implicit_filter.1.freq"])
        h = torch.sin(freq * h)                                           # Sin.forward
        i += 2
    h = F.linear(h, g("filter_fn.implicit_filter.%d.weight" % i))        # bias=False
    if cfg["normalized"]:
        h = h / torch.norm(h, dim=-1, p=1, keepdim=True)
    if cfg["modulate"]:
        decay = torch.exp(-t * g("filter_fn.modulation.deltas").abs())
        h = h * (decay + cfg["shift"])
    return h


def hyena_operator(sd, u, cfg):
    """hyena.py HyenaOperator.forward (one head, one block, inner_factor 1, no outer mixing or
    post-order FFN, identity activation, dropout off), with HyenaFilter.forward's fftconv_ref.
    u is (L, D), one batch element; returns (L, D)."""
    g = lambda name: sd[name]
    u = u.unsqueeze(0)                                                     # b l d
    length, d_model = u.shape[-2], u.shape[-1]
    order = g("in_proj.weight").shape[0] // d_model - 1
    l_max = g("filter_fn.pos_emb.z").shape[1]
    l_filter = min(length, l_max)
    u = F.linear(u, g("in_proj.weight"), g("in_proj.bias"))
    u = u.transpose(-1, -2)                                                # b d l
    w = g("short_filter.weight")                                           # (W, 1, K): groups = W
    uc = F.conv1d(u, w, g("short_filter.bias"), padding=w.shape[-1] - 1, groups=w.shape[0])
    uc = uc[..., :l_filter]                                                # b (ho v) (z l), ho = z = 1
    *x, v = uc.split(d_model, dim=1)
    k = hyena_filter(sd, l_filter, cfg)                                    # (1, L, (v o))
    k = k[0].T.reshape(d_model, order - 1, l_filter).permute(1, 0, 2)      # 'c l (v o) -> c o v l'
    bias = g("filter_fn.bias").reshape(d_model, order - 1).T               # '(v o) -> o v'
    if not cfg["bias"]:                                                    # HyenaFilter use_bias
        bias = 0 * bias
    for o, x_i in enumerate(reversed(x[1:])):
        v = v * x_i
        v = fftconv_ref(v, k[o], bias[o])
    y = (v * x[0]).transpose(-1, -2)                                       # b (z l) (h v)
    return F.linear(y, g("out_proj.weight"), g("out_proj.bias"))[0]


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
    y = reference(hyena_operator, sd, u, cfg)
    return sd, u.T, y.T, dict(cfg, d_model=d_model, order=order, l_max=l_max)


# ---- state-spaces/mamba Mamba ----------------------------------------------------------------

def selective_scan_ref(u, delta, a, b, c, d, z, delta_bias, delta_softplus=True):
    """selective_scan_interface.py selective_scan_ref (real A, one group): u, delta, z (B, D, L);
    a (D, N); b, c (B, N, L) when varying in time (is_variable_B / _C: B.dim() >= 3) or (D, N)
    when not; d, delta_bias (D)."""
    delta = delta + delta_bias[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    is_variable_b, is_variable_c = b.dim() >= 3, c.dim() >= 3
    x = a.new_zeros((u.shape[0], a.shape[0], a.shape[1]))                 # (B D N)
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, a))
    if not is_variable_b:
        delta_b_u = torch.einsum("bdl,dn,bdl->bdln", delta, b, u)
    else:
        delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, b, u)
    ys = []
    for i in range(u.shape[2]):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        if not is_variable_c:
            y = torch.einsum("bdn,dn->bd", x, c)
        else:
            y = torch.einsum("bdn,bn->bd", x, c[:, :, i])
        ys.append(y)
    y = torch.stack(ys, dim=2)                                             # (B D L)
    out = y + u * d[:, None]
    return out * F.silu(z)


def rms_norm(x, weight, eps):
    """transformers' JambaRMSNorm.forward (weight) and FalconMamba's rms_forward (weight None):
    over the last axis, x · rsqrt(mean(x²) + eps) · weight."""
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return x if weight is None else weight * x


def mamba_mixer(sd, x, z, prefix, cfg=None):
    """mamba_simple.py Mamba.forward (the path without the fused kernels) from the conv's
    output x (D, L) and the gate z (D, L) on: x_proj, the split, dt_proj, selective_scan_fn.
    cfg adds the relatives' options: x_proj.bias (nn.Linear's bias, when stored); transformers'
    JambaMambaMixer.slow_forward norms (dt_layernorm, b_layernorm, c_layernorm, each on its part
    of x_proj's output, before dt_proj) and FalconMambaMixer's weightless ones (b_c_dt_rms,
    mixer_rms_eps); selective_scan_fn's delta_softplus and time-invariant B or C (stored here
    as B / C of shape (D, N), x_proj yielding only the varying ones). Returns (D, L)."""
    cfg = cfg or {}
    g = lambda name: sd[prefix + name]
    seqlen = x.shape[-1]
    x, z = x.unsqueeze(0), z.unsqueeze(0)                                  # b d l
    rank, n = g("dt_proj.weight").shape[1], g("A_log").shape[1]
    var_b, var_c = cfg.get("is_variable_B", True), cfg.get("is_variable_C", True)
    x_dbl = F.linear(x.permute(0, 2, 1).reshape(-1, x.shape[1]), g("x_proj.weight"),
                     sd.get(prefix + "x_proj.bias"))                       # (b l) (R + N·varying)
    dt, b, c = torch.split(x_dbl, [rank, n * var_b, n * var_c], dim=-1)
    norm = lambda name: sd.get(prefix + name)
    if cfg.get("b_c_dt_rms", False):
        eps = cfg["mixer_rms_eps"]
        dt = rms_norm(dt, None, eps)
        b = rms_norm(b, None, eps) if var_b else b
        c = rms_norm(c, None, eps) if var_c else c
    else:
        eps = cfg.get("rms_norm_eps", 1e-6)
        if norm("dt_layernorm.weight") is not None:
            dt = rms_norm(dt, norm("dt_layernorm.weight"), eps)
        if norm("b_layernorm.weight") is not None:
            b = rms_norm(b, norm("b_layernorm.weight"), eps)
        if norm("c_layernorm.weight") is not None:
            c = rms_norm(c, norm("c_layernorm.weight"), eps)
    dt = g("dt_proj.weight") @ dt.t()                                      # d (b l)
    dt = dt.reshape(dt.shape[0], -1, seqlen).permute(1, 0, 2)              # 'd (b l) -> b d l'
    b = b.reshape(1, seqlen, n).permute(0, 2, 1) if var_b else g("B")     # b n l, or (D N)
    c = c.reshape(1, seqlen, n).permute(0, 2, 1) if var_c else g("C")
    a = -torch.exp(g("A_log"))
    y = selective_scan_ref(x, dt, a, b, c, g("D"), z, g("dt_proj.bias"),
                           cfg.get("delta_softplus", True))
    return y[0]


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
    y = reference(mamba_mixer, sd, x, z, prefix, cfg)
    return sd, (x, z), y, dict(cfg, prefix=prefix, module="Mamba (mamba_ssm/modules/mamba_simple.py)")


# ---- state-spaces/mamba Mamba2 ----------------------------------------------------------------

def mamba2_mixer(sd, u, cfg, prefix):
    """mamba2.py Mamba2.forward (the path without the fused kernels: in_proj, the split
    [z0, x0, z, xBC, dt], conv1d with padding d_conv − 1 cut to the length, SiLU, the split
    [x, B, C], mamba_chunk_scan_combined with dt_bias, dt_softplus and dt_limit, D per head or per
    channel (D_has_hdim), RMSNormGated with norm_before_gate False and group_size d_ssm / ngroups
    (or cfg's), the gated MLP part, out_proj). The SSD is run as its recurrence (Mamba2.step):
    h = exp(Δ·A) h + Δ·B x, y = C·h + D x, per head, B and C of the head's group. u is (L, d_model)."""
    g = lambda name: sd[prefix + name]
    u = u.unsqueeze(0)                                                     # b l d
    length = u.shape[1]
    a = -torch.exp(g("A_log"))                                             # (nheads)
    nheads, d_ssm = a.shape[0], g("norm.weight").shape[0]
    headdim, ngroups = d_ssm // nheads, cfg["ngroups"]
    conv_dim, d_conv = g("conv1d.weight").shape[0], g("conv1d.weight").shape[2]
    d_state = (conv_dim - d_ssm) // 2 // ngroups
    zxbcdt = F.linear(u, g("in_proj.weight"), sd.get(prefix + "in_proj.bias"))
    d_mlp = (zxbcdt.shape[-1] - 2 * d_ssm - 2 * ngroups * d_state - nheads) // 2
    z0, x0, z, xbc, dt = torch.split(zxbcdt, [d_mlp, d_mlp, d_ssm, conv_dim, nheads], dim=-1)
    xbc = F.conv1d(xbc.transpose(1, 2), g("conv1d.weight"), sd.get(prefix + "conv1d.bias"),
                   padding=d_conv - 1, groups=conv_dim)
    xbc = F.silu(xbc.transpose(1, 2)[:, :-(d_conv - 1)])
    x, b, c = torch.split(xbc, [d_ssm, ngroups * d_state, ngroups * d_state], dim=-1)
    x = x.reshape(1, length, nheads, headdim)                              # b l h p
    b = b.reshape(1, length, ngroups, d_state)                             # b l g n
    c = c.reshape(1, length, ngroups, d_state)
    dt = F.softplus(dt + g("dt_bias"))                                     # b l h
    dt = torch.clamp(dt, cfg.get("dt_min", 0.0), cfg.get("dt_max", float("inf")))
    d = g("D").reshape(nheads, headdim) if g("D").shape[0] == d_ssm else g("D").unsqueeze(-1)
    grp = torch.arange(nheads) // (nheads // ngroups)                      # each head's group
    state = torch.zeros(1, nheads, headdim, d_state, dtype=torch.float64)
    ys = []
    for t in range(length):
        da = torch.exp(dt[:, t] * a)                                       # b h
        dbx = torch.einsum("bh,bhn,bhp->bhpn", dt[:, t], b[:, t, grp], x[:, t])
        state = state * da[:, :, None, None] + dbx
        y = torch.einsum("bhpn,bhn->bhp", state, c[:, t, grp])
        ys.append(y + d * x[:, t])
    y = torch.stack(ys, 1).reshape(1, length, d_ssm)                       # b l (h p)
    # RMSNormGated, norm_before_gate False: the norm of y·SiLU(z) over each group, times weight
    group = cfg.get("norm_group_size") or d_ssm // ngroups
    gated = (y * F.silu(z)).reshape(1, length, d_ssm // group, group)
    y = gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + cfg["norm_eps"])
    y = y.reshape(1, length, d_ssm) * g("norm.weight")
    if d_mlp > 0:
        y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    out = F.linear(y, g("out_proj.weight"), sd.get(prefix + "out_proj.bias"))
    return out[0]


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
    y = reference(mamba2_mixer, sd, u, cfg, prefix)
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
    return sd, u, reference(s4d_module, sd, u), {"module": "S4D (models/s4/s4d.py)"}


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
    kc = 2 * channels if cfg.get("bidirectional", False) else channels  # FFTConv doubles the kernel's
    sd = {prefix + "D": rng.normal(size=(channels, h)),
          kp + "inv_dt": inv_dt,
          kp + "A_real": inv_transform_values(neg_re, cfg["real_transform"])}
    if cfg.get("is_real", False):
        sd[kp + "B"] = rng.normal(size=(1, n_ssm, n2))
        sd[kp + "C"] = rng.normal(size=(kc, h, n2))
    else:
        sd[kp + "A_imag"] = inv_transform_values(neg_im, cfg["imag_transform"])
        sd[kp + "B"] = rng.normal(size=(1, n_ssm, n2, 2))
        sd[kp + "C"] = rng.normal(size=(kc, h, n2, 2))
    u = rng.normal(size=(h, L))
    return sd, u, reference(ssm_kernel_diag, sd, u, cfg, prefix), dict(cfg, prefix=prefix, n_ssm=n_ssm)


def make_dplr(rng, cfg, h, n2, channels, n_ssm, rank, l_kernel, length, prefix="layer."):
    dt = np.exp(log_dt_values(rng, (h, 1), 1e-2, 0.5))
    neg_re = rng.uniform(0.1, 0.9, (n_ssm, n2))
    neg_im = math.pi * np.arange(n2) + rng.uniform(0.05, 0.5, (n_ssm, n2))
    kp = prefix + "kernel."
    kc = 2 * channels if cfg.get("bidirectional", False) else channels
    sd = {prefix + "D": rng.normal(size=(channels, h)),
          kp + "inv_dt": inv_transform_values(dt, cfg["dt_transform"]),
          kp + "A_real": inv_transform_values(neg_re, cfg["real_transform"]),
          kp + "A_imag": inv_transform_values(neg_im, cfg["imag_transform"]),
          kp + "B": rng.normal(size=(1, n_ssm, n2, 2)),
          kp + "P": rng.normal(scale=0.5, size=(rank, n_ssm, n2, 2)),
          kp + "C": rng.normal(size=(kc, h, n2, 2)),                       # C̃, as trained
          kp + "l_kernel": np.array(l_kernel)}
    u = rng.normal(size=(h, length))
    return sd, u, reference(ssm_kernel_dplr, sd, u, cfg, prefix), dict(cfg, prefix=prefix, n_ssm=n_ssm, rank=rank)


def make_dss(rng, version, channels, sep_dt, positive_re=False, bidirectional=False):
    h, n = 3, 4
    lam = -rng.uniform(0.1, 0.9, n) + 1j * (math.pi * np.arange(n) + rng.uniform(0.1, 0.5, n))
    if positive_re:
        lam[1] = 0.3 + 1j * lam[1].imag  # DSS-softmax allows Re Λ > 0
    log_dt = log_dt_values(rng, h, 1e-2, 0.5)
    if sep_dt:
        log_dt = np.stack([log_dt, log_dt + rng.normal(scale=0.3, size=h)], -1)
    sd = {"D": rng.normal(size=(channels, h)), "kernel.log_dt": log_dt,
          "kernel.W": rng.normal(size=(2 * channels if bidirectional else channels, h, n, 2)),
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
    if bidirectional:
        cfg["bidirectional"] = True
    u = rng.normal(size=(h, L))
    return sd, u, reference(dss_module, sd, u, cfg), cfg


def make_s5(rng, cfg, prefix="layers_0/seq/", positive_re=False):
    p, h = 4, 3
    lam_re = -rng.uniform(0.1, 0.8, p)
    if cfg["clip_eigs"] or positive_re:
        lam_re[2] = 0.05  # clipped to −1e-4; without clip_eigs a growing state
    sd = {prefix + "Lambda_re": lam_re,
          prefix + "Lambda_im": rng.uniform(-3, 3, p),
          prefix + "B": rng.normal(scale=0.5, size=(p, h, 2))}
    if not cfg.get("bidirectional", False):
        sd[prefix + "C"] = rng.normal(scale=0.5, size=(h, p, 2))
    elif cfg["C_init"] == "complex_normal":  # one C of 2P columns, sampled as is
        sd[prefix + "C"] = rng.normal(scale=0.5 ** 0.5, size=(h, 2 * p, 2))
    else:  # trunc_standard_normal or lecun_normal: C1 and C2, each C̃ = C·V of P columns
        sd[prefix + "C1"] = rng.normal(scale=0.5, size=(h, p, 2))
        sd[prefix + "C2"] = rng.normal(scale=0.5, size=(h, p, 2))
    sd[prefix + "D"] = rng.normal(size=h)
    sd[prefix + "log_step"] = log_dt_values(rng, (p, 1), 1e-2, 0.5)
    u = rng.normal(size=(h, L))
    return sd, u, reference(s5_ssm, sd, u, cfg, prefix), dict(cfg, prefix=prefix)


def main():
    from safetensors.numpy import save_file  # (here: the functions above import without it)

    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "reference_params")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240611)
    bi = np.random.default_rng(20261203)  # the bidirectional fixtures': the others keep their values
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
        # bidirectional FFTConv: kernel channels (s c), s = 0 causal, s = 1 anti-causal; D (2, H)
        "diag_bidirectional": make_diag(bi, diag(bidirectional=True), h=3, n2=4, channels=2, n_ssm=3),
        "dss_softmax": make_dss(rng, "softmax", channels=2, sep_dt=True, positive_re=True),
        "dss_exp": make_dss(rng, "exp", channels=1, sep_dt=False),
        "dss_exp_re_im": make_dss(rng, "exp-re-im", channels=1, sep_dt=True),
        "dss_exp_no_scale": make_dss(rng, "exp-no-scale", channels=1, sep_dt=False),
        "dss_bidirectional": make_dss(bi, "exp", channels=2, sep_dt=False, bidirectional=True),
        "s5_zoh": make_s5(rng, {"discretization": "zoh", "conj_sym": True, "clip_eigs": True,
                                "step_rescale": 2.0}),
        "s5_bilinear": make_s5(rng, {"discretization": "bilinear", "conj_sym": False,
                                     "clip_eigs": False, "step_rescale": 1.0}),
        # bidirectional S5SSM: C1 and C2 (trunc_standard_normal), then one C of 2P columns
        # (complex_normal); the reverse scan's states follow the forward ones in C̃'s columns
        "s5_bidirectional": make_s5(bi, {"discretization": "zoh", "conj_sym": True, "clip_eigs": True,
                                         "step_rescale": 1.0, "bidirectional": True,
                                         "C_init": "trunc_standard_normal"}),
        "s5_bidirectional_complex": make_s5(bi, {"discretization": "bilinear", "conj_sym": False,
                                                 "clip_eigs": False, "step_rescale": 1.0,
                                                 "bidirectional": True, "C_init": "complex_normal"}),
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
        "dplr_bidirectional": make_dplr(bi, diag(bidirectional=True), h=3, n2=4, channels=1, n_ssm=1,
                                        rank=1, l_kernel=16, length=16),
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
        w, p, b = (x.numpy() for x in hippo_legs_nplr(n))
        legs["lambda_%d" % n], legs["p_%d" % n], legs["b_%d" % n] = c2r(w), c2r(p[0]), c2r(b)
        legs["b_unclipped_%d" % n] = c2r(hippo_legs_nplr(n, None)[2].numpy())
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
            def member(arcname):  # a fixed time stamp, so that the archive regenerates byte for byte
                info = zipfile.ZipInfo(arcname, date_time=(2026, 12, 2, 18, 23, 42))
                info.external_attr = 0o600 << 16  # what writestr gives a member named by a string
                return info
            with zipfile.ZipFile(os.path.join(out, name + "_extra.npz"), "w") as z:  # a member not .npy
                for key, value in sd.items():
                    buf = io_module.BytesIO()
                    np.save(buf, value)
                    z.writestr(member(key + ".npy"), buf.getvalue())
                z.writestr(member("README.txt"), "not an array")
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
