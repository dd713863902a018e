"""Seeded test objects on the fine grid (fluorophore density, >= 0, max 1)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["filaments"]


def _splat(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, weight: float) -> None:
    """Add points with bilinear weights (points outside the image are dropped)."""
    H, W = img.shape
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        r, c = r0 + dr, c0 + dc
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        np.add.at(img, (r[ok], c[ok]), weight * wgt[ok])


def filaments(shape: tuple[int, int], n: int = 20, *, width_px: float = 1.0, stiffness: float = 0.05,
              seed: int = 0) -> np.ndarray:
    """Microtubule-like filaments: ``n`` smooth random curves crossing the field, ~``width_px`` wide.

    Each curve starts at a random point with a random heading and turns by a random walk of angular
    step ``stiffness`` radians per pixel. Returned as float32 normalised to max 1.
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if not width_px > 0:
        raise ValueError(f"width_px: expected a positive number, got {width_px}")
    rng = np.random.default_rng(seed)
    H, W = shape
    img = np.zeros(shape, dtype=np.float64)
    step = 0.5
    n_steps = int(2 * np.hypot(H, W) / step)
    for _ in range(n):
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, stiffness * np.sqrt(step), n_steps))
        start = rng.uniform(0, 1, 2) * (H, W)
        # walk both ways from the start so the filament crosses the field
        rows = start[0] + np.concatenate([-np.cumsum(np.sin(heading[::-1])), np.cumsum(np.sin(heading))]) * step
        cols = start[1] + np.concatenate([-np.cumsum(np.cos(heading[::-1])), np.cumsum(np.cos(heading))]) * step
        _splat(img, rows, cols, rng.uniform(0.5, 1.0) * step)
    img = ndimage.gaussian_filter(img, width_px / 2.355, mode="constant")  # FWHM = width_px
    return (img / img.max()).astype(np.float32)
