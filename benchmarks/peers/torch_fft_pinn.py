"""Peer (b) of the PINN benchmarks: the SIM physics written in plain ``torch.fft``, gradient by autograd.

What a PINN author would write without cusim: for every frame ``k``

    u_k = zero-pad(I_k . x)            (the same zero margin and padded grid as the SIMOperator)
    z_k = irfft2( rfft2(u_k) . OTF )   (periodic convolution with the unit-sum PSF)
    y_k = crop( avg_pool2d(z_k, s) )   (s x s mean binning onto the camera grid)

all frames at once, differentiable by autograd (the FFTs, the pattern multiply and the pooling are
traced; the backward is whatever autograd makes of them). It computes the same model as
:class:`cusim.SIMOperator` on the same grid (:func:`check_against` asserts it), so a PINN step that
uses it differs from cusim's only in the physics. :class:`AutogradOperator` wraps it as a
``forward``/``adjoint`` operator on NumPy or CuPy arrays (adjoint = vector-Jacobian product), so
cusim's solvers can run on it too (the iterative-reconstruction peer).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cusim.backend import xp_for
from cusim.operators import power_norm
from cusim.torch_ops import as_array, as_tensor


def half_otf(psf, shape: tuple[int, int], dtype=torch.float32, device="cpu") -> torch.Tensor:
    """``rfft2`` of the unit-sum PSF embedded on ``shape`` with its centre pixel at [0, 0]."""
    p = torch.as_tensor(np.asarray(psf, dtype=np.float64))
    if p.ndim != 2 or p.shape[0] % 2 == 0 or p.shape[1] % 2 == 0:
        raise ValueError(f"psf: expected an odd 2-D array, got shape {tuple(p.shape)}")
    if p.shape[0] > shape[0] or p.shape[1] > shape[1]:
        raise ValueError(f"psf: {tuple(p.shape)} is larger than the grid {shape}")
    full = torch.zeros(shape, dtype=torch.float64)
    full[: p.shape[0], : p.shape[1]] = p / p.sum()
    full = torch.roll(full, shifts=(-(p.shape[0] // 2), -(p.shape[1] // 2)), dims=(0, 1))
    cdt = torch.complex64 if dtype == torch.float32 else torch.complex128
    return torch.fft.rfft2(full).to(device=device, dtype=cdt)


class TorchFFTPhysics:
    """``(H, W) -> (K, h, w)`` SIM forward model in ``torch.fft``; differentiable by autograd.

    ``grid = (Hp, Wp, off)``: the padded fine grid and the zero margin (top/left, fine pixels); the
    default ``(H, W, 0)`` is the periodic model. :meth:`like` takes them from a SIMOperator.
    """

    def __init__(self, patterns, psf, upsample: int, *, grid: tuple[int, int, int] | None = None,
                 device="cpu", dtype=torch.float32):
        self.patterns = torch.as_tensor(np.ascontiguousarray(patterns), dtype=dtype, device=device)
        self.K, self.H, self.W = self.patterns.shape
        self.s = int(upsample)
        self.Hp, self.Wp, self.off = grid if grid is not None else (self.H, self.W, 0)
        if self.Hp % self.s or self.Wp % self.s or self.off % self.s:
            raise ValueError(f"grid {grid}: expected multiples of upsample {self.s}")
        self.otf = half_otf(psf, (self.Hp, self.Wp), dtype, device)
        self.dtype, self.device = dtype, torch.device(device)
        o = self.off
        self._pad = (o, self.Wp - self.W - o, o, self.Hp - self.H - o)  # F.pad order: left, right, top, bottom

    @classmethod
    def like(cls, op, patterns, psf, **kw) -> "TorchFFTPhysics":
        """The peer on the same grid as the SIMOperator ``op`` (built from ``patterns`` and ``psf``)."""
        g = op.geometry
        dev = torch.device("cuda", torch.cuda.current_device()) if op.device == "cuda" else "cpu"
        dtype = torch.float64 if op.dtype == np.float64 else torch.float32
        return cls(patterns, psf, g.s, grid=(g.Hp, g.Wp, g.off), device=dev, dtype=dtype, **kw)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        u = self.patterns * x
        if self.off or self.Hp != self.H or self.Wp != self.W:
            u = F.pad(u, self._pad)
        z = torch.fft.irfft2(torch.fft.rfft2(u) * self.otf, s=(self.Hp, self.Wp))
        y = F.avg_pool2d(z[None], kernel_size=self.s)[0]
        c, h, w = self.off // self.s, self.H // self.s, self.W // self.s
        return y[:, c : c + h, c : c + w]

    forward = __call__


class AutogradOperator:
    """:class:`TorchFFTPhysics` as an operator on NumPy/CuPy arrays; ``adjoint`` by autograd.

    ``passband`` is borrowed from a SIMOperator on the same grid (``ref``): it is geometry, needed by
    the noise estimate of the iterative solver, not physics applied to data.
    """

    def __init__(self, physics: TorchFFTPhysics, ref):
        self.physics, self.ref = physics, ref
        self.input_shape, self.K = (physics.H, physics.W), physics.K
        self.dtype, self.device = ref.dtype, ref.device
        self._norm = None

    def forward(self, x):
        with torch.no_grad():
            return as_array(self.physics(as_tensor(x)))

    def adjoint(self, r):
        rt = as_tensor(r)
        x = torch.zeros(self.input_shape, dtype=rt.dtype, device=rt.device, requires_grad=True)
        (g,) = torch.autograd.grad(self.physics(x), x, grad_outputs=rt)
        return as_array(g)

    def passband(self, rel: float = 1e-3):
        return self.ref.passband(rel)

    def norm_estimate(self, n_iter: int = 50, seed: int = 0, rtol: float = 1e-6) -> float:
        """``||A||_2`` by the same seeded power iteration as ``SIMOperator.norm_estimate`` (cached)."""
        if self._norm is None:
            self._norm = power_norm(self, self.input_shape, n_iter=n_iter, rtol=rtol, seed=seed)
        return self._norm


def _numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _rel(a, b) -> float:
    a, b = _numpy(a).astype(np.float64), _numpy(b).astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def check_against(op, patterns, psf, rtol: float | None = None, seed: int = 1) -> float:
    """Assert that the peer on ``op``'s grid reproduces ``op.forward`` and ``op.adjoint`` (its autograd
    gradient); returns the larger relative error. Default tolerance: 1e-4 (float32), 1e-10 (float64)."""
    rtol = (1e-10 if op.dtype == np.float64 else 1e-4) if rtol is None else rtol
    peer = TorchFFTPhysics.like(op, patterns, psf)
    rng = np.random.default_rng(seed)
    xp = xp_for(op.device)
    x = xp.asarray(rng.random(op.input_shape).astype(op.dtype))
    r = xp.asarray(rng.standard_normal((op.K, *op.camera_shape)).astype(op.dtype))
    aop = AutogradOperator(peer, op)
    err = max(_rel(aop.forward(x), op.forward(x)), _rel(aop.adjoint(r), op.adjoint(r)))
    assert err < rtol, f"torch.fft peer disagrees with SIMOperator: relative error {err:.3g} >= {rtol:g}"
    return err
