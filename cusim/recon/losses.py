"""Data-fidelity losses and image priors for the PINN, on torch tensors (camera grid, small).

Every data loss compares the predicted frames ``p`` (K, h, w), after a per-frame gain and offset
fitted in closed form, with the measured frames ``y``: so arbitrary units and camera offsets do not
matter (see :class:`DataLoss` for which fit serves the loss and which the stopping rule). Predictions
of an ensemble's members, (N, K, h, w), give one loss per member (every reduction is over the last
three axes, the frames); priors likewise take images (H, W) or (N, H, W).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .config import DATA_LOSSES, PRIORS, parse_loss  # noqa: F401  (the loss grammar lives with the settings)



def fit_gain_offset(p: torch.Tensor, y: torch.Tensor, mode: str = "frame",
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``a``, ``b`` with ``a p + b ~ y``: one pair per frame (``"frame"``) or one in all
    (``"global"``), over the pixels of ``weights`` 1 only where given (a 0/1 mask of ``y``'s shape). Shapes
    broadcast against (K, h, w); detached."""
    with torch.no_grad():
        dims = (-2, -1) if mode == "frame" else (-3, -2, -1)
        if weights is None:
            pm, ym = p.mean(dims, keepdim=True), y.mean(dims, keepdim=True)
            pc = p - pm
            a = (pc * (y - ym)).sum(dims, keepdim=True) / (pc * pc).sum(dims, keepdim=True).clamp_min(1e-30)
            return a, ym - a * pm
        mean = _masked_mean(weights, dims)
        pm, ym = mean(p), mean(y)
        pc = p - pm
        a = mean(pc * (y - ym)) / mean(pc * pc).clamp_min(1e-30)
        return a, ym - a * pm


def _masked_mean(mask: torch.Tensor, dims: tuple):
    """The mean over ``dims`` of the pixels where ``mask`` (0/1) is 1, kept dims."""
    n = mask.sum(dims, keepdim=True)
    return lambda v: (v * mask).sum(dims, keepdim=True) / n


def _gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=None) -> torch.Tensor:
    c = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


_FRAMES = (-3, -2, -1)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean Gaussian-window SSIM of image stacks (K, h, w) (window 11, sigma 1.5, K1 0.01, K2 0.03); of
    stacks (N, K, h, w), one mean per stack (``b`` broadcasts)."""
    w = _gaussian_window(device=a.device, dtype=a.dtype)
    lead = a.shape[:-2]
    b = b.expand_as(a)
    a4, b4 = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])
    mu_a, mu_b = F.conv2d(a4, w), F.conv2d(b4, w)
    saa = F.conv2d(a4 * a4, w) - mu_a**2
    sbb = F.conv2d(b4 * b4, w) - mu_b**2
    sab = F.conv2d(a4 * b4, w) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.reshape(*lead, *s.shape[-2:]).mean(_FRAMES)




class DataLoss:
    """Weighted sum of data losses between predicted and measured frames.

    ``y`` are the measured frames (K, h, w); ``sigma`` the noise level estimated from them (same units).
    ``mse`` is normalised by ``sigma**2``, so the discrepancy principle stops at ``mse <= tau``; ``pg``
    is the Gaussian approximation of the Poisson-Gaussian negative log-likelihood with variance
    ``c0 + c1 * mean`` fitted to the data (constant part dropped); ``ssim`` is ``1 - SSIM`` on frames
    scaled to the measured range.

    ``watch`` (a pair of slices of the frames' rows and columns) restricts the residual ``mse`` to that
    window; the loss sees every pixel but those of ``holdout`` (a boolean mask of the frames, the validation
    stop), whose residual ``mse`` then is: no fit (gain, offset, moments) sees them.

    With a ``camera`` (:class:`cusim.noise.CameraNoise`) every pixel's squared residual is divided by its
    own noise variance ``camera.variance`` at the fitted prediction (detached) instead of ``sigma**2``, in
    the ``mse`` loss (weighted least squares: the Gaussian approximation of the Poisson-Gaussian
    likelihood) and in the stopping rule's residual, which is then in units of the expected variance.
    """

    def __init__(self, spec: str, y: torch.Tensor, sigma: float, gain: str = "frame",
                 watch: tuple[slice, slice] | None = None, camera=None, holdout: torch.Tensor | None = None):
        if gain not in ("frame", "global"):
            raise ValueError(f"gain: expected 'frame' or 'global', got {gain!r}")
        self.terms = parse_loss(spec)
        self.y, self.sigma2, self.gain = y, float(sigma) ** 2, gain
        self.watch = (Ellipsis, *watch) if watch is not None else (Ellipsis,)
        self.range = float(y.max() - y.min()) or 1.0
        self._pg = _poisson_gaussian_fit(y, self.sigma2) if "pg" in self.terms else None
        self.camera = camera
        # validation: pixels held out of the loss (``holdout``, a boolean mask of the frames) are those the
        # stopping residual watches (within ``watch``)
        self._train = self._watched = None
        if holdout is not None:
            self._train = (~holdout).to(y.dtype)
            watched = torch.zeros_like(y)
            watched[self.watch] = holdout[self.watch].to(y.dtype)
            self._watched = watched
        # the held-out pixels the stopping residual is a mean over (validation), per frame stack
        self.n_held = 0 if self._watched is None else int(self._watched.sum())
        # the floor of a pixel's variance: a tenth of the mean (a prediction that dips below the offset)
        self._var_floor = None if camera is None else 0.1 * float(camera.variance(y).mean())

    def _variance(self, fitted: torch.Tensor):
        """Per-pixel noise variance at the fitted prediction (camera model), or the one sigma^2."""
        if self.camera is None:
            return self.sigma2
        return self.camera.variance(fitted.detach()).clamp_min(self._var_floor)

    def __call__(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise, and the residual MSE in units of sigma^2 (for the stopping rule) as a
        detached tensor on ``p``'s device (reading it back is the caller's choice: no host sync here);
        both 0-d for frames (K, h, w), of shape (N,) for an ensemble's (N, K, h, w).

        The loss maps the prediction onto the data by MOMENT matching (gain = std(y) / std(p), which
        is positive by construction, with the gradient flowing through it): a least-squares gain may
        turn negative for an early, random network output and the optimisation would then settle on
        an inverted image. The moment-matched squared error equals ``2 var(y) (1 - corr(p, y))``, so
        it is a per-frame correlation loss. The stopping rule uses the least-squares residual.
        """
        with torch.no_grad():  # held-out pixels (validation) play no part in any fit, only in the residual
            a, b = fit_gain_offset(p, self.y, self.gain, weights=self._train)
            fitted = a * p + b
            if self._watched is not None:
                w = self._watched
                mse = ((fitted - self.y) ** 2 / self._variance(fitted) * w).sum(_FRAMES) / w.sum()
            elif self.camera is None:  # (the white model's arithmetic as it always was: bit-identical runs)
                mse = ((fitted - self.y)[self.watch] ** 2).mean(_FRAMES) / self.sigma2
            else:
                mse = ((fitted - self.y) ** 2 / self._variance(fitted))[self.watch].mean(_FRAMES)
        dims = (-2, -1) if self.gain == "frame" else (-3, -2, -1)
        mean = (lambda v: v.mean(dims, keepdim=True)) if self._train is None else _masked_mean(self._train, dims)
        pm, ym = mean(p), mean(self.y)
        ps = mean((p - pm).square()).clamp_min(1e-30).sqrt()
        ys = mean((self.y - ym).square()).sqrt()
        q = (p - pm) * (ys / ps) + ym
        r2 = (q - self.y) ** 2
        if self._train is not None:  # held-out pixels carry no loss; the mean is over the others
            r2 = r2 * self._train * (self._train.numel() / self._train.sum())
        total = torch.zeros(p.shape[:-3], dtype=p.dtype, device=p.device)
        for name, weight in self.terms.items():
            if name == "mse":
                total = total + weight * (r2.mean(_FRAMES) / self.sigma2 if self.camera is None
                                          else (r2 / self._variance(q)).mean(_FRAMES))
            elif name == "ssim":
                total = total + weight * (1 - ssim(q / self.range, self.y / self.range))
            else:
                c0, c1 = self._pg
                var = (c0 + c1 * q.detach()).clamp_min(0.1 * self.sigma2)
                total = total + weight * 0.5 * (r2 / var).mean(_FRAMES)
        return total, mse


def _poisson_gaussian_fit(y: torch.Tensor, sigma2: float) -> tuple[float, float]:
    """Variance model ``c0 + c1 * mean``: shot noise grows with the signal above the camera offset.

    With only the mean variance ``sigma2`` known, the split assumes the darkest 1% of pixels are read
    noise limited: ``c1 (mean - dark) + c0`` averages to ``sigma2`` with ``c0`` a tenth of it at least.
    """
    dark = float(torch.quantile(y.flatten()[:: max(1, y.numel() // 100000)], 0.01))
    excess = float(y.mean()) - dark
    c0 = 0.1 * sigma2
    c1 = (sigma2 - c0) / excess if excess > 0 else 0.0
    return c0 - c1 * dark, c1


def prior(x: torch.Tensor, kind: str, eps: float = 1e-3) -> torch.Tensor:
    """Smoothed isotropic total variation or Hessian (Frobenius) norm of an image (H, W), per pixel,
    relative to the image's mean (so the weight does not depend on units); of images (N, H, W), one
    value per image."""
    img = (-2, -1)
    if kind == "none":
        return torch.zeros(x.shape[:-2], dtype=x.dtype, device=x.device)
    scale = x.mean(img, keepdim=True).detach().clamp_min(1e-12)
    if kind == "tv":
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
        r = torch.sqrt(dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2 + (eps * scale) ** 2)
        return (r / scale).mean(img)
    if kind == "hessian":
        dxx = x[..., :, 2:] - 2 * x[..., :, 1:-1] + x[..., :, :-2]
        dyy = x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]
        dxy = x[..., 1:, 1:] - x[..., 1:, :-1] - x[..., :-1, 1:] + x[..., :-1, :-1]
        r = torch.sqrt(dxx[..., 1:-1, :] ** 2 + dyy[..., :, 1:-1] ** 2 + 2 * dxy[..., :-1, :-1] ** 2 + (eps * scale) ** 2)
        return (r / scale).mean(img)
    raise ValueError(f"prior: expected one of {PRIORS}, got {kind!r}")
