"""mixlens.load on Vision Mamba classifiers (mixlens.VisionModel): logits, the CLS rows of the
combined matrices and every attribution method against the references the PyTorch Vim code made
(tests/data/make_vim_fixtures.py, make_vim_gradient_fixtures.py), the whole maps against
mixlens-attn --image, and bad input."""

import json
import os
import subprocess

import numpy as np
import pytest

import mixlens
from conftest import DATA

VIM = DATA / "vim_mid_odd"
REF = DATA / "reference" / "vim_mid_odd"


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def vim():
    return mixlens.load(VIM)


@pytest.fixture(scope="module")
def image():
    return np.load(REF / "image.npy")


def test_load_tells_a_classifier(vim):
    assert isinstance(vim, mixlens.VisionModel) and vim.family == "Vision Mamba"
    assert (vim.num_layers, vim.num_classes, vim.sequence_length, vim.cls_index) == (2, 7, 10, 4)
    assert vim.image_shape == (12, 12, 3) and vim.config["grid"] == (3, 3) and vim.device == "cpu"
    assert mixlens.load(DATA / "vim_mean_nopos").cls_index is None


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-5)])
def test_logits_and_cls_rows_reproduce_the_reference(image, dtype, tol):
    vim = mixlens.load(VIM, dtype=dtype)
    logits = vim.forward(image)
    assert logits.dtype == np.dtype(dtype) and logits.shape == (7,)
    assert relative(logits, np.load(REF / "logits.npy")) < tol
    att = vim.attention(image, rows="cls", alpha=True)
    assert att.rows == [4] and att.rollout is None and att.logits.shape == (7,)
    scale = 0.5 if vim.config["divide_out"] else 1.0  # the block's own combination
    for k in att.layers:
        want = scale * np.load(REF / f"layer{k}_cls_row.npy")  # M_f + J·M_b·J per channel
        assert att.alpha[k].shape == (32, 1, 10)
        assert relative(att.alpha[k][:, 0, :], want) < tol


def test_whole_maps_hold_the_cls_rows(vim, image):
    full, rows = vim.attention(image, alpha=True), vim.attention(image, rows=[0, "cls"], alpha=True)
    assert full.rollout.shape == (10, 10) and rows.rows == [0, 4]
    for k in full.layers:
        np.testing.assert_allclose(full.maps[k][[0, 4]], rows.maps[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(full.alpha[k][:, [0, 4]], rows.alpha[k], rtol=0, atol=1e-6)
    unified = vim.attention(image, form="unified", alpha=False)
    assert not unified.alpha and relative(unified.maps[0], full.maps[0]) > 1e-3  # the gate and conv act


@pytest.mark.parametrize("method, start, without_d", [("grad-input", 0, False), ("lrp", 0, False),
                                                      ("mamba-attr", 0, False), ("mamba-attr", 1, False),
                                                      ("attn-grad", 0, False), ("attn-grad", 1, False)])
def test_attributions_reproduce_the_reference(image, method, start, without_d):
    vim = mixlens.load(VIM, dtype="float64")
    rolled = method in ("mamba-attr", "attn-grad")
    a = vim.attribute(image, method, start_layer=start, matrix=rolled, attn_grad_without_d=without_d)
    name = method.replace("-", "_") + (f"_start{start}" if rolled else "")
    target = np.load(REF / "vgrad_argmax_target.npy")
    assert (a.position, a.token) == (int(target[0]), int(target[1])) and a.method == method
    assert relative(a.scores, np.load(REF / f"vattr_{name}.npy")) < 1e-5
    if rolled:
        assert a.matrix.shape == (10, 10)
        assert relative(a.matrix, np.load(REF / f"vattr_{name}_rollout.npy")) < 1e-5
    assert abs(a.value - vim.forward(image)[a.token]) < 1e-9


@pytest.mark.parametrize("rule, tag", [("gradient", "argmax"), ("lrp", "lrp_argmax")])
def test_gradients_equal_autograd(image, rule, tag):
    vim = mixlens.load(VIM, dtype="float64")
    g = vim.gradients(image, rule=rule, signals=["embedding", "residual", "u", "delta", "b", "c", "ssm_out"])
    assert [g["position"], g["token"]] == np.load(REF / f"vgrad_{tag}_target.npy").tolist()
    assert relative(g["embedding"], np.load(REF / f"vgrad_{tag}_embedding.npy")) < 1e-12
    checked = 0
    for k in range(vim.num_layers):
        for name, got in g["layers"][k].items():  # residual, and u_f, u_b, delta_f, ... per branch
            file = REF / f"vgrad_{tag}_layer{k}_{name}.npy"
            if not file.exists():
                continue
            want = np.load(file)
            got = got.reshape(-1, got.shape[-1]) if got.ndim == 3 else got  # B, C: 1 x N x L
            assert relative(got, want) < 1e-12, (k, name)
            checked += 1
    assert checked >= (22 if rule == "gradient" else 10)
    with pytest.raises(mixlens.Error, match=r"argument 'target_class'"):
        vim.gradients(image, target_class=7)
    with pytest.raises(mixlens.Error, match=r"argument 'signals'"):
        vim.gradients(image, signals=["alpha"])


def test_raw_and_rollout_rows_and_a_chosen_class(vim, image):
    full = vim.attention(image, alpha=False)
    assert np.allclose(vim.attribute(image, "rollout").scores, full.rollout[4], atol=1e-7)
    assert np.allclose(vim.attribute(image, "raw").scores, full.raw[4], atol=1e-7)
    a = vim.attribute(image, "grad-input", target_class=3)
    assert a.token == 3 and abs(a.value - vim.forward(image)[3]) < 1e-6


def test_png_input_is_normalized_as_mixlens_attn_does(vim):
    pixels = mixlens.read_image(DATA / "images" / "rgb8.png")  # RGB / 255
    assert pixels.shape == vim.image_shape and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, np.load(DATA / "images" / "rgb8.npy"))
    normalized = ((pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).astype(np.float32)
    assert relative(vim.forward(pixels, normalize=True), vim.forward(normalized)) < 1e-6
    assert relative(vim.attention(pixels, normalize=True, alpha=False).rollout,
                    vim.attention(normalized, alpha=False).rollout) < 1e-6
    with pytest.raises(mixlens.Error, match="truncated.png"):
        mixlens.read_image(DATA / "images" / "truncated.png")


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_maps_match_mixlens_attn(tmp_path, vim, image):
    np.save(tmp_path / "image.npy", image)
    out = tmp_path / "out"
    subprocess.run([os.environ["MIXLENS_ATTN"], "--model", str(VIM), "--image", str(tmp_path / "image.npy"),
                    "--out", str(out), "--save-alpha", "all", "--no-png"], check=True, capture_output=True)
    att = vim.attention(image, alpha=True)
    assert relative(att.raw, np.load(out / "raw.npy")) < 1e-6
    assert relative(att.rollout, np.load(out / "rollout.npy")) < 1e-6
    assert relative(att.logits, np.load(out / "logits.npy")) < 1e-6
    for k in att.layers:
        assert relative(att.alpha[k], np.load(out / f"alpha_{k}.npy")) < 1e-6


def test_bad_input_is_named(vim, image):
    cases = [(lambda: vim.forward(image[:8]), r"argument 'image': expected shape \(12, 12, 3\)"),
             (lambda: vim.forward(image[..., 0]), r"argument 'image': expected 3 dimensions"),
             (lambda: vim.attention(image, rows=10), r"rows"),
             (lambda: vim.attention(image, layers=[2]), r"argument 'layers'"),
             (lambda: vim.attention(image, form="dense"), r"argument 'form'"),
             (lambda: vim.attribute(image, "saliency"), r"argument 'method'"),
             (lambda: vim.attribute(image, "lrp", target_class=7), r"argument 'target_class': expected a class in \[0, 7\)"),
             (lambda: vim.attribute(image, "lrp", start_layer=2), r"argument 'start_layer'"),
             (lambda: vim.attribute(image, "lrp", matrix=True), r"argument 'matrix'"),
             (lambda: mixlens.load(VIM, device="cuda"), r"argument 'device'")]
    for call, message in cases:
        with pytest.raises(mixlens.Error, match=message):
            call()
    assert json.loads(json.dumps(vim.config))["num_classes"] == 7
