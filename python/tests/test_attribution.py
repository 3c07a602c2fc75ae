"""Model.attribute and Model.faithfulness: the recipes against the PyTorch references committed
with the checkpoints (tests/data/make_attribution_fixtures.py, make_gradient_fixtures.py), the
curves against direct forward passes and against mixlens-eval, and bad input."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import mixlens
from conftest import DATA

DEMO = DATA / "mamba_demo"
REF = DATA / "reference" / "mamba_demo"


@pytest.fixture(scope="module")
def demo64():
    return mixlens.load(DEMO, dtype=np.float64)


def tokens():
    return np.load(REF / "tokens_0.npy")


@pytest.mark.parametrize("method,start", [("mamba-attr", 0), ("mamba-attr", 2), ("attn-grad", 0), ("attn-grad", 2)])
def test_rollout_recipes_match_pytorch(demo64, method, start):
    a = demo64.attribute(tokens(), method, start_layer=start, matrix=True)
    position, token = np.load(REF / "attr_target.npy")
    assert (a.position, a.token, a.method) == (position, token, method)
    stem = f"attr_{method.replace('-', '_')}_start{start}"
    row, full = np.load(REF / f"{stem}.npy"), np.load(REF / f"{stem}_rollout.npy")
    assert a.scores.dtype == np.float64 and a.scores.shape == row.shape
    assert np.abs(a.scores - row).max() <= 1e-9 * np.abs(row).max()
    assert np.abs(a.matrix - full).max() <= 1e-9 * np.abs(full).max()


def test_lrp_and_grad_input_match_autograd(demo64):
    # Gradient × Input at the embedding output, the gradient from PyTorch autograd (exact, and with
    # MambaLRP's rules) in make_gradient_fixtures.py.
    safetensors = pytest.importorskip("safetensors.numpy")
    e = safetensors.load_file(str(DEMO / "model.safetensors"))["backbone.embeddings.weight"][tokens()].astype(np.float64)
    for method, grad in [("lrp", "grad_lrp_last"), ("grad-input", "grad_last")]:
        a = demo64.attribute(tokens(), method)
        assert [a.position, a.token] == np.load(REF / f"{grad}_target.npy").tolist()
        want = (np.load(REF / f"{grad}_embedding.npy").astype(np.float64) * e).sum(axis=1)
        assert np.abs(a.scores - want).max() <= 1e-5 * np.abs(want).max(), method  # the reference is stored in float32
        assert a.matrix is None
    b = demo64.attribute(tokens(), "lrp", target_position=20, target_token=7)
    assert (b.position, b.token) == (20, 7) and np.all(b.scores[21:] == 0)  # causal: nothing after the target


def test_attribute_follows_the_callers_framework_and_dtype():
    m = mixlens.load(DEMO)
    a = m.attribute(tokens().tolist(), "grad-input")
    assert a.scores.dtype == np.float32 and a.scores.shape == (len(tokens()),)
    assert a.value == pytest.approx(float(m.forward(tokens())[-1, a.token]), rel=1e-6)
    torch = pytest.importorskip("torch")
    t = m.attribute(torch.tensor(tokens()), "grad-input")
    assert isinstance(t.scores, torch.Tensor)
    np.testing.assert_array_equal(t.scores.numpy(), a.scores)
    without = m.attribute(tokens(), "attn-grad", attn_grad_without_d=True).scores
    assert np.abs(without - m.attribute(tokens(), "attn-grad").scores).max() > 1e-4


def test_faithfulness_curves_start_at_the_target_and_end_at_a_direct_forward(demo64):
    t = tokens()[:30]
    r = demo64.faithfulness(t, methods=["rollout", "random", "lrp"], steps=5, random_draws=2, target_position=25)
    assert r["position"] == 25 and sorted(r["methods"]) == ["lrp", "random", "rollout"]
    everything = np.zeros_like(t)
    everything[25] = t[25]  # every position but the target replaced by token 0
    last = demo64.forward(everything)[25, r["token"]]
    for name, m in r["methods"].items():
        for order in ("morf", "lerf"):
            assert m[order]["logit"].shape == (6,)
            assert m[order]["logit"][0] == pytest.approx(r["value"], rel=1e-12)
            assert m[order]["logit"][-1] == pytest.approx(last, rel=1e-12)
        assert m["delta_logit"] == pytest.approx(m["lerf"]["auc_logit"] - m["morf"]["auc_logit"], rel=1e-12)
        assert ("scores" in m) == (name != "random")


def test_faithfulness_matches_mixlens_eval(tmp_path):
    attn = os.environ.get("MIXLENS_ATTN")
    tool = pathlib.Path(attn).with_name("mixlens-eval") if attn else None
    if not tool or not tool.exists():
        pytest.skip("MIXLENS_ATTN (beside it mixlens-eval) is not set")
    out = tmp_path / "eval"
    subprocess.run([str(tool), "--model", str(DEMO), "--tokens-file", str(REF / "tokens_0.npy"), "--out", str(out),
                    "--steps", "4", "--methods", "raw,random,grad-input", "--random-draws", "2", "--mode", "remove"],
                   check=True, capture_output=True)
    want = json.loads((out / "faithfulness.json").read_text())["methods"]
    got = mixlens.load(DEMO).faithfulness(tokens(), methods=["raw", "random", "grad-input"], steps=4, random_draws=2,
                                         mode="remove")["methods"]
    for name in want:
        seq = want[name]["per_sequence"][0]
        for order in ("morf", "lerf"):
            np.testing.assert_array_equal(got[name][order]["logit"], seq[order]["logit"])
        assert got[name]["delta_probability"] == seq["delta_probability"]


def test_bad_input_names_the_argument(demo64):
    t = tokens()[:8]
    for call, words in [
        (lambda: demo64.attribute(t, "shap"), "method"),
        (lambda: demo64.attribute(t, "lrp", matrix=True), "matrix"),
        (lambda: demo64.attribute(t, "raw", attn_grad_without_d=True), "attn_grad_without_d"),
        (lambda: demo64.attribute(t, "mamba-attr", start_layer=4), "start_layer"),
        (lambda: demo64.attribute(t, "raw", target_position=8), "position"),
        (lambda: demo64.attribute([1, 2, 999], "raw"), "vocabulary"),
        (lambda: demo64.faithfulness(t, steps=0), "steps"),
        (lambda: demo64.faithfulness(t, mode="drop"), "mode"),
        (lambda: demo64.faithfulness(t, methods=[]), "methods"),
        (lambda: demo64.faithfulness(t, replace_token=256), "replace_token"),
        (lambda: demo64.faithfulness(t, methods=["raw"], attn_grad_without_d=True), "attn_grad_without_d"),
    ]:
        with pytest.raises(mixlens.Error, match=words):
            call()
