"""Widefield reference: the mean of the raw frames, interpolated to the fine grid by cubic splines."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def upsample_cubic(img: np.ndarray, s: int) -> np.ndarray:
    """Cubic-spline interpolation by an integer factor, pixel-centre aligned: camera pixel i covers fine
    pixels s*i .. s*i+s-1, so its centre sits at fine coordinate s*i + (s-1)/2."""
    if s == 1:
        return np.asarray(img, dtype=np.float32)
    return ndimage.zoom(np.asarray(img, dtype=np.float64), s, order=3, grid_mode=True,
                        mode="grid-mirror").astype(np.float32)


def image(dataset, t: int = 0) -> np.ndarray:
    """Mean over the K frames of time point ``t``, upsampled to the fine grid (H, W)."""
    return upsample_cubic(dataset.frames(t).mean(axis=0), dataset.upsample)


def reconstruct(dataset, *, device: str = "auto") -> tuple[np.ndarray, dict]:
    """The widefield image of every time point: (H, W) or (T, H, W)."""
    imgs = [image(dataset, t) for t in range(dataset.T)]
    return (np.stack(imgs) if dataset.is_series else imgs[0]), {}
