"""python -m mixlens: the basic options of mixlens-attn, through the Python package, and text input.

    python -m mixlens --model DIR (--tokens 3,17,5 | --tokens-file t.npy | --text "..." | --texts FILE)
                      --out DIR [--tokenizer FILE] [--form paper|unified] [--layers all|0,3]
                      [--save-alpha all|none|0,3] [--dtype float32|float64]

Writes logits.npy (L × V), alpha_{k}.npy per saved layer, raw.npy and rollout.npy (L × L), the
files mixlens-attn writes (without its PNG heatmaps), tokens.json when the model folder has a
tokenizer.json (or --tokenizer names one), and the same manifest, so that either replaces the
other's output folder. --text is tokenized with that tokenizer.json by the `tokenizers` package;
--texts FILE takes one sequence per line and writes each sequence's outputs into seq_0000, seq_0001,
... with raw_mean.npy, rollout_mean.npy and sequences.json beside them. Exit status: 0 success,
1 failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def _tokenizer_file(args: argparse.Namespace) -> str | None:
    """--tokenizer, else the model folder's tokenizer.json when there is one."""
    if args.tokenizer is not None:
        if not os.path.isfile(args.tokenizer):
            raise mixlens.Error(f"--tokenizer: cannot open tokenizer file '{args.tokenizer}': no such file")
        return args.tokenizer
    own = os.path.join(args.model, "tokenizer.json")
    return own if os.path.exists(own) else None


def _encode(texts: list[tuple[str, str]], tokenizer_file: str | None, vocab_size: int,
            args: argparse.Namespace) -> list[np.ndarray]:
    """Token ids of each (where, text) through the `tokenizers` package; where names the text in errors."""
    option = "--text" if args.text is not None else "--texts"
    if tokenizer_file is None:
        raise mixlens.Error(f"{option}: the model folder '{args.model}' has no tokenizer.json; name one with "
                            "--tokenizer FILE, or give token ids with --tokens or --tokens-file")
    try:
        import tokenizers
    except ImportError:
        raise mixlens.Error(f"{option} needs the Python package tokenizers (pip install tokenizers)") from None
    try:
        tok = tokenizers.Tokenizer.from_file(tokenizer_file)
    except Exception as e:  # the package raises a plain Exception for a malformed file
        raise mixlens.Error(f"tokenizer file '{tokenizer_file}' cannot be read by tokenizers: {e}") from None
    out = []
    for where, text in texts:
        if not text.strip():
            raise mixlens.Error(f"{where}: the text is empty")
        enc = tok.encode(text)
        if not enc.ids:
            raise mixlens.Error(f"{where}: the tokenizer '{tokenizer_file}' gives no tokens for {text!r}")
        for i, (t, s) in enumerate(zip(enc.ids, enc.tokens)):
            if not 0 <= t < vocab_size:
                raise mixlens.Error(
                    f"{where}: token {s!r} (id {t}) at position {i} is outside the model's vocabulary [0, {vocab_size}): "
                    f"tokenizer '{tokenizer_file}' does not belong to the model in '{args.model}'")
        out.append(np.asarray(enc.ids, dtype=np.int64))
    return out


def _texts(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(where, text) of --text, or of each line of --texts FILE."""
    if args.text is not None:
        return [("--text", args.text)]
    try:
        with open(args.texts, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise mixlens.Error(f"--texts '{args.texts}': not UTF-8 text ({e})") from None
    if not lines:
        raise mixlens.Error(f"--texts '{args.texts}': the file holds no line of text")
    return [(f"--texts '{args.texts}' line {n + 1}", line) for n, line in enumerate(lines)]


def _tokens_json(ids: np.ndarray, tokenizer_file: str) -> str:
    """tokens.json: [{"id": 72, "text": "H"}, ...], the strings mixlens-attn writes."""
    texts = mixlens.token_strings(tokenizer_file, [int(i) for i in ids])
    rows = [json.dumps({"id": int(i), "text": t}, ensure_ascii=False) for i, t in zip(ids, texts)]
    return "[\n " + ",\n ".join(rows) + "\n]\n" if rows else "[]\n"


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


def _remove(path: str) -> None:
    for name in os.listdir(path):
        p = os.path.join(path, name)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    os.rmdir(path)


def _write(out: str, files: dict[str, np.ndarray | str]) -> None:
    """Writes into a fresh folder beside out and moves it into place when every file is written.
    Names may hold one folder ("seq_0000/logits.npy"); each folder gets a manifest of its own, so that
    it too is a former output; str values are written as UTF-8 text."""
    out = os.path.normpath(out)
    _check_replaceable(out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".partial-", dir=parent)
    try:
        listed: dict[str, list[str]] = {"": []}  # folder → its entries
        for name, value in files.items():
            folder, _, base = name.rpartition("/")
            if folder not in listed:
                os.makedirs(os.path.join(staging, folder))
                listed[folder] = []
                listed[""].append(folder)
            listed[folder].append(base)
            path = os.path.join(staging, name)
            if isinstance(value, str):
                with open(path, "w", encoding="utf-8") as f:
                    f.write(value)
            else:
                np.save(path, value)
        for folder, names in listed.items():
            with open(os.path.join(staging, folder, MANIFEST), "w") as f:
                f.write("\n".join([MAGIC, *names]) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        for folder in listed:
            os.chmod(os.path.join(staging, folder), 0o777 & ~umask)
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
            _remove(old)
    finally:
        if staging and os.path.isdir(staging):
            _remove(staging)


def _dataset_mean(maps: list[np.ndarray]) -> np.ndarray:
    """Entry (i, j): the mean over the sequences long enough to have it (Lmax × Lmax)."""
    n = max(m.shape[0] for m in maps)
    total = np.zeros((n, n), dtype=np.float64)
    count = np.zeros((n, n), dtype=np.float64)
    for m in maps:
        k = m.shape[0]
        total[:k, :k] += m
        count[:k, :k] += 1
    return (total / count).astype(maps[0].dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mixlens", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="config.json + model.safetensors or its shards")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="comma-separated token ids")
    src.add_argument("--tokens-file", help="token ids as a 1-D int32/int64 .npy")
    src.add_argument("--text", help="text, tokenized with the model folder's tokenizer.json (or --tokenizer)")
    src.add_argument("--texts", help="a UTF-8 file of texts, one sequence per line: outputs per sequence "
                                     "in seq_0000, seq_0001, ... and the mean raw and rollout maps")
    p.add_argument("--tokenizer", help="a Hugging Face tokenizer.json (default: the model folder's)")
    p.add_argument("--out", required=True, help="output folder (replaced only if empty or a former output)")
    p.add_argument("--form", choices=["paper", "unified"], default="paper",
                   help="alpha_{k}.npy: the paper's alpha, or the whole block's unified form")
    p.add_argument("--layers", default="all", help="layers to analyse, 0-based (default all)")
    p.add_argument("--save-alpha", default="all", help="analysed layers whose alpha_{k}.npy is written")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="arithmetic (default float32)")
    args = p.parse_args(argv)
    try:
        tokenizer_file = _tokenizer_file(args)
        if tokenizer_file is not None:  # read (and checked) before any work
            mixlens.token_strings(tokenizer_file, [])
        texts = _texts(args) if args.text is not None or args.texts is not None else None
        model = mixlens.load(args.model, dtype=args.dtype)
        sequences = _encode(texts, tokenizer_file, model.vocab_size, args) if texts else [_tokens(args)]
        layers = None if args.layers == "all" else _int_list(args.layers, "--layers")
        if args.save_alpha == "all":
            alpha: bool | list[int] = True
        elif args.save_alpha == "none":
            alpha = False
        else:
            alpha = _int_list(args.save_alpha, "--save-alpha")
        files: dict[str, np.ndarray | str] = {}
        raws, rollouts, listing = [], [], []
        for n, tokens in enumerate(sequences):
            att = model.attention(tokens, layers=layers, form=args.form, alpha=alpha)
            prefix = f"seq_{n:04d}/" if args.texts is not None else ""
            files[prefix + "logits.npy"] = att.logits
            for k, a in att.alpha.items():
                files[prefix + f"alpha_{k}.npy"] = a
            if att.raw is not None:
                files[prefix + "raw.npy"] = att.raw
                files[prefix + "rollout.npy"] = att.rollout
                raws.append(att.raw)
                rollouts.append(att.rollout)
            if tokenizer_file is not None:
                files[prefix + "tokens.json"] = _tokens_json(tokens, tokenizer_file)
            if args.texts is not None:
                listing.append({"folder": prefix[:-1], "length": len(tokens), "text": texts[n][1]})
        if args.texts is not None:
            if raws:
                files["raw_mean.npy"] = _dataset_mean(raws)
                files["rollout_mean.npy"] = _dataset_mean(rollouts)
            files["sequences.json"] = json.dumps(listing, indent=1, ensure_ascii=False) + "\n"
        _write(args.out, files)
    except (mixlens.Error, OSError) as e:
        print(f"python -m mixlens: error: {e}", file=sys.stderr)
        return 1
    lengths = ", ".join(str(len(t)) for t in sequences)
    print(f"model     {args.model} ({model.family}): {model.num_layers} layers, vocab {model.vocab_size}; "
          f"L = {lengths} tokens; form {args.form}; {len(att.layers)} layer(s) analysed")
    top = list(dict.fromkeys(name.split("/")[0] for name in files))
    print(f"wrote     {args.out}: " + ", ".join(top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
