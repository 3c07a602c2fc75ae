import json
import os
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
