import os
import subprocess

import numpy as np
import pytest

import mixlens
import reference
from conftest import DATA

DEMO = DATA / "mamba_demo"
REF = DATA / "reference"


def demo_tokens():
    return np.load(REF / "mamba_demo" / "tokens_0.npy")


@pytest.fixture(scope="module")
def demo():
    return mixlens.load(DEMO)


def test_demo_reproduces_reference_logits(demo):
    assert (demo.family, demo.num_layers, demo.vocab_size, demo.dtype) == ("Mamba", 4, 256, "float32")
    assert demo.config["intermediate_size"] == 128 and demo.config["layout"] == "Hugging Face"
    logits = demo.forward(demo_tokens())
    want = np.load(REF / "mamba_demo" / "logits_0.npy")
    assert logits.shape == want.shape and logits.dtype == np.float32
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5)


def test_double_precision_model():
    m = mixlens.load(str(DEMO), dtype=np.float64)
    logits = m.forward(demo_tokens().tolist())
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, np.load(REF / "mamba_demo" / "logits_0.npy"), rtol=0, atol=1e-5)


FIXTURES = sorted(p.name for p in REF.iterdir() if p.is_dir() and (p / "logits_0.npy").exists())


@pytest.mark.parametrize("name", FIXTURES)
def test_every_family_reproduces_transformers(name):
    m = mixlens.load(DATA / name)
    for k in range(3):
        if not (REF / name / f"tokens_{k}.npy").exists():
            break
        want = np.load(REF / name / f"logits_{k}.npy")
        got = m.forward(np.load(REF / name / f"tokens_{k}.npy"))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), name  # mixlens-attn's limit


def test_attention_maps_raw_and_rollout(demo):
    tokens = demo_tokens()[:24]
    att = demo.attention(tokens)
    L = len(tokens)
    assert att.layers == [0, 1, 2, 3] and att.form == "paper"
    assert sorted(att.alpha) == [0, 1, 2, 3] and att.alpha[0].shape == (128, L, L)
    np.testing.assert_allclose(att.logits, demo.forward(tokens), rtol=0, atol=1e-6)
    raws = []
    for k in att.layers:
        a = att.alpha[k].astype(np.float64)
        assert np.all(np.triu(a, 1) == 0)
        np.testing.assert_allclose(att.maps[k], a.mean(axis=0), rtol=1e-5, atol=1e-6)
        raws.append((a.mean(axis=0) - a.min()) / (a.max() - a.min()))
    np.testing.assert_allclose(att.raw, np.mean(raws, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(att.rollout, reference.rollout([att.maps[k].astype(np.float64) for k in att.layers]),
                               rtol=1e-4, atol=1e-6)


def test_attention_options(demo):
    tokens = demo_tokens()[:16]
    unified = demo.attention(tokens, layers=[2, 0, 2], form="unified", alpha=[2])
    assert unified.layers == [0, 2] and list(unified.alpha) == [2] and sorted(unified.maps) == [0, 2]
    assert unified.alpha[2].shape == (128, 16, 16)
    none = demo.attention(tokens, layers=[], alpha=False)
    assert none.raw is None and none.rollout is None and none.alpha == {}
    absolute = demo.attention(tokens, layers=[1], alpha=True, reduction="abs_mean")
    np.testing.assert_allclose(absolute.maps[1], np.abs(absolute.alpha[1]).mean(axis=0), rtol=1e-5, atol=1e-6)


def test_mamba2_attention_is_per_head():
    m = mixlens.load(DATA / "mamba2_tied_fp32")
    tokens = np.load(REF / "mamba2_tied_fp32" / "tokens_0.npy")
    att = m.attention(tokens, layers=[0])
    heads = m.config["num_heads"]
    assert m.family == "Mamba-2" and att.alpha[0].shape == (heads, len(tokens), len(tokens))
    unified = m.attention(tokens, layers=[0], form="unified")
    assert unified.alpha[0].shape[0] == heads * m.config["head_dim"]


def test_model_errors_name_the_argument(demo):
    tokens = demo_tokens()
    for call, name in [(lambda: demo.forward([0.5, 1.0]), "tokens"),
                       (lambda: demo.forward(np.zeros((2, 3), np.int64)), "tokens"),
                       (lambda: demo.attention(tokens, layers=[4]), "layers"),
                       (lambda: demo.attention(tokens, form="dense"), "form"),
                       (lambda: demo.attention(tokens, layers=[0], alpha=[1]), "alpha"),
                       (lambda: demo.attention(tokens, reduction="max"), "reduction"),
                       (lambda: mixlens.load(DEMO, dtype="int8"), "dtype")]:
        with pytest.raises(mixlens.Error, match=f"'{name}'"):
            call()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        demo.forward([300])
    with pytest.raises(ValueError, match="no tokens"):
        demo.forward([])
    with pytest.raises(ValueError, match="does not exist"):
        mixlens.load(DATA / "no_such_model")


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_attention_matches_mixlens_attn(tmp_path, demo):
    tokens_file = REF / "mamba_demo" / "tokens_0.npy"
    for form in ("paper", "unified"):
        out = tmp_path / form
        subprocess.run([os.environ["MIXLENS_ATTN"], "--model", str(DEMO), "--tokens-file", str(tokens_file),
                        "--out", str(out), "--form", form, "--layers", "0,3", "--no-png"],
                       check=True, capture_output=True)
        att = demo.attention(np.load(tokens_file), layers=[0, 3], form=form)
        for name, got in [("logits", att.logits), ("raw", att.raw), ("rollout", att.rollout),
                          ("alpha_0", att.alpha[0]), ("alpha_3", att.alpha[3])]:
            want = np.load(out / f"{name}.npy")
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=name)
