#!/usr/bin/env python3
"""Converts a Vision Mamba (hustvl/Vim) checkpoint into a folder mixlens reads.

Input: a PyTorch checkpoint as the Vim training script saves it, a dict whose "model" entry is
the VisionMamba state dict (and whose optional "args" entry holds the training arguments; its
"model" argument is the registered model name). A bare state dict is accepted too.

Output folder:
  model.safetensors   every tensor of the state dict, names and dtypes unchanged
  config.json         the hyperparameters (docs/vim.md lists the fields)

Most hyperparameters are read from the tensor shapes (embed_dim, depth, d_state, d_conv, expand,
dt_rank, patch_size, channels, num_classes, which tokens and biases exist). Those the tensors do
not show — image size, stride, the CLS position, the division of the two directions' sum by 2,
the pooling without a CLS token — come from the registered model name
(e.g. vim_tiny_patch16_stride8_224_bimambav2_final_pool_mean_abs_pos_embed_with_midclstok_div2),
taken from the checkpoint's args or from --model-name, and can be set explicitly; the image
size and stride are checked against the position embedding's length.

    python3 tools/convert_vim.py vim_t_midclstok_76p1acc.pth OUT_DIR [--model-name NAME]
        [--img-size N|HxW] [--stride N] [--cls-position middle|head|none] [--divide-out|--no-divide-out]
        [--final-pool-type mean|none] [--unsafe-pickle]

Unpickling runs code from the file: by default the checkpoint is loaded with
torch.load(weights_only=True), which allows tensors, containers and argparse.Namespace only;
--unsafe-pickle lifts that for a file you trust.
"""

import argparse
import json
import math
import os
import re
import sys


class ConvertError(Exception):
    pass


def name_hints(name):
    """What a registered Vim model name says about the hyperparameters the tensors do not show."""
    hints = {}
    if not name:
        return hints
    m = re.search(r"stride(\d+)", name)
    if m:
        hints["stride"] = int(m.group(1))
    m = re.search(r"patch(\d+)", name)
    if m:
        hints["patch_size"] = int(m.group(1))
    m = re.search(r"_(\d{3})(?:_|$)", name)
    if m:
        hints["img_size"] = int(m.group(1))
    if "midclstok" in name or "middle_cls_token" in name:
        hints["cls_position"] = "middle"
    hints["if_divide_out"] = "div2" in name
    m = re.search(r"final_pool_(mean|max|all|none)", name)
    if m:
        hints["final_pool_type"] = m.group(1)
    return hints


def image_size(text):
    """--img-size: N (square) or HxW."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected N or HxW, got '{text}'")
    return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))


def load_checkpoint(path, unsafe):
    import torch

    if unsafe:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler names what it refused
        raise ConvertError(f"{path}: cannot be loaded with weights_only=True ({e}); "
                           "pass --unsafe-pickle if you trust the file")


def split_checkpoint(ckpt):
    """(state dict, model name or None) of a training checkpoint or a bare state dict."""
    if not isinstance(ckpt, dict):
        raise ConvertError(f"expected a dict, got {type(ckpt).__name__}")
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        args = ckpt.get("args")
        name = getattr(args, "model", None) if args is not None else None
        if isinstance(args, dict):
            name = args.get("model")
        return ckpt["model"], name
    return ckpt, None


def shape(sd, key):
    if key not in sd:
        raise ConvertError(f"missing tensor '{key}'")
    return list(sd[key].shape)


def infer_config(sd, options):
    """The config.json of state dict `sd`; `options` are the command-line choices (None: not given)."""
    hints = name_hints(options.get("model_name"))
    pw = shape(sd, "patch_embed.proj.weight")
    if len(pw) != 4 or pw[2] != pw[3]:
        raise ConvertError(f"patch_embed.proj.weight has shape {pw}, expected (embed_dim, channels, p, p)")
    embed_dim, channels, patch = pw[0], pw[1], pw[2]
    if "patch_size" in hints and hints["patch_size"] != patch:
        raise ConvertError(f"the model name says patch{hints['patch_size']}, the weights have patch size {patch}")
    depth = 0
    while f"layers.{depth}.mixer.in_proj.weight" in sd:
        depth += 1
    if depth == 0:
        raise ConvertError("no layers (missing tensor 'layers.0.mixer.in_proj.weight')")
    p = "layers.0.mixer."
    d_inner = shape(sd, p + "in_proj.weight")[0] // 2
    d_state = shape(sd, p + "A_log")[1]
    d_conv = shape(sd, p + "conv1d.weight")[2]
    dt_rank = shape(sd, p + "dt_proj.weight")[1]
    if p + "conv1d_b.weight" in sd:
        bimamba = "v2"
    elif p + "A_b_log" in sd:
        bimamba = "v1"
    else:
        bimamba = "none"
    double_cls = "cls_token_head" in sd
    has_cls = "cls_token" in sd or double_cls
    num_tokens = 2 if double_cls else 1 if has_cls else 0
    cls_position = options.get("cls_position") or (hints.get("cls_position") if has_cls else None)
    if cls_position is None:
        cls_position = "head" if has_cls else "none"
    if (cls_position != "none") != has_cls:
        raise ConvertError(f"cls position '{cls_position}' but the checkpoint "
                           f"{'has' if has_cls else 'has no'} cls_token")

    stride = options.get("stride") or hints.get("stride") or patch
    img_size = options.get("img_size") or hints.get("img_size")
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    has_pos = "pos_embed" in sd
    if has_pos:
        tokens = shape(sd, "pos_embed")[1]
        patches = tokens - num_tokens
        if img_size is None:  # a square grid of `patches`
            side = math.isqrt(patches)
            if side * side != patches:
                raise ConvertError(f"pos_embed holds {patches} patches, not a square grid: pass --img-size")
            img_size = ((side - 1) * stride + patch,) * 2
        grid = [(s - patch) // stride + 1 for s in img_size]
        if grid[0] * grid[1] != patches:
            raise ConvertError(f"img_size {img_size[0]}x{img_size[1]}, patch {patch}, stride {stride} give "
                               f"{grid[0]}x{grid[1]} patches, pos_embed holds {patches}")
    elif img_size is None:
        raise ConvertError("no pos_embed to check the image size against: pass --img-size")
    img_size = img_size[0] if img_size[0] == img_size[1] else list(img_size)

    divide = options.get("if_divide_out")
    if divide is None:
        divide = hints.get("if_divide_out", True)
    pool = options.get("final_pool_type") or hints.get("final_pool_type") or "none"
    config = {
        "model_type": "vim",
        "architectures": ["VisionMamba"],
        "model_name": options.get("model_name") or "",
        "img_size": img_size,
        "patch_size": patch,
        "stride": stride,
        "channels": channels,
        "embed_dim": embed_dim,
        "depth": depth,
        "d_state": d_state,
        "d_conv": d_conv,
        "expand": d_inner / embed_dim,
        "dt_rank": dt_rank,
        "num_classes": shape(sd, "head.weight")[0],
        "rms_norm": "layers.0.norm.bias" not in sd,
        "norm_epsilon": options.get("norm_epsilon") or 1e-5,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "bimamba_type": bimamba,
        "if_divide_out": bool(divide),
        "if_cls_token": has_cls,
        "use_double_cls_token": double_cls,
        "use_middle_cls_token": cls_position == "middle",
        "final_pool_type": pool,
        "if_abs_pos_embed": has_pos,
        "if_rope": False,
        "if_bidirectional": False,
        "conv_bias": p + "conv1d.bias" in sd,
        "bias": p + "in_proj.bias" in sd,
        "init_layer_scale": 1.0 if p + "gamma" in sd else None,
    }
    if float(config["expand"]).is_integer():
        config["expand"] = int(config["expand"])
    return config


def convert(ckpt, out_dir, options):
    """Writes model.safetensors and config.json of checkpoint dict `ckpt` into out_dir."""
    from safetensors.torch import save_file

    sd, name = split_checkpoint(ckpt)
    options = dict(options)
    options["model_name"] = options.get("model_name") or name
    config = infer_config(sd, options)
    tensors = {k: v.detach().contiguous().clone() for k, v in sd.items() if hasattr(v, "detach")}
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return config


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--model-name")
    ap.add_argument("--img-size", type=image_size, help="N or HxW")
    ap.add_argument("--stride", type=int)
    ap.add_argument("--cls-position", choices=["middle", "head", "none"])
    ap.add_argument("--divide-out", dest="if_divide_out", action="store_true", default=None)
    ap.add_argument("--no-divide-out", dest="if_divide_out", action="store_false")
    ap.add_argument("--final-pool-type", choices=["mean", "none", "max", "all"])
    ap.add_argument("--unsafe-pickle", action="store_true")
    a = ap.parse_args(argv)
    try:
        config = convert(load_checkpoint(a.checkpoint, a.unsafe_pickle), a.out_dir, vars(a))
    except ConvertError as e:
        print(f"convert_vim: {e}", file=sys.stderr)
        return 1
    print(json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
