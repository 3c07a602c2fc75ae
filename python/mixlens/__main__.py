"""python -m mixlens: the basic options of mixlens-attn, through the Python package, and text input.

    python -m mixlens --model DIR (--tokens 3,17,5 | --tokens-file t.npy | --text "..." | --texts FILE |
                                   --image x.png [--normalize])
                      --out DIR [--device cpu|cuda] [--tokenizer FILE] [--form paper|unified] [--layers all|0,3]
                      [--save-alpha all|none|0,3] [--dtype float32|float64]
                      [--rows last|cls|i,j,... [--raw-range tensor|rows]]
                      [--method raw|rollout|mamba-attr|attn-grad|grad-input|lrp [--target-position P]
                       [--target-token T] [--start-layer K] [--attn-grad-without-d]]

Writes logits.npy (L × V), alpha_{k}.npy per saved layer, raw.npy and rollout.npy (L × L), the
files mixlens-attn writes (without its PNG heatmaps), tokens.json when the model folder has a
tokenizer.json (or --tokenizer names one), and the same manifest, so that either replaces the
other's output folder. --text is tokenized with that tokenizer.json by the `tokenizers` package;
--texts FILE takes one sequence per line, and --tokens-file a B × L array (B >= 2) B sequences:
each sequence's outputs go into seq_0000, seq_0001, ... with the dataset means (raw_mean.npy,
rollout_mean.npy; with --rows raw_rows_mean.npy and map_rows_{k}_mean.npy when the lengths are
equal) and sequences.json beside them. --rows writes only the selected rows: alpha_rows_{k}.npy
(D × R × L), map_rows_{k}.npy and raw_rows.npy (R × L; raw_rows_rowrange.npy with --raw-range
rows) and rows.json, no rollout. --method also explains one logit as mixlens-attn --method does
(Model.attribute): attribution.npy (L, float32), target.json (method, position, token, value, and the
token's text with a tokenizer), for mamba-attr and attn-grad the whole rollout mamba_attr.npy /
attn_grad.npy (L × L), and for a gradient method residual_grad_{k}.npy (L × d_model) of the analysed
layers (Model.gradients); not mixlens-attn's PNG chart. --image runs a
Vision Mamba classifier (VisionModel) on a .png (pixels / 255, ImageNet-normalized) or a .npy
(as stored, unless --normalize): logits.npy (classes), the maps of the combined matrices, and
cls_raw.npy / cls_rollout.npy, the classifier's row over the patch grid; --target-token is its class.
--device cuda computes on the GPU (the package's CUDA backend). Exit status: 0
success, 1 failure, 2 bad usage.
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


def _tokens(args: argparse.Namespace, vocab_size: int) -> tuple[list[np.ndarray], bool]:
    """The sequences of --tokens or --tokens-file and whether they are a batch: a 1-D (or 1 × L) file is
    one sequence, a B × L file with B >= 2 a batch, as mixlens-attn reads them."""
    if args.tokens is not None:
        return [np.asarray(_int_list(args.tokens, "--tokens"), dtype=np.int64)], False
    who = f"token file '{args.tokens_file}'"
    try:
        t = np.load(args.tokens_file, allow_pickle=False)
    except ValueError as e:  # numpy stores ragged sequences as an object array
        if "allow_pickle" not in str(e):
            raise mixlens.Error(f"{who}: {e}") from None
        raise mixlens.Error(f"{who}: an object array (sequences of different lengths?) holds no token ids; give a "
                            "1-D array or one B x L int32/int64 array of equal-length sequences") from None
    if t.dtype not in (np.int32, np.int64):
        raise mixlens.Error(f"{who}: dtype {t.dtype} (expected int32 or int64)")
    if t.ndim not in (1, 2):
        raise mixlens.Error(f"{who}: expected a 1-D array of token ids or a B x L array of B sequences, "
                            f"got shape {tuple(t.shape)}")
    if t.ndim == 1:
        return [t.astype(np.int64)], False
    if t.shape[0] == 0:
        raise mixlens.Error(f"{who}: shape {tuple(t.shape)} holds no sequence (expected B >= 1 rows)")
    if t.shape[1] == 0:
        raise mixlens.Error(f"{who}: shape {tuple(t.shape)}: the sequences hold no tokens")
    batch = t.shape[0] > 1
    for n, row in enumerate(t):
        bad = np.flatnonzero((row < 0) | (row >= vocab_size))
        if bad.size and batch:
            raise mixlens.Error(f"{who} sequence {n}: token {row[bad[0]]} at position {bad[0]} is outside the "
                                f"vocabulary [0, {vocab_size})")
    return [row.astype(np.int64) for row in t], batch


def _json_lines(items: list) -> str:
    """A JSON array with one object a line, as mixlens-attn writes sequences.json and tokens.json."""
    rows = [json.dumps(item, ensure_ascii=False) for item in items]
    return "[\n " + ",\n ".join(rows) + "\n]\n" if rows else "[]\n"


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
    return _json_lines([{"id": int(i), "text": t} for i, t in zip(ids, texts)])


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
                np.save(path, _host(value))
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
    """Entry (i, j): the mean over the sequences long enough to have it (Lmax × Lmax; for rows R × Lmax)."""
    shape = tuple(max(m.shape[d] for m in maps) for d in range(maps[0].ndim))
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.float64)
    for m in maps:
        at = tuple(slice(0, k) for k in m.shape)
        total[at] += m
        count[at] += 1
    return (total / count).astype(maps[0].dtype)


GRADIENT_METHODS = ("mamba-attr", "attn-grad", "grad-input", "lrp")


def _attribution(model, tokens: np.ndarray, args: argparse.Namespace, tokenizer_file: str | None,
                 layers: list[int]) -> dict[str, np.ndarray | str]:
    """--method's files: attribution.npy, target.json, the rollout recipes' whole matrix and, for a
    gradient method, residual_grad_{k}.npy of the analysed layers (under LRP's rules for lrp)."""
    whole = args.method in ("mamba-attr", "attn-grad")
    a = model.attribute(tokens, args.method, target_position=args.target_position, target_token=args.target_token,
                        start_layer=args.start_layer, matrix=whole, attn_grad_without_d=args.attn_grad_without_d)
    target = {"method": a.method, "position": a.position, "token": a.token, "value": a.value}
    if tokenizer_file is not None:
        target["text"] = mixlens.token_strings(tokenizer_file, [a.token])[0]
    files: dict[str, np.ndarray | str] = {"attribution.npy": np.asarray(_host(a.scores), dtype=np.float32),
                                          "target.json": json.dumps(target) + "\n"}
    if whole:
        files[args.method.replace("-", "_") + ".npy"] = np.asarray(_host(a.matrix), dtype=np.float32)
    if args.method in GRADIENT_METHODS and layers:
        g = model.gradients(tokens, target_position=a.position, target_token=a.token,
                            rule="lrp" if args.method == "lrp" else "gradient", signals=["residual"])
        for k in layers:
            files[f"residual_grad_{k}.npy"] = np.asarray(_host(g["layers"][k]["residual"]), dtype=np.float32)
    return files


def _host(a):
    """An array of the library's results in host memory (a CUDA tensor is copied to the CPU)."""
    return a.cpu().numpy() if hasattr(a, "cpu") else a


def _classifier_map(model, m: np.ndarray) -> np.ndarray:
    """The row a Vision Mamba classifier reads of an L × L map (its CLS row, or the mean of the rows
    without a CLS token) over the patch grid, as mixlens-attn's cls_raw.npy / cls_rollout.npy."""
    cls = model.cls_index
    row = m[cls] if cls is not None else m.mean(axis=0)
    patches = np.delete(row, cls) if cls is not None else row
    return patches.reshape(model.config["grid"]).astype(m.dtype)


def _vision(model, args: argparse.Namespace, layers, alpha, raw_range: str, raw_rows_file: str) -> dict:
    """--image's files for a VisionModel."""
    image = mixlens.read_image(args.image)
    normalize = args.image.lower().endswith(".png") or args.normalize
    rows = None if args.rows is None else mixlens._core._resolve_rows(
        args.rows, model.sequence_length, True, -1 if model.cls_index is None else model.cls_index, "--rows")
    att = model.attention(image, layers=layers, form=args.form, alpha=alpha, rows=rows, raw_range=raw_range,
                          normalize=normalize)
    files: dict[str, np.ndarray | str] = {"logits.npy": att.logits}
    if rows is None:
        files.update({f"alpha_{k}.npy": a for k, a in att.alpha.items()})
        if att.raw is not None:
            files.update({"raw.npy": att.raw, "rollout.npy": att.rollout,
                          "cls_raw.npy": _classifier_map(model, att.raw),
                          "cls_rollout.npy": _classifier_map(model, att.rollout)})
    else:
        files.update({f"alpha_rows_{k}.npy": a for k, a in att.alpha.items()})
        if att.raw is not None:
            files.update({f"map_rows_{k}.npy": m for k, m in att.maps.items()})
            files.update({raw_rows_file: att.raw, "rows.json": _rows_json(rows)})
    if args.method is not None:
        whole = args.method in ("mamba-attr", "attn-grad")
        a = model.attribute(image, args.method, target_class=args.target_token, start_layer=args.start_layer,
                            matrix=whole, attn_grad_without_d=args.attn_grad_without_d, normalize=normalize)
        target = {"method": a.method, "position": a.position, "token": a.token, "value": a.value}
        files.update({"attribution.npy": np.asarray(_host(a.scores), dtype=np.float32), "target.json": json.dumps(target) + "\n"})
        if whole:
            files[args.method.replace("-", "_") + ".npy"] = np.asarray(_host(a.matrix), dtype=np.float32)
        if args.method in GRADIENT_METHODS and att.layers:
            g = model.gradients(image, target_class=a.token, rule="lrp" if args.method == "lrp" else "gradient",
                                signals=["residual"], normalize=normalize)
            for k in att.layers:
                files[f"residual_grad_{k}.npy"] = np.asarray(_host(g["layers"][k]["residual"]), dtype=np.float32)
    return files, att


def _rows_json(rows: list[int]) -> str:
    """rows.json, as mixlens-attn writes it: the positions of the rows, in order."""
    return '{"rows": [' + ", ".join(str(r) for r in rows) + "]}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mixlens", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="config.json + model.safetensors or its shards")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="comma-separated token ids")
    src.add_argument("--tokens-file", help="token ids as a 1-D int32/int64 .npy, or a B x L one of B sequences "
                                           "(outputs per sequence in seq_0000, ... and the dataset means)")
    src.add_argument("--text", help="text, tokenized with the model folder's tokenizer.json (or --tokenizer)")
    src.add_argument("--texts", help="a UTF-8 file of texts, one sequence per line: outputs per sequence "
                                     "in seq_0000, seq_0001, ... and the mean raw and rollout maps")
    src.add_argument("--image", help="a Vision Mamba classifier's input: a .png (pixels / 255, then "
                                     "ImageNet-normalized) or a height x width x 3 .npy (as stored)")
    p.add_argument("--normalize", action="store_true", help="--image: ImageNet-normalize a .npy of values in [0, 1]")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the model computes (cuda: the package's CUDA backend, float32)")
    p.add_argument("--tokenizer", help="a Hugging Face tokenizer.json (default: the model folder's)")
    p.add_argument("--out", required=True, help="output folder (replaced only if empty or a former output)")
    p.add_argument("--form", choices=["paper", "unified"], default="paper",
                   help="alpha_{k}.npy: the paper's alpha, or the whole block's unified form")
    p.add_argument("--layers", default="all", help="layers to analyse, 0-based (default all)")
    p.add_argument("--save-alpha", default="all", help="analysed layers whose alpha_{k}.npy is written")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="arithmetic (default float32)")
    p.add_argument("--rows", help="last or row positions (last,0,7): only those rows of every map, straight from "
                                  "the signals; no rollout")
    p.add_argument("--raw-range", choices=["tensor", "rows"],
                   help="--rows: raw_rows.npy normalized by each layer's whole-tensor range (tensor, the default: "
                        "a pass over every entry), or raw_rows_rowrange.npy by the rows' own range (rows)")
    p.add_argument("--method", choices=["raw", "rollout", "mamba-attr", "attn-grad", "grad-input", "lrp"],
                   help="also explain one logit: attribution.npy, target.json (and the whole rollout of "
                        "mamba-attr / attn-grad)")
    p.add_argument("--target-position", type=int, help="--method: the target logit's position (default: the last)")
    p.add_argument("--target-token", type=int, help="--method: the target logit's token (default: the argmax there)")
    p.add_argument("--start-layer", type=int, default=0, help="mamba-attr, attn-grad: the rollout's first layer")
    p.add_argument("--attn-grad-without-d", action="store_true",
                   help="attn-grad: the unified matrices without the skip D, as the authors' code")
    args = p.parse_args(argv)
    if args.raw_range is not None and args.rows is None:
        p.error("--raw-range is for --rows (raw_rows.npy's normalization)")
    if args.method is None and (args.target_position is not None or args.target_token is not None or
                                args.start_layer != 0 or args.attn_grad_without_d):
        p.error("--target-position, --target-token, --start-layer and --attn-grad-without-d are for --method")
    if args.attn_grad_without_d and args.method != "attn-grad":
        p.error("--attn-grad-without-d is for --method attn-grad")
    if args.normalize and args.image is None:
        p.error("--normalize is for --image")
    raw_range = args.raw_range or "tensor"
    raw_rows_file = "raw_rows_rowrange.npy" if raw_range == "rows" else "raw_rows.npy"
    try:
        tokenizer_file = _tokenizer_file(args)
        if tokenizer_file is not None:  # read (and checked) before any work
            mixlens.token_strings(tokenizer_file, [])
        texts = _texts(args) if args.text is not None or args.texts is not None else None
        model = mixlens.load(args.model, dtype=args.dtype)
        vision = isinstance(model, mixlens.VisionModel)
        if vision and args.image is None:
            raise mixlens.Error(f"--model '{args.model}' is a Vision Mamba classifier: give its input with --image "
                                "FILE (.png or .npy), not token ids or text")
        if args.image is not None and not vision:
            raise mixlens.Error(f"--image: the model in '{args.model}' is a {model.family} language model: give "
                                "--tokens, --tokens-file, --text or --texts")
        if vision and args.target_position is not None:
            raise mixlens.Error("--target-position is for the language models: a Vision Mamba's target is the class "
                                "logit of its head (give the class with --target-token)")
        if args.device != "cpu":
            model = model.to(args.device)
        layers = None if args.layers == "all" else _int_list(args.layers, "--layers")
        if args.save_alpha == "all":
            alpha: bool | list[int] = True
        elif args.save_alpha == "none":
            alpha = False
        else:
            alpha = _int_list(args.save_alpha, "--save-alpha")
        if vision:
            files, att = _vision(model, args, layers, alpha, raw_range, raw_rows_file)
            _write(args.out, files)
            print(f"model     {args.model} (Vision Mamba): {model.num_layers} layers, {model.num_classes} classes; "
                  f"image {args.image}, L = {model.sequence_length} positions; form {args.form}; "
                  f"{len(att.layers)} layer(s) analysed")
            print(f"wrote     {args.out}: " + ", ".join(files))
            return 0
        if texts:
            sequences, batch = _encode(texts, tokenizer_file, model.vocab_size, args), args.texts is not None
        else:
            sequences, batch = _tokens(args, model.vocab_size)
        files: dict[str, np.ndarray | str] = {}
        maps: dict[str, list[np.ndarray]] = {}  # per-sequence map file → its arrays, for the dataset means
        listing = []
        for n, tokens in enumerate(sequences):
            rows = None if args.rows is None else mixlens._core._resolve_rows(args.rows, len(tokens), False, -1, "--rows")
            att = model.attention(tokens, layers=layers, form=args.form, alpha=alpha, rows=rows, raw_range=raw_range)
            prefix = f"seq_{n:04d}/" if batch else ""
            files[prefix + "logits.npy"] = att.logits
            seq_maps: dict[str, np.ndarray] = {}
            if rows is None:
                for k, a in att.alpha.items():
                    files[prefix + f"alpha_{k}.npy"] = a
                if att.raw is not None:
                    seq_maps = {"raw.npy": att.raw, "rollout.npy": att.rollout}
            else:
                for k, a in att.alpha.items():
                    files[prefix + f"alpha_rows_{k}.npy"] = a
                if att.raw is not None:
                    seq_maps = {f"map_rows_{k}.npy": m for k, m in att.maps.items()}
                    seq_maps[raw_rows_file] = att.raw
                    files[prefix + "rows.json"] = _rows_json(rows)
            for name, m in seq_maps.items():
                files[prefix + name] = m
                maps.setdefault(name, []).append(_host(m))
            if tokenizer_file is not None:
                files[prefix + "tokens.json"] = _tokens_json(tokens, tokenizer_file)
            if args.method is not None:
                files.update({prefix + name: v
                              for name, v in _attribution(model, tokens, args, tokenizer_file, att.layers).items()})
            if batch:
                entry = {"folder": prefix[:-1], "length": len(tokens)}
                if args.texts is not None:
                    entry["text"] = texts[n][1]
                listing.append(entry)
        if batch:
            same_length = len({len(t) for t in sequences}) == 1
            if args.rows is None or same_length:  # rows of different lengths are different positions
                for name, ms in maps.items():
                    files[name[:-4] + "_mean.npy"] = _dataset_mean(ms)
                if args.rows is not None and maps:
                    files["rows.json"] = _rows_json(rows)
            files["sequences.json"] = _json_lines(listing)
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
