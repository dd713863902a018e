"""The U-Net of Burns & Liu (2023), configurable.

Default: the paper's network. Input: the K raw frames resampled to the fine grid, one channel per
frame. Three 2x2 max-pool levels with widths 32/64/128/256, two 3x3 convolutions with ReLU per
level, skip connections by concatenation, nearest-neighbour upsampling followed by a convolution (as
in the paper's code; ``up="transpose"`` gives the original U-Net's 2x2 up-convolution), a 1x1 head
and a non-negative output (softplus). ``norm="batch"`` adds batch normalisation (cusim's PINN default).
Under ``torch.autocast`` (cusim's fast PINN step) the outer ``float32_levels`` levels (default 1: the
full-resolution convolutions) and the head stay float32; the inner levels run in reduced precision.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


NORMS = ("none", "batch")


def _double_conv(cin: int, cout: int, norm: str = "none") -> nn.Sequential:
    layers = []
    for a, b in ((cin, cout), (cout, cout)):
        layers.append(nn.Conv2d(a, b, 3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, mode: str, norm: str):
        super().__init__()
        self.mode = mode
        self.up = (nn.ConvTranspose2d(cin, cout, 2, stride=2) if mode == "transpose"
                   else nn.Conv2d(cin, cout, 3, padding=1))
        self.conv = _double_conv(2 * cout, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            x = self.up(x)
        else:
            x = F.relu(self.up(F.interpolate(x, scale_factor=2, mode="nearest")))
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pad the upsampled map to the skip's size
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net mapping (B, in_channels, H, W) to a non-negative (B, 1, H, W) image.

    ``width`` is the first level's channel count (doubling per level), ``depth`` the number of
    pooling levels, ``up`` ``"nearest"`` (paper) or ``"transpose"``, ``output`` ``"softplus"`` or
    ``"relu"``, ``norm`` ``"none"`` (paper) or ``"batch"`` (batch normalisation after every
    convolution; with one image per batch it normalises over the image, and it makes the untrained
    network fit a SIM stack several times faster). Keep the module in training mode: the statistics
    of the image itself are the normalisation. ``float32_levels``: under autocast, this many outer
    levels (and always the head) run in float32.
    """

    def __init__(self, in_channels: int, *, width: int = 32, depth: int = 3, up: str = "nearest",
                 output: str = "softplus", norm: str = "none", float32_levels: int = 1):
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 0:
            raise ValueError(f"UNet: expected in_channels >= 1, width >= 1, depth >= 0; "
                             f"got {in_channels}, {width}, {depth}")
        if up not in ("nearest", "transpose"):
            raise ValueError(f"up: expected 'nearest' or 'transpose', got {up!r}")
        if output not in ("softplus", "relu"):
            raise ValueError(f"output: expected 'softplus' or 'relu', got {output!r}")
        if norm not in NORMS:
            raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
        if float32_levels < 0:
            raise ValueError(f"float32_levels: expected >= 0, got {float32_levels}")
        self.float32_levels = float32_levels
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.output = output
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0], norm)] +
                                  [_double_conv(widths[i], widths[i + 1], norm) for i in range(depth)])
        self.ups = nn.ModuleList([_Up(widths[i + 1], widths[i], up, norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def _at(self, level: int, fn, *xs: torch.Tensor) -> torch.Tensor:
        """``fn(*xs)``; under autocast, in float32 on the outer ``float32_levels`` levels."""
        if level < self.float32_levels and torch.is_autocast_enabled(xs[0].device.type):
            with torch.autocast(xs[0].device.type, enabled=False):
                return fn(*(x.float() for x in xs))
        return fn(*xs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = self._at(i, block, x)
            skips.append(x)
        for j, (up, skip) in enumerate(zip(self.ups, reversed(skips[:-1]))):
            x = self._at(self.depth - 1 - j, up, x, skip)
        with torch.autocast(x.device.type, enabled=False):  # the head always in float32: the image is
            x = self.head(x.float())  # not rounded to bfloat16's 8-bit mantissa
            return F.softplus(x) if self.output == "softplus" else F.relu(x)
