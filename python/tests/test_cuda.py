"""The CUDA backend from Python: Model on the GPU against the same model on the CPU, mixlens.hf on
CUDA transformers models against mixlens.load on their checkpoints, and the refusals. Without a
usable GPU (CI) only the refusals run; the rest runs where the package was built with nvcc and a
GPU is present."""

import numpy as np
import pytest

import mixlens
from conftest import DATA

torch = pytest.importorskip("torch")

DEMO = DATA / "mamba_demo"
VIM = DATA / "vim_mid_odd"
MAMBA2 = DATA / "mamba2_groups_bf16"
gpu = pytest.mark.skipif(not (mixlens.cuda_available() and torch.cuda.is_available()),
                         reason="needs the CUDA backend and a GPU: " + (mixlens._core.cuda_unavailable() or "no torch GPU"))


def relative(a, b):
    a, b = (np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64) for t in (a, b))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def tokens():
    return np.load(DATA / "reference" / "mamba_demo" / "tokens_0.npy")


def on_cuda(t):
    return isinstance(t, torch.Tensor) and t.is_cuda


@pytest.mark.skipif(mixlens.cuda_available(), reason="the refusal of a missing CUDA backend or GPU")
def test_cuda_without_a_gpu_is_refused_by_name():
    why = mixlens._core.cuda_unavailable()
    assert why
    with pytest.raises(mixlens.Error, match=r"mixlens.load: argument 'device': expected a usable CUDA device"):
        mixlens.load(DEMO, device="cuda")
    with pytest.raises(mixlens.Error, match=r"argument 'device'"):
        mixlens.load(DEMO).to("cuda:0")


def test_bad_devices_are_refused_by_name():
    with pytest.raises(mixlens.Error, match=r"argument 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        mixlens.load(DEMO, device="tpu")
    with pytest.raises(mixlens.Error, match=r"argument 'device'"):
        mixlens.load(DEMO).to("cuda:x")
    with pytest.raises(mixlens.Error, match=r"argument 'dtype': expected float32 on CUDA"):
        mixlens.load(DEMO, dtype="float64", device="cuda")
    with pytest.raises(mixlens.Error, match=r"argument 'tf32': expected False on the CPU"):
        mixlens.load(DEMO).faithfulness(tokens()[:8], methods=["raw"], tf32=True)
    assert mixlens.load(DEMO).to("cpu").device == "cpu"


@gpu
@pytest.mark.parametrize("path", [DEMO, MAMBA2], ids=["mamba", "mamba2"])
def test_model_on_cuda_equals_the_cpu(path):
    cpu = mixlens.load(path)
    dev = cpu.to("cuda")
    assert dev.device == "cuda:0" and cpu.device == "cpu"
    ids = tokens()[:24] % cpu.vocab_size
    logits = dev.forward(ids)
    assert on_cuda(logits) and logits.dtype == torch.float32
    assert relative(logits, cpu.forward(ids)) < 1e-5
    for form in ("paper", "unified"):
        got, want = dev.attention(ids, form=form, alpha=[0]), cpu.attention(ids, form=form, alpha=[0])
        assert on_cuda(got.rollout) and on_cuda(got.alpha[0]) and on_cuda(got.maps[1])
        assert got.alpha[0].shape == want.alpha[0].shape
        for name in ("logits", "raw", "rollout"):
            assert relative(getattr(got, name), getattr(want, name)) < 1e-5, (form, name)
        for k in got.layers:
            assert relative(got.maps[k], want.maps[k]) < 1e-5
        assert relative(got.alpha[0], want.alpha[0]) < 1e-5
    rows = dev.attention(ids, rows="last,3", alpha=True)
    want = cpu.attention(ids, rows="last,3", alpha=True)
    assert rows.rows == want.rows and rows.rollout is None and on_cuda(rows.raw)
    assert relative(rows.raw, want.raw) < 1e-5 and relative(rows.alpha[1], want.alpha[1]) < 1e-5


@gpu
@pytest.mark.parametrize("method", ["raw", "rollout", "mamba-attr", "attn-grad", "grad-input", "lrp"])
def test_attribution_on_cuda_equals_the_cpu(method):
    cpu = mixlens.load(DEMO)
    dev = cpu.to("cuda")
    ids = tokens()[:20]
    got, want = dev.attribute(ids, method), cpu.attribute(ids, method)
    assert on_cuda(got.scores) and (got.position, got.token) == (want.position, want.token)
    assert relative(got.scores, want.scores) < 1e-4
    assert abs(got.value - want.value) <= 1e-5 * abs(want.value)


@gpu
def test_faithfulness_on_cuda_equals_the_cpu():
    cpu = mixlens.load(DEMO)
    dev = cpu.to("cuda")
    ids = tokens()[:16]
    got = dev.faithfulness(ids, methods=["rollout", "grad-input"], steps=4, random_draws=3)
    want = cpu.faithfulness(ids, methods=["rollout", "grad-input"], steps=4, random_draws=3)
    assert (got["position"], got["token"]) == (want["position"], want["token"])
    for name in want["methods"]:
        for order in ("morf", "lerf"):
            assert relative(got["methods"][name][order]["logit"], want["methods"][name][order]["logit"]) < 1e-4
    tf32 = dev.faithfulness(ids, methods=["rollout"], steps=4, random_draws=3, tf32=True)
    assert tf32["methods"]["rollout"]["morf"]["logit"].shape == (5,)


@gpu
@pytest.mark.parametrize("family", ["mamba", "falcon_mamba", "mamba2"])
@pytest.mark.parametrize("form", ["paper", "unified"])
def test_live_cuda_model_equals_its_checkpoint(tmp_path, family, form):
    pytest.importorskip("transformers")
    import mixlens.hf
    from test_hf import tiny

    model = tiny(family).cuda().eval()
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    mm = mixlens.hf.load(model)
    assert mm.device == "cuda:0"
    atts = mixlens.hf.attention(model, ids, form=form, alpha=[0, 2], mixlens_model=mm)
    model.save_pretrained(tmp_path)
    ref = mixlens.load(tmp_path, device="cuda")
    host = mixlens.load(tmp_path, dtype="float64")
    for b, att in enumerate(atts):
        assert on_cuda(att.rollout) and on_cuda(att.alpha[2]) and att.rollout.device == model.device
        want, exact = ref.attention(ids[b], form=form, alpha=[0, 2]), host.attention(ids[b], form=form, alpha=[0, 2])
        for name in ("logits", "raw", "rollout"):
            assert relative(getattr(att, name), getattr(want, name)) < 1e-6, name
            assert relative(getattr(att, name), getattr(exact, name)) < 1e-4, name
        for k in att.layers:
            assert relative(att.maps[k], want.maps[k]) < 1e-6
        for k in att.alpha:
            assert relative(att.alpha[k], want.alpha[k]) < 1e-6


@gpu
def test_live_float64_cuda_model_runs_on_the_host():
    pytest.importorskip("transformers")
    import mixlens.hf
    from test_hf import tiny

    model = tiny("mamba").cuda().to(torch.float64).eval()
    mm = mixlens.hf.load(model)
    assert (mm.device, mm.dtype) == ("cpu", "float64")
    att = mixlens.hf.attention(model, torch.arange(9), mixlens_model=mm)
    assert att.rollout.is_cuda and att.rollout.dtype == torch.float64


@gpu
def test_stale_weights_are_refused_on_cuda():
    pytest.importorskip("transformers")
    import mixlens.hf
    from test_hf import tiny

    model = tiny("mamba").cuda().eval()
    mm = mixlens.hf.load(model)
    assert mm.device == "cuda:0"
    with torch.no_grad():
        model.backbone.layers[0].mixer.conv1d.weight.mul_(1.5)
    with pytest.raises(mixlens.Error, match=r"layer 0: the scan input u .* differs from the library's"):
        mixlens.hf.attention(model, torch.arange(8), mixlens_model=mm)
    with pytest.raises(mixlens.Error, match=r"argument 'logits': expected a C-contiguous float32 CUDA tensor"):
        mm._attention_from_capture([0], [torch.zeros(1)], [torch.zeros(1)], torch.zeros((8, 64)), "paper", False,
                                   "mean")


def test_operator_to_cuda_is_refused_without_a_gpu_or_by_name():
    op = mixlens.from_registry("hyena", np.random.default_rng(0).standard_normal((4, 16)))
    assert op.device == "cpu" and op.to("cpu") is op
    with pytest.raises(mixlens.Error, match=r"mixlens.Operator.to: argument 'device': expected 'cpu', 'cuda'"):
        op.to("gpu")
    if not mixlens.cuda_available():
        with pytest.raises(mixlens.Error, match=r"argument 'device': expected a usable CUDA device"):
            op.to("cuda")


@gpu
@pytest.mark.parametrize("key", mixlens.registry_keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_registry_operator_on_cuda_equals_the_host(key, dtype):
    x = np.random.default_rng(3).standard_normal((4, 19)).astype(dtype)
    host = mixlens.from_registry(key, x)
    dev = host.to("cuda")
    assert dev.device == "cuda:0" and (dev.name, dev.shape, dev.dtype) == (host.name, host.shape, host.dtype)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    xt = torch.from_numpy(x).cuda()
    y = dev.apply(xt)
    assert on_cuda(y) and relative(y, host.apply(x)) < tol
    assert relative(dev.materialize(), host.materialize()) < tol
    assert relative(dev.materialize(1, 1), host.materialize(1, 1)) < tol
    assert relative(dev.materialize_full(), host.materialize_full()) < tol
    assert relative(dev.rows([0, 18, 7]), host.rows([0, 18, 7])) < tol
    assert relative(dev.rows([5], out=2), host.rows([5], out=2)) < tol
    with pytest.raises(mixlens.Error, match=r"argument 'x': expected a C-contiguous .* CUDA tensor on cuda:0"):
        dev.apply(x)
    with pytest.raises(mixlens.Error, match=r"argument 'positions'"):
        dev.rows([19])
    with pytest.raises(mixlens.Error, match=r"argument 'device'"):
        dev.to("cpu")


@gpu
def test_constructors_given_cuda_tensors_build_on_their_device():
    rng = np.random.default_rng(4)
    D, N, L = 6, 4, 13
    delta = np.abs(rng.standard_normal((D, L))) * 0.3
    A, B, C = -np.abs(rng.standard_normal((D, N))), rng.standard_normal((N, L)), rng.standard_normal((N, L))
    cuda = [torch.from_numpy(a).cuda() for a in (delta, A, B, C)]
    op = mixlens.s6(*cuda)
    assert op.device == "cuda:0"
    assert relative(op.materialize(), mixlens.s6_alpha(delta, A, B, C)) < 1e-12
    alpha = mixlens.s6_alpha(*cuda)
    assert on_cuda(alpha) and relative(alpha, mixlens.s6_alpha(delta, A, B, C)) < 1e-12


def test_tensors_on_several_devices_are_refused():
    class OnDevice:  # stands for a tensor on a CUDA device (no GPU needed)
        def __init__(self, device):
            self.device = torch.device(device)

    with pytest.raises(mixlens.Error, match=r"several CUDA devices: cuda:0, cuda:1"):
        mixlens.s6(OnDevice("cuda:0"), OnDevice("cuda:1"), None, None)


@gpu
def test_vision_model_on_cuda_equals_the_cpu():
    cpu = mixlens.load(VIM)
    dev = cpu.to("cuda")
    assert dev.device == "cuda:0"
    image = np.load(DATA / "reference" / "vim_mid_odd" / "image.npy")
    logits = dev.forward(torch.from_numpy(image).cuda())  # a CUDA image is cut into patches on the host
    assert on_cuda(logits) and relative(logits, cpu.forward(image)) < 1e-5
    for form in ("paper", "unified"):
        got, want = dev.attention(image, form=form), cpu.attention(image, form=form)
        assert on_cuda(got.rollout) and on_cuda(got.alpha[1])
        for name in ("raw", "rollout"):
            assert relative(getattr(got, name), getattr(want, name)) < 1e-5
        assert relative(got.alpha[1], want.alpha[1]) < 1e-5
    rows = dev.attention(image, rows="cls")
    assert relative(rows.alpha[0], cpu.attention(image, rows="cls").alpha[0]) < 1e-5
    for method in ("raw", "rollout", "mamba-attr", "attn-grad", "grad-input", "lrp"):
        got, want = dev.attribute(image, method), cpu.attribute(image, method)
        assert on_cuda(got.scores) and (got.position, got.token) == (want.position, want.token)
        assert relative(got.scores, want.scores) < 1e-4, method
