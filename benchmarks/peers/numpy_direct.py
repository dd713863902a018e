"""The straightforward NumPy SIM model: the baseline a method developer writes first.

Per frame k: ``y_k = D_s[ ifft2( fft2(I_k . x) . OTF ).real ]`` with full complex planes (no rfft,
no spectral folding) and ``D_s`` a mean over s x s blocks. The adjoint repeats each camera pixel over
its block / s^2, filters with ``conj(OTF)``, multiplies by the pattern and sums over frames.
Periodic model only (cusim's ``pad_fine=0``). Precision follows the inputs, as in naive code: NumPy >= 2
keeps ``numpy.fft`` in single precision for float32 input and in double for float64.
"""

from __future__ import annotations

import numpy as np


def centred_otf(psf: np.ndarray, shape: tuple[int, int], dtype) -> np.ndarray:
    """Full-plane OTF: the unit-sum PSF embedded with its centre pixel at [0, 0], then ``fft2``."""
    p = np.asarray(psf, dtype=dtype)
    full = np.zeros(shape, dtype=dtype)
    full[: p.shape[0], : p.shape[1]] = p / p.sum()
    full = np.roll(full, (-(p.shape[0] // 2), -(p.shape[1] // 2)), axis=(0, 1))
    return np.fft.fft2(full)


class NumpyDirectSIM:
    """``A x = (D_s[h (*) (I_k . x)])_k`` with one full complex FFT pair per frame and pass."""

    def __init__(self, patterns: np.ndarray, psf: np.ndarray, upsample: int):
        self.patterns = np.asarray(patterns)
        self.K, self.H, self.W = self.patterns.shape
        self.s = int(upsample)
        self.h, self.w = self.H // self.s, self.W // self.s
        self.otf = centred_otf(psf, (self.H, self.W), self.patterns.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(H, W) -> (K, h, w)."""
        s, h, w = self.s, self.h, self.w
        y = np.empty((self.K, h, w), dtype=x.dtype)
        for k in range(self.K):
            img = np.fft.ifft2(np.fft.fft2(self.patterns[k] * x) * self.otf).real
            y[k] = img.reshape(h, s, w, s).mean(axis=(1, 3))
        return y

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        """(K, h, w) -> (H, W)."""
        s = self.s
        x = np.zeros((self.H, self.W), dtype=r.dtype)
        for k in range(self.K):
            up = np.repeat(np.repeat(r[k], s, axis=0), s, axis=1) / s**2
            img = np.fft.ifft2(np.fft.fft2(up) * np.conj(self.otf)).real
            x += self.patterns[k] * img
        return x

    def forward_adjoint(self, x: np.ndarray, r: np.ndarray):
        """One forward and one adjoint pass, the unit that the benchmark times."""
        return self.forward(x), self.adjoint(r)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check_against(op, psf: np.ndarray, rtol: float = 1e-10, seed: int = 1) -> float:
    """Assert that the NumPy peer reproduces ``op`` (a CPU, float64, ``pad_fine=0`` SIMOperator).

    ``psf`` is the array ``op`` was built from (the operator keeps only its transfer function).
    Returns the largest relative error of forward and adjoint; raises AssertionError above ``rtol``.
    """
    g = op.geometry
    assert op.device == "cpu" and op.dtype == np.float64, "check_against needs a CPU float64 operator"
    assert g.off == 0, "the NumPy peer models the periodic case (pad_fine=0) only"
    peer = NumpyDirectSIM(np.asarray(op.patterns, dtype=np.float64), np.asarray(psf, np.float64), g.s)
    rng = np.random.default_rng(seed)
    x = rng.random((g.H, g.W))
    r = rng.standard_normal((g.K, g.h, g.w))
    err = max(_rel(peer.forward(x), op.forward(x)), _rel(peer.adjoint(r), op.adjoint(r)))
    assert err < rtol, f"NumPy peer disagrees with SIMOperator: relative error {err:.3g} >= {rtol:g}"
    return err
