"""Array-module selection: NumPy on the CPU, CuPy on a CUDA GPU.

The rule of DESIGN section 3: the array module comes from where the data lives
(``get_xp(x)``), or from an explicit ``device`` when an object is built. Nothing here copies
arrays between devices behind the caller's back.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

DEVICES = ("auto", "cpu", "cuda")


@functools.lru_cache(maxsize=1)
def _cupy_or_none():
    """The cupy module if it imports and sees at least one GPU, else None (cached)."""
    try:
        import cupy  # noqa: PLC0415

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # ImportError, CUDARuntimeError (no driver), ...
        return None


def gpu_available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    return _cupy_or_none() is not None


def resolve_device(device: str) -> str:
    """Turn ``"auto" | "cpu" | "cuda"`` into ``"cpu"`` or ``"cuda"``, or raise one clear ValueError."""
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "cuda" if gpu_available() else "cpu"
    if device == "cuda" and not gpu_available():
        raise ValueError(
            "device='cuda': no usable CUDA GPU (CuPy is not installed or sees no device); "
            "install cusim[cuda12] or cusim[cuda13] on a GPU machine, or use device='cpu'"
        )
    return device


def xp_for(device: str):
    """The array module of a resolved device."""
    return _cupy_or_none() if device == "cuda" else np


def get_xp(x: Any):
    """The array module (numpy or cupy) that owns ``x``."""
    cp = _cupy_or_none()
    if cp is not None and isinstance(x, cp.ndarray):
        return cp
    return np


def device_of(x: Any) -> str:
    return "cuda" if get_xp(x) is not np else "cpu"


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view or copy of a NumPy/CuPy array (copies from the GPU, never silently elsewhere)."""
    if get_xp(x) is np:
        return np.asarray(x)
    return x.get()


def device_name(device: str) -> str:
    """A human-readable name of the compute device, for provenance and benchmark tables."""
    if device == "cuda":
        cp = _cupy_or_none()
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    import platform  # noqa: PLC0415

    return f"cpu ({platform.processor() or platform.machine()})"
