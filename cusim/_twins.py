"""NumPy twins of the CUDA kernels in ``kernels/sim_ops.cu``: their specification.

Each function here defines, in vectorised NumPy, exactly what the kernel of the same name computes;
the CPU path of :class:`cusim.SIMOperator` runs these functions, the GPU path runs the kernels, and the
tests compare the two (on the GPU, and on the CPU through the host shim of DESIGN section 4).

Layouts (all C-contiguous):

- ``x``: (B, H, W) real, the object on the fine grid.
- ``pat``: (K, H, W) real, illumination patterns.
- ``u``/``w``: (B, K, Hp, Wp) real, pattern-times-object embedded in the padded fine grid with a
  zero margin of ``off`` pixels at the top and left (``Hp >= H + off``).
- ``U``/``V``: (N, Hp, Wf) complex half spectra of the padded fine grid (``Wf = Wp // 2 + 1``), the
  layout of ``rfft2``; ``N = B * K``.
- ``Y``/``R``: (N, hp, wcf) complex half spectra on the padded camera grid (``hp = Hp / s``,
  ``wp = Wp / s``, ``wcf = wp // 2 + 1``).
- ``T``: (Hp, Wf) complex transfer function on the fine half spectrum.

The fold and unfold read the full spectrum through Hermitian symmetry,
``Z[R, C] = conj(Z[(Hp - R) % Hp, Wp - C])`` for ``C > Wp // 2``, which holds for the spectrum of
any real image (and for ``T``, the transform of a real kernel).
"""

from __future__ import annotations

import functools

import numpy as np


def pattern_multiply_pad(x: np.ndarray, pat: np.ndarray, hp_wp: tuple[int, int], off: int) -> np.ndarray:
    """``u[b, k, i + off, j + off] = pat[k, i, j] * x[b, i, j]``, zero elsewhere."""
    B, H, W = x.shape
    K = pat.shape[0]
    Hp, Wp = hp_wp
    u = np.zeros((B, K, Hp, Wp), dtype=x.dtype)
    np.multiply(pat[None], x[:, None], out=u[:, :, off : off + H, off : off + W])
    return u


def pattern_multiply_sum(w: np.ndarray, pat: np.ndarray, off: int) -> np.ndarray:
    """``out[b, i, j] = sum_k pat[k, i, j] * w[b, k, i + off, j + off]``."""
    K, H, W = pat.shape
    crop = w[:, :, off : off + H, off : off + W]
    out = np.zeros((w.shape[0], H, W), dtype=w.dtype)
    for k in range(K):  # a loop over frames keeps memory at one image, and is as fast as einsum
        out += pat[k] * crop[:, k]
    return out


@functools.lru_cache(maxsize=32)
def _fold_index(Hp: int, Wp: int, s: int):
    """Flat gather index into the (Hp, Wf) half spectrum, and a conjugation mask, shape (s*s, hp*wcf)."""
    hp, wp = Hp // s, Wp // s
    Wf, wcf = Wp // 2 + 1, wp // 2 + 1
    R = (np.arange(hp)[None, :] + hp * np.arange(s)[:, None])  # (s, hp): fine row of tile a, camera row r
    C = (np.arange(wcf)[None, :] + wp * np.arange(s)[:, None])  # (s, wcf)
    R = np.broadcast_to(R[:, None, :, None], (s, s, hp, wcf))
    C = np.broadcast_to(C[None, :, None, :], (s, s, hp, wcf))
    mirror = C >= Wf
    Rm = np.where(mirror, (Hp - R) % Hp, R)
    Cm = np.where(mirror, Wp - C, C)
    flat = (Rm * Wf + Cm).reshape(s * s, hp * wcf)
    return flat, mirror.reshape(s * s, hp * wcf)


def fold_transfer(U: np.ndarray, T: np.ndarray, s: int, hp_wp: tuple[int, int]) -> np.ndarray:
    """``Y[n, r, c] = sum_{a, b < s} T[R, C] U[n, R, C]`` with ``R = r + a*hp``, ``C = c + b*wp``.

    ``(R, C)`` index the FULL fine spectrum; columns beyond the half spectrum are read as the
    conjugate of their Hermitian mirror.
    """
    N = U.shape[0]
    Hp, Wp = hp_wp
    hp, wp = Hp // s, Wp // s
    flat, mirror = _fold_index(Hp, Wp, s)
    P = (U * T[None]).reshape(N, -1)
    Y = np.zeros((N, hp * (wp // 2 + 1)), dtype=U.dtype)
    for t in range(s * s):  # one tile at a time: memory stays at one camera spectrum
        g = P[:, flat[t]]
        np.conjugate(g, out=g, where=mirror[t][None])
        Y += g
    return Y.reshape(N, hp, wp // 2 + 1)


@functools.lru_cache(maxsize=32)
def _unfold_index(Hp: int, Wp: int, s: int):
    """Flat gather index into the (hp, wcf) camera half spectrum and conjugation mask, shape (Hp*Wf,)."""
    hp, wp = Hp // s, Wp // s
    Wf, wcf = Wp // 2 + 1, wp // 2 + 1
    r = np.arange(Hp)[:, None] % hp
    c = np.arange(Wf)[None, :] % wp
    r, c = np.broadcast_arrays(r, c)
    mirror = c >= wcf
    rm = np.where(mirror, (hp - r) % hp, r)
    cm = np.where(mirror, wp - c, c)
    return (rm * wcf + cm).ravel(), mirror.ravel()


def unfold_transfer(R: np.ndarray, Tc: np.ndarray, s: int, hp_wp: tuple[int, int]) -> np.ndarray:
    """``V[n, R, C] = Tc[R, C] * Rfull[n, R % hp, C % wp]``, the camera spectrum repeated over the tiles."""
    N = R.shape[0]
    Hp, Wp = hp_wp
    flat, mirror = _unfold_index(Hp, Wp, s)
    G = R.reshape(N, -1)[:, flat]
    np.conjugate(G, out=G, where=mirror[None])
    G *= Tc.reshape(1, -1)
    return G.reshape(N, Hp, Wp // 2 + 1)
