"""Learnable sinusoidal illumination for the PINN (``--refine-patterns``), without autograd through FFTs.

The frames are modelled as ``y_k = B(I_k(theta) . x)`` with ``B`` the pattern-free part of the SIM
operator (PSF, binning; a one-frame :class:`~cusim.SIMOperator` of ones applied to a batch), so that
``dL/dI_k = x . B^T r_k`` comes from the hand-written adjoint through :func:`cusim.torch_ops.sim_forward`.
The patterns themselves are rendered by :class:`_Render`, whose backward is the analytic derivative of

    I_k(r) = 1 + m_k cos(psi) + sum_j m_k c_kj cos((j + 2) psi),   psi = 2 pi k_k . r + phi_k

with respect to (ky, kx, phi, m) (DESIGN section 2), contracted with ``dL/dI_k`` over the grid.

Parameters are tied as a microscope ties them: frames that share a carrier (one orientation) share
its k-vector correction and modulation; each frame has its own phase. Corrections are scaled so that
Adam's steps are small: k moves in units of 1e-3 cycles per fine pixel, phases in radians.
"""

from __future__ import annotations

import numpy as np
import torch

from ..patterns import SinusoidParams

K_UNIT = 1e-3  # cycles per fine pixel per unit of the k-correction parameter


class _Render(torch.autograd.Function):
    """theta (K, 4) = (ky, kx, phi, m) -> patterns (K, H, W); backward by the analytic derivative."""

    @staticmethod
    def forward(ctx, theta, harmonics, rows, cols):
        psi = 2 * np.pi * (theta[:, 0, None, None] * rows + theta[:, 1, None, None] * cols) + theta[:, 2, None, None]
        m = theta[:, 3, None, None]
        shape_sum = torch.cos(psi)  # sum of the orders' cosines, weighted by their amplitudes
        dpsi = -torch.sin(psi)  # d(shape_sum)/d psi
        for j in range(harmonics.shape[1]):
            c = harmonics[:, j, None, None]
            shape_sum = shape_sum + c * torch.cos((j + 2) * psi)
            dpsi = dpsi - c * (j + 2) * torch.sin((j + 2) * psi)
        ctx.save_for_backward(shape_sum, dpsi * m, rows, cols)
        return 1 + m * shape_sum

    @staticmethod
    def backward(ctx, grad):
        shape_sum, dpsi, rows, cols = ctx.saved_tensors
        gpsi = grad * dpsi
        g = torch.stack([
            2 * np.pi * (gpsi * rows).sum(dim=(1, 2)),
            2 * np.pi * (gpsi * cols).sum(dim=(1, 2)),
            gpsi.sum(dim=(1, 2)),
            (grad * shape_sum).sum(dim=(1, 2)),
        ], dim=1)
        return g, None, None, None


def carrier_groups(params: SinusoidParams, tol: float = 1e-6) -> np.ndarray:
    """Group index per frame: frames with the same carrier (up to sign) share one group."""
    k = params.normalised().k
    groups = np.full(params.K, -1)
    reps: list[np.ndarray] = []
    for i, ki in enumerate(k):
        for g, r in enumerate(reps):
            if np.abs(ki - r).max() <= tol * max(1.0, np.abs(r).max()):
                groups[i] = g
                break
        else:
            reps.append(ki)
            groups[i] = len(reps) - 1
    return groups


class PatternModel(torch.nn.Module):
    """Sinusoidal patterns with learnable k (per carrier), phase (per frame) and modulation (per carrier)."""

    def __init__(self, params: SinusoidParams, shape: tuple[int, int], device: torch.device):
        super().__init__()
        p = params.normalised()
        self.groups = carrier_groups(p)
        n = int(self.groups.max()) + 1
        idx = torch.as_tensor(self.groups, device=device)
        self.register_buffer("idx", idx)
        self.register_buffer("k0", torch.as_tensor(p.k, dtype=torch.float64, device=device))
        self.register_buffer("phi0", torch.as_tensor(p.phase, dtype=torch.float64, device=device))
        self.register_buffer("m0", torch.as_tensor(p.modulation, dtype=torch.float64, device=device))
        harm = p.harmonics if p.harmonics is not None else np.zeros((p.K, 0))
        self.register_buffer("harmonics", torch.as_tensor(harm, dtype=torch.float32, device=device))
        H, W = shape
        self.register_buffer("rows", torch.arange(H, dtype=torch.float32, device=device)[:, None])
        self.register_buffer("cols", torch.arange(W, dtype=torch.float32, device=device)[None, :])
        self.dk = torch.nn.Parameter(torch.zeros(n, 2, dtype=torch.float64, device=device))
        self.dphi = torch.nn.Parameter(torch.zeros(p.K, dtype=torch.float64, device=device))
        self.dm = torch.nn.Parameter(torch.zeros(n, dtype=torch.float64, device=device))

    def theta(self) -> torch.Tensor:
        """(K, 4) float64: current (ky, kx, phi, m) of every frame."""
        k = self.k0 + K_UNIT * self.dk[self.idx]
        m = (self.m0 + self.dm[self.idx]).clamp(0.0, 1.0)
        return torch.cat([k, (self.phi0 + self.dphi)[:, None], m[:, None]], dim=1)

    def forward(self) -> torch.Tensor:
        """Patterns (K, H, W) float32, non-negative."""
        theta = self.theta().float()
        return _Render.apply(theta, self.harmonics, self.rows, self.cols).clamp_min(0)

    def params(self) -> SinusoidParams:
        th = self.theta().detach().cpu().numpy()
        harm = self.harmonics.cpu().numpy().astype(np.float64)
        return SinusoidParams(th[:, :2], th[:, 2], th[:, 3], harm if harm.shape[1] else None).normalised()
