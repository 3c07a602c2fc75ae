import gc

import numpy as np
import pytest

import mixlens
import reference

try:
    import torch
except ImportError:  # the torch tests skip
    torch = None


def s6_inputs(rng, D=6, N=4, L=20, G=1, dtype=np.float64, complex_a=False):
    delta = rng.uniform(0.05, 0.8, (D, L))
    if complex_a:
        A = -rng.uniform(0.2, 1.5, (D, N)) + 1j * rng.uniform(-3, 3, (D, N))
        B = rng.normal(size=(G, N, L)) + 1j * rng.normal(size=(G, N, L))
        C = rng.normal(size=(G, N, L)) + 1j * rng.normal(size=(G, N, L))
        cdt = np.complex64 if dtype == np.float32 else np.complex128
        return delta.astype(dtype), A.astype(cdt), B.astype(cdt), C.astype(cdt)
    A = -rng.uniform(0.2, 2.0, (D, N))
    B, C = rng.normal(size=(G, N, L)), rng.normal(size=(G, N, L))
    return tuple(a.astype(dtype) for a in (delta, A, B, C))


def check_operator(op, x, tol):
    """apply(x) = materialize_full()·x, materialize() and rows() agree with the full matrix."""
    O, I, L = op.shape
    y = np.asarray(op.apply(x))
    full = np.asarray(op.materialize_full())
    assert y.shape == (O, L) and full.shape == (O * L, I * L)
    scale = max(1.0, np.abs(y).max())
    np.testing.assert_allclose(y.ravel(), full @ x.ravel(), rtol=0, atol=tol * scale)
    blocks = full.reshape(O, L, I, L).transpose(0, 2, 1, 3)  # (o, i, t, s)
    assert np.all(np.triu(blocks, 1) == 0), "causal: zero above the diagonal"
    m = np.asarray(op.materialize())
    positions = [0, L // 2, L - 1]
    r = np.asarray(op.rows(positions))
    if op.channel_mixing:
        np.testing.assert_array_equal(m, blocks)
        np.testing.assert_allclose(r, blocks[:, :, positions, :], rtol=0, atol=tol * scale)
    else:
        diag = blocks[np.arange(O), np.arange(O)]
        np.testing.assert_array_equal(m, diag)
        np.testing.assert_allclose(r, diag[:, positions, :], rtol=0, atol=tol * scale)
        off = blocks.copy()
        off[np.arange(O), np.arange(O)] = 0
        assert np.all(off == 0), "no channel mixing: zero off-diagonal blocks"
    np.testing.assert_array_equal(op.materialize(O - 1, I - 1), blocks[O - 1, I - 1])
    np.testing.assert_allclose(op.rows([1], out=0), blocks[0, 0, [1]], rtol=0, atol=tol * scale)
    if op.time_invariant:
        for b in blocks.reshape(-1, L, L):
            for k in range(L):
                d = np.diagonal(b, -k)
                np.testing.assert_allclose(d, d[0], rtol=0, atol=tol * scale)


# ---- S6 ------------------------------------------------------------------------------

def test_s6_alpha_matches_numpy_reference(rng):
    delta, A, B, C = s6_inputs(rng, G=2)
    alpha = mixlens.s6_alpha(delta, A, B, C)
    assert alpha.shape == (6, 20, 20) and alpha.dtype == np.float64
    np.testing.assert_allclose(alpha, reference.s6_alpha(delta, A, B, C), rtol=1e-12, atol=1e-12)
    op = mixlens.s6(delta, A, B, C)
    assert (op.name, op.control, op.time_invariant, op.channel_mixing) == ("S6", "non_diagonal", False, False)
    assert op.state_size == 4 and op.shape == (6, 6, 20)
    np.testing.assert_array_equal(op.materialize(), alpha)


def test_s6_complex_alpha_matches_numpy_reference(rng):
    delta, A, B, C = s6_inputs(rng, complex_a=True)
    alpha = mixlens.s6_alpha(delta, A, B, C)
    np.testing.assert_allclose(alpha, reference.s6_alpha(delta, A, B, C), rtol=1e-11, atol=1e-11)
    check_operator(mixlens.s6(delta, A, B, C), rng.normal(size=(6, 20)), 1e-12)


def test_s6_with_skip_and_gate(rng):
    delta, A, B, C = s6_inputs(rng)
    D, z = rng.normal(size=6), rng.normal(size=(6, 20))
    op = mixlens.s6(delta, A, B, C, D=D, z=z)
    gate = z / (1 + np.exp(-z))
    want = gate[:, :, None] * (reference.s6_alpha(delta, A, B, C) + D[:, None, None] * np.eye(20))
    np.testing.assert_allclose(op.materialize(), want, rtol=1e-12, atol=1e-12)
    check_operator(op, rng.normal(size=(6, 20)), 1e-12)
    np.testing.assert_allclose(mixlens.s6(delta, A, B, C, D=D, gate=gate).materialize(), want, rtol=1e-12, atol=1e-12)


def test_s6_two_dimensional_b_c_are_one_group(rng):
    delta, A, B, C = s6_inputs(rng)
    np.testing.assert_array_equal(mixlens.s6_alpha(delta, A, B[0], C[0]), mixlens.s6_alpha(delta, A, B, C))


# ---- SSD, convolution, S4D -------------------------------------------------------------

def test_ssd_matches_numpy_reference(rng):
    H, P, N, L, G = 4, 3, 5, 30, 2
    delta = rng.uniform(0.05, 0.5, (H, L))
    a = -rng.uniform(0.5, 4, H)
    B, C, D = rng.normal(size=(G, N, L)), rng.normal(size=(G, N, L)), rng.normal(size=H)
    op = mixlens.ssd(delta, a, B, C, head_dim=P, D=D, chunk=8)
    assert (op.name, op.heads, op.state_size, op.in_channels) == ("Mamba-2 SSD", H, N, H * P)
    np.testing.assert_allclose(op.materialize(), reference.ssd_matrix(delta, a, B, C, P, D), rtol=1e-12, atol=1e-12)
    check_operator(op, rng.normal(size=(H * P, L)), 1e-12)
    gate = rng.normal(size=(H * P, L))
    gated = mixlens.ssd(delta, a, B, C, head_dim=P, D=D, gate=gate)
    np.testing.assert_allclose(gated.materialize(), gate[:, :, None] * op.materialize(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("taps", [4, 80])  # direct loop and FFT convolution
def test_causal_conv_is_toeplitz(rng, taps):
    L = 100
    kernel, D = rng.normal(size=(3, taps)), rng.normal(size=3)
    op = mixlens.causal_conv(kernel, L, D=D)
    assert op.time_invariant and op.control == "fixed"
    np.testing.assert_allclose(op.materialize(), reference.toeplitz(kernel, L, D), rtol=0, atol=1e-14)
    check_operator(op, rng.normal(size=(3, L)), 1e-11)


def test_s4d_kernel_matches_numpy_reference(rng):
    H, half, L = 3, 4, 40
    A = -rng.uniform(0.1, 1, (H, half)) + 1j * np.pi * np.arange(half)
    B = rng.normal(size=(H, half)) + 1j * rng.normal(size=(H, half))
    C = rng.normal(size=(H, half)) + 1j * rng.normal(size=(H, half))
    log_dt = np.log(rng.uniform(0.01, 0.1, H))
    op = mixlens.s4d(A, B, C, log_dt, L)
    assert op.name == "S4D" and op.time_invariant
    np.testing.assert_allclose(op.materialize(), reference.toeplitz(reference.s4d_kernel(A, B, C, log_dt, L), L),
                               rtol=1e-10, atol=1e-12)
    check_operator(op, rng.normal(size=(H, L)), 1e-12)


# ---- the registry ----------------------------------------------------------------------

@pytest.mark.parametrize("key", mixlens.registry_keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_registry_operator_is_its_matrix(rng, key, dtype):
    x = rng.normal(size=(8, 24)).astype(dtype)
    op = mixlens.from_registry(key, x)
    assert op.key == key and op.dtype == np.dtype(dtype).name
    assert op.control in ("fixed", "diagonal", "non_diagonal")
    check_operator(op, x, 1e-12 if dtype == np.float64 else 2e-5)
    assert np.asarray(op.apply(x)).dtype == dtype


def test_registry_lists_every_operator():
    keys = mixlens.registry_keys()
    assert len(keys) == 15 and keys[0] == "s4d" and "s6" in keys and "softmax_attention" in keys


# ---- dtypes ----------------------------------------------------------------------------

def test_dtype_follows_the_inputs(rng):
    d64 = s6_inputs(rng)
    d32 = tuple(a.astype(np.float32) for a in d64)
    op32 = mixlens.s6(*d32)
    assert op32.dtype == "float32" and op32.materialize().dtype == np.float32
    assert op32.apply(np.ones((6, 20), np.float32)).dtype == np.float32
    assert op32.apply(np.ones((6, 20))).dtype == np.float32  # x is converted to the operator's dtype
    np.testing.assert_allclose(op32.materialize(), mixlens.s6_alpha(*d64), rtol=1e-4, atol=1e-5)
    assert mixlens.s6(*d64).dtype == "float64"
    mixed = (d32[0], d64[1], d32[2], d32[3])
    assert mixlens.s6(*mixed).dtype == "float64"
    lists = [a.tolist() for a in d64]
    np.testing.assert_array_equal(mixlens.s6_alpha(*lists), mixlens.s6_alpha(*d64))
    ints = mixlens.causal_conv(np.array([[1, 2, 3]]), 5)
    assert ints.dtype == "float64"
    c64 = s6_inputs(rng, dtype=np.float32, complex_a=True)
    assert mixlens.s6(*c64).dtype == "float32"


# ---- zero copy and lifetime ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_contiguous_inputs_are_not_copied(rng, dtype):
    delta, A, B, C = s6_inputs(rng, dtype=dtype)
    op = mixlens.s6(delta, A, B, C)
    before = op.materialize()
    delta[2, 5] *= 3  # the operator reads the caller's array
    B[0, 1, 7] += 1
    after = op.materialize()
    assert not np.array_equal(before, after)
    np.testing.assert_allclose(after, reference.s6_alpha(delta.astype(np.float64), A, B, C), rtol=1e-4, atol=1e-5)


def test_converted_inputs_are_copies(rng):
    delta, A, B, C = s6_inputs(rng)
    wide = np.repeat(delta, 2, axis=1)[:, ::2]  # not contiguous: a copy is made
    op = mixlens.s6(wide, A, B, C)
    before = op.materialize()
    wide[2, 5] *= 3
    np.testing.assert_array_equal(op.materialize(), before)


def test_operator_keeps_its_arrays_alive(rng):
    delta, A, B, C = s6_inputs(rng)
    want = reference.s6_alpha(delta, A, B, C)
    op = mixlens.s6(delta, A, B, C, z=np.zeros((6, 20)) + 50)  # SiLU(50) = 50: gate computed and owned
    del delta, A, B, C
    gc.collect()
    np.testing.assert_allclose(op.materialize(), 50 * want, rtol=1e-12, atol=1e-10)


def test_read_only_arrays_are_accepted(rng):
    arrays = s6_inputs(rng)
    for a in arrays:
        a.flags.writeable = False
    assert mixlens.s6(*arrays).length == 20


# ---- errors name the argument ----------------------------------------------------------

def raises(fn, *names):
    with pytest.raises(ValueError) as info:
        fn()
    assert isinstance(info.value, mixlens.Error)
    for n in names:
        assert f"'{n}" in str(info.value), str(info.value)
    return str(info.value)


def test_bad_inputs_raise_value_error_naming_the_argument(rng):
    delta, A, B, C = s6_inputs(rng)
    raises(lambda: mixlens.s6(delta, A[:3], B, C), "A")
    raises(lambda: mixlens.s6(delta, A, B, C[:, :2]), "C")
    raises(lambda: mixlens.s6(delta, A, B, C, D=np.ones(4)), "D")
    raises(lambda: mixlens.s6(delta[None], A, B, C), "delta")
    raises(lambda: mixlens.s6(-delta, A, B, C), "delta")
    raises(lambda: mixlens.s6(delta, -A, B, C), "A")
    raises(lambda: mixlens.s6(delta, A, "nope", C), "B")
    raises(lambda: mixlens.s6(delta, A, B, C, z=delta, gate=delta), "gate")
    raises(lambda: mixlens.s6(delta + 1j, A, B, C), "delta")
    op = mixlens.s6(delta, A, B, C)
    raises(lambda: op.apply(np.ones((5, 20))), "x")
    raises(lambda: op.apply(np.ones(20)), "x")
    raises(lambda: op.rows([20]), "positions")
    raises(lambda: op.materialize(6), "out")
    raises(lambda: op.materialize(0, 9), "in_")
    raises(lambda: mixlens.ssd(delta, np.ones(6), B, C, head_dim=2), "A")
    raises(lambda: mixlens.ssd(delta, -np.ones(6), B, C, head_dim=0), "head_dim")
    raises(lambda: mixlens.causal_conv(np.ones((2, 3)), 0), "length")
    raises(lambda: mixlens.s4d(A + 0j, B[0] + 0j, C[0] + 0j, np.zeros(6), 8, discretization="euler"), "discretization")
    raises(lambda: mixlens.from_registry("s7", delta), "key")
    raises(lambda: mixlens.from_registry("ssd", np.ones((6, 8)), heads=4), "heads")
    raises(lambda: mixlens.from_registry("hyena", np.ones((6, 8)), max_length=4), "max_length")


# ---- torch -----------------------------------------------------------------------------

@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_torch_tensors_in_and_out(rng):
    arrays = [torch.from_numpy(a) for a in s6_inputs(rng, dtype=np.float32)]
    op = mixlens.s6(*arrays)
    assert op.dtype == "float32"
    m = op.materialize()
    assert isinstance(m, torch.Tensor) and m.dtype == torch.float32
    x = torch.randn(6, 20)
    y = op.apply(x)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y.reshape(-1), op.materialize_full() @ x.reshape(-1), rtol=1e-5, atol=1e-5)
    assert isinstance(op.apply(x.numpy()), np.ndarray)  # results follow x's framework
    arrays[0][1, 3] *= 2  # DLPack: the tensor's memory is read in place
    assert not torch.equal(op.materialize(), m)
