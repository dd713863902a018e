"""The one set of scalar validators: every setting of the package is checked by these, so a bad value
gets the same one-line message (``name: expected ..., got ...``) wherever it enters.

Each raises ``error`` (ValueError by default; readers pass their own subclass, e.g. ``DatasetError``)
and returns the value as a plain Python number. :func:`check_frames_vary` is the one check that raw
frames hold something to reconstruct from.
"""

from __future__ import annotations

import math

import numpy as np


def check_int(name: str, value, lo: int | None = None, hi: int | None = None, *, error=ValueError) -> int:
    """An integer (not a bool) in ``lo..hi`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{name}: expected an integer{_range(lo, hi)}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise error(f"{name}: expected an integer{_range(lo, hi)}, got {value!r}")
    return int(value)


def check_number(name: str, value, *, lo: float | None = None, hi: float | None = None, strict: bool = False,
                 error=ValueError) -> float:
    """A finite real number (not a bool) with ``lo <= value <= hi`` (``lo < value`` when ``strict``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)
    ok = ok and (lo is None or (value > lo if strict else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        bound = [] if lo is None else [f"{'>' if strict else '>='} {lo:g}"]
        bound += [] if hi is None else [f"<= {hi:g}"]
        want = " " + " and ".join(bound) if bound else ""
        raise error(f"{name}: expected a finite number{want}, got {value!r}")
    return float(value)


def check_positive(name: str, value, *, error=ValueError) -> float:
    """A finite number > 0."""
    return check_number(name, value, lo=0.0, strict=True, error=error)


def check_choice(name: str, value, allowed, *, error=ValueError):
    """One of ``allowed`` (compared with ==)."""
    if value not in tuple(allowed):
        raise error(f"{name}: expected one of {list(allowed)}, got {value!r}")
    return value


def _range(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def check_frames_vary(frames, where: str = "frames", *, error=ValueError) -> None:
    """Raise ``error`` when a frame of ``frames`` (K, h, w), or of any time point of (T, K, h, w), has
    one value in every pixel (zero, a constant, or all at the integer dtype's saturation value): nothing
    to reconstruct from it. The message names ``where``, the time point and the frame (counted from 0).

    Cheap: a frame whose first row varies is passed after reading that row; only the others are read whole.
    """
    a = np.asarray(frames)
    if a.ndim not in (3, 4) or a.size == 0:
        return  # shapes are the readers' business
    stacks = a if a.ndim == 4 else a[None]
    for t, stack in enumerate(stacks):
        rows = stack[:, 0, :]
        suspects = np.nonzero(rows.min(axis=1) == rows.max(axis=1))[0]
        const = [int(k) for k in suspects if not np.any(stack[k] != stack[k, 0, 0])]
        if not const:
            continue
        when = f"time point {t}, " if a.ndim == 4 else ""
        if len(const) == len(stack) and len({stack[k, 0, 0].item() for k in const}) == 1:
            raise error(f"{where}: {when}all {len(stack)} frames are constant "
                        f"({_pixel_value(stack[0, 0, 0], a.dtype)}); nothing to reconstruct from them")
        more = f", and {len(const) - 1} more frame{'s' if len(const) > 2 else ''}" if len(const) > 1 else ""
        raise error(f"{where}: {when}frame {const[0]} is constant ({_pixel_value(stack[const[0], 0, 0], a.dtype)})"
                    f"{more}; nothing to reconstruct from it")


def _pixel_value(v, dtype) -> str:
    """``every pixel 65535: saturated`` and the like, for :func:`check_frames_vary`."""
    v = v.item()
    if np.issubdtype(dtype, np.integer) and v == np.iinfo(dtype).max:
        return f"every pixel {v}: saturated"
    return f"every pixel {v:g}" + (": no signal" if v == 0 else "")


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    """A 2-D grid ``(H, W)`` of positive integers (ValueError naming ``name`` otherwise)."""
    try:
        H, W = (int(v) for v in shape)
        ok = all(int(v) == v for v in shape) and H >= 1 and W >= 1 and not any(isinstance(v, bool) for v in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected two positive integers (H, W), got {shape!r}")
    return H, W
