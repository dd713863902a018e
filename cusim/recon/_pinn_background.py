"""A smooth, non-negative out-of-focus background in the PINN's forward model (``PINNConfig.background``).

The predicted frames ``p`` (N, K, h, w) become ``p + mean(p) * B``, with ``B`` a coarse ``cells x cells`` grid
of values ``softplus(theta) >= 0`` interpolated bilinearly (so never negative, and smooth at the scale of
the grid: h / (cells - 1) camera pixels) to the camera grid: one grid per frame (``"frame"``) or one for
all frames (``"shared"``), one per ensemble member. ``theta`` starts where ``B`` is 1% of the mean and is
learnt with the network by the same Adam. Out-of-focus light is blurred far beyond the in-focus PSF and
is not modulated by the in-focus pattern, so the object alone cannot explain it without artefacts; the
per-frame offset of the loss explains only its constant part.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .config import BACKGROUNDS

CELLS = 4  # grid points per side: a background smooth over a quarter of the field and more
_START = math.log(math.expm1(0.01))  # softplus(_START) = 0.01: 1% of the frames' mean


class Background(torch.nn.Module):
    def __init__(self, members: int, frames: int, camera_shape: tuple[int, int], kind: str, device=None):
        super().__init__()
        if kind not in BACKGROUNDS[1:]:
            raise ValueError(f"background: expected one of {BACKGROUNDS[1:]}, got {kind!r}")
        k = frames if kind == "frame" else 1
        self.kind = kind  # recorded as asked: with one frame, "frame" and "shared" have the same shape
        self.camera_shape = tuple(camera_shape)
        self.theta = torch.nn.Parameter(torch.full((members, k, CELLS, CELLS), _START, device=device))

    def field(self) -> torch.Tensor:
        """The background (N, K or 1, h, w) relative to the frames' mean, >= 0."""
        return F.interpolate(F.softplus(self.theta), size=self.camera_shape, mode="bilinear", align_corners=True)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return p + p.mean((-3, -2, -1), keepdim=True).detach() * self.field()

    def record(self) -> dict:
        """Provenance: the kind and the background's mean and max relative to the frames' mean (per member)."""
        with torch.no_grad():
            b = self.field()
        return {"kind": self.kind, "cells": CELLS,
                "mean_rel": [float(v) for v in b.mean((1, 2, 3))], "max_rel": [float(v) for v in b.amax((1, 2, 3))]}
