"""Independent numpy references: the definitions written out, nothing shared with the library."""

import numpy as np


def s6_alpha(delta, A, B, C):
    """α[d][i][j] = Σ_n C[g,n,i] exp(A[d,n] Σ_{k=j+1..i} Δ[d,k]) Δ[d,j] B[g,n,j], j ≤ i (complex A: 2·Re)."""
    D, L = delta.shape
    if B.ndim == 2:
        B, C = B[None], C[None]
    G = B.shape[0]
    S = np.cumsum(delta, axis=1)  # S[d, i] = Σ_{k ≤ i} Δ
    out = np.zeros((D, L, L))
    for d in range(D):
        g = d // (D // G)
        seg = S[d][:, None] - S[d][None, :]  # Σ_{k=j+1..i} Δ_k
        mask = np.tril(np.ones((L, L), dtype=bool))
        seg = np.where(mask, seg, 0.0)
        decay = np.exp(A[d][:, None, None] * seg[None])  # N × L × L
        terms = C[g][:, :, None] * decay * (delta[d][None, None, :] * B[g][:, None, :])
        s = terms.sum(axis=0)
        s = 2 * s.real if np.iscomplexobj(s) else s
        out[d] = np.where(mask, s, 0.0)
    return out


def ssd_matrix(delta, a, B, C, head_dim, D=None):
    """Per head M_h[i][j] = (C_i·B_j) exp(a_h Σ_{k=j+1..i} Δ_k) Δ_j (+ D_h), one L × L per channel."""
    H, L = delta.shape
    if B.ndim == 2:
        B, C = B[None], C[None]
    G = B.shape[0]
    S = np.cumsum(delta, axis=1)
    mask = np.tril(np.ones((L, L), dtype=bool))
    out = np.zeros((H * head_dim, L, L))
    for h in range(H):
        g = h // (H // G)
        cb = C[g].T @ B[g]  # (L × L): C_i · B_j
        m = cb * np.exp(a[h] * np.where(mask, S[h][:, None] - S[h][None, :], 0.0)) * delta[h][None, :]
        m = np.where(mask, m, 0.0)
        if D is not None:
            m = m + D[h] * np.eye(L)
        out[h * head_dim:(h + 1) * head_dim] = m
    return out


def toeplitz(kernel, L, D=None):
    """The lower-triangular Toeplitz matrix of each channel's taps (channels × L × L)."""
    ch, taps = kernel.shape
    out = np.zeros((ch, L, L))
    for c in range(ch):
        for t in range(L):
            for s in range(max(0, t - taps + 1), t + 1):
                out[c, t, s] = kernel[c, t - s]
        if D is not None:
            out[c] += D[c] * np.eye(L)
    return out


def s4d_kernel(A, B, C, log_dt, L):
    """ZOH: Ā = exp(ΔA), B̄ = (exp(ΔA) − 1)/A · B, K_k = 2 Re Σ_n C_n B̄_n Ā_n^k."""
    dt = np.exp(log_dt)[:, None]
    abar = np.exp(dt * A)
    bbar = (abar - 1) / A * B
    k = np.arange(L)
    return 2 * np.real(np.einsum("hn,hnk->hk", C * bbar, abar[:, :, None] ** k[None, None, :]))


def rollout(maps):
    """ρ = rownorm(I + A_last) ⋯ rownorm(I + A_first)."""
    L = maps[0].shape[0]
    rho = np.eye(L)
    for m in maps:
        aug = np.eye(L) + m
        s = aug.sum(axis=1, keepdims=True)
        aug = np.where(s != 0, aug / np.where(s != 0, s, 1), aug)
        rho = aug @ rho
    return rho
