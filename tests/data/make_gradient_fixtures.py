#!/usr/bin/env python3
"""Creates the autograd references of the activation gradients (models/mamba_backward.hpp).

For the committed checkpoints mamba_tied_fp32, falcon_mamba_fp32 and mamba_demo, the Mamba
forward pass is written here in plain PyTorch, step by step as transformers' MambaMixer.slow_forward
(src/transformers/models/mamba/modeling_mamba.py) and, for Falcon-Mamba, FalconMambaMixer.slow_forward
(src/transformers/models/falcon_mamba/modeling_falcon_mamba.py: the weightless RMSNorms of δ, B and
C over their feature dimension, with mixer_rms_eps) define it, with MambaBlock's pre-norm residual
and MambaRMSNorm. It runs in float64 on the stored (float32) weights; its logits are checked
against the fixture's transformers logits (reference/<name>/logits_<s>.npy) before anything is
saved. Then torch.autograd gives the gradient of one logit, logits[position, token], with respect
to the activations, saved as float32 under reference/<name>/:

  grad_<tag>_target.npy               int64 (2)      [position, token]; <tag> names the target
  grad_<tag>_embedding.npy            float32 (L, H) the embedding output
  grad_<tag>_layer<k>_residual.npy    float32 (L, H) the residual stream entering layer k
  grad_<tag>_layer<k>_u.npy           float32 (D, L) SiLU(conv1d(x)), the scan input
  grad_<tag>_layer<k>_delta.npy       float32 (D, L) Δ = softplus(dt_proj(δ))
  grad_<tag>_layer<k>_b.npy           float32 (L, N) B as the scan reads it (after the norm)
  grad_<tag>_layer<k>_c.npy           float32 (L, N) C, likewise
  grad_<tag>_layer<k>_ssm_out.npy     float32 (D, L) the scan output + D·u, before ⊙ SiLU(z)

For the committed Mamba-2 checkpoint mamba2_tied_fp32 (transformers' Mamba2ForCausalLM), forward_mamba2
writes the pass as Mamba2Mixer.torch_forward (src/transformers/models/mamba2/modeling_mamba2.py) defines it:
in_proj → (z, xBC, dt) → causal conv + bias over xBC → SiLU → (x, B, C per group); Δ = clamp(softplus(dt +
dt_bias), time_step_limit) per head; the SSD per head as its plain recurrence (state P × N, decay exp(Δ_t A_h),
input Δ_t x_t B_tᵀ, output the state times C_t) + D·x; MambaRMSNormGated (x ⊙ SiLU(z), normalized over the
config's norm groups, times the weight); out_proj; with Mamba2Block's pre-norm residual. The files are the same
names in mixlens's layouts: u (H·P, L), delta (heads, L), b and c (G·N, L), ssm_out (H·P, L). Under LRP's rules
the gated norm's denominator is detached and its product x ⊙ SiLU(z) split half and half.

Targets: "last" (the last position, the argmax of its row) and "mid" (a middle position and a
fixed token), for the sequences and layers listed in CASES. The targets "lrp_last" and "lrp_mid"
are the same logits differentiated under MambaLRP's rules (Jafari et al., NeurIPS 2024), written
as detaches in the same forward pass: SiLU's σ detached, the SSM's Δ, B and C detached (only u
carries the gradient; no delta, b, c files for these tags), the gate y = s ⊙ SiLU(z) split half
and half (0.5·(s ⊙ g̅ + s̅ ⊙ g), a bar meaning detached), RMSNorm's denominator detached; the
value of every activation is unchanged. make_attribution_fixtures.py imports this forward pass
(with its observer of each layer's signals) for the references of mamba-attr and attn-grad.
Needs torch, numpy and safetensors:

    python3 make_gradient_fixtures.py [DATA_DIR [FIXTURE ...]]
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

# (fixture, sequence, targets: tag -> (position or None for the last, token or None for the argmax), layers saved)
CASES = [
    ("mamba_tied_fp32", 2, {"last": (None, None), "mid": (17, 5)}, [0, 1]),
    ("falcon_mamba_fp32", 1, {"last": (None, None), "mid": (6, 40)}, [0, 1]),
    ("mamba_demo", 0, {"last": (None, None)}, [0, 3]),
]
# The same for Mamba-2 checkpoints (forward_mamba2).
CASES_MAMBA2 = [
    ("mamba2_tied_fp32", 1, {"last": (None, None), "mid": (14, 30)}, [0, 1]),
]


def rms_norm(x, weight, eps, lrp=False):
    """MambaRMSNorm: x / sqrt(mean(x²) + eps) · weight over the last dimension."""
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    x = x * (r.detach() if lrp else r)
    return x if weight is None else weight * x


def silu(x, lrp=False):
    return x * torch.sigmoid(x).detach() if lrp else F.silu(x)


def load(data_dir, name):
    with open(os.path.join(data_dir, name, "config.json")) as f:
        cfg = json.load(f)
    w = {k: v.to(torch.float64) for k, v in load_file(os.path.join(data_dir, name, "model.safetensors")).items()}
    return cfg, w


def forward(cfg, w, tokens, lrp=False, observe=None):
    """Either family's forward pass, by the config's model_type."""
    return (forward_mamba2 if cfg.get("model_type") == "mamba2" else forward_mamba)(cfg, w, tokens, lrp, observe)


def forward_mamba(cfg, w, tokens, lrp=False, observe=None):
    """The language model on one sequence; returns the logits (L, V) and the activations whose
    gradients are kept (each with retain_grad). With lrp, the gradient follows MambaLRP's rules.
    observe(k, signals), if given, sees each layer's signals (a dict of tensors: the in_proj halves
    x and z (D, L), the conv output before SiLU "conv" (D, L, its bias included), the conv taps
    "conv_weight" (D, K), u, Δ "delta" (D, L), A (D, N), B and C as the scan reads them (L, N),
    the skip D (D), the scan output + D·u "ssm_out" and the gated output y (D, L))."""
    falcon = cfg.get("model_type") == "falcon_mamba"
    D, N, R = cfg["intermediate_size"], cfg["state_size"], cfg["time_step_rank"]
    L = len(tokens)
    keep = {"layers": []}
    emb = w["backbone.embeddings.weight"][torch.tensor(tokens)].clone().requires_grad_(True)
    keep["embedding"] = emb
    h = emb
    for k in range(cfg["num_hidden_layers"]):
        p = f"backbone.layers.{k}."
        m = p + "mixer."
        layer = {"residual": h}
        h.retain_grad()
        hn = rms_norm(h, w[p + "norm.weight"], cfg["layer_norm_epsilon"], lrp)
        xz = F.linear(hn, w[m + "in_proj.weight"], w.get(m + "in_proj.bias")).T  # (2D, L), as (batch, 2D, L)
        x, z = xz[:D], xz[D:]
        conv = F.conv1d(x[None], w[m + "conv1d.weight"], w.get(m + "conv1d.bias"), padding=cfg["conv_kernel"] - 1,
                        groups=D)[0, :, :L]
        u = silu(conv, lrp)
        u.retain_grad()
        layer["u"] = u
        proj = F.linear(u.T, w[m + "x_proj.weight"])  # (L, R + 2N)
        dt, B, C = proj[:, :R], proj[:, R:R + N], proj[:, R + N:]
        if falcon:
            eps = cfg["mixer_rms_eps"]
            dt, B, C = rms_norm(dt, None, eps), rms_norm(B, None, eps), rms_norm(C, None, eps)
        delta = F.softplus(F.linear(dt, w[m + "dt_proj.weight"], w[m + "dt_proj.bias"])).T  # (D, L)
        if lrp:  # only u carries the gradient through the scan
            delta, B, C = delta.detach(), B.detach(), C.detach()
        else:
            for name, v in (("delta", delta), ("b", B), ("c", C)):
                v.retain_grad()
                layer[name] = v
        A = -torch.exp(w[m + "A_log"])  # (D, N)
        decay = torch.exp(A[:, None, :] * delta[:, :, None])  # (D, L, N)
        bu = delta[:, :, None] * B[None, :, :] * u[:, :, None]
        state = torch.zeros(D, N, dtype=torch.float64)
        ys = []
        for t in range(L):
            state = decay[:, t] * state + bu[:, t]
            ys.append(state @ C[t])
        ssm_out = torch.stack(ys, dim=1) + u * w[m + "D"][:, None]
        ssm_out.retain_grad()
        layer["ssm_out"] = ssm_out
        gate = silu(z, lrp)
        y = 0.5 * (ssm_out * gate.detach() + ssm_out.detach() * gate) if lrp else ssm_out * gate
        if observe is not None:
            observe(k, {"x": x, "z": z, "conv": conv, "conv_weight": w[m + "conv1d.weight"][:, 0], "u": u,
                        "delta": delta, "A": A, "B": B, "C": C, "D": w[m + "D"], "ssm_out": ssm_out, "y": y})
        h = h + F.linear(y.T, w[m + "out_proj.weight"], w.get(m + "out_proj.bias"))
        keep["layers"].append(layer)
    hn = rms_norm(h, w["backbone.norm_f.weight"], cfg["layer_norm_epsilon"], lrp)
    head = w["backbone.embeddings.weight"] if cfg.get("tie_word_embeddings", True) else w["lm_head.weight"]
    return hn @ head.T, keep


def forward_mamba2(cfg, w, tokens, lrp=False, observe=None):
    """The Mamba-2 language model on one sequence, as forward() for Mamba. observe(k, signals) sees x and z
    (the in_proj rows, H·P × L), the conv output before SiLU "conv" (conv channels × L, bias included), the
    conv taps "conv_weight" (conv channels × K), u (H·P × L), delta (heads × L), A and D (heads), B and C
    (G·N × L), ssm_out and the gated norm's diagonal "gate" and output y (H·P × L)."""
    Hd, P, N, G = cfg["num_heads"], cfg["head_dim"], cfg["state_size"], cfg["n_groups"]
    S, L = Hd * P, len(tokens)
    X = S + 2 * G * N
    lo, hi = cfg.get("time_step_limit", [0.0, float("inf")])
    hi = float("inf") if isinstance(hi, dict) else hi
    keep = {"layers": []}
    emb = w["backbone.embeddings.weight"][torch.tensor(tokens)].clone().requires_grad_(True)
    keep["embedding"] = emb
    h = emb
    eps = cfg["layer_norm_epsilon"]
    for k in range(cfg["num_hidden_layers"]):
        p = f"backbone.layers.{k}."
        m = p + "mixer."
        layer = {"residual": h}
        h.retain_grad()
        hn = rms_norm(h, w[p + "norm.weight"], eps, lrp)
        proj = F.linear(hn, w[m + "in_proj.weight"], w.get(m + "in_proj.bias")).T  # (rows, L)
        d_mlp = (proj.shape[0] - 2 * S - 2 * G * N - Hd) // 2
        assert d_mlp == 0, "the gated-MLP part is not written here"
        z, xbc, dt = proj[:S], proj[S:S + X], proj[S + X:]
        conv = F.conv1d(xbc[None], w[m + "conv1d.weight"], w.get(m + "conv1d.bias"), padding=cfg["conv_kernel"] - 1,
                        groups=X)[0, :, :L]
        act = silu(conv, lrp)
        u, B, C = act[:S], act[S:S + G * N], act[S + G * N:]
        delta = torch.clamp(F.softplus(dt + w[m + "dt_bias"][:, None]), lo, hi)  # (heads, L)
        u.retain_grad()
        layer["u"] = u
        if lrp:  # only u carries the gradient through the SSD
            delta, B, C = delta.detach(), B.detach(), C.detach()
        else:
            for name, v in (("delta", delta), ("b", B), ("c", C)):
                v.retain_grad()
                layer[name] = v
        A = -torch.exp(w[m + "A_log"])
        Dskip = w[m + "D"]
        outs = []
        for hd in range(Hd):
            g = hd // (Hd // G)
            Bg, Cg = B[g * N:(g + 1) * N], C[g * N:(g + 1) * N]  # (N, L)
            xs = u[hd * P:(hd + 1) * P]  # (P, L)
            state = torch.zeros(P, N, dtype=torch.float64)
            ys = []
            for t in range(L):
                state = torch.exp(delta[hd, t] * A[hd]) * state + delta[hd, t] * xs[:, t:t + 1] * Bg[None, :, t]
                ys.append(state @ Cg[:, t])
            outs.append(torch.stack(ys, dim=1) + Dskip[hd] * xs)
        ssm_out = torch.cat(outs, dim=0)  # (S, L)
        ssm_out.retain_grad()
        layer["ssm_out"] = ssm_out
        gz = silu(z, lrp)
        v = 0.5 * (ssm_out * gz.detach() + ssm_out.detach() * gz) if lrp else ssm_out * gz
        group = S  # transformers' MambaRMSNormGated: one group, the whole SSM width
        r = torch.rsqrt(v.reshape(-1, group, L).pow(2).mean(1, keepdim=True) + eps).expand(-1, group, L).reshape(S, L)
        y = w[m + "norm.weight"][:, None] * v * (r.detach() if lrp else r)
        if observe is not None:
            observe(k, {"x": xbc[:S], "z": z, "conv": conv[:S], "conv_weight": w[m + "conv1d.weight"][:S, 0], "u": u,
                        "delta": delta, "A": A, "D": Dskip, "B": B, "C": C, "ssm_out": ssm_out,
                        "gate": (w[m + "norm.weight"][:, None] * gz * r), "y": y})
        h = h + F.linear(y.T, w[m + "out_proj.weight"], w.get(m + "out_proj.bias"))
        keep["layers"].append(layer)
    hn = rms_norm(h, w["backbone.norm_f.weight"], eps, lrp)
    head = w["backbone.embeddings.weight"] if cfg.get("tie_word_embeddings", True) else w["lm_head.weight"]
    return hn @ head.T, keep


def main():
    data_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    total = 0
    only = sys.argv[2:]  # fixture names: only these
    for name, seq, targets, layers in CASES + CASES_MAMBA2:
        if only and name not in only:
            continue
        cfg, w = load(data_dir, name)
        ref_dir = os.path.join(data_dir, "reference", name)
        tokens = np.load(os.path.join(ref_dir, f"tokens_{seq}.npy")).tolist()
        logits, _ = forward(cfg, w, tokens)
        want = np.load(os.path.join(ref_dir, f"logits_{seq}.npy")).astype(np.float64)
        err = np.abs(logits.detach().numpy() - want).max() / np.abs(want).max()
        assert err < 1e-5, f"{name}: the plain forward pass leaves transformers' logits ({err:.3g})"
        for tag, (position, token) in list(targets.items()) + [("lrp_" + t, v) for t, v in targets.items()]:
            logits, keep = forward(cfg, w, tokens, lrp=tag.startswith("lrp_"))
            position = len(tokens) - 1 if position is None else position
            token = int(torch.argmax(logits[position])) if token is None else token
            logits[position, token].backward()
            saved = {"target": np.asarray([position, token], dtype=np.int64),
                     "embedding": keep["embedding"].grad}
            for k in layers:
                for what, v in keep["layers"][k].items():
                    saved[f"layer{k}_{what}"] = v.grad
            for what, v in saved.items():
                path = os.path.join(ref_dir, f"grad_{tag}_{what}.npy")
                np.save(path, v if isinstance(v, np.ndarray) else v.detach().numpy().astype(np.float32))
                total += os.path.getsize(path)
            print(f"{name} sequence {seq} target {tag}: position {position}, token {token}; logits error {err:.2g}")
    print(f"{total} bytes")


if __name__ == "__main__":
    main()
