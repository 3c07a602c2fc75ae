#!/usr/bin/env python3
"""Creates the PyTorch references of the rollout attributions mamba-attr and attn-grad
(models/mamba_attribution.hpp, docs/attribution.md).

For the committed checkpoints mamba_tied_fp32, falcon_mamba_fp32 and mamba_demo, the forward pass
is the plain PyTorch one of make_gradient_fixtures.py (imported from there: transformers'
MambaMixer / FalconMambaMixer slow_forward step by step, in float64 on the stored weights, its
logits checked against the fixture's transformers logits first). For the target "last" (the last
position, the argmax of its row), everything is then formed independently here, in float64:

  - per layer, the hidden attention α (D × L × L) as "The Hidden Attention of Mamba Models"
    (Ali, Zimerman, Wolf 2024) forms it in its code (compute_attn_matrix_fn of
    AmeenAli/HiddenMambaAttn): Δ = softplus(dt_proj(δ) + bias), Ā_k = exp(Δ_k A), B̄_s = Δ_s B_s,
    α[d, t, s] = Σ_n C_t[n] · Π_{k=s+1..t} Ā_k[d, n] · B̄_s[d, n] for s ≤ t, 0 above the diagonal;
    B and C as the scan reads them (after Falcon-Mamba's norms);
  - per layer, the unified matrices of the whole block (Zimerman, Ali, Wolf, ICLR 2025) as
    docs/attribution.md defines them, Â_d = diag(SiLU(z_d)) · (α_d + D_d I) · diag(σ(p_d)) · M_d,
    p = conv1d(x) + bias the conv output before SiLU (σ(p) = SiLU(p)/p, the activation factor) and
    M_d the causal conv's Toeplitz matrix, M_d[t, s] = w_d[K − 1 − (t − s)] for 0 ≤ t − s < K;
    α · u + D·u is checked against the scan and Â·x against the block's output y (less the conv
    bias's share) before anything is used;
  - the gradient g_k of the target with respect to the residual stream entering layer k
    (torch.autograd);
  - the token weights s_k[t] = max_h max(g_k[t, h], 0), min–max normalized over the positions;
  - mamba-attr (generate_mamba_attr of the same repository): per layer max(α, 0) min–max
    normalized over the whole D × L × L tensor, averaged over channels, its columns multiplied
    by s_k; attn-grad (generate_ours of Itamarzimm/UnifiedImplicitAttnRepr): max(Â, 0) averaged
    over channels, columns multiplied by s_k, then min–max normalized over the L × L map;
  - the rollout from layer k0 (Abnar & Zuidema, as both codes compute it): each map plus I, its
    rows divided by their sums, R = Ã_last ··· Ã_k0 (later layers on the left); the target row
    R[P] clamped at 0.

For the Mamba-2 checkpoint mamba2_tied_fp32 the forward pass is make_gradient_fixtures.py's forward_mamba2,
α is per head (α_h[t, s] = C_t · Π_{k=s+1..t} exp(Δ_h[k] A_h) · Δ_h[s] B_s, B and C of the head's group; the
layer's tensor is heads × L × L) and Â per SSM channel, Â_c = diag(gate_c) · (α_{h(c)} + D_h I) · diag(σ(p_c)) ·
M_c with gate the gated RMSNorm's diagonal at its input (SiLU(z)·w / rms); the recipes are the same.

Saved under reference/<name>/:

  attr_target.npy                          int64 (2)       [position, token]
  attr_<method>_start<k0>.npy              float64 (L)     the target row, clamped at 0
  attr_<method>_start<k0>_rollout.npy      float64 (L, L)  the whole rollout R (not clamped)

for <method> in mamba_attr, attn_grad and the start layers of CASES (0 and one later layer).
Needs torch, numpy and safetensors:

    python3 make_attribution_fixtures.py [DATA_DIR [FIXTURE ...]]
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gradient_fixtures import forward, load  # noqa: E402  (the one forward pass)

# (fixture, sequence, start layers)
CASES = [
    ("mamba_tied_fp32", 2, [0, 1]),
    ("falcon_mamba_fp32", 1, [0, 1]),
    ("mamba_demo", 0, [0, 2]),
    ("mamba2_tied_fp32", 1, [0, 1]),
]


def hidden_attention(delta, A, B, C):
    """α (D, L, L): α[d, t, s] = Σ_n C[t, n] · Π_{k=s+1..t} exp(Δ[d, k] A[d, n]) · Δ[d, s] B[s, n]."""
    D, L = delta.shape
    dA = torch.exp(delta[:, :, None] * A[:, None, :])  # (D, L, N): Ā_k
    dB = delta[:, :, None] * B[None, :, :]  # (D, L, N): B̄_s
    alpha = torch.zeros(D, L, L, dtype=torch.float64)
    for t in range(L):
        prod = torch.ones_like(dA[:, 0])  # Π_{k=s+1..t} Ā_k, empty for s = t
        for s in range(t, -1, -1):
            alpha[:, t, s] = ((prod * dB[:, s]) * C[t][None, :]).sum(-1)
            prod = prod * dA[:, s]
    return alpha


def conv_matrix(weight, L):
    """The causal depthwise conv as matrices (D, L, L): M[d, t, s] = weight[d, K − 1 − (t − s)]."""
    D, K = weight.shape
    M = torch.zeros(D, L, L, dtype=torch.float64)
    for t in range(L):
        for lag in range(min(K, t + 1)):
            M[:, t, t - lag] = weight[:, K - 1 - lag]
    return M


def unified(sig, alpha):
    """Â (D, L, L) = diag(SiLU(z)) (α + D I) diag(σ(p)) M, checked against the block's output."""
    L = alpha.shape[-1]
    eye = torch.eye(L, dtype=torch.float64)
    M = conv_matrix(sig["conv_weight"], L)
    inner = alpha + sig["D"][:, None, None] * eye
    hat = F.silu(sig["z"])[:, :, None] * inner * torch.sigmoid(sig["conv"])[:, None, :]
    hat = hat @ M
    # Reconstruction: α·u + D·u is the scan output; Â·x plus the conv bias's share is y.
    u, x, y = sig["u"], sig["x"], sig["y"]
    ssm = torch.einsum("dts,ds->dt", inner, u)
    assert torch.allclose(ssm, sig["ssm_out"], rtol=1e-10, atol=1e-10 * sig["ssm_out"].abs().max())
    conv_no_bias = torch.einsum("dts,ds->dt", M, x)
    bias_share = torch.sigmoid(sig["conv"]) * (sig["conv"] - conv_no_bias)  # σ(p) ⊙ b
    offset = F.silu(sig["z"]) * torch.einsum("dts,ds->dt", inner, bias_share)
    rec = torch.einsum("dts,ds->dt", hat, x) + offset
    assert torch.allclose(rec, y, rtol=1e-10, atol=1e-10 * y.abs().max()), "Â·x + offset leaves y"
    return hat


def mamba2_maps(sig, cfg):
    """α (heads, L, L) and Â (H·P, L, L) of a Mamba-2 layer, checked against the SSD output and y:
    Â_c = diag(gate_c) · (α_{h(c)} + D_h I) · diag(σ(p_c)) · M_c, gate the gated norm's diagonal at its input."""
    Hd, P, N, G = cfg["num_heads"], cfg["head_dim"], cfg["state_size"], cfg["n_groups"]
    delta, A = sig["delta"], sig["A"]
    L = delta.shape[1]
    dA = torch.exp(delta * A[:, None])  # (heads, L)
    alpha = torch.zeros(Hd, L, L, dtype=torch.float64)
    for h in range(Hd):
        g = h // (Hd // G)
        B, C = sig["B"][g * N:(g + 1) * N], sig["C"][g * N:(g + 1) * N]  # (N, L)
        for t in range(L):
            prod = torch.tensor(1.0, dtype=torch.float64)
            for s in range(t, -1, -1):
                alpha[h, t, s] = (C[:, t] * B[:, s]).sum() * prod * delta[h, s]
                prod = prod * dA[h, s]
    eye = torch.eye(L, dtype=torch.float64)
    inner = (alpha + sig["D"][:, None, None] * eye).repeat_interleave(P, dim=0)  # (H·P, L, L)
    u, x, y = sig["u"], sig["x"], sig["y"]
    ssm = torch.einsum("dts,ds->dt", inner, u)
    assert torch.allclose(ssm, sig["ssm_out"], rtol=1e-10, atol=1e-10 * sig["ssm_out"].abs().max())
    M = conv_matrix(sig["conv_weight"], L)
    hat = (sig["gate"][:, :, None] * inner * torch.sigmoid(sig["conv"])[:, None, :]) @ M
    conv_no_bias = torch.einsum("dts,ds->dt", M, x)
    bias_share = torch.sigmoid(sig["conv"]) * (sig["conv"] - conv_no_bias)
    offset = sig["gate"] * torch.einsum("dts,ds->dt", inner, bias_share)
    rec = torch.einsum("dts,ds->dt", hat, x) + offset
    assert torch.allclose(rec, y, rtol=1e-10, atol=1e-10 * y.abs().max()), "Â·x + offset leaves y"
    return alpha, hat


def min_max(v):
    return (v - v.min()) / (v.max() - v.min())


def rollout(maps, start):
    """Ã_k = rownorm(M_k + I); R = Ã_last ··· Ã_start."""
    L = maps[0].shape[0]
    aug = [(m + torch.eye(L, dtype=torch.float64)) for m in maps]
    aug = [a / a.sum(dim=-1, keepdim=True) for a in aug]
    joint = aug[start]
    for a in aug[start + 1:]:
        joint = a @ joint
    return joint


def main():
    data_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    total = 0
    only = sys.argv[2:]  # fixture names: only these
    for name, seq, starts in CASES:
        if only and name not in only:
            continue
        cfg, w = load(data_dir, name)
        ref_dir = os.path.join(data_dir, "reference", name)
        tokens = np.load(os.path.join(ref_dir, f"tokens_{seq}.npy")).tolist()
        signals = {}
        logits, keep = forward(cfg, w, tokens, observe=lambda k, s: signals.__setitem__(k, s))
        want = np.load(os.path.join(ref_dir, f"logits_{seq}.npy")).astype(np.float64)
        err = np.abs(logits.detach().numpy() - want).max() / np.abs(want).max()
        assert err < 1e-5, f"{name}: the plain forward pass leaves transformers' logits ({err:.3g})"
        position = len(tokens) - 1
        token = int(torch.argmax(logits[position]))
        logits[position, token].backward()
        mamba_maps, attn_maps = [], []
        with torch.no_grad():
            for k in range(cfg["num_hidden_layers"]):
                sig = {key: v.detach() for key, v in signals[k].items()}
                if cfg.get("model_type") == "mamba2":
                    alpha, hat = mamba2_maps(sig, cfg)
                else:
                    alpha = hidden_attention(sig["delta"], sig["A"], sig["B"], sig["C"])
                    hat = unified(sig, alpha)
                g = keep["layers"][k]["residual"].grad  # (L, H)
                s = min_max(g.clamp(min=0).max(dim=1).values)  # token weights
                a = min_max(alpha.clamp(min=0)).mean(dim=0)
                mamba_maps.append(a * s[None, :])
                attn_maps.append(min_max(hat.clamp(min=0).mean(dim=0) * s[None, :]))
        saved = {"attr_target": np.asarray([position, token], dtype=np.int64)}
        for method, maps in (("mamba_attr", mamba_maps), ("attn_grad", attn_maps)):
            for start in starts:
                joint = rollout(maps, start)
                saved[f"attr_{method}_start{start}"] = joint[position].clamp(min=0).numpy()
                saved[f"attr_{method}_start{start}_rollout"] = joint.numpy()
        for what, v in saved.items():
            path = os.path.join(ref_dir, f"{what}.npy")
            np.save(path, v)
            total += os.path.getsize(path)
        print(f"{name} sequence {seq}: L {len(tokens)}, target position {position}, token {token}; "
              f"logits error {err:.2g}; starts {starts}")
    print(f"{total} bytes")


if __name__ == "__main__":
    main()
