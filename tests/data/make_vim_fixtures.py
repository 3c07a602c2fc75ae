#!/usr/bin/env python3
"""Creates the Vision Mamba (Vim) test fixtures and their references, in float64 on the CPU.

The reference model is written here in plain PyTorch, step by step after

  hustvl/Vim  vim/models_mamba.py                            at 095ecd3cb2d926593cc15d1513e6f0ded3ff3a86
              (PatchEmbed, Block, VisionMamba.forward_features / forward)
  hustvl/Vim  mamba-1p1p1/mamba_ssm/modules/mamba_simple.py  at 56a28e09ea467bbd3459d070dc55fbae2531798d
              (Mamba.__init__ and forward with bimamba_type="v2", the fast path that inference takes:
               mamba_inner_fn_no_out_proj on xz and on xz.flip(-1))
  hustvl/Vim  mamba-1p1p1/mamba_ssm/ops/selective_scan_interface.py (selective_scan_ref: the
              sequential scan with delta_bias and softplus, + D·u, ⊙ SiLU(z))

and the paper's CLS-row helper after

  AmeenAli/HiddenMambaAttn  mamba-1p1p1/mamba_ssm/ops/selective_scan_interface.py
              at 7738d5539929820ca2dfb4732cf739616caf7bb8 (compute_middle_attn_vector,
              compute_attn_matrix_fn) and mamba-1p1p1/mamba_ssm/modules/mamba_simple.py at
              929d403ed3cc6eb28c8db1de8ed9208fbad43d81 (the splice of the two directions' vectors).

Every fixture is a small random VisionMamba whose parameters are all moved off their
initialization (the backward branch's differ from the forward one's). Its state dict is saved
as a training checkpoint ({"model": state dict, "args": Namespace(model=NAME)}) and converted
by tools/convert_vim.py, so the converter path is what writes the fixture folders:

  <name>/config.json, <name>/model.safetensors

and under reference/<name>/ (float64 unless said otherwise; channel-major signals are (C, L),
"backward time" means the flipped sequence the backward branch runs on):

  image.npy              float32 (H, W, C)  the model input, as it enters patch_embed (HWC)
  logits.npy             (num_classes)
  layer<k>_xz.npy        (2·D_in, L)   in_proj output [x; z]
  layer<k>_u_f.npy       (D_in, L)     SiLU(conv1d(x) + bias), the forward SSM input
  layer<k>_u_b.npy       (D_in, L)     the same of conv1d_b on the flipped x, backward time
  layer<k>_delta_f.npy / _delta_b.npy  Δ of each branch (backward time for _b)
  layer<k>_y_f.npy / _y_b.npy          (S6(u) + D·u) ⊙ SiLU(z) of each branch (backward time for _b)
  layer<k>_y.npy         (D_in, L)     (y_f + flip(y_b)) [/ 2]: the out_proj input
  layer<k>_alpha_f.npy   (D_in, L, L)  forward α (compute_attn_matrix_fn's formula); first fixture only
  layer<k>_alpha_b.npy   (D_in, L, L)  backward α in backward time; first fixture only
  layer<k>_paper_cls.npy (D_in, L)     the paper's CLS vector: compute_middle_attn_vector on each
                                       branch (CLS at its position in that branch's time), spliced as
                                       the paper's Mamba.forward does; fixtures with a CLS token
  layer<k>_cls_row.npy   (D_in, L)     the CLS row of α_f + flip(α_b) (the full matrices): ours

The fixtures differ in every size field:

  vim_mid_odd         fp32, 12×12 image, patch 4 = stride: 9 patches, middle CLS at 4 (the backward
                      branch sees it at 5), sum divided by 2, dt_rank "auto", 2 layers
  vim_mid_stride_bf16 bf16 weights, 10×14 image, patch 4, stride 2: 4×6 = 24 patches, middle CLS at
                      12 (at 12 in backward time too, as for the released 14×14 models), in/out_proj
                      biases, 2 layers
  vim_head_nodiv      fp32, 8×12 image, CLS at the head, the sum not divided, no conv bias, expand 1.5
  vim_mean_nopos      fp32, 16×8 image, no CLS token, mean pooling, no position embedding

Needs torch, numpy and safetensors. Writes into the folder given as the first argument (default:
the script's own folder).

    python3 make_vim_fixtures.py [OUT_DIR]
"""

import argparse
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(HERE, "..", "..", "tools", "convert_vim.py")

FIXTURES = [
    dict(name="vim_mid_odd", dtype=torch.float32, seed=1,
         model="vim_test_patch4_012_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
         img=(12, 12), patch=4, stride=4, embed_dim=16, depth=2, d_state=4, d_conv=4, expand=2,
         dt_rank="auto", num_classes=7, cls="middle", divide=True, pool="mean", pos=True,
         conv_bias=True, bias=False, alpha=True, convert={}),
    dict(name="vim_mid_stride_bf16", dtype=torch.bfloat16, seed=2,
         model="vim_test_patch4_stride2_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2",
         img=(10, 14), patch=4, stride=2, embed_dim=12, depth=2, d_state=3, d_conv=3, expand=2,
         dt_rank=2, num_classes=5, cls="middle", divide=True, pool="mean", pos=True,
         conv_bias=True, bias=True, alpha=False, convert={"img_size": (10, 14)}),
    dict(name="vim_head_nodiv", dtype=torch.float32, seed=3,
         model="vim_test_patch4_bimambav2_abs_pos_embed",
         img=(8, 12), patch=4, stride=4, embed_dim=8, depth=1, d_state=2, d_conv=2, expand=1.5,
         dt_rank=3, num_classes=4, cls="head", divide=False, pool="none", pos=True,
         conv_bias=False, bias=False, alpha=False, convert={"img_size": (8, 12)}),
    dict(name="vim_mean_nopos", dtype=torch.float32, seed=4,
         model="vim_test_patch4_bimambav2_final_pool_mean",
         img=(16, 8), patch=4, stride=4, embed_dim=8, depth=1, d_state=4, d_conv=3, expand=2,
         dt_rank=1, num_classes=3, cls="none", divide=True, pool="mean", pos=False,
         conv_bias=True, bias=False, alpha=False,
         convert={"img_size": (16, 8), "if_divide_out": True}),
]

NORM_EPS = 1e-5


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_vim", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the model's parameters: the names and shapes of VisionMamba's state dict -------------------

def grid_of(fx):
    (h, w), p, s = fx["img"], fx["patch"], fx["stride"]
    return (h - p) // s + 1, (w - p) // s + 1


def random_state_dict(fx):
    """A VisionMamba state dict for fixture fx, every parameter random and off its initialization."""
    g = torch.Generator().manual_seed(fx["seed"])
    E, N, K = fx["embed_dim"], fx["d_state"], fx["d_conv"]
    D = int(fx["expand"] * E)
    R = math.ceil(E / 16) if fx["dt_rank"] == "auto" else fx["dt_rank"]
    p = fx["patch"]
    gh, gw = grid_of(fx)
    tokens = gh * gw + (0 if fx["cls"] == "none" else 1)

    def randn(*shape, scale=1.0, shift=0.0):
        return shift + scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    def uniform(*shape, lo, hi):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    sd = {"patch_embed.proj.weight": randn(E, 3, p, p, scale=1 / p),
          "patch_embed.proj.bias": randn(E, scale=0.2)}
    if fx["cls"] != "none":
        sd["cls_token"] = randn(1, 1, E, scale=0.5)
    if fx["pos"]:
        sd["pos_embed"] = randn(1, tokens, E, scale=0.3)
    for k in range(fx["depth"]):
        m = f"layers.{k}.mixer."
        sd[f"layers.{k}.norm.weight"] = randn(E, scale=0.2, shift=1.0)
        sd[m + "in_proj.weight"] = randn(2 * D, E, scale=E ** -0.5)
        if fx["bias"]:
            sd[m + "in_proj.bias"] = randn(2 * D, scale=0.2)
        for b in ("", "_b"):
            sd[m + f"conv1d{b}.weight"] = randn(D, 1, K, scale=K ** -0.5)
            if fx["conv_bias"]:
                sd[m + f"conv1d{b}.bias"] = randn(D, scale=0.2)
            sd[m + f"x_proj{b}.weight"] = randn(R + 2 * N, D, scale=D ** -0.5)
            sd[m + f"dt_proj{b}.weight"] = randn(D, R, scale=R ** -0.5)
            dt = torch.exp(uniform(D, lo=math.log(1e-2), hi=math.log(0.3)))
            sd[m + f"dt_proj{b}.bias"] = dt + torch.log(-torch.expm1(-dt)) + randn(D, scale=0.2)
            a_log = "A_log" if b == "" else "A_b_log"
            sd[m + a_log] = torch.log(torch.arange(1, N + 1, dtype=torch.float64)).repeat(D, 1) + randn(D, N, scale=0.3)
            sd[m + ("D" if b == "" else "D_b")] = randn(D, scale=0.5, shift=1.0)
        sd[m + "out_proj.weight"] = randn(E, D, scale=D ** -0.5)
        if fx["bias"]:
            sd[m + "out_proj.bias"] = randn(E, scale=0.2)
    sd["norm_f.weight"] = randn(E, scale=0.2, shift=1.0)
    sd["head.weight"] = randn(fx["num_classes"], E, scale=E ** -0.5)
    sd["head.bias"] = randn(fx["num_classes"], scale=0.2)
    # Stored in the fixture's dtype; the reference computes with exactly those values.
    return {k: v.to(fx["dtype"]) for k, v in sd.items()}


# ---- the reference forward pass --------------------------------------------------------------

def rms_norm(x, w):
    """mamba_ssm's RMSNorm (rms_norm_fn): x / sqrt(mean(x²) + eps) · weight, over the last dim."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * w


def causal_conv_silu(x, weight, bias):
    """nn.Conv1d(groups=D, padding=K−1) truncated to L, + bias, then SiLU (causal_conv1d_fn)."""
    L = x.shape[-1]
    y = F.conv1d(x[None], weight, bias, padding=weight.shape[-1] - 1, groups=x.shape[0])[0, :, :L]
    return F.silu(y)


def selective_scan(u, delta, A, B, C, D, z):
    """selective_scan_ref for one batch element: sequential scan, + D·u, ⊙ SiLU(z).
    u, delta, z: (D, L) with delta already softplus(dt + bias); A: (D, N); B, C: (N, L)."""
    d_inner, L = u.shape
    x = torch.zeros(d_inner, A.shape[1], dtype=u.dtype)
    ys = []
    for i in range(L):
        x = torch.exp(delta[:, i, None] * A) * x + delta[:, i, None] * B[None, :, i] * u[:, i, None]
        ys.append(x @ C[:, i])
    y = torch.stack(ys, dim=1)
    return (y + u * D[:, None]) * F.silu(z)


def branch(xz, sd, m, b, R, N):
    """mamba_inner_fn_no_out_proj of one direction on xz (2D × L): returns its signals."""
    x, z = xz.chunk(2, dim=0)
    bias = sd.get(m + f"conv1d{b}.bias")
    u = causal_conv_silu(x, sd[m + f"conv1d{b}.weight"], bias)
    x_dbl = sd[m + f"x_proj{b}.weight"] @ u                      # (R + 2N, L)
    dt = sd[m + f"dt_proj{b}.weight"] @ x_dbl[:R]                 # (D, L), no bias yet
    Bm, Cm = x_dbl[R:R + N], x_dbl[R + N:]
    delta = F.softplus(dt + sd[m + f"dt_proj{b}.bias"][:, None])
    A = -torch.exp(sd[m + ("A_log" if b == "" else "A_b_log")])
    Dv = sd[m + ("D" if b == "" else "D_b")]
    y = selective_scan(u, delta, A, Bm, Cm, Dv, z)
    return dict(u=u, delta=delta, A=A, B=Bm, C=Cm, y=y)


def alpha_matrix(s):
    """compute_attn_matrix_fn: α[d][r][c] = Σ_n C_r[n] (Π_{k=c+1..r} exp(Δ_k A)) Δ_c B_c[n], c ≤ r."""
    delta, A, B, C = s["delta"], s["A"], s["B"], s["C"]
    D, L = delta.shape
    dA = torch.exp(delta[:, :, None] * A[:, None, :])             # (D, L, N)
    dB = delta[:, :, None] * B.T[None]                             # (D, L, N)
    out = torch.zeros(D, L, L, dtype=delta.dtype)
    for r in range(L):
        for c in range(r + 1):
            prod = torch.ones(D, A.shape[1], dtype=delta.dtype)
            for i in range(r - c):
                prod = prod * dA[:, r - i]
            out[:, r, c] = (C[:, r][None] * prod * dB[:, c]).sum(-1)
    return out


def paper_cls_vector(s, cls):
    """compute_middle_attn_vector with cls_pos = cls: for t < cls, Σ_n C_cls[n]
    (Π_{i<cls−1−t} exp(Δ_{cls−1−i} A)) Δ_t B_t[n] — no factor of position cls — and 0 for t ≥ cls."""
    delta, A, B, C = s["delta"], s["A"], s["B"], s["C"]
    D, L = delta.shape
    dA = torch.exp(delta[:, :, None] * A[:, None, :])
    dB = delta[:, :, None] * B.T[None]
    out = torch.zeros(D, L, dtype=delta.dtype)
    for t in range(cls):
        curr = torch.ones(D, A.shape[1], dtype=delta.dtype)
        if t < cls - 1:
            for i in range(cls - 1 - t):
                curr = curr * dA[:, cls - 1 - i]
        out[:, t] = (C[:, cls][None] * curr * dB[:, t]).sum(-1)
    return out


def cls_row(s_f, s_b, cls, L):
    """Row cls of α_f + flip(α_b), from the full matrices."""
    af, ab = alpha_matrix(s_f), alpha_matrix(s_b)
    return af[:, cls, :] + ab.flip([-1, -2])[:, cls, :]


def forward(fx, sd, image):
    """VisionMamba.forward on one image (H, W, C) in float64; returns logits and what to record."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    rec = {}
    E, N = fx["embed_dim"], fx["d_state"]
    R = math.ceil(E / 16) if fx["dt_rank"] == "auto" else fx["dt_rank"]
    # PatchEmbed: Conv2d(kernel patch, stride), flatten(2).transpose(1, 2): patches row by row.
    x = torch.from_numpy(image).to(torch.float64).permute(2, 0, 1)[None]
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=fx["stride"])
    x = x.flatten(2).transpose(1, 2)[0]                            # (M, E)
    M = x.shape[0]
    cls = None
    if fx["cls"] == "middle":
        cls = M // 2
        x = torch.cat((x[:cls], sd["cls_token"][0], x[cls:]), dim=0)
    elif fx["cls"] == "head":
        cls = 0
        x = torch.cat((sd["cls_token"][0], x), dim=0)
    if fx["pos"]:
        x = x + sd["pos_embed"][0]
    L = x.shape[0]
    # Blocks: Add -> RMSNorm -> Mixer; the first block's residual is its input.
    residual, hidden = None, x
    for k in range(fx["depth"]):
        m = f"layers.{k}.mixer."
        residual = hidden if residual is None else residual + hidden
        h = rms_norm(residual, sd[f"layers.{k}.norm.weight"])
        xz = sd[m + "in_proj.weight"] @ h.T                        # (2D, L)
        if m + "in_proj.bias" in sd:
            xz = xz + sd[m + "in_proj.bias"][:, None]
        s_f = branch(xz, sd, m, "", R, N)
        s_b = branch(xz.flip([-1]), sd, m, "_b", R, N)
        y = s_f["y"] + s_b["y"].flip([-1])
        if fx["divide"]:
            y = y / 2
        out = y.T @ sd[m + "out_proj.weight"].T
        if m + "out_proj.bias" in sd:
            out = out + sd[m + "out_proj.bias"]
        hidden = out
        rec[f"layer{k}_xz"] = xz
        for tag, s in (("f", s_f), ("b", s_b)):
            rec[f"layer{k}_u_{tag}"] = s["u"]
            rec[f"layer{k}_delta_{tag}"] = s["delta"]
            rec[f"layer{k}_y_{tag}"] = s["y"]
        rec[f"layer{k}_y"] = y
        if fx["alpha"]:
            rec[f"layer{k}_alpha_f"] = alpha_matrix(s_f)
            rec[f"layer{k}_alpha_b"] = alpha_matrix(s_b)
        if cls is not None:
            # The paper's vector: each branch's helper at the CLS position of its own time, then
            # xai_vector[:, :, cls+1:] = flip(backward vector)[:, :, cls+1:].
            vf = paper_cls_vector(s_f, cls)
            vb = paper_cls_vector(s_b, L - 1 - cls).flip([-1])
            vf[:, cls + 1:] = vb[:, cls + 1:]
            rec[f"layer{k}_paper_cls"] = vf
            rec[f"layer{k}_cls_row"] = cls_row(s_f, s_b, cls, L)
    # norm_f on residual + hidden, then the CLS token, or the pooling.
    h = rms_norm(residual + hidden, sd["norm_f.weight"])
    if cls is not None:
        feature = h[cls]
    elif fx["pool"] == "mean":
        feature = h.mean(dim=0)
    else:
        feature = h[-1]
    logits = sd["head.weight"] @ feature + sd["head.bias"]
    return logits, rec


def save(path, t):
    np.save(path, np.ascontiguousarray(t.detach().numpy() if torch.is_tensor(t) else t))


def make(fx, out_dir, converter):
    sd = random_state_dict(fx)
    gen = np.random.default_rng(fx["seed"])
    h, w = fx["img"]
    image = gen.standard_normal((h, w, 3)).astype(np.float32)
    logits, rec = forward(fx, sd, image)

    target = os.path.join(out_dir, fx["name"])
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        pth = os.path.join(tmp, "checkpoint.pth")
        torch.save({"model": sd, "args": argparse.Namespace(model=fx["model"]), "epoch": 0}, pth)
        options = {"img_size": None, "stride": None, "cls_position": None, "if_divide_out": None,
                   "final_pool_type": None}
        options.update(fx.get("convert", {}))
        config = converter.convert(converter.load_checkpoint(pth, unsafe=False), target, options)

    ref = os.path.join(out_dir, "reference", fx["name"])
    shutil.rmtree(ref, ignore_errors=True)
    os.makedirs(ref)
    np.save(os.path.join(ref, "image.npy"), image)
    save(os.path.join(ref, "logits.npy"), logits)
    for key, value in rec.items():
        save(os.path.join(ref, key + ".npy"), value)
    return config


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    converter = load_converter()
    torch.set_num_threads(1)
    manifest = {}
    for fx in FIXTURES:
        config = make(fx, out_dir, converter)
        manifest[fx["name"]] = {"config": config, "dtype": str(fx["dtype"]).replace("torch.", "")}
        print(fx["name"], "ok")
    # The converter refuses what the tensors contradict, naming it.
    for bad in ({"img_size": 16}, {"cls_position": "none"}):
        try:
            converter.infer_config(random_state_dict(FIXTURES[0]), bad)
        except converter.ConvertError as e:
            print("converter refuses", bad, "-", e)
        else:
            sys.exit(f"convert_vim accepted {bad}")
    with open(os.path.join(out_dir, "reference", "manifest_vim.json"), "w") as f:
        json.dump({"generator": "tests/data/make_vim_fixtures.py", "torch": torch.__version__,
                   "fixtures": manifest}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
