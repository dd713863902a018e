"""A straightforward ``torch.fft`` SIM forward model with the adjoint from autograd.

``y = avg_pool2d( ifft2( fft2(I . x) . OTF ).real, s )`` over all K frames at once; the adjoint of
``r`` is ``torch.autograd.grad(y, x, grad_outputs=r)``, which is how a PINN built on this model gets
its gradient. Works on CPU and CUDA tensors, float32 or float64. Periodic model only (``pad_fine=0``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def centred_otf(psf, shape: tuple[int, int], dtype, device) -> torch.Tensor:
    """Full-plane OTF: the unit-sum PSF embedded with its centre pixel at [0, 0], then ``fft2``."""
    p = torch.as_tensor(np.asarray(psf), dtype=dtype, device=device)
    full = torch.zeros(shape, dtype=dtype, device=device)
    full[: p.shape[0], : p.shape[1]] = p / p.sum()
    full = torch.roll(full, shifts=(-(p.shape[0] // 2), -(p.shape[1] // 2)), dims=(0, 1))
    return torch.fft.fft2(full)


class TorchFFTSIM:
    """``A x = (D_s[h (*) (I_k . x)])_k`` in torch; ``A^T`` by reverse-mode autograd."""

    def __init__(self, patterns, psf, upsample: int, *, device="cpu", dtype=torch.float32):
        self.patterns = torch.as_tensor(np.asarray(patterns), dtype=dtype, device=device)
        self.K, self.H, self.W = self.patterns.shape
        self.s = int(upsample)
        self.dtype, self.device = dtype, torch.device(device)
        self.otf = centred_otf(psf, (self.H, self.W), dtype, self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(H, W) -> (K, h, w), differentiable."""
        z = torch.fft.ifft2(torch.fft.fft2(self.patterns * x) * self.otf).real
        return F.avg_pool2d(z[None], kernel_size=self.s)[0]

    def forward_adjoint(self, x: torch.Tensor, r: torch.Tensor):
        """Forward pass, then the adjoint of ``r`` as the vector-Jacobian product (the timed unit)."""
        x = x.detach().requires_grad_(True)
        y = self.forward(x)
        (g,) = torch.autograd.grad(y, x, grad_outputs=r)
        return y.detach(), g

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """``A^T r`` (the model is linear, so the gradient at x = 0 is exact)."""
        x = torch.zeros((self.H, self.W), dtype=self.dtype, device=self.device)
        return self.forward_adjoint(x, r)[1]


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check_against(op, psf, device=None, rtol: float | None = None, seed: int = 1) -> float:
    """Assert that the torch peer reproduces ``op`` (a ``pad_fine=0`` SIMOperator on CPU or CUDA).

    The peer is built in ``op``'s dtype on ``device`` (default: the operator's device); the default
    tolerance is 1e-10 in float64 and 1e-4 in float32. ``psf`` is the array ``op`` was built from.
    Returns the largest relative error of forward and adjoint; raises AssertionError above ``rtol``.
    """
    g = op.geometry
    assert g.off == 0, "the torch peer models the periodic case (pad_fine=0) only"
    f64 = op.dtype == np.float64
    rtol = (1e-10 if f64 else 1e-4) if rtol is None else rtol
    device = device or op.device
    peer = TorchFFTSIM(_to_numpy(op.patterns), psf, g.s, device=device,
                       dtype=torch.float64 if f64 else torch.float32)
    rng = np.random.default_rng(seed)
    x = rng.random((g.H, g.W)).astype(op.dtype)
    r = rng.standard_normal((g.K, g.h, g.w)).astype(op.dtype)
    xt, rt = (torch.as_tensor(a, device=device) for a in (x, r))
    y_peer, g_peer = peer.forward_adjoint(xt, rt)
    xo, ro = (op._xp.asarray(a) for a in (x, r))
    err = max(_rel(_to_numpy(y_peer), _to_numpy(op.forward(xo))),
              _rel(_to_numpy(g_peer), _to_numpy(op.adjoint(ro))))
    assert err < rtol, f"torch peer disagrees with SIMOperator: relative error {err:.3g} >= {rtol:g}"
    return err
