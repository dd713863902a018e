"""Reconstructions: one function per method, all behind :func:`reconstruct`.

Each method module provides ``reconstruct(dataset, t, *, device, **params) -> (image, info)`` for one
time point; this module loops over time points, times the work and records provenance in a
:class:`Result`.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..backend import device_name, resolve_device
from ..io import Dataset, Recon
from . import widefield

METHODS = {"widefield": widefield.reconstruct}


@dataclass
class Result:
    """A reconstruction with what produced it."""

    image: np.ndarray
    method: str
    params: dict
    device: str
    runtime_s: float
    loss: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        return None if self.loss is None or len(self.loss) == 0 else float(self.loss[-1])

    def to_recon(self, **more_attrs) -> Recon:
        """The ``/recon/<name>`` record of DESIGN section 2."""
        attrs = {"method": self.method, "params": self.params, "cusim_version": __version__,
                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "device": self.device, "runtime_s": float(self.runtime_s), **more_attrs}
        if self.final_loss is not None:
            attrs["final_loss"] = self.final_loss
        return Recon(np.asarray(self.image, dtype=np.float32), attrs, self.loss)


def reconstruct(dataset: Dataset, method: str = "widefield", *, device: str = "auto", **params) -> Result:
    """Reconstruct every time point of ``dataset`` with ``method``; returns a :class:`Result`."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    dev = resolve_device(device)
    fn = METHODS[method]
    t0 = time.perf_counter()
    images, losses = [], []
    for t in range(dataset.T):
        img, info = fn(dataset, t, device=dev, **params)
        images.append(np.asarray(img, dtype=np.float32))
        if info.get("loss") is not None:
            losses.append(np.asarray(info["loss"]))
    runtime = time.perf_counter() - t0
    image = np.stack(images) if dataset.is_series else images[0]
    loss = np.concatenate(losses) if losses else None
    return Result(image, method, dict(params), device_name(dev), runtime, loss)
