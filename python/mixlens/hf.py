"""mixlens.hf: the hidden attention of a live Hugging Face transformers model.

    import mixlens.hf
    att = mixlens.hf.attention(model, input_ids)          # model: MambaForCausalLM, FalconMambaForCausalLM,
    att.rollout, att.maps[3], att.logits                   #        Mamba2ForCausalLM (or their base models)

Forward hooks on every analysed layer's mixer capture what transformers' own forward computes: the
mixer's in_proj output (for Mamba: x, the conv input, and the gate z; for Mamba-2: z0, x0, z, xBC
and dt) and, as a check, Mamba's scan input u (x_proj's input) or Mamba-2's SSD output + D·u (the
gated norm's input). The library then computes each layer's branch from the captured projection
with the model's weights (conv, x_proj/dt_proj, Δ, B, C, the scan), checks it against the captured
signal, and forms the matrices, maps, raw attention and rollout exactly as :meth:`mixlens.Model.attention`
does, so that the result equals that of ``mixlens.load`` on the saved checkpoint. Nothing of the
forward pass is re-implemented in Python.

The weights reach the library through a checkpoint: :func:`load` saves the model with
``save_pretrained`` into a temporary folder and reads it with :func:`mixlens.load`. Pass the
returned model as ``mixlens_model`` to reuse it across calls (it must be made again when the
weights change).

A model on a CUDA device is analysed there when this mixlens has its CUDA backend
(:func:`mixlens.cuda_available`) and computes in float32 (float32, bfloat16 or float16 weights): the
captured tensors are handed to the library's kernels in place, and every result is a CUDA tensor
of the model's device. Otherwise (a float64 model, or no CUDA backend) the library computes on the
host from copies, and the results are moved to the model's device.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

import mixlens

_FAMILIES = {"mamba": "Mamba", "falcon_mamba": "Falcon-Mamba", "mamba2": "Mamba-2"}

# A captured signal further from the library's than this (max |a − b| / max |b|) means that the
# model's forward is not the one mixlens reads (custom code, or weights changed since `load`).
_TOLERANCE = {"float32": 1e-3, "float64": 1e-5}  # transformers computes some steps in float32


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency of every transformers model
        raise mixlens.Error("mixlens.hf needs torch (pip install torch)") from e
    return torch


def _family(model: Any) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _FAMILIES:
        raise mixlens.Error(
            "mixlens.hf: argument 'model': expected a transformers Mamba, Falcon-Mamba or Mamba-2 model "
            f"(config.model_type 'mamba', 'falcon_mamba' or 'mamba2'), got {type(model).__name__}"
            + (f" with model_type '{model_type}'" if model_type else ""))
    return model_type


def _layers(model: Any) -> list[Any]:
    base = getattr(model, "backbone", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise mixlens.Error(f"mixlens.hf: argument 'model': {type(model).__name__} has no backbone.layers")
    return list(layers)


def _dtype_name(model: Any) -> str:
    torch = _torch()
    return "float64" if next(model.parameters()).dtype == torch.float64 else "float32"


def _default_device(model: Any, dtype: str) -> str:
    """The model's CUDA device where the library can compute on it (float32, CUDA backend), else 'cpu'."""
    device = next(model.parameters()).device
    if device.type != "cuda" or dtype != "float32":
        return "cpu"
    index = 0 if device.index is None else device.index
    return f"cuda:{index}" if mixlens.cuda_available(index) else "cpu"


def load(model: Any, dtype: str | None = None, device: Any = None) -> mixlens.Model:
    """The mixlens model of a transformers model's current weights (default dtype: float64 for a
    float64 model, else float32): saved with ``save_pretrained`` into a temporary folder and read
    with :func:`mixlens.load`, which is then removed. device: where the library computes (default:
    the model's CUDA device where it can, see the module's docs, else 'cpu')."""
    _family(model)
    dtype = dtype or _dtype_name(model)
    device = _default_device(model, dtype) if device is None else device
    from transformers.utils import logging

    bar = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="mixlens-hf-") as folder:
            model.save_pretrained(folder, safe_serialization=True)
            return mixlens.load(folder, dtype=dtype, device=device)
    finally:
        if bar:
            logging.enable_progress_bar()


def _ids(torch: Any, input_ids: Any) -> Any:
    ids = input_ids if isinstance(input_ids, torch.Tensor) else torch.as_tensor(np.asarray(input_ids))
    if ids.dtype not in (torch.int32, torch.int64) or ids.ndim not in (1, 2) or ids.numel() == 0:
        raise mixlens.Error(
            "mixlens.hf.attention: argument 'input_ids': expected integer token ids of shape (L,) or (B, L) "
            f"with L > 0, got dtype {ids.dtype} and shape {tuple(ids.shape)}")
    return ids.reshape(1, -1) if ids.ndim == 1 else ids


class _Capture:
    """Forward hooks on the analysed layers' mixers, recording the projection and the check signal
    of every layer as (batch, rows, L) tensors."""

    def __init__(self, family: str, layers: list[Any], wanted: list[int]):
        self.projection: dict[int, Any] = {}
        self.check: dict[int, Any] = {}
        self.handles = []
        for k in wanted:
            mixer = layers[k].mixer
            self.handles.append(mixer.in_proj.register_forward_hook(self._keep(self.projection, k, output=True)))
            if family == "mamba2":  # the gated norm's input: SSD(u) + D·u
                self.handles.append(mixer.norm.register_forward_pre_hook(self._keep(self.check, k, output=False)))
            else:  # x_proj's input: the scan input u
                self.handles.append(mixer.x_proj.register_forward_pre_hook(self._keep(self.check, k, output=False)))

    @staticmethod
    def _keep(into: dict[int, Any], k: int, output: bool):
        def hook(module, args, result=None):
            t = result if output else args[0]
            into[k] = t.detach().transpose(-1, -2)  # (batch, L, rows) -> (batch, rows, L)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def attention(model: Any, input_ids: Any, layers: list[int] | None = None, form: str = "paper",
              alpha: bool | list[int] = False, reduction: str = "mean",
              mixlens_model: mixlens.Model | None = None) -> mixlens.Attention | list[mixlens.Attention]:
    """Runs the transformers model on input_ids ((L,) or (B, L) token ids) and returns, per sequence,
    a :class:`mixlens.Attention` with the model's logits and the hidden attention of `layers`
    (default all) in `form` ('paper' or 'unified'), as :meth:`mixlens.Model.attention` computes it
    (`alpha`, `reduction` as there). One sequence gives one Attention, B > 1 a list.
    `mixlens_model`: the result of :func:`load` for this model, reused (made here when None)."""
    torch = _torch()
    family = _family(model)
    ids = _ids(torch, input_ids)
    mm = mixlens_model if mixlens_model is not None else load(model)
    if mm.family != _FAMILIES[family]:
        raise mixlens.Error(f"mixlens.hf.attention: argument 'mixlens_model': expected a {_FAMILIES[family]} "
                            f"model (made by mixlens.hf.load from this model), got {mm.family}")
    all_layers = _layers(model)
    if len(all_layers) != mm.num_layers:
        raise mixlens.Error(f"mixlens.hf.attention: argument 'mixlens_model': expected {len(all_layers)} layers "
                            f"(the model's), got {mm.num_layers}")
    wanted = list(range(mm.num_layers)) if layers is None else sorted(set(int(k) for k in layers))
    for k in wanted:
        if not 0 <= k < mm.num_layers:
            raise mixlens.Error(f"mixlens.hf.attention: argument 'layers': expected layer indices in "
                                f"[0, {mm.num_layers}), got {k}")
    device = next(model.parameters()).device
    on_gpu = mm.device != "cpu"  # the library computes on mm's GPU: the captured tensors go there
    target = torch.device(mm.device) if on_gpu else torch.device("cpu")
    dtype = torch.float64 if mm.dtype == "float64" else torch.float32
    capture = _Capture(family, all_layers, wanted)
    was_training = model.training
    try:
        model.eval()  # transformers' training path may fuse the mixer into one kernel, past the hooks
        with torch.no_grad():
            logits = model(input_ids=ids.to(device)).logits
    finally:
        capture.close()
        model.train(was_training)

    def moved(t: Any) -> Any:  # to where the library computes, in its layout and dtype
        return t.to(device=target, dtype=dtype).contiguous()

    results = []
    for b in range(ids.shape[0]):
        projections = [moved(capture.projection[k][b]) for k in wanted]
        checks = [moved(capture.check[k][b]) for k in wanted]
        sequence_logits = moved(logits[b])
        if on_gpu:  # the library's kernels run on the legacy default stream: torch's work must be done
            torch.cuda.current_stream(target).synchronize()
        att, deviation = mm._attention_from_capture(wanted, projections, checks, sequence_logits, form, alpha,
                                                    reduction)
        for k, d in zip(wanted, deviation):
            if not d <= _TOLERANCE[mm.dtype]:
                signal = "the SSD output + D·u" if family == "mamba2" else "the scan input u"
                raise mixlens.Error(
                    f"mixlens.hf.attention: layer {k}: {signal} the model computed differs from the library's by "
                    f"{d:.3g} (relative; tolerance {_TOLERANCE[mm.dtype]:g}): the model's forward is not the one "
                    "mixlens reads (custom code, or weights changed since mixlens_model was made)")
        results.append(_Moved(att, device) if device != target else att)
    return results[0] if len(results) == 1 else results


class _Moved:
    """An Attention whose arrays live on another torch device (same fields as mixlens.Attention)."""

    def __init__(self, att: mixlens.Attention, device: Any):
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.logits, self.raw, self.rollout = move(att.logits), move(att.raw), move(att.rollout)
        self.layers, self.form = att.layers, att.form
        self.maps = {k: move(v) for k, v in att.maps.items()}
        self.alpha = {k: move(v) for k, v in att.alpha.items()}

    def __repr__(self) -> str:
        return f"<mixlens.Attention {self.form}, {len(self.layers)} layer(s), on {self.logits.device}>"

