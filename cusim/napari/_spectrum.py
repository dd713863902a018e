"""The pattern-estimation view: the raw frames' spectrum with the carriers that ``cusim estimate`` finds in
it (and those stored in ``/pattern_params``, when the file has them) marked at +k and -k.

Coordinates are spatial frequencies in cycles per CAMERA pixel (the spectrum spans -0.5..0.5), the units
of :class:`cusim.estimate.EstimateResult.k_camera`. Free of napari and Qt (layer-data tuples).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..estimate import estimate_dataset


def frames_spectrum(frames: np.ndarray) -> np.ndarray:
    """log10 of the mean over frames of |FFT|^2 of each mean-free frame (K, h, w), fftshifted (h, w)."""
    f = np.asarray(frames, dtype=np.float64)
    f = f - f.mean(axis=(-2, -1), keepdims=True)
    power = np.mean(np.abs(np.fft.fft2(f)) ** 2, axis=0)
    power = np.fft.fftshift(power)
    return np.log10(power + power.max() * 1e-12).astype(np.float32)


def _carrier_points(k_camera: np.ndarray, name: str, color: str, meta: dict) -> tuple:
    """+k and -k of every angle as a points layer (row, column) = (ky, kx), labelled by angle."""
    k = np.asarray(k_camera, dtype=float).reshape(-1, 2)
    points = np.concatenate([k, -k])
    labels = [f"angle {a + 1}" for a in range(len(k))] * 2
    kwargs = {"name": name, "size": 0.03, "face_color": "transparent", "border_color": color, "border_width": 0.15,
              "symbol": "ring", "features": {"angle": labels}, "text": {"string": "{angle}", "color": color,
                                                                        "size": 8, "anchor": "upper_left"},
              "metadata": meta}
    return points, kwargs, "points"


def pattern_layers(ds, t: int = 0) -> list[tuple]:
    """Spectrum of time point ``t``'s frames, the estimated carriers, and the stored ones (if any)."""
    est = estimate_dataset(ds, t=t)
    h, w = ds.camera_shape
    stem = Path(ds.path).stem if ds.path else "dataset"
    meta = {"cusim": {"path": None if ds.path is None else str(Path(ds.path).resolve()), "time_point": t,
                      "units": "cycles per camera pixel"}}
    spectrum = ({"name": f"{stem} spectrum (log10 power)", "scale": (1.0 / h, 1.0 / w),
                 "translate": (-(h // 2) / h, -(w // 2) / w), "colormap": "magma", "axis_labels": ("ky", "kx"),
                 "metadata": meta})
    layers = [(frames_spectrum(ds.frames(t)), spectrum, "image"),
              _carrier_points(est.k_camera, f"{stem} carriers (estimated)", "cyan",
                              {"cusim": {**meta["cusim"], "summary": est.summary()}})]
    if ds.pattern_params is not None:
        stored = ds.pattern_params.k * ds.upsample  # cycles per fine pixel -> per camera pixel
        layers.append(_carrier_points(np.unique(np.round(stored, 6), axis=0), f"{stem} carriers (/pattern_params)",
                                      "yellow", meta))
    return layers
