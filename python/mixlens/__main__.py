"""python -m mixlens: the basic options of mixlens-attn, through the Python package.

    python -m mixlens --model DIR (--tokens 3,17,5 | --tokens-file t.npy) --out DIR
                      [--form paper|unified] [--layers all|0,3] [--save-alpha all|none|0,3]
                      [--dtype float32|float64]

Writes logits.npy (L × V), alpha_{k}.npy per saved layer, raw.npy and rollout.npy (L × L), the
files mixlens-attn writes (without its PNG heatmaps), and the same manifest, so that either
replaces the other's output folder. Exit status: 0 success, 1 failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import mixlens

MANIFEST = "mixlens-attn.manifest"
MAGIC = "mixlens-attn output"


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise mixlens.Error(f"{option}: '{text}' is not a comma-separated list of integers") from None


def _tokens(args: argparse.Namespace) -> np.ndarray:
    if args.tokens is not None:
        return np.asarray(_int_list(args.tokens, "--tokens"), dtype=np.int64)
    t = np.load(args.tokens_file, allow_pickle=False)
    if t.dtype not in (np.int32, np.int64):
        raise mixlens.Error(f"token file '{args.tokens_file}': dtype {t.dtype} (expected int32 or int64)")
    if not (t.ndim == 1 or (t.ndim == 2 and t.shape[0] == 1)):
        raise mixlens.Error(f"token file '{args.tokens_file}': expected a 1-D array of token ids")
    return t.reshape(-1)


def _check_replaceable(out: str) -> None:
    """An existing --out is replaced only when empty or a former output (listed in its manifest)."""
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise mixlens.Error(f"output folder '{out}' exists and is not a folder")
    names = os.listdir(out)
    if not names:
        return
    try:
        with open(os.path.join(out, MANIFEST)) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    if not lines or lines[0] != MAGIC:
        raise mixlens.Error(
            f"output folder '{out}' is not empty and holds no {MANIFEST}: it is not a former output, "
            "and nothing in it is replaced; choose another --out")
    for name in names:
        if name != MANIFEST and name not in lines[1:]:
            raise mixlens.Error(f"output folder '{out}' holds '{name}', which no run wrote; choose another --out")


def _write(out: str, files: dict[str, np.ndarray]) -> None:
    """Writes into a fresh folder beside out and moves it into place when every file is written."""
    out = os.path.normpath(out)
    _check_replaceable(out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".partial-", dir=parent)
    try:
        for name, array in files.items():
            np.save(os.path.join(staging, name), array)
        with open(os.path.join(staging, MANIFEST), "w") as f:
            f.write("\n".join([MAGIC, *files]) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        _check_replaceable(out)
        old = None
        if os.path.isdir(out) and os.listdir(out):
            old = staging + ".old"
            os.rename(out, old)
        elif os.path.isdir(out):
            os.rmdir(out)
        os.rename(staging, out)
        staging = None
        if old:
            for name in os.listdir(old):
                os.remove(os.path.join(old, name))
            os.rmdir(old)
    finally:
        if staging and os.path.isdir(staging):
            for name in os.listdir(staging):
                os.remove(os.path.join(staging, name))
            os.rmdir(staging)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mixlens", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="config.json + model.safetensors or its shards")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="comma-separated token ids")
    src.add_argument("--tokens-file", help="token ids as a 1-D int32/int64 .npy")
    p.add_argument("--out", required=True, help="output folder (replaced only if empty or a former output)")
    p.add_argument("--form", choices=["paper", "unified"], default="paper",
                   help="alpha_{k}.npy: the paper's alpha, or the whole block's unified form")
    p.add_argument("--layers", default="all", help="layers to analyse, 0-based (default all)")
    p.add_argument("--save-alpha", default="all", help="analysed layers whose alpha_{k}.npy is written")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="arithmetic (default float32)")
    args = p.parse_args(argv)
    try:
        tokens = _tokens(args)
        model = mixlens.load(args.model, dtype=args.dtype)
        layers = None if args.layers == "all" else _int_list(args.layers, "--layers")
        if args.save_alpha == "all":
            alpha: bool | list[int] = True
        elif args.save_alpha == "none":
            alpha = False
        else:
            alpha = _int_list(args.save_alpha, "--save-alpha")
        att = model.attention(tokens, layers=layers, form=args.form, alpha=alpha)
        files = {"logits.npy": att.logits}
        for k, a in att.alpha.items():
            files[f"alpha_{k}.npy"] = a
        if att.raw is not None:
            files["raw.npy"] = att.raw
            files["rollout.npy"] = att.rollout
        _write(args.out, files)
    except (mixlens.Error, OSError) as e:
        print(f"python -m mixlens: error: {e}", file=sys.stderr)
        return 1
    print(f"model     {args.model} ({model.family}): {model.num_layers} layers, vocab {model.vocab_size}; "
          f"L = {len(tokens)} tokens; form {args.form}; {len(att.layers)} layer(s) analysed")
    print(f"wrote     {args.out}: " + ", ".join(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
