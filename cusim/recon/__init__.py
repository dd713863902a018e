"""Reconstructions: one module per method, all behind :func:`reconstruct`.

Each method module provides ``reconstruct(dataset, *, device, **params) -> (image, info)`` for all
time points of a dataset ((H, W) or (T, H, W)); this module times the work and records provenance in a
:class:`Result`. Methods are imported on use, so that torch loads only for the PINN.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._syserrors import MissingExtra
from .._validate import check_frames_vary
from .._version import __version__
from ..backend import device_name, resolve_device
from ..io import Dataset, Recon
from ..patterns import HexagonalParams, SinusoidParams, params_record
from .config import CONFIGS

if TYPE_CHECKING:
    from ..estimate import EstimateResult

METHODS = ("widefield", "wiener", "iterative", "pinn")
# methods that use the illumination patterns (and can have them estimated first)
PATTERN_METHODS = ("wiener", "iterative", "pinn")
# keyword arguments that steer a run but do not change its result: not recorded as parameters
_OPERATIONAL = ("callback", "checkpoint", "checkpoint_every", "resume", "keep_checkpoint")
# extras that are records (dicts) and belong to the stored result: the patterns used, the camera noise model
# and the learnt background (cusim.recon.pinn)
RECORDED_EXTRA = ("pattern_params", "camera", "background")


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

    def recorded_extra(self) -> dict:
        """What of ``extra`` a stored reconstruction keeps: plain numbers and words, and the records of what
        the run estimated or modelled (:data:`RECORDED_EXTRA`); not per-step histories."""
        return {k: v for k, v in self.extra.items() if isinstance(v, (int, float, str)) or k in RECORDED_EXTRA}

    @property
    def final_loss(self) -> float | None:
        """The last loss; for a PINN ensemble, whose ``loss`` holds the members' histories one after another, the
        mean of the members' last losses (``extra["final_loss"]``), not the last member's."""
        if "final_loss" in self.extra:
            return float(self.extra["final_loss"])
        return None if self.loss is None or len(self.loss) == 0 else float(self.loss[-1])

    def to_recon(self, **more_attrs) -> Recon:
        """The ``/recon/<name>`` record of DESIGN section 2."""
        attrs = {"method": self.method, "params": self.params, "cusim_version": __version__,
                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "device": self.device, "runtime_s": float(self.runtime_s), **more_attrs}
        if self.final_loss is not None:
            attrs["final_loss"] = self.final_loss
        return Recon(np.asarray(self.image, dtype=np.float32), attrs, self.loss)


def _method_module(method: str):
    """The module of ``method``; the PINN's needs PyTorch, an optional dependency (``cusim[pinn]``)."""
    try:
        return importlib.import_module(f"{__name__}.{method}")
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        raise MissingExtra(f"method {method!r} needs PyTorch, which is not installed; install it with "
                           "pip install 'cusim[pinn]' (or pip install torch)") from None


def with_estimated_patterns(dataset: Dataset, estimate=None, **options) -> tuple[Dataset, object]:
    """A copy of ``dataset`` whose patterns are the sinusoidal parameters estimated from its frames
    (:func:`cusim.estimate.estimate_dataset`), or those of ``estimate`` (an EstimateResult made before), and the
    estimate itself."""
    from ..estimate import estimate_dataset  # noqa: PLC0415

    est = estimate_dataset(dataset, **options) if estimate is None else estimate
    return dataclasses.replace(dataset, patterns=None, pattern_params=est.params, pattern_kind="estimated",
                               pattern_attrs={}, pattern_context=None), est


def recorded_params(method: str, params: dict, estimate_patterns: bool = False) -> dict:
    """The ``params`` a reconstruction records (``/recon/<name>`` attribute ``params``): every setting of
    the method as resolved (defaults included) and the others given, less the operational ones (which do
    not change the result). Two runs with equal records ran with the same settings (``cusim.batch``'s resume)."""
    # pattern parameters given as an argument (wiener's params=) as their record: the object is no attribute
    recorded = {k: params_record(v) if isinstance(v, (SinusoidParams, HexagonalParams)) else v
                for k, v in params.items() if k not in _OPERATIONAL}
    if method in CONFIGS:
        fields = {f.name for f in dataclasses.fields(CONFIGS[method])}
        cfg = CONFIGS[method].from_params({k: v for k, v in recorded.items() if k in fields})
        recorded = {**dataclasses.asdict(cfg), **recorded}
    if estimate_patterns:
        recorded["estimate_patterns"] = True
    return recorded


def reconstruct(dataset: Dataset, method: str = "widefield", *, device: str = "auto",
                estimate_patterns: bool | EstimateResult = False, **params) -> Result:
    """Reconstruct every time point of ``dataset`` with ``method``; returns a :class:`Result`.

    ``params`` go to the method (see ``cusim.recon.<method>.reconstruct``), e.g. ``steps=500`` for the PINN.
    ``estimate_patterns`` first replaces the dataset's patterns by those estimated from its frames (time point 0);
    an :class:`~cusim.estimate.EstimateResult` in its place is such an estimate made before, used and recorded as
    if made here (:mod:`cusim.batch` gives each chunk of a series the estimate of the whole series).
    A time point with a constant frame (every pixel zero, one value, or saturated) is refused first
    (ValueError naming it).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset: expected a cusim Dataset (cusim.load(path), cusim.simulate(...)), got "
                         f"{type(dataset).__name__}")
    if not (isinstance(estimate_patterns, (bool, np.bool_)) or hasattr(estimate_patterns, "params")):
        # a truthy "no" or 1 estimated too
        raise ValueError(f"estimate_patterns: expected True, False or an EstimateResult, got {estimate_patterns!r}")
    if estimate_patterns and method not in PATTERN_METHODS:
        raise ValueError(f"estimate_patterns: method {method!r} uses no patterns")
    if method not in CONFIGS and params:  # widefield takes no settings (the others' configs check theirs)
        raise ValueError(f"{method}: unknown parameter(s) {sorted(params)}; it takes none")
    raw = np.asarray(dataset.raw)  # constant frames (empty, saturated) fail here, not in a method's arithmetic
    where = "raw" if dataset.path is None else f"{dataset.path}: /raw"
    if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():  # a method blamed its settings
        raise ValueError(f"{where}: contains NaN or Inf; expected finite frames")
    check_frames_vary(raw if dataset.is_series else raw[None], where)
    dev = resolve_device(device)
    fn = _method_module(method).reconstruct
    t0 = time.perf_counter()
    estimated = None
    if estimate_patterns:  # True (estimate here) or an EstimateResult made before (its .params)
        made = estimate_patterns if hasattr(estimate_patterns, "params") else None
        dataset, est = with_estimated_patterns(dataset, made)
        estimated = params_record(est.params)
        if est.lattice:  # angles found near the others' lattice (1-based), as cusim estimate records them
            estimated["lattice_angles"] = [a + 1 for a in est.lattice]
    image, info = fn(dataset, device=dev, **params)
    runtime = time.perf_counter() - t0
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():  # not a result: no image, no record, no metrics of it
        bad = int(image.size - np.isfinite(image).sum())
        raise ValueError(f"{method}: {bad} of the image's {image.size} pixels are not finite (NaN or inf): these "
                         f"settings made the reconstruction diverge")
    recorded = recorded_params(method, params, estimated is not None)
    extra = {k: v for k, v in info.items() if k != "loss"}
    if estimated is not None:
        extra.setdefault("pattern_params", estimated)
    return Result(image, method, recorded, device_name(dev), runtime,
                  info.get("loss"), extra)
