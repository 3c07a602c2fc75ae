"""mixlens.hf on tiny random transformers models built here (nothing is downloaded): the maps from
the hooks of the live model equal those of mixlens.load on its saved checkpoint."""

import numpy as np
import pytest

import mixlens

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import mixlens.hf  # noqa: E402


def tiny(family):
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=16, num_hidden_layers=3, conv_kernel=4)
    if family == "mamba":
        return transformers.MambaForCausalLM(
            transformers.MambaConfig(state_size=4, expand=2, time_step_rank=2, **common))
    if family == "falcon_mamba":
        return transformers.FalconMambaForCausalLM(
            transformers.FalconMambaConfig(state_size=4, expand=2, time_step_rank=2, **common))
    return transformers.Mamba2ForCausalLM(
        transformers.Mamba2Config(state_size=8, expand=2, head_dim=8, num_heads=4, n_groups=2, chunk_size=8, **common))


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(autouse=True)
def quiet():
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    yield
    if bar:
        transformers.utils.logging.enable_progress_bar()


@pytest.mark.parametrize("family", ["mamba", "falcon_mamba", "mamba2"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("form", ["paper", "unified"])
def test_live_model_equals_checkpoint(tmp_path, family, dtype, form):
    model = tiny(family).to(dtype).eval()
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    atts = mixlens.hf.attention(model, ids, form=form, alpha=[0, 2])
    assert isinstance(atts, list) and len(atts) == 2
    model.save_pretrained(tmp_path)
    ref = mixlens.load(tmp_path, dtype="float64" if dtype == torch.float64 else "float32")
    # transformers runs its RMSNorms in float32 whatever the model's dtype, hence ~1e-7 even in float64.
    tol = 1e-6 if dtype == torch.float64 else 2e-6
    for b, att in enumerate(atts):
        want = ref.attention(ids[b], form=form, alpha=[0, 2])
        assert isinstance(att.rollout, torch.Tensor) and att.rollout.dtype == dtype
        assert att.layers == want.layers == [0, 1, 2] and sorted(att.alpha) == [0, 2]
        assert relative(att.logits, want.logits) < tol
        assert relative(att.raw, want.raw) < tol and relative(att.rollout, want.rollout) < tol
        for k in att.layers:
            assert relative(att.maps[k], want.maps[k]) < tol
        for k in att.alpha:
            assert att.alpha[k].shape == want.alpha[k].shape
            assert relative(att.alpha[k], want.alpha[k]) < tol


def test_one_sequence_layers_and_reuse():
    model = tiny("mamba").eval()
    mm = mixlens.hf.load(model)
    assert mm.family == "Mamba" and mm.dtype == "float32" and mm.num_layers == 3
    ids = np.arange(9) % 64
    att = mixlens.hf.attention(model, ids, layers=[1], mixlens_model=mm)
    assert isinstance(att, mixlens.Attention) and att.layers == [1] and list(att.maps) == [1]
    want = mm.attention(ids, layers=[1], alpha=False)
    assert relative(att.rollout, want.rollout) < 2e-6
    assert model.training is False


def test_stale_weights_are_refused():
    model = tiny("mamba").eval()
    mm = mixlens.hf.load(model)
    with torch.no_grad():
        model.backbone.layers[0].mixer.conv1d.weight.mul_(1.5)
    with pytest.raises(mixlens.Error, match=r"layer 0: the scan input u .* differs from the library's"):
        mixlens.hf.attention(model, torch.arange(8), mixlens_model=mm)


def test_bad_input():
    model = tiny("mamba").eval()
    mm = mixlens.hf.load(model)
    with pytest.raises(mixlens.Error, match="argument 'model': expected a transformers Mamba"):
        mixlens.hf.attention(torch.nn.Linear(2, 2), torch.arange(4))
    with pytest.raises(mixlens.Error, match="argument 'input_ids': expected integer token ids"):
        mixlens.hf.attention(model, torch.zeros(4), mixlens_model=mm)
    with pytest.raises(mixlens.Error, match="argument 'input_ids'"):
        mixlens.hf.attention(model, torch.zeros((1, 0), dtype=torch.int64), mixlens_model=mm)
    with pytest.raises(mixlens.Error, match=r"argument 'layers': expected layer indices in \[0, 3\), got 3"):
        mixlens.hf.attention(model, torch.arange(4), layers=[3], mixlens_model=mm)
    with pytest.raises(mixlens.Error, match="argument 'mixlens_model': expected a Mamba-2 model"):
        mixlens.hf.attention(tiny("mamba2"), torch.arange(4), mixlens_model=mm)
    with pytest.raises(mixlens.Error, match="form"):
        mixlens.hf.attention(model, torch.arange(4), form="dense", mixlens_model=mm)
