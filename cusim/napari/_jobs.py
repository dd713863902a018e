"""A reconstruction the viewer runs in a worker thread: progress it can poll, a cancel it can ask for, and
the result as a layer. Free of napari and Qt, so its cancellation is tested without a viewer.

Cancelling sets an event that the method's progress callback (PINN steps, iterative iterations) checks
after every step, raising :class:`Cancelled` there; widefield and Wiener take no steps, so a cancel is
seen before they start and their result is then dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import recon
from ..io import add_recon, check_recon_name, check_writable, load, peek
from ._reader import fine_layer

STEPPED = ("pinn", "iterative")  # methods that report progress (and can stop) after every step


class Cancelled(Exception):
    """The user cancelled the job; ``step`` is the last step it completed."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"cancelled after step {step}")


@dataclass
class Job:
    """Reconstruct the dataset at ``path`` with ``method`` and ``params`` (those of
    :func:`cusim.reconstruct`); with ``store`` also add it to the file as ``/recon/<name>`` (never over an
    existing one). Call it (in a worker thread) for the layer-data tuple of the result."""

    path: Path
    method: str
    params: dict = field(default_factory=dict)
    name: str | None = None
    store: bool = False
    device: str = "auto"
    estimate_patterns: bool = False
    step: int = 0
    total: int = 0
    loss: float = float("nan")
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self):
        if self.method not in recon.METHODS:
            raise ValueError(f"method: expected one of {list(recon.METHODS)}, got {self.method!r}")
        self.name = self.name or self.method
        if self.store:  # before the reconstruction, not after it (the result was lost with an error then)
            check_recon_name(Path(self.path), self.name)
            if peek(self.path, self.name)[1] is not None:
                raise ValueError(f"{self.path}: /recon/{self.name}: exists already; choose another name (the widget "
                                 "never replaces a stored result)")
            check_writable(Path(self.path))

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _progress(self, step, total, loss, _residual=None):
        self.step, self.total, self.loss = int(step), int(total), float(loss)
        if self._cancel.is_set():
            raise Cancelled(self.step)

    def __call__(self) -> tuple:
        ds = load(self.path)
        if self.cancelled:
            raise Cancelled(0)
        kw = dict(self.params)
        if self.method in STEPPED:
            kw["callback"] = self._progress
        if self.estimate_patterns:
            kw["estimate_patterns"] = True
        res = recon.reconstruct(ds, self.method, device=self.device, **kw)
        if self.cancelled:
            raise Cancelled(self.step)
        rec = res.to_recon()
        if self.store:
            add_recon(self.path, self.name, rec)
        where = f"/recon/{self.name}" if self.store else f"(not stored) {self.name}"
        return fine_layer(ds, res.image, f"{Path(self.path).stem} {self.name}", where, provenance=rec.attrs)
