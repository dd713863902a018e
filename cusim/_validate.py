"""The one set of scalar validators: every setting of the package is checked by these, so a bad value
gets the same one-line message (``name: expected ..., got ...``) wherever it enters.

Each raises ``error`` (ValueError by default; readers pass their own subclass, e.g. ``DatasetError``)
and returns the value as a plain Python number.
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
