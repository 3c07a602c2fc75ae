"""Model.gradients against torch.autograd on the committed checkpoints (tests/data/make_gradient_fixtures.py):
the gradients of one logit with respect to the embedding, every layer's residual stream, u, Δ, B, C and
the scan output, exact and under MambaLRP's rules, and bad input."""

import os

import numpy as np
import pytest

import mixlens
from conftest import DATA

REF = DATA / "reference"
SIGNALS = ["embedding", "residual", "u", "delta", "b", "c", "ssm_out"]
# (checkpoint, sequence, target tag, layers with fixtures)
CASES = [("mamba_demo", 0, "last", [0, 3]), ("mamba_tied_fp32", 2, "mid", [0, 1]),
         ("falcon_mamba_fp32", 1, "mid", [0, 1]), ("mamba2_tied_fp32", 1, "mid", [0, 1])]


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name, seq, tag, layers", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("rule", ["gradient", "lrp"])
def test_gradients_equal_autograd(name, seq, tag, layers, rule):
    model = mixlens.load(DATA / name, dtype="float64")
    tokens = np.load(REF / name / f"tokens_{seq}.npy")
    prefix = f"grad_{'lrp_' if rule == 'lrp' else ''}{tag}"
    position, token = (int(v) for v in np.load(REF / name / f"{prefix}_target.npy"))
    g = model.gradients(tokens, target_position=position, target_token=token, rule=rule, signals=SIGNALS)
    assert (g["position"], g["token"]) == (position, token) and len(g["layers"]) == model.num_layers
    assert abs(g["value"] - model.forward(tokens)[position, token]) < 1e-9
    assert relative(g["embedding"], np.load(REF / name / f"{prefix}_embedding.npy")) < 1e-6
    checked = 0
    for k in layers:
        for signal in SIGNALS[1:]:
            file = REF / name / f"{prefix}_layer{k}_{signal}.npy"
            if not file.exists():
                continue
            want, got = np.load(file), g["layers"][k][signal]
            if signal in ("b", "c"):  # groups x N x L here; the fixtures' Mamba B, C are (L, N)
                got = got.reshape(-1, got.shape[-1])
                want = want.T if want.shape == got.shape[::-1] and want.shape != got.shape else want
            assert got.shape == want.shape, (k, signal)
            assert relative(got, want) < 1e-6, (k, signal)
            checked += 1
    assert checked >= 2 * len(layers)


def test_gradients_default_signals_dtype_and_errors():
    model = mixlens.load(DATA / "mamba_demo")
    tokens = np.load(REF / "mamba_demo" / "tokens_0.npy")[:12]
    g = model.gradients(tokens)
    assert g["embedding"].dtype == np.float32 and g["embedding"].shape == (12, 64)
    assert all(sorted(layer) == ["residual"] for layer in g["layers"])
    a = model.attribute(tokens, "grad-input")
    assert (g["position"], g["token"]) == (a.position, a.token)
    for call, message in [(lambda: model.gradients(tokens, rule="saliency"), "argument 'rule'"),
                          (lambda: model.gradients(tokens, signals=["alpha"]), "argument 'signals'"),
                          (lambda: model.gradients(tokens, target_position=12),
                           r"argument 'target_position': expected a position below the length 12"),
                          (lambda: model.gradients(tokens, target_token=256),
                           r"argument 'target_token': expected a token below the vocabulary size 256"),
                          (lambda: model.gradients([]), "token")]:
        with pytest.raises(mixlens.Error, match=message):
            call()
