#!/usr/bin/env python3
"""Creates the Mamba-2 and Falcon-Mamba test fixtures, with Hugging Face transformers as the
reference client (the Mamba-1 fixtures come from make_mamba_fixtures.py, whose functions this
script reuses).

For each fixture: a small random Mamba2ForCausalLM or FalconMambaForCausalLM saved with
save_pretrained (config.json + model.safetensors, or shards + model.safetensors.index.json),
and, under reference/<name>/, the token sequences it was run on and what transformers computed
for them in fp32 on the CPU:

  tokens_<s>.npy                 int64 (L)        the token ids of sequence s
  logits_<s>.npy                 float32 (L, V)   the language-model logits
  layer<k>_<s>_mixer_in.npy      float32 (L, H)   the mixer's input (after the block's RMSNorm)
  layer<k>_<s>_in_proj_out.npy   float32 (L, P)   in_proj output
  layer<k>_<s>_mixer_out.npy     float32 (L, H)   the mixer's output (before the residual add)
Mamba-2 only:
  layer<k>_<s>_ssm_out.npy       float32 (L, Di)  SSD(x) + D·x, the gated norm's input
  layer<k>_<s>_norm_out.npy      float32 (L, Di)  the gated RMSNorm's output
Falcon-Mamba only (as make_mamba_fixtures.py records them):
  layer<k>_<s>_ssm_in.npy, layer<k>_<s>_x_proj_out.npy (before the B/C/Δ norms), layer<k>_<s>_ssm_out.npy

The fixtures differ in every size field:

  mamba2_tied_fp32      fp32, tied embeddings, one group, conv bias, chunk 8 (< L: several chunks)
  mamba2_groups_bf16    bf16, 2 groups, use_bias and use_conv_bias, untied, a time-step limit
                        that clamps, chunk 5, layer_norm_epsilon 1e-6
  mamba2_sharded        fp32 in three shards (model.safetensors.index.json), 5 groups of 1 head
  mamba2_ss_mlp         the original state-spaces layout (backbone.embedding, ssm_cfg with
                        layer Mamba2, vocab padded), d_ssm < d_inner: a gated-MLP part of in_proj
                        (d_mlp 16), 2 groups with mamba_ssm's group-wise gated norm
  falcon_mamba_fp32     fp32, tied, mixer_rms_eps 1e-3
  falcon_mamba_sharded_bf16  bf16, biases, untied, two shards

transformers 5.17 has no d_mlp part (its in_proj is exactly gate + xBC + dt) and normalizes the
gated RMSNorm over the whole intermediate vector; state-spaces mamba_ssm's Mamba2
(mamba_ssm/modules/mamba2.py) splits in_proj into [z0, x0, z, xBC, dt], normalizes per group of
d_ssm / ngroups channels (mamba_ssm/ops/triton/layernorm_gated.py, rms_norm_ref with
norm_before_gate=False) and feeds cat(silu(z0)·x0, y) to out_proj. mamba2_ss_mlp's reference is
therefore transformers' Mamba2 for the SSM path with two changes written here after those files:
the group-wise norm (GroupGatedRMSNorm) and the MLP branch added to each mixer's output.

Every parameter is perturbed off its initialization (make_mamba_fixtures.perturb). Runs on CPU:

    python3 make_family_fixtures.py [OUT_DIR]
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import FalconMambaConfig, FalconMambaForCausalLM, Mamba2Config, Mamba2ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_mamba_fixtures import file_keys, perturb, record  # noqa: E402

FIXTURES = [
    dict(name="mamba2_tied_fp32", family="mamba2", dtype=torch.float32, lengths=[1, 23],
         config=dict(vocab_size=89, hidden_size=32, expand=2, num_heads=8, head_dim=8, state_size=8,
                     n_groups=1, conv_kernel=4, chunk_size=8, num_hidden_layers=2, use_bias=False,
                     use_conv_bias=True, tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
    dict(name="mamba2_groups_bf16", family="mamba2", dtype=torch.bfloat16, lengths=[2, 19],
         config=dict(vocab_size=101, hidden_size=24, expand=3, num_heads=6, head_dim=12, state_size=6,
                     n_groups=2, conv_kernel=3, chunk_size=5, num_hidden_layers=3, use_bias=True,
                     use_conv_bias=True, tie_word_embeddings=False, layer_norm_epsilon=1e-6,
                     time_step_limit=(0.02, 0.4))),
    dict(name="mamba2_sharded", family="mamba2", dtype=torch.float32, lengths=[17], shard="20KB",
         config=dict(vocab_size=67, hidden_size=40, expand=1, num_heads=5, head_dim=8, state_size=4,
                     n_groups=5, conv_kernel=2, chunk_size=16, num_hidden_layers=2, use_bias=False,
                     use_conv_bias=False, tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
    dict(name="mamba2_ss_mlp", family="mamba2", dtype=torch.float32, lengths=[14], state_spaces=True,
         d_mlp=16, ss_vocab=70,
         config=dict(vocab_size=72, hidden_size=16, expand=2, num_heads=4, head_dim=8, state_size=5,
                     n_groups=2, conv_kernel=4, chunk_size=6, num_hidden_layers=2, use_bias=False,
                     use_conv_bias=True, tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
    dict(name="falcon_mamba_fp32", family="falcon_mamba", dtype=torch.float32, lengths=[1, 13],
         config=dict(vocab_size=75, hidden_size=20, state_size=6, expand=2, conv_kernel=3,
                     time_step_rank=5, num_hidden_layers=2, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True, layer_norm_epsilon=1e-5, mixer_rms_eps=1e-3)),
    dict(name="falcon_mamba_sharded_bf16", family="falcon_mamba", dtype=torch.bfloat16, lengths=[9],
         shard="12KB",
         config=dict(vocab_size=83, hidden_size=28, state_size=7, expand=1, conv_kernel=4,
                     time_step_rank=2, num_hidden_layers=2, use_bias=True, use_conv_bias=True,
                     tie_word_embeddings=False, layer_norm_epsilon=1e-6, mixer_rms_eps=1e-6)),
]


class GroupGatedRMSNorm(torch.nn.Module):
    """mamba_ssm's gated RMSNorm with norm_before_gate=False: x·silu(z), normalized per group of
    `group` channels, times the weight (after rms_norm_ref in mamba_ssm/ops/triton/layernorm_gated.py)."""

    def __init__(self, weight, group, eps):
        super().__init__()
        self.weight = weight
        self.group = group
        self.eps = eps

    def forward(self, x, z):
        v = x.float() * F.silu(z.float())
        g = v.reshape(*v.shape[:-1], v.shape[-1] // self.group, self.group)
        g = g * torch.rsqrt(g.square().mean(-1, keepdim=True) + self.eps)
        return g.reshape(v.shape) * self.weight


def add_mlp_branch(model, d_mlp, gen):
    """The gated-MLP part of mamba_ssm's Mamba2 (d_ssm < d_inner): per layer, in_proj rows z0, x0
    and out_proj columns; each mixer's output gains out_proj_mlp · (silu(z0) ⊙ x0). Returns the
    per-layer weights (z0, x0, out) for saving."""
    H = model.config.hidden_size
    extra = []
    for layer in model.backbone.layers:
        w = [torch.randn(d_mlp, H, generator=gen) / H ** 0.5, torch.randn(d_mlp, H, generator=gen) / H ** 0.5,
             torch.randn(H, d_mlp, generator=gen) / d_mlp ** 0.5]
        extra.append(w)

        def hook(m, i, o, w=w):
            hn = i[0]
            return o + F.linear(F.silu(F.linear(hn, w[0])) * F.linear(hn, w[1]), w[2])

        layer.mixer.register_forward_hook(hook)
    return extra


def record_mamba2(model, tokens):
    """Runs the fp32 model on one sequence, capturing each mixer's signals."""
    captured = {}
    hooks = []
    for k, layer in enumerate(model.backbone.layers):
        mixer = layer.mixer

        def keep(key, value):
            captured[key] = value.detach()[0].float().numpy().copy()

        def on_mixer(m, i, o, k=k):
            keep(f"layer{k}_mixer_in", i[0])
            keep(f"layer{k}_mixer_out", o)

        def on_in_proj(m, i, o, k=k):
            keep(f"layer{k}_in_proj_out", o)

        def on_norm(m, i, o, k=k):
            keep(f"layer{k}_ssm_out", i[0])
            keep(f"layer{k}_norm_out", o)

        hooks += [mixer.register_forward_hook(on_mixer), mixer.in_proj.register_forward_hook(on_in_proj),
                  mixer.norm.register_forward_hook(on_norm)]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    for h in hooks:
        h.remove()
    captured["logits"] = out.logits[0].float().numpy().copy()
    return captured


def save_state_spaces_mamba2(model, fx, extra, out_dir):
    """The original state-spaces layout of a Mamba-2 language model: backbone.embedding.weight,
    in_proj = [z0; x0; z; xBC; dt], out_proj = [mlp | ssm] columns, and mamba_ssm's config.json."""
    cfg, d_mlp = fx["config"], fx["d_mlp"]
    tensors = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied
        k = k.replace("backbone.embeddings.", "backbone.embedding.")
        tensors[k] = v.detach().to(fx["dtype"]).contiguous().clone()
    for i, (z0, x0, out) in enumerate(extra):
        p = f"backbone.layers.{i}.mixer."
        tensors[p + "in_proj.weight"] = torch.cat([z0, x0, tensors[p + "in_proj.weight"]]).contiguous()
        tensors[p + "out_proj.weight"] = torch.cat([out, tensors[p + "out_proj.weight"]], dim=1).contiguous()
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    d_ssm = cfg["num_heads"] * cfg["head_dim"]
    ss_config = {
        "d_model": cfg["hidden_size"],
        "d_intermediate": 0,
        "n_layer": cfg["num_hidden_layers"],
        "vocab_size": fx["ss_vocab"],
        "ssm_cfg": {"layer": "Mamba2", "d_state": cfg["state_size"], "d_conv": cfg["conv_kernel"],
                    "expand": (d_ssm + d_mlp) // cfg["hidden_size"], "headdim": cfg["head_dim"], "d_ssm": d_ssm,
                    "ngroups": cfg["n_groups"], "chunk_size": cfg["chunk_size"]},
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 8,
        "tie_embeddings": True,
    }
    assert (d_ssm + d_mlp) % cfg["hidden_size"] == 0
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(ss_config, f, indent=2)


def build(fx, i):
    cfg = fx["config"]
    gen = torch.Generator().manual_seed(5000 + i)
    torch.manual_seed(6000 + i)
    if fx["family"] == "mamba2":
        model = Mamba2ForCausalLM(Mamba2Config(**cfg)).eval()
    else:
        model = FalconMambaForCausalLM(FalconMambaConfig(**cfg)).eval()
    perturb(model, gen)
    # Round to the storage dtype first, so the fp32 reference runs on exactly the stored values.
    model = model.to(fx["dtype"]).to(torch.float32)
    extra = None
    if fx.get("state_spaces"):
        d_ssm = cfg["num_heads"] * cfg["head_dim"]
        for layer in model.backbone.layers:
            layer.mixer.norm = GroupGatedRMSNorm(layer.mixer.norm.weight, d_ssm // cfg["n_groups"],
                                                 cfg["layer_norm_epsilon"])
        extra = add_mlp_branch(model, fx["d_mlp"], gen)
        extra = [[w.to(fx["dtype"]).to(torch.float32) for w in ws] for ws in extra]
    return model, extra


def save(model, fx, extra, model_dir):
    cfg = fx["config"]
    if fx.get("state_spaces"):
        save_state_spaces_mamba2(model, fx, extra, model_dir)
        return ["model.safetensors"]
    model.to(fx["dtype"]).save_pretrained(model_dir, max_shard_size=fx.get("shard", "50GB"))
    model.to(torch.float32)
    keep = ("config.json", "model.safetensors", "model.safetensors.index.json")
    for extra_file in os.listdir(model_dir):  # keep only what the C++ reader needs
        if extra_file not in keep and not extra_file.startswith("model-"):
            os.remove(os.path.join(model_dir, extra_file))
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if fx.get("shard"):
        assert len(files) > 1 and os.path.exists(os.path.join(model_dir, "model.safetensors.index.json")), \
            f"{fx['name']}: expected a sharded checkpoint, got {files}"
    keys = [k for f in files for k in file_keys(os.path.join(model_dir, f))]
    if cfg["tie_word_embeddings"]:
        assert "lm_head.weight" not in keys, f"{fx['name']}: tied checkpoint stores lm_head.weight"
    else:
        assert "lm_head.weight" in keys, f"{fx['name']}: untied checkpoint lacks lm_head.weight"
    return files


def main():
    out_root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
    torch.manual_seed(0)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "fixtures": {}}
    for i, fx in enumerate(FIXTURES):
        name = fx["name"]
        model, extra = build(fx, i)
        model_dir = os.path.join(out_root, name)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.makedirs(model_dir)
        files = save(model, fx, extra, model_dir)
        keys = sorted(k for f in files for k in file_keys(os.path.join(model_dir, f)))

        ref_dir = os.path.join(out_root, "reference", name)
        shutil.rmtree(ref_dir, ignore_errors=True)
        os.makedirs(ref_dir)
        vocab = fx.get("ss_vocab", fx["config"]["vocab_size"])
        tgen = torch.Generator().manual_seed(7000 + i)
        seqs = []
        for s, L in enumerate(fx["lengths"]):
            tokens = torch.randint(0, vocab, (L,), generator=tgen).tolist()
            got = record_mamba2(model, tokens) if fx["family"] == "mamba2" else record(model, tokens)
            np.save(os.path.join(ref_dir, f"tokens_{s}.npy"), np.asarray(tokens, dtype=np.int64))
            np.save(os.path.join(ref_dir, f"logits_{s}.npy"), got.pop("logits").astype(np.float32))
            for key, value in got.items():
                layer, what = key.split("_", 1)
                np.save(os.path.join(ref_dir, f"{layer}_{s}_{what}.npy"), value.astype(np.float32))
            seqs.append({"length": L, "tokens": tokens})
        manifest["fixtures"][name] = {
            "family": fx["family"], "config": {k: list(v) if isinstance(v, tuple) else v
                                               for k, v in fx["config"].items()},
            "storage_dtype": str(fx["dtype"]).replace("torch.", ""),
            "state_spaces_naming": bool(fx.get("state_spaces")), "d_mlp": fx.get("d_mlp", 0),
            "files": files, "tensors": keys, "sequences": seqs,
            "model_bytes": sum(os.path.getsize(os.path.join(model_dir, f)) for f in files),
        }
        print(f"{name}: {len(keys)} tensors in {len(files)} file(s), lengths {fx['lengths']}")
    with open(os.path.join(out_root, "reference", "manifest_families.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
