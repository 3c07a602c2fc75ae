#!/usr/bin/env python3
"""PyTorch baselines for the mixlens GPU benchmarks, run on the same GPU in the
same run: the sequential selective-scan reference (Mamba's reference
semantics: Δ bias + softplus, D skip, SiLU(z) gate), vectorized hidden
attention α (cumsum + masked exp + einsum over channel blocks), and the
torch.fft causal convolution (FFT size 2L) used by Hyena.

Writes one JSON object: {"device": ..., "results": [{"name", "ms", ...}]}.
"""
import argparse
import json
import statistics

import torch


def time_ms(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def selective_scan_reference(u, delta, A, B, C, D, z, delta_bias):
    """Sequential reference: h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y_t = <C_t, h_t>."""
    dtype_in = u.dtype
    u, delta, B, C, z = (x.float() for x in (u, delta, B, C, z))
    delta = torch.nn.functional.softplus(delta + delta_bias[..., None])
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)
    out = (y + u * D[None, :, None]) * torch.nn.functional.silu(z)
    return out.to(dtype_in)


def s6_case(batch, d, length, n, dtype, reps):
    g = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda *s: torch.rand(*s, device="cuda", generator=g, dtype=torch.float32) * 2 - 1
    u, delta, z = (mk(batch, d, length).to(dtype) for _ in range(3))
    B, C = (mk(batch, n, length).to(dtype) for _ in range(2))
    A = -torch.arange(1, n + 1, device="cuda", dtype=torch.float32).repeat(d, 1)
    D = torch.rand(d, device="cuda")
    bias = torch.rand(d, device="cuda") * 2 - 4
    ms = time_ms(lambda: selective_scan_reference(u, delta, A, B, C, D, z, bias), reps)
    return ms


def alpha_vectorized(delta, A, B, C, block):
    """α[d,i,j] = Σ_n C[n,i] exp(A[d,n] (S_i − S_j)) Δ[d,j] B[n,j] for j ≤ i."""
    d_total, length = delta.shape
    out = torch.empty(d_total, length, length, device=delta.device)
    S = torch.cumsum(delta, dim=1)
    mask = torch.ones(length, length, device=delta.device, dtype=torch.bool).tril()
    for d0 in range(0, d_total, block):
        s = S[d0:d0 + block]
        diff = torch.where(mask, s[:, :, None] - s[:, None, :], torch.inf)  # masked: exp(A·inf) = 0
        e = torch.exp(A[d0:d0 + block, :, None, None] * diff[:, None])   # (db, N, L, L)
        out[d0:d0 + block] = torch.einsum("ni,dnij,dj,nj->dij", C, e, delta[d0:d0 + block], B)
    return out


def alpha_case(d, length, n, reps, block=16):
    g = torch.Generator(device="cuda").manual_seed(0)
    delta = torch.rand(d, length, device="cuda", generator=g) * 0.1 + 1e-3
    A = -torch.arange(1, n + 1, device="cuda", dtype=torch.float32).repeat(d, 1)
    B = torch.rand(n, length, device="cuda", generator=g) * 2 - 1
    C = torch.rand(n, length, device="cuda", generator=g) * 2 - 1
    return time_ms(lambda: alpha_vectorized(delta, A, B, C, block), reps)


def fftconv(u, k, bias):
    """Hyena's long convolution: causal (FFT size 2L), plus the skip term u·bias."""
    length = u.shape[-1]
    n = 2 * length
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :length]
    return y + u * bias[:, None]


def fft_case(batch, d, length, reps):
    u = torch.randn(batch, d, length, device="cuda")
    k = torch.randn(d, length, device="cuda")
    bias = torch.randn(d, device="cuda")
    return time_ms(lambda: fftconv(u, k, bias), reps)


def copy_bw():
    x = torch.empty(2**29, device="cuda")  # 2 GiB
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x), 20)
    return 2 * x.numel() * 4 / (ms * 1e-3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    results = []

    def add(name, ms, **kw):
        results.append(dict(name=name, ms=ms, **kw))
        print(f"{name:50s} {ms:10.3f} ms", flush=True)

    add("torch_copy_2GiB", 0.0, bytes_per_second=copy_bw())
    for b, l in ((4, 2048), (4, 8192), (1, 65536)):
        add(f"torch_s6_fwd_fp32_b{b}_d1536_l{l}_n16", s6_case(b, 1536, l, 16, torch.float32, 1 if l > 2048 else reps))
    add("torch_s6_fwd_bf16_b4_d1536_l2048_n16", s6_case(4, 1536, 2048, 16, torch.bfloat16, reps))
    for l in (512, 1024):
        add(f"torch_alpha_fp32_d1536_l{l}_n16", alpha_case(1536, l, 16, reps))
    for l in (1024, 4096, 16384, 65536):
        add(f"torch_fftconv_fp32_b1_d768_l{l}", fft_case(1, 768, l, 20))
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, results=results),
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
