"""The U-Net of Burns & Liu (2023), configurable.

Default: the paper's network. Input: the K raw frames resampled to the fine grid, one channel per
frame. Three 2x2 max-pool levels with widths 32/64/128/256, two 3x3 convolutions with ReLU per
level, skip connections by concatenation, nearest-neighbour upsampling followed by a convolution (as
in the paper's code; ``up="transpose"`` gives the original U-Net's 2x2 up-convolution), a 1x1 head
and a non-negative output (softplus). ``norm="batch"`` adds batch normalisation (cusim's PINN default).
Under ``torch.autocast`` (cusim's fast PINN step) the outer ``float32_levels`` levels (default 1: the
full-resolution convolutions) and the head stay float32; the inner levels run in reduced precision.

``members=N`` is an ensemble of N independent U-Nets as ONE network: every convolution is grouped
(``groups=N``), so member ``j`` owns channels ``j*c .. (j+1)*c - 1`` of every layer, batch norm
normalises each member's channels by its own statistics, and the skip concatenations stay per member.
The N members step together (one launch per layer instead of N); :meth:`UNet.stack` builds one from N
separately initialised networks, so the ensemble starts exactly where N separate runs start. Members may
see different inputs, even of different channel counts: the input is then (B, N * C, H, W), member j's C
channels in turn, a member with fewer channels zero-padded to C; its first convolution's weights on the
padded channels are zero and stay zero (their gradient is zero), so it computes what the narrower network
computes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


NORMS = ("none", "batch")


def _double_conv(cin: int, cout: int, norm: str = "none", n: int = 1) -> nn.Sequential:
    layers = []
    for a, b in ((cin, cout), (cout, cout)):
        layers.append(nn.Conv2d(n * a, n * b, 3, padding=1, groups=n))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(n * b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _cat(n: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Channel concatenation of ``a`` and ``b`` within each of ``n`` members: member j's channels of
    ``a``, then its channels of ``b`` (for one member, ``torch.cat`` on the channels)."""
    if n == 1:
        return torch.cat([a, b], dim=1)
    B, _, H, W = a.shape
    return torch.cat([a.reshape(B, n, -1, H, W), b.reshape(B, n, -1, H, W)], dim=2).reshape(B, -1, H, W)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, mode: str, norm: str, n: int = 1):
        super().__init__()
        self.mode, self.n = mode, n
        self.up = (nn.ConvTranspose2d(n * cin, n * cout, 2, stride=2, groups=n) if mode == "transpose"
                   else nn.Conv2d(n * cin, n * cout, 3, padding=1, groups=n))
        self.conv = _double_conv(2 * cout, cout, norm, n)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            x = self.up(x)
        else:
            x = F.relu(self.up(F.interpolate(x, scale_factor=2, mode="nearest")))
        if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pad the upsampled map to the skip's size
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        return self.conv(_cat(self.n, skip, x))


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 where it is in a reduced precision; float32 and float64 as they are (a float64 network
    computes in float64: ``x.float()`` made its head's input float32 against float64 weights)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class UNet(nn.Module):
    """U-Net mapping (B, in_channels, H, W) to a non-negative (B, 1, H, W) image.

    ``width`` is the first level's channel count (doubling per level), ``depth`` the number of
    pooling levels, ``up`` ``"nearest"`` (paper) or ``"transpose"``, ``output`` ``"softplus"`` or
    ``"relu"``, ``norm`` ``"none"`` (paper) or ``"batch"`` (batch normalisation after every
    convolution; with one image per batch it normalises over the image, and it makes the untrained
    network fit a SIM stack several times faster). Keep the module in training mode: the statistics
    of the image itself are the normalisation. ``float32_levels``: under autocast, this many outer
    levels (and always the head) run in float32. ``members``: N independent networks in one (see the
    module's description); the input (B, in_channels, H, W) is shared, or (B, N * in_channels, H, W) gives
    each member its own; the output is (B, N, H, W).
    """

    def __init__(self, in_channels: int, *, width: int = 32, depth: int = 3, up: str = "nearest",
                 output: str = "softplus", norm: str = "none", float32_levels: int = 1, members: int = 1):
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
        if members < 1:
            raise ValueError(f"members: expected >= 1, got {members}")
        if float32_levels < 0:
            raise ValueError(f"float32_levels: expected >= 0, got {float32_levels}")
        self.float32_levels = float32_levels
        self.members = n = members
        self.arch = {"in_channels": in_channels, "width": width, "depth": depth, "up": up, "output": output,
                     "norm": norm, "float32_levels": float32_levels}
        widths = [width * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.output = output
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0], norm, n)] +
                                  [_double_conv(widths[i], widths[i + 1], norm, n) for i in range(depth)])
        self.ups = nn.ModuleList([_Up(widths[i + 1], widths[i], up, norm, n) for i in reversed(range(depth))])
        self.head = nn.Conv2d(n * widths[0], n, 1, groups=n)

    @classmethod
    def stack(cls, nets: list[UNet]) -> UNet:
        """One ``members=len(nets)`` network holding the given single networks (one architecture, except perhaps
        their input channels) as its members, weights and batch-norm statistics copied: member j computes what
        ``nets[j]`` computes, given its input zero-padded to the widest member's channels (the class's notes)."""
        def rest(n):
            return {k: v for k, v in n.arch.items() if k != "in_channels"}

        if not nets or any(n.members != 1 or rest(n) != rest(nets[0]) for n in nets):
            raise ValueError("UNet.stack: expected one or more single networks of one architecture")
        c = max(n.arch["in_channels"] for n in nets)
        out = cls(**{**nets[0].arch, "in_channels": c}, members=len(nets)).to(next(nets[0].parameters()).device)
        states = [n.state_dict() for n in nets]
        first = "down.0.0.weight"  # the only weight whose shape depends on the input channels
        merged = {}
        for key, value in out.state_dict().items():
            parts = [s[key] for s in states]
            if key == first:  # a narrower member's weights on the padded channels: zero
                parts = [F.pad(p, (0, 0, 0, 0, 0, c - p.shape[1])) for p in parts]
            # every weight, bias and statistic is split among the members along its first axis; the
            # batch-norm step counts are one number each
            merged[key] = parts[0].clone() if value.ndim == 0 else torch.cat(parts, dim=0)
        out.load_state_dict(merged)
        return out

    def _at(self, level: int, fn, *xs: torch.Tensor) -> torch.Tensor:
        """``fn(*xs)``; under autocast, in float32 on the outer ``float32_levels`` levels."""
        if level < self.float32_levels and torch.is_autocast_enabled(xs[0].device.type):
            with torch.autocast(xs[0].device.type, enabled=False):
                return fn(*(_wide(x) for x in xs))
        return fn(*xs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.members > 1 and x.shape[1] != self.members * self.arch["in_channels"]:
            x = x.repeat(1, self.members, 1, 1)  # every member sees the same input
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = self._at(i, block, x)
            skips.append(x)
        for j, (up, skip) in enumerate(zip(self.ups, reversed(skips[:-1]))):
            x = self._at(self.depth - 1 - j, up, x, skip)
        with torch.autocast(x.device.type, enabled=False):  # the head always in float32: the image is
            x = self.head(_wide(x))  # not rounded to bfloat16's 8-bit mantissa
            return F.softplus(x) if self.output == "softplus" else F.relu(x)
