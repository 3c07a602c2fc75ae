import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mixlens
from conftest import DATA

TOKENS = DATA / "reference" / "mamba_demo" / "tokens_0.npy"
DEMO = DATA / "mamba_demo"


def run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(mixlens.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    return subprocess.run([sys.executable, "-m", "mixlens", *args], capture_output=True, text=True, env=env)


def test_cli_writes_what_attention_returns(tmp_path):
    out = tmp_path / "attn"
    r = run("--model", str(DATA / "mamba_demo"), "--tokens-file", str(TOKENS), "--out", str(out),
            "--layers", "1,2", "--save-alpha", "2", "--form", "unified")
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(out))
    assert names == ["alpha_2.npy", "logits.npy", "mixlens-attn.manifest", "raw.npy", "rollout.npy", "tokens.json"]
    att = mixlens.load(DATA / "mamba_demo").attention(np.load(TOKENS), layers=[1, 2], form="unified", alpha=[2])
    np.testing.assert_array_equal(np.load(out / "alpha_2.npy"), att.alpha[2])
    np.testing.assert_array_equal(np.load(out / "rollout.npy"), att.rollout)
    # A former output is replaced; a folder with other files is refused.
    r = run("--model", str(DATA / "mamba_demo"), "--tokens", "1,2,3", "--out", str(out), "--layers", "0")
    assert r.returncode == 0, r.stderr
    assert np.load(out / "logits.npy").shape == (3, 256) and np.load(out / "alpha_0.npy").shape == (128, 3, 3)
    assert not (out / "alpha_2.npy").exists()
    (out / "notes.txt").write_text("mine")
    r = run("--model", str(DATA / "mamba_demo"), "--tokens", "1,2,3", "--out", str(out))
    assert r.returncode == 1 and "notes.txt" in r.stderr
    assert (out / "notes.txt").exists()


def test_cli_usage_and_input_errors(tmp_path):
    assert run("--model", str(DATA / "mamba_demo")).returncode == 2
    r = run("--model", str(DATA / "mamba_demo"), "--tokens", "1,x", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "--tokens" in r.stderr
    r = run("--model", str(DATA / "mamba_demo"), "--tokens", "999", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "vocabulary" in r.stderr
    assert not (tmp_path / "o").exists()


def test_cli_text_is_tokenized_with_the_model_folders_tokenizer(tmp_path):
    out = tmp_path / "text"
    r = run("--model", str(DEMO), "--text", "Hi, é!", "--out", str(out), "--layers", "0,2")
    assert r.returncode == 0, r.stderr
    ids = list("Hi, é!".encode("utf-8"))  # the demo's byte-level tokenizer: one token per byte
    tokens = json.loads((out / "tokens.json").read_text(encoding="utf-8"))
    assert [t["id"] for t in tokens] == ids
    assert [t["text"] for t in tokens] == ["H", "i", ",", " ", "\ufffd", "\ufffd", "!"]  # é is two bytes
    att = mixlens.load(DEMO).attention(np.asarray(ids), layers=[0, 2])
    np.testing.assert_array_equal(np.load(out / "logits.npy"), att.logits)
    np.testing.assert_array_equal(np.load(out / "rollout.npy"), att.rollout)


def test_cli_texts_writes_each_sequence_and_the_mean(tmp_path):
    lines = ["The cat sat.", "A dog", "Mamba reads bytes here"]
    (tmp_path / "texts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "many"
    r = run("--model", str(DEMO), "--texts", str(tmp_path / "texts.txt"), "--out", str(out), "--save-alpha", "none")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["mixlens-attn.manifest", "raw_mean.npy", "rollout_mean.npy", "seq_0000",
                                       "seq_0001", "seq_0002", "sequences.json"]
    model = mixlens.load(DEMO)
    raws = []
    for n, line in enumerate(lines):
        seq = out / f"seq_{n:04d}"
        assert sorted(os.listdir(seq)) == ["logits.npy", "mixlens-attn.manifest", "raw.npy", "rollout.npy", "tokens.json"]
        ids = list(line.encode())
        assert [t["id"] for t in json.loads((seq / "tokens.json").read_text())] == ids
        att = model.attention(np.asarray(ids), alpha=False)
        np.testing.assert_array_equal(np.load(seq / "raw.npy"), att.raw)
        raws.append(att.raw)
    listing = json.loads((out / "sequences.json").read_text())
    assert listing == [{"folder": f"seq_{n:04d}", "length": len(line), "text": line} for n, line in enumerate(lines)]
    # Entry (i, j) of the mean: over the sequences that have position max(i, j).
    mean = np.load(out / "raw_mean.npy")
    n = max(len(line) for line in lines)
    assert mean.shape == (n, n)
    np.testing.assert_allclose(mean[:5, :5], np.mean([m[:5, :5] for m in raws], axis=0), rtol=1e-6)
    np.testing.assert_allclose(mean[15:, :], raws[2][15:, :], rtol=1e-6)  # only the longest has rows 15+
    # The folder of folders is a former output: a single --text run replaces it.
    r = run("--model", str(DEMO), "--text", "ok", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert not (out / "seq_0000").exists() and (out / "tokens.json").exists()


def test_cli_text_errors(tmp_path):
    r = run("--model", str(DEMO), "--text", "  ", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "--text: the text is empty" in r.stderr
    (tmp_path / "t.txt").write_text("one\n\nthree\n")
    r = run("--model", str(DEMO), "--texts", str(tmp_path / "t.txt"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "t.txt' line 2: the text is empty" in r.stderr
    # A model folder without tokenizer.json.
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(DEMO / f, bare / f)
    r = run("--model", str(bare), "--text", "hello", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "has no tokenizer.json; name one with --tokenizer FILE" in r.stderr
    r = run("--model", str(bare), "--text", "hello", "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path / "no.json"))
    assert r.returncode == 1 and "--tokenizer: cannot open tokenizer file" in r.stderr and "no.json" in r.stderr
    # A tokenizer with ids beyond the model's 256.
    big = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"hello": 300, "[UNK]": 0}, "unk_token": "[UNK]"},
           "pre_tokenizer": {"type": "Whitespace"}, "added_tokens": []}
    (tmp_path / "big.json").write_text(json.dumps(big))
    r = run("--model", str(bare), "--text", "hello", "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path / "big.json"))
    assert r.returncode == 1 and "token 'hello' (id 300) at position 0 is outside the model's vocabulary [0, 256)" in r.stderr
    # A malformed tokenizer.json is named with the field, before any work.
    (tmp_path / "bad.json").write_text('{"model": {"vocab": [1, 2]}}')
    r = run("--model", str(bare), "--tokens", "1,2", "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path / "bad.json"))
    assert r.returncode == 1 and "bad.json': field 'model.vocab[0]': expected [token, score]" in r.stderr
    assert run("--model", str(DEMO), "--text", "a", "--tokens", "1", "--out", str(tmp_path / "o")).returncode == 2
    assert not (tmp_path / "o").exists()


def test_token_strings_agree_with_tokenizers_decode():
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(DEMO / "tokenizer.json"))
    ids = list(range(256))
    assert mixlens.token_strings(str(DEMO / "tokenizer.json"), ids) == [tok.decode([i]) for i in ids]
    assert mixlens.token_strings(str(DEMO / "tokenizer.json"), [256]) == ["<id 256>"]
    with pytest.raises(mixlens.Error, match="cannot open tokenizer file"):
        mixlens.token_strings(str(DEMO / "none.json"), [1])


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_tokens_json_matches_mixlens_attn(tmp_path):
    ids = "0," + ",".join(str(i) for i in range(1, 256, 7))
    r = run("--model", str(DEMO), "--tokens", ids, "--out", str(tmp_path / "py"), "--layers", "0")
    assert r.returncode == 0, r.stderr
    subprocess.run([os.environ["MIXLENS_ATTN"], "--model", str(DEMO), "--tokens", ids, "--out", str(tmp_path / "cc"),
                    "--layers", "0", "--no-png"], check=True, capture_output=True)
    assert (tmp_path / "py" / "tokens.json").read_bytes() == (tmp_path / "cc" / "tokens.json").read_bytes()


TOKEN_FILES = DATA / "tokens"  # tests/data/make_token_files.py


def test_cli_tokens_file_batch_writes_each_sequence_and_the_means(tmp_path):
    out = tmp_path / "batch"
    r = run("--model", str(DEMO), "--tokens-file", str(TOKEN_FILES / "batch_3x20.npy"), "--out", str(out),
            "--save-alpha", "none", "--layers", "0,3")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["mixlens-attn.manifest", "raw_mean.npy", "rollout_mean.npy", "seq_0000",
                                       "seq_0001", "seq_0002", "sequences.json"]
    batch = np.load(TOKEN_FILES / "batch_3x20.npy")
    model = mixlens.load(DEMO)
    raws, rollouts = [], []
    for n, tokens in enumerate(batch):
        seq = out / f"seq_{n:04d}"
        assert sorted(os.listdir(seq)) == ["logits.npy", "mixlens-attn.manifest", "raw.npy", "rollout.npy", "tokens.json"]
        att = model.attention(tokens, layers=[0, 3], alpha=False)
        np.testing.assert_array_equal(np.load(seq / "raw.npy"), att.raw)
        raws.append(att.raw)
        rollouts.append(att.rollout)
    np.testing.assert_allclose(np.load(out / "raw_mean.npy"), np.mean(raws, axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.load(out / "rollout_mean.npy"), np.mean(rollouts, axis=0), rtol=1e-6)
    assert json.loads((out / "sequences.json").read_text()) == [{"folder": f"seq_{n:04d}", "length": 20} for n in range(3)]
    # A (1, L) file is one sequence in --out itself.
    r = run("--model", str(DEMO), "--tokens-file", str(TOKEN_FILES / "one_row.npy"), "--out", str(out), "--layers", "0")
    assert r.returncode == 0, r.stderr
    assert not (out / "seq_0000").exists() and (out / "raw.npy").exists()


@pytest.mark.parametrize("name, message", [
    ("zero_rows.npy", "shape (0, 5) holds no sequence"),
    ("no_tokens.npy", "shape (3, 0): the sequences hold no tokens"),
    ("float.npy", "dtype float32 (expected int32 or int64)"),
    ("three_d.npy", "expected a 1-D array of token ids or a B x L array of B sequences, got shape (2, 3, 4)"),
    ("ragged.npy", "an object array (sequences of different lengths?) holds no token ids"),
    ("batch_bad_token.npy", "sequence 2: token 300 at position 7 is outside the vocabulary [0, 256)"),
])
def test_cli_bad_token_files(tmp_path, name, message):
    r = run("--model", str(DEMO), "--tokens-file", str(TOKEN_FILES / name), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and message in r.stderr and name in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_rows_are_the_rows_of_the_whole_maps():
    model = mixlens.load(DEMO)
    tokens = np.load(TOKENS)
    full = model.attention(tokens)
    for form in ("paper", "unified"):
        full = model.attention(tokens, form=form)
        att = model.attention(tokens, form=form, rows="last,0,7")
        assert att.rows == [0, 7, len(tokens) - 1] and att.rollout is None and att.raw_range == "tensor"
        for k in full.maps:
            np.testing.assert_allclose(att.maps[k], full.maps[k][att.rows], rtol=1e-6, atol=1e-6 * abs(full.maps[k]).max())
            np.testing.assert_allclose(att.alpha[k], full.alpha[k][:, att.rows], rtol=1e-6,
                                       atol=1e-6 * abs(full.alpha[k]).max())
        np.testing.assert_allclose(att.raw, full.raw[att.rows], rtol=1e-6, atol=1e-6)
    # The rows' own range: a different normalization of the same map rows.
    own = model.attention(tokens, rows=[3], raw_range="rows", alpha=False)
    assert own.raw_range == "rows" and own.raw.shape == (1, len(tokens))
    assert model.attention(tokens, rows=5).rows == [5]


@pytest.mark.parametrize("rows, message", [
    ("", "rows: expected last, cls or a comma-separated list of row positions, got an empty list"),
    ([], "got an empty list"),
    ("48", "rows: row 48 is outside the valid range [0, 48)"),
    ([-1], "row -1 is outside the valid range [0, 48)"),
    ("cls", "the CLS position is Vision Mamba's; a language model has none"),
    ("x", "'x' is not last, cls or a row position"),
])
def test_rows_errors(rows, message):
    with pytest.raises(mixlens.Error, match="rows") as e:
        mixlens.load(DEMO).attention(np.load(TOKENS), rows=rows)
    assert message in str(e.value)
    with pytest.raises(mixlens.Error, match="raw_range"):
        mixlens.load(DEMO).attention(np.load(TOKENS), rows="last", raw_range="all")


def test_cli_rows(tmp_path):
    out = tmp_path / "rows"
    r = run("--model", str(DEMO), "--tokens-file", str(TOKEN_FILES / "batch_3x20.npy"), "--out", str(out),
            "--rows", "last,0,7", "--layers", "0,2", "--save-alpha", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["map_rows_0_mean.npy", "map_rows_2_mean.npy", "mixlens-attn.manifest",
                                       "raw_rows_mean.npy", "rows.json", "seq_0000", "seq_0001", "seq_0002",
                                       "sequences.json"]
    assert sorted(os.listdir(out / "seq_0001")) == ["alpha_rows_2.npy", "logits.npy", "map_rows_0.npy", "map_rows_2.npy",
                                                    "mixlens-attn.manifest", "raw_rows.npy", "rows.json", "tokens.json"]
    assert (out / "rows.json").read_text() == '{"rows": [0, 7, 19]}\n'
    model = mixlens.load(DEMO)
    batch = np.load(TOKEN_FILES / "batch_3x20.npy")
    raws = [model.attention(t, layers=[0, 2], alpha=False).raw[[0, 7, 19]] for t in batch]
    np.testing.assert_allclose(np.load(out / "seq_0002" / "raw_rows.npy"), raws[2], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.load(out / "raw_rows_mean.npy"), np.mean(raws, axis=0), rtol=1e-6, atol=1e-7)
    r = run("--model", str(DEMO), "--tokens", "1,2,3", "--out", str(tmp_path / "rr"), "--rows", "1", "--raw-range", "rows")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rr" / "raw_rows_rowrange.npy").exists() and not (tmp_path / "rr" / "rollout.npy").exists()
    for args, code, message in [(["--rows", ""], 1, "--rows: expected last, cls or a comma-separated list"),
                                (["--rows", "3"], 1, "--rows: row 3 is outside the valid range [0, 3)"),
                                (["--rows", "cls"], 1, "--rows cls: the CLS position is Vision Mamba's"),
                                (["--raw-range", "rows"], 2, "--raw-range is for --rows")]:
        r = run("--model", str(DEMO), "--tokens", "1,2,3", "--out", str(tmp_path / "o"), *args)
        assert r.returncode == code and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_mixlens_attn_batch_and_rows_match_python(tmp_path):
    tokens = str(TOKEN_FILES / "batch_3x20.npy")
    common = ["--model", str(DEMO), "--tokens-file", tokens, "--layers", "1,3"]
    for extra in ([], ["--rows", "last,2"]):
        r = run(*common, "--out", str(tmp_path / "py"), "--save-alpha", "3", *extra)
        assert r.returncode == 0, r.stderr
        subprocess.run([os.environ["MIXLENS_ATTN"], *common, "--out", str(tmp_path / "cc"), "--save-alpha", "3",
                        "--no-png", *extra], check=True, capture_output=True)
        py = sorted(os.listdir(tmp_path / "py"))
        cc = set(os.listdir(tmp_path / "cc"))
        assert set(py) <= cc and cc - set(py) <= {"attribution_mean.npy"}
        for n in range(3):
            seq = f"seq_{n:04d}"
            for name in os.listdir(tmp_path / "py" / seq):
                if name.endswith(".npy"):
                    a, b = np.load(tmp_path / "py" / seq / name), np.load(tmp_path / "cc" / seq / name)
                    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, abs(b).max()), err_msg=name)
        for name in ("sequences.json", "rows.json"):
            if (tmp_path / "py" / name).exists():
                assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cc" / name).read_bytes()
    # mixlens-attn: the rows of its own whole maps, and an empty --rows.
    subprocess.run([os.environ["MIXLENS_ATTN"], *common, "--out", str(tmp_path / "full"), "--no-png"], check=True,
                   capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "cc" / "seq_0001" / "raw_rows.npy"),
                               np.load(tmp_path / "full" / "seq_0001" / "raw.npy")[[2, 19]], rtol=1e-6, atol=1e-7)
    r = subprocess.run([os.environ["MIXLENS_ATTN"], "--model", str(DEMO), "--tokens", "1,2", "--out", str(tmp_path / "x"),
                        "--rows", ""], capture_output=True, text=True)
    assert r.returncode == 1 and "--rows: expected last, cls or a comma-separated list" in r.stderr


def test_cli_method_writes_what_attribute_returns(tmp_path):
    out = tmp_path / "m"
    r = run("--model", str(DEMO), "--tokens-file", str(TOKENS), "--out", str(out), "--layers", "0",
            "--save-alpha", "none", "--method", "mamba-attr", "--start-layer", "1", "--target-position", "30")
    assert r.returncode == 0, r.stderr
    names = sorted(os.listdir(out))
    assert {"attribution.npy", "target.json", "mamba_attr.npy", "tokens.json"} <= set(names)
    a = mixlens.load(DEMO).attribute(np.load(TOKENS), "mamba-attr", target_position=30, start_layer=1, matrix=True)
    np.testing.assert_array_equal(np.load(out / "attribution.npy"), a.scores)
    np.testing.assert_array_equal(np.load(out / "mamba_attr.npy"), a.matrix)
    target = json.loads((out / "target.json").read_text())
    assert (target["method"], target["position"], target["token"]) == ("mamba-attr", 30, a.token)
    assert target["value"] == a.value and isinstance(target["text"], str)
    # Bad usage: the target options need --method, --attn-grad-without-d needs attn-grad.
    for extra in (["--target-token", "3"], ["--method", "lrp", "--attn-grad-without-d"]):
        r = run("--model", str(DEMO), "--tokens", "1,2,3", "--out", str(tmp_path / "x"), *extra)
        assert r.returncode == 2 and "--method" in r.stderr, extra
    r = run("--model", str(DEMO), "--tokens", "1,2,3", "--out", str(tmp_path / "x"), "--method", "lrp",
            "--target-position", "3")
    assert r.returncode == 1 and "position" in r.stderr and not (tmp_path / "x").exists()


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_cli_method_matches_mixlens_attn(tmp_path):
    for method in ("lrp", "rollout", "attn-grad"):
        args = ["--model", str(DEMO), "--tokens-file", str(TOKENS), "--method", method, "--target-token", "9"]
        subprocess.run([os.environ["MIXLENS_ATTN"], *args, "--out", str(tmp_path / "cc"), "--no-png"], check=True,
                       capture_output=True)
        r = run(*args, "--out", str(tmp_path / "py"))
        assert r.returncode == 0, r.stderr
        want, got = np.load(tmp_path / "cc" / "attribution.npy"), np.load(tmp_path / "py" / "attribution.npy")
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), method
        cc, py = (json.loads((tmp_path / d / "target.json").read_text()) for d in ("cc", "py"))
        assert (cc["position"], cc["token"]) == (py["position"], py["token"])
        assert abs(cc["value"] - py["value"]) <= 1e-6 * abs(cc["value"])
        grads = sorted(f for f in os.listdir(tmp_path / "cc") if f.startswith("residual_grad_"))
        assert grads == sorted(f for f in os.listdir(tmp_path / "py") if f.startswith("residual_grad_"))
        assert len(grads) == (4 if method != "rollout" else 0)
        for f in grads:
            want, got = np.load(tmp_path / "cc" / f), np.load(tmp_path / "py" / f)
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), (method, f)


VIM = DATA / "vim_mid_odd"
PNG = DATA / "images" / "rgb8.png"


def test_cli_image_writes_what_the_vision_model_returns(tmp_path):
    out = tmp_path / "vim"
    r = run("--model", str(VIM), "--image", str(PNG), "--out", str(out), "--method", "mamba-attr", "--target-token", "3")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["alpha_0.npy", "alpha_1.npy", "attribution.npy", "cls_raw.npy", "cls_rollout.npy",
                                       "logits.npy", "mamba_attr.npy", "mixlens-attn.manifest", "raw.npy",
                                       "residual_grad_0.npy", "residual_grad_1.npy", "rollout.npy", "target.json"]
    vim = mixlens.load(VIM)
    image = mixlens.read_image(PNG)  # a PNG is ImageNet-normalized, as mixlens-attn does
    att = vim.attention(image, normalize=True)
    np.testing.assert_array_equal(np.load(out / "rollout.npy"), att.rollout)
    np.testing.assert_array_equal(np.load(out / "cls_rollout.npy"), np.delete(att.rollout[4], 4).reshape(3, 3))
    a = vim.attribute(image, "mamba-attr", target_class=3, matrix=True, normalize=True)
    np.testing.assert_array_equal(np.load(out / "attribution.npy"), a.scores)
    assert json.loads((out / "target.json").read_text()) == {"method": "mamba-attr", "position": 4, "token": 3,
                                                             "value": a.value}
    rows = tmp_path / "rows"
    r = run("--model", str(VIM), "--image", str(DATA / "images" / "rgb8.npy"), "--normalize", "--out", str(rows),
            "--rows", "cls", "--save-alpha", "none")
    assert r.returncode == 0, r.stderr
    assert json.loads((rows / "rows.json").read_text()) == {"rows": [4]}
    np.testing.assert_allclose(np.load(rows / "map_rows_1.npy")[0], att.maps[1][4], rtol=0, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--model", str(VIM), "--tokens", "1,2"], "is a Vision Mamba classifier: give its input with --image"),
    (["--model", str(DEMO), "--image", str(PNG)], "--image: the model in .* is a Mamba language model"),
    (["--model", str(VIM), "--image", str(PNG), "--method", "lrp", "--target-position", "2"],
     "--target-position is for the language models"),
    (["--model", str(VIM), "--image", str(PNG), "--method", "lrp", "--target-token", "7"],
     r"argument 'target_class': expected a class in \[0, 7\)"),
    (["--model", str(VIM), "--image", str(DATA / "images" / "truncated.png")], "truncated.png"),
    (["--model", str(VIM), "--image", str(PNG), "--rows", "10"], "--rows"),
])
def test_cli_image_errors(tmp_path, args, message):
    r = run(*args, "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and re.search(message, r.stderr), r.stderr
    assert not (tmp_path / "o").exists()


def test_cli_normalize_needs_an_image_and_cuda_needs_a_gpu(tmp_path):
    r = run("--model", str(DEMO), "--tokens", "1,2", "--normalize", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--normalize is for --image" in r.stderr
    if not mixlens.cuda_available():
        for source in (["--model", str(DEMO), "--tokens", "1,2"], ["--model", str(VIM), "--image", str(PNG)]):
            r = run(*source, "--device", "cuda", "--out", str(tmp_path / "o"))
            assert r.returncode == 1 and "argument 'device': expected a usable CUDA device" in r.stderr, r.stderr
            assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not os.environ.get("MIXLENS_ATTN"), reason="MIXLENS_ATTN (the mixlens-attn binary) is not set")
def test_cli_image_matches_mixlens_attn(tmp_path):
    py, cc = tmp_path / "py", tmp_path / "cc"
    for out, command in ((py, [sys.executable, "-m", "mixlens"]), (cc, [os.environ["MIXLENS_ATTN"], "--no-png"])):
        r = subprocess.run([*command, "--model", str(VIM), "--image", str(PNG), "--out", str(out), "--method",
                            "attn-grad"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(mixlens.__file__))})
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(py)) == sorted(os.listdir(cc))
    for name in ["logits", "raw", "rollout", "cls_raw", "cls_rollout", "alpha_0", "alpha_1", "attribution", "attn_grad",
                 "residual_grad_0", "residual_grad_1"]:
        np.testing.assert_array_equal(np.load(py / f"{name}.npy"), np.load(cc / f"{name}.npy"), err_msg=name)
    assert json.loads((py / "target.json").read_text()) == json.loads((cc / "target.json").read_text())
