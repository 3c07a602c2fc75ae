#!/usr/bin/env python3
"""Creates the Mamba test fixtures with Hugging Face transformers as the reference client.

For each fixture: a small random MambaForCausalLM saved with save_pretrained (config.json +
model.safetensors), and, under reference/<name>/, the token sequences it was run on and what
transformers computed for them in fp32 on the CPU:

  tokens_<s>.npy                  int64 (L)          the token ids of sequence s
  logits_<s>.npy                  float32 (L, V)     the language-model logits
  layer<k>_<s>_mixer_in.npy       float32 (L, H)     the mixer's input (after the block's RMSNorm)
  layer<k>_<s>_in_proj_out.npy    float32 (L, 2·Di)  in_proj output: x (first Di) and z (last Di)
  layer<k>_<s>_ssm_in.npy         float32 (L, Di)    u = SiLU(conv1d(x) + bias), the SSM input
  layer<k>_<s>_x_proj_out.npy     float32 (L, R+2N)  [δ, B, C]
  layer<k>_<s>_ssm_out.npy        float32 (L, Di)    (S6(u) + D·u) ⊙ SiLU(z), the out_proj input
  layer<k>_<s>_mixer_out.npy      float32 (L, H)     the mixer's output (before the residual add)

The fixtures differ in every size field (vocab, hidden, state_size, expand, conv_kernel,
time_step_rank, layers):

  mamba_tied_fp32   fp32, tied embeddings (no lm_head.weight in the file), conv bias, no linear bias
  mamba_bias_bf16   bf16 weights, untied lm_head, use_bias and use_conv_bias
  mamba_ss_f16      fp16 weights under the original state-spaces naming and config.json
                    (backbone.embedding.weight, ssm_cfg, vocab padded to a multiple of 8)
  mamba_demo        a slightly larger fp32 model for the README demo (byte vocabulary)

Every parameter is perturbed away from its initialization (A_log, D, norms, biases), so that a
loader that mixes up two tensors of equal shape fails the comparison. Runs on CPU; writes the
fixtures into the folder given as the first argument (default: the script's own folder), then a
manifest.json describing them.

    python3 make_mamba_fixtures.py [OUT_DIR]
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import MambaConfig, MambaForCausalLM

FIXTURES = [
    # name, MambaConfig fields, storage dtype, tied, sequence lengths
    dict(name="mamba_tied_fp32", dtype=torch.float32, lengths=[1, 6, 37],
         config=dict(vocab_size=97, hidden_size=24, state_size=8, expand=2, conv_kernel=4,
                     time_step_rank=3, num_hidden_layers=2, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
    dict(name="mamba_bias_bf16", dtype=torch.bfloat16, lengths=[2, 23],
         config=dict(vocab_size=131, hidden_size=40, state_size=5, expand=3, conv_kernel=3,
                     time_step_rank=7, num_hidden_layers=3, use_bias=True, use_conv_bias=True,
                     tie_word_embeddings=False, layer_norm_epsilon=1e-6)),
    dict(name="mamba_ss_f16", dtype=torch.float16, lengths=[11], state_spaces=True,
         config=dict(vocab_size=104, hidden_size=32, state_size=4, expand=1, conv_kernel=2,
                     time_step_rank=2, num_hidden_layers=1, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
    dict(name="mamba_demo", dtype=torch.float32, lengths=[48],
         config=dict(vocab_size=256, hidden_size=64, state_size=16, expand=2, conv_kernel=4,
                     time_step_rank=4, num_hidden_layers=4, use_bias=False, use_conv_bias=True,
                     tie_word_embeddings=True, layer_norm_epsilon=1e-5)),
]

SS_VOCAB = 100  # the unpadded vocabulary written into mamba_ss_f16's config.json


def perturb(model, gen):
    """Moves every parameter off its structured initialization, deterministically."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("A_log"):
                p.add_(0.3 * noise)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * noise)
            elif "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias") and "dt_proj" not in name:
                p.copy_(0.2 * noise)
            elif name.endswith("dt_proj.bias"):
                p.add_(0.2 * noise)


def save_state_spaces(model, cfg, out_dir, dtype):
    """The original state-spaces layout: backbone.embedding.weight and its config.json."""
    tensors = {}
    for k, v in model.state_dict().items():
        k = k.replace("backbone.embeddings.", "backbone.embedding.")
        tensors[k] = v.detach().to(dtype).contiguous().clone()
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    ss_config = {
        "d_model": cfg["hidden_size"],
        "n_layer": cfg["num_hidden_layers"],
        "vocab_size": SS_VOCAB,
        "ssm_cfg": {"d_state": cfg["state_size"], "d_conv": cfg["conv_kernel"], "expand": cfg["expand"],
                    "dt_rank": cfg["time_step_rank"]},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 8,
        "tie_embeddings": True,
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(ss_config, f, indent=2)


def file_keys(path):
    with safe_open(path, framework="pt") as f:
        return list(f.keys())


def record(model, tokens):
    """Runs the fp32 model on one sequence, capturing each mixer's inputs and outputs."""
    captured = {}
    hooks = []
    for k, layer in enumerate(model.backbone.layers):
        mixer = layer.mixer

        def keep(key, value):
            captured[key] = value.detach()[0].float().numpy().copy()

        # A forward hook that returns a value replaces the module's output: these return None.
        def on_mixer(m, i, o, k=k):
            keep(f"layer{k}_mixer_in", i[0])
            keep(f"layer{k}_mixer_out", o)

        def on_in_proj(m, i, o, k=k):
            keep(f"layer{k}_in_proj_out", o)

        def on_x_proj(m, i, o, k=k):
            keep(f"layer{k}_ssm_in", i[0])
            keep(f"layer{k}_x_proj_out", o)

        def on_out_proj(m, i, o, k=k):
            keep(f"layer{k}_ssm_out", i[0])

        hooks += [mixer.register_forward_hook(on_mixer), mixer.in_proj.register_forward_hook(on_in_proj),
                  mixer.x_proj.register_forward_hook(on_x_proj), mixer.out_proj.register_forward_hook(on_out_proj)]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens], dtype=torch.long), use_cache=False)
    for h in hooks:
        h.remove()
    captured["logits"] = out.logits[0].float().numpy().copy()
    return captured


def main():
    out_root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
    torch.manual_seed(0)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "fixtures": {}}
    for i, fx in enumerate(FIXTURES):
        name, cfg, dtype = fx["name"], fx["config"], fx["dtype"]
        gen = torch.Generator().manual_seed(1000 + i)
        torch.manual_seed(2000 + i)
        model = MambaForCausalLM(MambaConfig(**cfg)).eval()
        perturb(model, gen)
        # Round to the storage dtype first, so the fp32 reference runs on exactly the stored values.
        model = model.to(dtype).to(torch.float32)

        model_dir = os.path.join(out_root, name)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.makedirs(model_dir)
        if fx.get("state_spaces"):
            save_state_spaces(model, cfg, model_dir, dtype)
        else:
            model.to(dtype).save_pretrained(model_dir)
            model = model.to(torch.float32)
            for extra in os.listdir(model_dir):  # keep only what the C++ reader needs
                if extra not in ("config.json", "model.safetensors"):
                    os.remove(os.path.join(model_dir, extra))
        st_path = os.path.join(model_dir, "model.safetensors")
        keys = file_keys(st_path)
        if cfg["tie_word_embeddings"] and not fx.get("state_spaces") and "lm_head.weight" in keys:
            # The tied checkpoint must exercise the "lm_head.weight absent" path.
            with safe_open(st_path, framework="pt") as f:
                kept = {k: f.get_tensor(k) for k in keys if k != "lm_head.weight"}
            save_file(kept, st_path, metadata={"format": "pt"})
            keys = file_keys(st_path)
        if not cfg["tie_word_embeddings"]:
            assert "lm_head.weight" in keys, f"{name}: untied checkpoint lacks lm_head.weight"

        ref_dir = os.path.join(out_root, "reference", name)
        shutil.rmtree(ref_dir, ignore_errors=True)
        os.makedirs(ref_dir)
        vocab = SS_VOCAB if fx.get("state_spaces") else cfg["vocab_size"]
        tgen = torch.Generator().manual_seed(3000 + i)
        seqs = []
        for s, L in enumerate(fx["lengths"]):
            tokens = torch.randint(0, vocab, (L,), generator=tgen).tolist()
            got = record(model, tokens)
            np.save(os.path.join(ref_dir, f"tokens_{s}.npy"), np.asarray(tokens, dtype=np.int64))
            np.save(os.path.join(ref_dir, f"logits_{s}.npy"), got.pop("logits").astype(np.float32))
            for key, value in got.items():
                layer, what = key.split("_", 1)
                np.save(os.path.join(ref_dir, f"{layer}_{s}_{what}.npy"), value.astype(np.float32))
            seqs.append({"length": L, "tokens": tokens})
        manifest["fixtures"][name] = {
            "config": cfg, "storage_dtype": str(dtype).replace("torch.", ""),
            "state_spaces_naming": bool(fx.get("state_spaces")), "tensors": sorted(keys),
            "sequences": seqs,
            "model_bytes": os.path.getsize(st_path),
        }
        print(f"{name}: {len(keys)} tensors, {os.path.getsize(st_path)} bytes, lengths {fx['lengths']}")
    with open(os.path.join(out_root, "reference", "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
