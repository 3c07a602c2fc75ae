#!/usr/bin/env python3
"""Creates the PyTorch references of the Vision Mamba gradients and attributions
(models/vim_backward.hpp, models/vim_attribution.hpp; docs/attribution.md, docs/vim.md).

For the committed fixture vim_mid_odd (tests/data/make_vim_fixtures.py: 12 × 12 image, 9 patches,
middle CLS token at 4, the two branches' sum divided by 2, mean pooling unused since the CLS token is
read) the weights are read from its model.safetensors (VisionMamba's state-dict names) and the
image from reference/vim_mid_odd/image.npy. The forward pass is VisionMamba.forward as
make_vim_fixtures.py re-implements it after hustvl/Vim (models_mamba.py at 095ecd3c,
mamba_simple.py at 56a28e09: bimamba v2, xz and xz.flip(-1) through each direction's own conv1d,
x_proj, dt_proj, A, D; y = (y_f + flip(y_b)) / 2; Add -> RMSNorm -> Mixer; norm_f; the CLS token;
head), written here again with the scan output S6(u) + D·u kept apart from the gate so that its
gradient can be read; the logits are checked against the fixture's reference logits first. All in
float64 on the CPU, gradients by torch.autograd.

Targets (the class logit; the position is the CLS token's):
  argmax       the argmax class, exact gradients
  c3           class 3, exact gradients (embedding and residual stream only)
  lrp_argmax   the argmax class under MambaLRP's rules (Jafari et al. 2024), formed as detach
               tricks in the forward pass: SiLU(x) = x · σ(x).detach() (conv and gate), the scan
               with Δ, B, C detached (so Ā, B̄, C are constants), the gate as
               ½ (s · g.detach()) + ½ (s.detach() · g), RMSNorm with its denominator detached.

Saved under reference/vim_mid_odd/ (float64):
  vgrad_<tag>_target.npy                 int64 (2)   [CLS position, class]
  vgrad_<tag>_embedding.npy              (L, E)      ∂target/∂h0, h0 the first block's input
  vgrad_<tag>_input.npy                  (L, E)      h0 (argmax only)
  vgrad_<tag>_layer<k>_residual.npy      (L, E)      ∂target/∂ the residual stream entering layer k
  vgrad_<tag>_layer<k>_<q>_<f|b>.npy     (D, L) or (N, L) for q in u, delta, b, c, ssm_out, each
                                         direction in its own time (b: the flipped sequence);
                                         not for c3; lrp_argmax: u and ssm_out only
and the attributions of the argmax class:
  vattr_grad_input.npy, vattr_lrp.npy    (L)  Σ_e ∂target/∂h0 ⊙ h0 (exact / LRP gradient)
  vattr_<method>_start<k0>.npy           (L)  the CLS row of the rollout from layer k0, clamped at 0
  vattr_<method>_start<k0>_rollout.npy   (L, L)  the whole rollout
for <method> mamba_attr and attn_grad, k0 in 0 and 1. mamba_attr follows generate_mamba_attr of
AmeenAli/HiddenMambaAttn (vim/xai_utils.py at 064fe08d) step by step — per layer the attention
clamped at 0, min–max normalized over the layer's whole tensor, averaged over channels; the
gradient of the target with respect to the layer's residual (Block.forward's hook on `residual`)
clamped at 0, its max over the embedding dimension, min–max normalized over positions; the
product, columns weighted; compute_rollout_attention (each map + I, rows divided by their sums,
later layers multiplied on the left); the CLS row; clamp at 0 — with the full matrices of both
directions combined as the block combines them, ½ (α_f + J α_b J) per channel (J the time flip),
where that code reads a per-branch CLS vector (docs/vim.md says how the two differ), and the CLS
column kept. attn_grad: the unified matrices of each branch,
Â_d = diag(SiLU(z_d)) · (α_d + D_d I) · diag(σ(p_d)) · M_d (p = conv1d(x) + bias, M_d the causal
conv's Toeplitz matrix), combined likewise, clamped at 0, averaged over channels, columns weighted
by the same token weights, min–max normalized over the map, rolled out and read likewise.

    python3 make_vim_gradient_fixtures.py [DATA_DIR]
"""

import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vim_fixtures import FIXTURES, NORM_EPS, alpha_matrix  # noqa: E402

NAME = "vim_mid_odd"
STARTS = [0, 1]


def silu(x, lrp):
    return x * (torch.sigmoid(x).detach() if lrp else torch.sigmoid(x))


def rms_norm(x, w, lrp):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS)
    return x * (r.detach() if lrp else r) * w


def scan(u, delta, A, B, C, Dv):
    """S6(u) + D·u, sequentially: h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t, ⟨C_t, h_t⟩."""
    h = torch.zeros(u.shape[0], A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, None] * A) * h + delta[:, t, None] * B[None, :, t] * u[:, t, None]
        ys.append(h @ C[:, t])
    return torch.stack(ys, dim=1) + u * Dv[:, None]


def branch(xz, sd, m, b, R, N, lrp, keep):
    x, z = xz.chunk(2, dim=0)
    K = sd[m + f"conv1d{b}.weight"].shape[-1]
    L = x.shape[-1]
    p = F.conv1d(x[None], sd[m + f"conv1d{b}.weight"], sd.get(m + f"conv1d{b}.bias"), padding=K - 1,
                 groups=x.shape[0])[0, :, :L]
    u = silu(p, lrp)
    x_dbl = sd[m + f"x_proj{b}.weight"] @ u
    Bm, Cm = x_dbl[R:R + N], x_dbl[R + N:]
    delta = F.softplus(sd[m + f"dt_proj{b}.weight"] @ x_dbl[:R] + sd[m + f"dt_proj{b}.bias"][:, None])
    A = -torch.exp(sd[m + ("A_log" if b == "" else "A_b_log")])
    Dv = sd[m + ("D" if b == "" else "D_b")]
    for t in (u, delta, Bm, Cm):
        t.retain_grad()
    if lrp:
        s = scan(u, delta.detach(), A, Bm.detach(), Cm.detach(), Dv)
    else:
        s = scan(u, delta, A, Bm, Cm, Dv)
    s.retain_grad()
    g = silu(z, lrp)
    y = 0.5 * (s * g.detach()) + 0.5 * (s.detach() * g) if lrp else s * g
    keep.update(u=u, delta=delta, b=Bm, c=Cm, ssm_out=s, A=A, D=Dv, p=p, x=x, z=z,
                conv_weight=sd[m + f"conv1d{b}.weight"][:, 0, :])
    return y


def forward(fx, sd, image, lrp):
    E, N = fx["embed_dim"], fx["d_state"]
    R = math.ceil(E / 16) if fx["dt_rank"] == "auto" else fx["dt_rank"]
    x = torch.from_numpy(image).to(torch.float64).permute(2, 0, 1)[None]
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=fx["stride"])
    x = x.flatten(2).transpose(1, 2)[0]
    cls = x.shape[0] // 2
    x = torch.cat((x[:cls], sd["cls_token"][0], x[cls:]), dim=0) + sd["pos_embed"][0]
    x = x.detach().requires_grad_()  # h0: the leaf the gradients flow to
    rec = {"input": x, "layers": [], "cls": cls}
    residual, hidden = None, x
    for k in range(fx["depth"]):
        m = f"layers.{k}.mixer."
        residual = hidden if residual is None else residual + hidden
        if k > 0:
            residual.retain_grad()
        h = rms_norm(residual, sd[f"layers.{k}.norm.weight"], lrp)
        assert m + "in_proj.bias" not in sd and m + "out_proj.bias" not in sd
        xz = sd[m + "in_proj.weight"] @ h.T
        kf, kb = {}, {}
        y = (branch(xz, sd, m, "", R, N, lrp, kf) + branch(xz.flip([-1]), sd, m, "_b", R, N, lrp, kb).flip([-1])) / 2
        rec["layers"].append({"residual": residual, "f": kf, "b": kb})
        hidden = y.T @ sd[m + "out_proj.weight"].T
    h = rms_norm(residual + hidden, sd["norm_f.weight"], lrp)
    return sd["head.weight"] @ h[cls] + sd["head.bias"], rec


def conv_matrix(weight, L):
    """M[d, t, s] = weight[d, K − 1 − (t − s)] for 0 ≤ t − s < K (PyTorch's Conv1d taps)."""
    D, K = weight.shape
    M = torch.zeros(D, L, L, dtype=torch.float64)
    for t in range(L):
        for lag in range(min(K, t + 1)):
            M[:, t, t - lag] = weight[:, K - 1 - lag]
    return M


def unified(s, alpha):
    L = alpha.shape[-1]
    inner = alpha + s["D"][:, None, None] * torch.eye(L, dtype=torch.float64)
    return F.silu(s["z"])[:, :, None] * inner * torch.sigmoid(s["p"])[:, None, :] @ conv_matrix(s["conv_weight"], L)


def min_max(v):
    return (v - v.min()) / (v.max() - v.min())


def compute_rollout(maps, start):
    L = maps[0].shape[0]
    aug = [m + torch.eye(L, dtype=torch.float64) for m in maps]
    aug = [a / a.sum(dim=-1, keepdim=True) for a in aug]
    joint = aug[start]
    for a in aug[start + 1:]:
        joint = a @ joint
    return joint


def main():
    data_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
    torch.set_num_threads(1)
    fx = next(f for f in FIXTURES if f["name"] == NAME)
    sd = {k: v.to(torch.float64) for k, v in load_file(os.path.join(data_dir, NAME, "model.safetensors")).items()}
    ref = os.path.join(data_dir, "reference", NAME)
    image = np.load(os.path.join(ref, "image.npy"))
    saved = {}
    cases = [("argmax", None, False), ("c3", 3, False), ("lrp_argmax", None, True)]
    for tag, cls_target, lrp in cases:
        logits, rec = forward(fx, sd, image, lrp)
        want = np.load(os.path.join(ref, "logits.npy"))
        err = np.abs(logits.detach().numpy() - want).max() / np.abs(want).max()
        assert err < 1e-12, f"the forward pass leaves the fixture's logits ({err:.3g})"
        c = int(torch.argmax(logits)) if cls_target is None else cls_target
        logits[c].backward()
        p = f"vgrad_{tag}_"
        saved[p + "target"] = np.asarray([rec["cls"], c], dtype=np.int64)
        saved[p + "embedding"] = rec["input"].grad
        if tag == "argmax":
            saved[p + "input"] = rec["input"].detach()
        for k, layer in enumerate(rec["layers"]):
            saved[p + f"layer{k}_residual"] = layer["residual"].grad
            if tag == "c3":
                continue
            for d in ("f", "b"):
                for q in (("u", "ssm_out") if lrp else ("u", "delta", "b", "c", "ssm_out")):
                    saved[p + f"layer{k}_{q}_{d}"] = layer[d][q].grad
        score = (rec["input"].grad * rec["input"].detach()).sum(dim=1)
        if tag == "argmax":
            saved["vattr_grad_input"] = score
            target, value = c, float(logits[c].detach())
            # The attributions of the argmax class, step by step.
            with torch.no_grad():
                mamba_maps, attn_maps = [], []
                L = rec["input"].shape[0]
                for k, layer in enumerate(rec["layers"]):
                    sf = {q: v.detach() for q, v in layer["f"].items()}
                    sb = {q: v.detach() for q, v in layer["b"].items()}
                    af = alpha_matrix(dict(delta=sf["delta"], A=sf["A"], B=sf["b"], C=sf["c"]))
                    ab = alpha_matrix(dict(delta=sb["delta"], A=sb["A"], B=sb["b"], C=sb["c"]))
                    alpha = (af + ab.flip([-1, -2])) / 2
                    hat = (unified(sf, af) + unified(sb, ab).flip([-1, -2])) / 2
                    s = layer["residual"].grad.clamp(min=0).max(dim=1)[0]  # (L)
                    s = (s - s.min()) / (s.max() - s.min())
                    attn_heads = alpha.clamp(min=0)
                    attn_heads = (attn_heads - attn_heads.min()) / (attn_heads.max() - attn_heads.min())
                    avg_heads = attn_heads.sum(dim=0) / attn_heads.shape[0]
                    mamba_maps.append(avg_heads * s[None, :])
                    attn_maps.append(min_max(hat.clamp(min=0).mean(dim=0) * s[None, :]))
                for method, maps in (("mamba_attr", mamba_maps), ("attn_grad", attn_maps)):
                    for start in STARTS:
                        joint = compute_rollout(maps, start)
                        saved[f"vattr_{method}_start{start}"] = joint[rec["cls"]].clamp(min=0)
                        saved[f"vattr_{method}_start{start}_rollout"] = joint
        if tag == "lrp_argmax":
            saved["vattr_lrp"] = score
            print(f"LRP: sum of relevance {float(score.sum()):.6f}, logit {float(logits[c]):.6f} "
                  f"(the conv biases and the head bias keep the rest)")
    total = 0
    for what, v in saved.items():
        path = os.path.join(ref, what + ".npy")
        np.save(path, np.ascontiguousarray(v.detach().numpy() if torch.is_tensor(v) else v))
        total += os.path.getsize(path)
    print(f"{NAME}: target class {target} (logit {value:.6f}), {len(saved)} files, {total} bytes")


if __name__ == "__main__":
    main()
