import os
import subprocess
import sys

import numpy as np

import mixlens
from conftest import DATA

TOKENS = DATA / "reference" / "mamba_demo" / "tokens_0.npy"


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
    assert names == ["alpha_2.npy", "logits.npy", "mixlens-attn.manifest", "raw.npy", "rollout.npy"]
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
