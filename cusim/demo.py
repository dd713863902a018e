"""The built-in demonstration: linear SIM of a filament phantom through :class:`SIMOperator`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import optics, patterns, phantoms
from .backend import device_name, to_numpy, xp_for
from .operators import SIMOperator, dottest

# Optics of the demo: a 1.2 NA objective, 520 nm emission, 100 nm camera pixels, fine grid 2x finer.
NA, WAVELENGTH_NM, PIXEL_NM, UPSAMPLE, SNR = 1.2, 520.0, 100.0, 2, 20.0


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    to_numpy(out)  # forces completion on a GPU
    return out, 1e3 * (time.perf_counter() - t)


def forward_model_demo(out: Path, *, size: int = 256, seed: int = 0, device: str = "auto") -> dict:
    """Simulate 3x3 linear SIM of a filament phantom (pattern frequency 0.9x the OTF cut-off, SNR 20),
    write a figure to ``out/forward_model.png`` and return what was done."""
    wf = optics.Widefield(NA, WAVELENGTH_NM, PIXEL_NM)
    k = 0.9 * wf.cutoff(UPSAMPLE)
    pats = patterns.linear((size, size), period_px=1 / k, angle_offset_deg=10)
    obj = phantoms.filaments((size, size), n=max(4, size // 10), seed=seed)
    op = SIMOperator(pats, wf, UPSAMPLE, pad=8, device=device)
    xp = xp_for(op.device)
    x = xp.asarray(obj)
    op.forward(x)  # warm-up (kernel compilation, FFT plans)
    clean, fwd_ms = _timed(op.forward, x)
    _, adj_ms = _timed(op.adjoint, clean)
    clean = to_numpy(clean)
    rng = np.random.default_rng(seed)
    raw = clean + rng.normal(0, clean.mean() / SNR, clean.shape).astype(np.float32)
    path = _figure(Path(out), obj, pats, raw)
    return dict(K=op.K, camera_shape=op.camera_shape, device=device_name(op.device), forward_ms=fwd_ms,
                adjoint_ms=adj_ms, dottest=dottest(op), figure=path)


def _logspec(img: np.ndarray) -> np.ndarray:
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))))


def _figure(out: Path, obj, pats, raw) -> Path:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    widefield = raw.mean(axis=0)
    panels = [
        ("object (fine grid)", obj, "gray"),
        ("pattern, frame 1", pats[0], "magma"),
        ("raw frame 1 (camera)", raw[0], "gray"),
        ("widefield = mean of raw frames", widefield, "gray"),
        ("log |FFT| raw frame 1: moire side bands", _logspec(raw[0]), "viridis"),
        ("log |FFT| widefield", _logspec(widefield), "viridis"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 9))
    for ax, (title, img, cmap) in zip(axes.ravel(), panels):
        ax.imshow(img, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("cusim forward model: linear SIM, 3 angles x 3 phases, SNR 20")
    fig.tight_layout()
    path = out / "forward_model.png"
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)  # never a half-written figure
    return path
