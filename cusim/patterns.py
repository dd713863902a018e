"""Illumination pattern families on the fine grid (DESIGN section 1).

Every generator returns a float array (K, H, W) >= 0 that :class:`cusim.SIMOperator` takes as is.
Sinusoidal families are described by :class:`SinusoidParams`, the in-memory twin of the HDF5 group
``/pattern_params``; its :meth:`SinusoidParams.render` is the one implementation of the pattern formula

    I_k(r) = 1 + m_k cos(2 pi k_k . r + phi_k) + sum_j m_k c_kj cos(2 pi (j+2) k_k . r + (j+2) phi_k)

with r = (row, column) the integer fine-grid index and k in cycles per fine-grid pixel.

Hexagonal-lattice SIM (three beams at 120 degrees, 7 frames) is described by :class:`HexagonalParams`:
three carriers ``k_j`` shared by every frame, a phase per frame and carrier and a modulation per carrier,

    I_n(r) = 1 + (2/3) sum_j m_j cos(2 pi k_j . r + phi_nj)            (|e1 + e2 + e3|^2 / 3 when m_j = 1)

Frequencies are given either in cycles per fine pixel (``k``, ``period_px``) or physically
(``period_nm`` with ``pixel_size_nm`` and ``upsample``: camera pixel / upsample is the fine pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import special

from ._validate import check_int, check_number, check_positive, check_shape

__all__ = [
    "ANGLE_PHASE_DEFAULTS", "HEX_PHASES", "HexagonalParams", "SinusoidParams", "angle_phase_counts", "hexagonal",
    "hexagonal_params", "linear", "linear_params", "nonlinear", "nonlinear_params", "saturated_harmonics", "lattice",
    "speckle", "from_array", "period_to_k",
]

# K frames -> (n_angles, n_phases) of the usual acquisitions: linear SIM 3 x 3 and 3 x 5, nonlinear 5 x 5
ANGLE_PHASE_DEFAULTS = {9: (3, 3), 15: (3, 5), 25: (5, 5)}


def angle_phase_counts(K: int, n_angles: int | None = None, n_phases: int | None = None, *, min_phases: int = 1,
                       error=ValueError) -> tuple[int, int]:
    """(n_angles, n_phases) of K angle-major sinusoidal frames: both from :data:`ANGLE_PHASE_DEFAULTS`
    when neither is given, the missing one from K otherwise.

    Raises ``error`` (a ValueError subclass of the caller's choice) when K has no default, when the
    counts do not multiply to K, or when there are fewer than ``min_phases`` phases per angle (band
    separation needs 3 for linear SIM).
    """
    K = check_int("K", K, 1, error=error)
    if n_angles is None and n_phases is None:
        if K not in ANGLE_PHASE_DEFAULTS:
            known = ", ".join(f"{k} ({a} x {p})" for k, (a, p) in ANGLE_PHASE_DEFAULTS.items())
            raise error(f"n_angles, n_phases: no default for K = {K} frames; give n_angles and n_phases "
                        f"(defaults exist only for K = {known})")
        n_angles, n_phases = ANGLE_PHASE_DEFAULTS[K]
    if n_angles is not None:
        n_angles = check_int("n_angles", n_angles, 1, error=error)
    if n_phases is not None:
        n_phases = check_int("n_phases", n_phases, 1, error=error)
    divisors = ", ".join(str(d) for d in range(1, K + 1) if K % d == 0)
    for name, given, other in (("n_angles", n_angles, n_phases), ("n_phases", n_phases, n_angles)):
        if other is None and K % given:  # the other count from K: it must divide K ("4 * 3 to make 15" before)
            what = "angles" if name == "n_angles" else "phases"
            raise error(f"{name}: {K} frames do not split into {given} {what}; expected a divisor of {K} "
                        f"({divisors})")
    n_angles = K // n_phases if n_angles is None else n_angles
    n_phases = K // n_angles if n_phases is None else n_phases
    if n_angles * n_phases != K:
        raise error(f"n_angles, n_phases: {K} frames are not {n_angles} angles x {n_phases} phases "
                    f"({n_angles * n_phases} frames)")
    if n_phases < min_phases:
        raise error(f"n_angles, n_phases: {n_angles} angles x {n_phases} phases of {K} frames; expected at least "
                    f"{min_phases} phases per angle")
    return n_angles, n_phases


def period_to_k(period_px: float | None = None, *, period_nm: float | None = None,
                pixel_size_nm: float | None = None, upsample: int = 1) -> float:
    """Spatial frequency |k| in cycles per fine pixel from a period in fine pixels or in nm.

    With ``period_nm``, ``pixel_size_nm`` is the CAMERA pixel and ``upsample`` the fine-grid factor.
    """
    if (period_px is None) == (period_nm is None):
        raise ValueError("period: give exactly one of period_px or period_nm")
    if period_nm is not None:
        if pixel_size_nm is None:
            raise ValueError("pixel_size_nm: required (camera pixel, > 0) when the period is given in nm")
        check_positive("pixel_size_nm", pixel_size_nm)
        check_int("upsample", upsample, 1)
        period_px = check_number("period_nm", period_nm) / (pixel_size_nm / upsample)
    else:
        period_px = check_number("period_px", period_px)
    if not (np.isfinite(period_px) and period_px >= 2):
        raise ValueError(f"period: expected at least 2 fine pixels (the Nyquist limit), got {period_px:.4g}")
    return 1.0 / period_px


def _wrap(phase: np.ndarray) -> np.ndarray:
    """Phases wrapped to (-pi, pi] (the same patterns)."""
    return np.angle(np.exp(1j * np.asarray(phase, dtype=np.float64)))


def _check_values(arrays, k: np.ndarray, mod: np.ndarray) -> None:
    """Every parameter finite, modulations in 0..1, carriers below the fine grid's Nyquist limit."""
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("pattern parameters: contain NaN or Inf")
    if mod.min() < 0 or mod.max() > 1:
        raise ValueError(f"modulation: expected values in 0..1, got {mod.min():.3g}..{mod.max():.3g}")
    if np.abs(k).max() > 0.5:
        raise ValueError(f"k: carrier above the fine-grid Nyquist limit 0.5 cycles/px: {np.abs(k).max():.4g}")


@dataclass(frozen=True)
class SinusoidParams:
    """Parametric sinusoidal patterns: carriers ``k`` (K, 2) as (ky, kx) in cycles per fine pixel,
    ``phase`` (K,) in radians, ``modulation`` (K,) in 0..1 and optional ``harmonics`` (K, M), the
    relative amplitudes of orders 2..M+1."""

    k: np.ndarray
    phase: np.ndarray
    modulation: np.ndarray
    harmonics: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = np.asarray(self.k, dtype=np.float64)
        K = k.shape[0] if k.ndim == 2 else -1
        if k.ndim != 2 or k.shape[1] != 2 or K == 0:
            raise ValueError(f"k: expected shape (K, 2) of (ky, kx) in cycles per fine pixel, got {k.shape}")
        phase = np.asarray(self.phase, dtype=np.float64)
        mod = np.asarray(self.modulation, dtype=np.float64)
        if phase.shape != (K,):
            raise ValueError(f"phase: expected shape ({K},), got {phase.shape}")
        if mod.shape != (K,):
            raise ValueError(f"modulation: expected shape ({K},), got {mod.shape}")
        arrays = [k, phase, mod]
        harm = self.harmonics
        if harm is not None:
            harm = np.asarray(harm, dtype=np.float64)
            if harm.ndim != 2 or harm.shape[0] != K:
                raise ValueError(f"harmonics: expected shape ({K}, M), got {harm.shape}")
            arrays.append(harm)
        _check_values(arrays, k, mod)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "phase", phase)
        object.__setattr__(self, "modulation", mod)
        object.__setattr__(self, "harmonics", harm)

    @property
    def K(self) -> int:
        return self.k.shape[0]

    def normalised(self) -> "SinusoidParams":
        """The same patterns with the sign convention of DESIGN section 2: kx > 0, or ky > 0 if kx = 0.

        (k, phi) and (-k, -phi) describe the same pattern; phases are wrapped to (-pi, pi].
        """
        flip = (self.k[:, 1] < 0) | ((self.k[:, 1] == 0) & (self.k[:, 0] < 0))
        sign = np.where(flip, -1.0, 1.0)
        return SinusoidParams(self.k * sign[:, None], _wrap(sign * self.phase), self.modulation, self.harmonics)

    def moved(self, top: float, left: float) -> "SinusoidParams":
        """The same patterns on a grid whose origin is fine pixel (``top``, ``left``) of this one's
        (negative: a grid that starts before this one, e.g. extended by a margin); phases wrapped to (-pi, pi]."""
        shift = 2 * np.pi * (self.k[:, 0] * top + self.k[:, 1] * left)
        return SinusoidParams(self.k, _wrap(self.phase + shift), self.modulation, self.harmonics)

    def render(self, shape: tuple[int, int], dtype=np.float32) -> np.ndarray:
        """The patterns (K, H, W) on a fine grid of ``shape`` (the formula in the module docstring)."""
        H, W = check_shape(shape)
        rows = np.arange(H, dtype=np.float64)[:, None]
        cols = np.arange(W, dtype=np.float64)[None, :]
        out = np.empty((self.K, H, W), dtype=dtype)
        M = 0 if self.harmonics is None else self.harmonics.shape[1]
        for i in range(self.K):
            theta = 2 * np.pi * (self.k[i, 0] * rows + self.k[i, 1] * cols) + self.phase[i]
            img = 1.0 + self.modulation[i] * np.cos(theta)
            for j in range(M):
                img += self.modulation[i] * self.harmonics[i, j] * np.cos((j + 2) * theta)
            out[i] = img
        return out


def params_record(p) -> dict:
    """The parameters (:class:`SinusoidParams` or :class:`HexagonalParams`) as plain lists (JSON), e.g. for the
    provenance of a reconstruction; a hexagonal record also names its ``family``."""
    rec = {"k": p.k.tolist(), "phase": p.phase.tolist(), "modulation": p.modulation.tolist()}
    if isinstance(p, HexagonalParams):
        return {"family": HexagonalParams.family, **rec}
    if p.harmonics is not None:
        rec["harmonics"] = p.harmonics.tolist()
    return rec


def _angles_phases(n_angles: int, n_phases: int, angle_offset_deg: float):
    check_int("n_angles", n_angles, 1)
    check_int("n_phases", n_phases, 1)
    angles = np.deg2rad(angle_offset_deg) + np.pi * np.arange(n_angles) / n_angles
    phases = 2 * np.pi * np.arange(n_phases) / n_phases
    # Frame order is angle-major: frames 0..n_phases-1 are angle 0 at each phase.
    ang = np.repeat(angles, n_phases)
    ph = np.tile(phases, n_angles)
    return ang, ph


def linear_params(*, period_px: float | None = None, period_nm: float | None = None,
                  pixel_size_nm: float | None = None, upsample: int = 1, n_angles: int = 3,
                  n_phases: int = 3, modulation: float = 1.0, angle_offset_deg: float = 0.0) -> SinusoidParams:
    """Linear SIM: ``n_angles`` orientations evenly over 180 degrees x ``n_phases`` equidistant phases."""
    kmag = period_to_k(period_px, period_nm=period_nm, pixel_size_nm=pixel_size_nm, upsample=upsample)
    ang, ph = _angles_phases(n_angles, n_phases, angle_offset_deg)
    k = kmag * np.stack([np.sin(ang), np.cos(ang)], axis=1)
    K = len(ang)
    return SinusoidParams(k, ph, np.full(K, float(modulation))).normalised()


def linear(shape: tuple[int, int], **kwargs) -> np.ndarray:
    """Linear SIM patterns (K, H, W); keyword arguments as :func:`linear_params`."""
    return linear_params(**kwargs).render(shape)


def saturated_harmonics(saturation: float, tol: float = 1e-7, max_orders: int = 256) -> tuple[float, np.ndarray]:
    """Fourier series of the saturated emission ``1 - exp(-a (1 + cos t) / 2)``, normalised to mean 1.

    ``a = saturation`` is the peak excitation in units of the saturation intensity. Returns the
    modulation ``m`` (first order) and the relative amplitudes of orders 2.. (``c_j`` with the order
    amplitude ``m c_j``) until they fall below ``tol`` (9 orders at a = 3, 18 at 20, 38 at 100); a
    saturation that would need more than ``max_orders`` is a ValueError, not a series cut short (16 orders, the
    limit before, left errors of 1e-3 at a = 50 and 2e-2 at 100). From
    ``exp(z cos t) = I0(z) + 2 sum I_n(z) cos nt``.
    """
    check_positive("saturation", saturation)
    z = saturation / 2.0
    # scaled Bessel functions ive(n, z) = I_n(z) exp(-z) keep everything finite at strong saturation
    c0 = 1.0 - special.ive(0, z)
    orders = [2.0 * (-1.0) ** (n + 1) * special.ive(n, z) / c0 for n in range(1, max_orders + 2)]
    m = orders[0]
    rel = []
    for c in orders[1:]:
        if abs(c) < tol:
            break
        rel.append(c / m)
    else:
        raise ValueError(f"saturation: {saturation:g} needs more than {max_orders} orders to represent its pattern "
                         f"to {tol:g}; expected a weaker saturation")
    return float(m), np.asarray(rel)


def nonlinear_params(*, saturation: float = 3.0, period_px: float | None = None, period_nm: float | None = None,
                     pixel_size_nm: float | None = None, upsample: int = 1, n_angles: int = 5,
                     n_phases: int = 5, angle_offset_deg: float = 0.0) -> SinusoidParams:
    """Saturated (nonlinear) SIM: a sinusoidal excitation through ``1 - exp(-excitation)``, giving harmonics.

    Default 5 angles x 5 phases. The number of phases should exceed twice the number of orders that
    matter for separating them; the emitted pattern itself is represented to 1e-7.
    """
    m, rel = saturated_harmonics(saturation)
    base = linear_params(period_px=period_px, period_nm=period_nm, pixel_size_nm=pixel_size_nm,
                         upsample=upsample, n_angles=n_angles, n_phases=n_phases,
                         angle_offset_deg=angle_offset_deg)
    harm = np.tile(rel, (base.K, 1)) if rel.size else None
    return SinusoidParams(base.k, base.phase, np.full(base.K, m), harm)


def nonlinear(shape: tuple[int, int], **kwargs) -> np.ndarray:
    """Saturated SIM patterns (K, H, W), clipped at 0 where the 1e-7 series truncation dips below it."""
    return np.maximum(nonlinear_params(**kwargs).render(shape), 0)


# Hexagonal SIM: 7 frames. Carrier j (1, 2, 3) steps its phase by 2 pi j / 7 per frame, so the 7 bands
# 0, +-k1, +-k2, +-k3 sit at the 7 distinct DFT indices 0, +-1, +-2, +-3 over the frames (the scheme of
# HexSimProcessor; three beams stepped by 0, 1 and 3 x 2 pi / 7, so that k3 = k1 + k2).
HEX_PHASES = 7
HEX_STEPS = (1, 2, 3)
HEX_AMPLITUDE = 2.0 / 3.0  # the cosines' amplitude in |e1 + e2 + e3|^2 / 3 = 1 + (2/3) sum cos


@dataclass(frozen=True)
class HexagonalParams:
    """Parametric hexagonal-lattice patterns: carriers ``k`` (3, 2) as (ky, kx) in cycles per fine pixel,
    shared by every frame; ``phase`` (K, 3), the phase of each carrier in each frame, in radians;
    ``modulation`` (3,) in 0..1 per carrier. ``I_n(r) = 1 + (2/3) sum_j m_j cos(2 pi k_j . r + phi_nj)``."""

    k: np.ndarray
    phase: np.ndarray
    modulation: np.ndarray
    family: ClassVar[str] = "hexagonal"
    harmonics: ClassVar[None] = None  # none: the same reading as SinusoidParams for code that asks

    def __post_init__(self) -> None:
        k = np.asarray(self.k, dtype=np.float64)
        phase = np.asarray(self.phase, dtype=np.float64)
        mod = np.asarray(self.modulation, dtype=np.float64)
        if k.shape != (3, 2):
            raise ValueError(f"k: expected shape (3, 2), three carriers (ky, kx) in cycles per fine pixel, "
                             f"got {k.shape}")
        if phase.ndim != 2 or phase.shape[1] != 3 or phase.shape[0] == 0:
            raise ValueError(f"phase: expected shape (K, 3), a phase per frame and carrier, got {phase.shape}")
        if mod.shape != (3,):
            raise ValueError(f"modulation: expected shape (3,), one per carrier, got {mod.shape}")
        _check_values((k, phase, mod), k, mod)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "phase", phase)
        object.__setattr__(self, "modulation", mod)

    @property
    def K(self) -> int:
        return self.phase.shape[0]

    def normalised(self) -> "HexagonalParams":
        """Every carrier with kx > 0 (or ky > 0 if kx = 0), its phases negated where it was flipped (DESIGN
        section 2); phases wrapped to (-pi, pi]."""
        flip = (self.k[:, 1] < 0) | ((self.k[:, 1] == 0) & (self.k[:, 0] < 0))
        sign = np.where(flip, -1.0, 1.0)
        return HexagonalParams(self.k * sign[:, None], _wrap(sign * self.phase), self.modulation)

    def moved(self, top: float, left: float) -> "HexagonalParams":
        """The same patterns on a grid whose origin is fine pixel (``top``, ``left``) of this one's."""
        shift = 2 * np.pi * (self.k[:, 0] * top + self.k[:, 1] * left)
        return HexagonalParams(self.k, _wrap(self.phase + shift[None, :]), self.modulation)

    def render(self, shape: tuple[int, int], dtype=np.float32) -> np.ndarray:
        """The patterns (K, H, W) on a fine grid of ``shape`` (the formula in the class docstring)."""
        H, W = check_shape(shape)
        rows = np.arange(H, dtype=np.float64)[:, None]
        cols = np.arange(W, dtype=np.float64)[None, :]
        theta = [2 * np.pi * (kj[0] * rows + kj[1] * cols) for kj in self.k]
        cos, sin = [np.cos(t) for t in theta], [np.sin(t) for t in theta]
        out = np.empty((self.K, H, W), dtype=dtype)
        for n in range(self.K):  # cos(t + phi) = cos t cos phi - sin t sin phi: no cosine per frame
            img = np.ones((H, W))
            for j in range(3):
                a = HEX_AMPLITUDE * self.modulation[j]
                img += a * np.cos(self.phase[n, j]) * cos[j] - a * np.sin(self.phase[n, j]) * sin[j]
            out[n] = img
        return out


def hexagonal_params(*, period_px: float | None = None, period_nm: float | None = None,
                     pixel_size_nm: float | None = None, upsample: int = 1, modulation: float = 1.0,
                     angle_offset_deg: float = 0.0) -> HexagonalParams:
    """Hexagonal SIM: three beams at 120 degrees; carriers of period ``period_px`` at ``angle_offset_deg``,
    +120 and +60 degrees (k3 = k1 + k2), 7 frames with carrier j stepped by 2 pi j / 7 (``HEX_STEPS``)."""
    kmag = period_to_k(period_px, period_nm=period_nm, pixel_size_nm=pixel_size_nm, upsample=upsample)
    check_number("modulation", modulation, lo=0.0, hi=1.0)
    th = np.deg2rad(angle_offset_deg) + np.deg2rad([0.0, 120.0, 60.0])
    k = kmag * np.stack([np.sin(th), np.cos(th)], axis=1)
    phase = 2 * np.pi * np.outer(np.arange(HEX_PHASES), HEX_STEPS) / HEX_PHASES
    return HexagonalParams(k, phase, np.full(3, float(modulation))).normalised()


def hexagonal(shape: tuple[int, int], **kwargs) -> np.ndarray:
    """Hexagonal SIM patterns (7, H, W) >= 0; keyword arguments as :func:`hexagonal_params`."""
    return np.maximum(hexagonal_params(**kwargs).render(shape), 0)


def lattice(shape: tuple[int, int], *, period_px: float, n_shifts: int = 5, sharpness: float = 2.0,
            angle_offset_deg: float = 0.0) -> np.ndarray:
    """Hexagonal spot lattice (localized-plasmonic-SIM-like) shifted over its unit cell.

    The intensity of three interfering plane waves at 120 degrees, raised to ``sharpness`` to narrow the
    spots, normalised to mean 1; ``period_px`` is the spot spacing. Frames are the ``n_shifts**2`` shifts
    on an even grid over the unit cell (K = n_shifts**2).
    """
    check_number("period_px", period_px, lo=2.0)  # the Nyquist limit
    check_int("n_shifts", n_shifts, 1)
    check_positive("sharpness", sharpness)
    H, W = check_shape(shape)
    rows = np.arange(H, dtype=np.float64)[:, None]
    cols = np.arange(W, dtype=np.float64)[None, :]
    # Lattice vectors a1, a2 (spot spacing = period); the waves' differences are the reciprocal vectors.
    th = np.deg2rad(angle_offset_deg)
    a1 = period_px * np.array([np.sin(th), np.cos(th)])
    a2 = period_px * np.array([np.sin(th + np.pi / 3), np.cos(th + np.pi / 3)])
    kmag = 2 / (np.sqrt(3) * period_px)  # |reciprocal vector| of a hexagonal lattice of spacing period
    # three difference vectors at 120 degrees to each other, summing to zero
    ks = [kmag * np.array([np.sin(th + np.pi / 6 + j * 2 * np.pi / 3), np.cos(th + np.pi / 6 + j * 2 * np.pi / 3)])
          for j in range(3)]
    out = np.empty((n_shifts * n_shifts, H, W), dtype=np.float32)
    for i in range(n_shifts):
        for j in range(n_shifts):
            d = (i / n_shifts) * a1 + (j / n_shifts) * a2
            field = sum(np.cos(2 * np.pi * (kk[0] * (rows - d[0]) + kk[1] * (cols - d[1]))) for kk in ks)
            inten = (3.0 + 2.0 * field) / 9.0  # |e1 + e2 + e3|^2 / 9 in 0..1, written with cosines
            inten = np.maximum(inten, 0) ** sharpness
            out[i * n_shifts + j] = inten / inten.mean()
    return out


def speckle(shape: tuple[int, int], n_frames: int, *, grain_px: float = 4.0, seed: int = 0) -> np.ndarray:
    """Fully developed speckle (blind-SIM style), seeded: the intensity of a circular-pupil filtered
    random complex field, mean 1 per frame. ``grain_px`` is the speckle size (1 / pupil cut-off)."""
    check_int("n_frames", n_frames, 1)
    check_number("grain_px", grain_px, lo=2.0)  # the Nyquist limit
    H, W = check_shape(shape)
    check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.fftfreq(W)[None, :]
    pupil = np.hypot(fy, fx) <= 0.5 / grain_px
    out = np.empty((n_frames, H, W), dtype=np.float32)
    for i in range(n_frames):
        field = rng.standard_normal((H, W)) + 1j * rng.standard_normal((H, W))
        inten = np.abs(np.fft.ifft2(np.fft.fft2(field) * pupil)) ** 2
        out[i] = inten / inten.mean()
    return out


def from_array(patterns, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate an arbitrary pattern stack (K, H, W): finite, non-negative, the expected fine grid."""
    a = np.asarray(patterns)
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"patterns: expected a non-empty array of shape (K, H, W), got {a.shape}")
    if shape is not None and a.shape[1:] != tuple(shape):
        raise ValueError(f"patterns: expected fine grid {tuple(shape)}, got {a.shape[1:]}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"patterns: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("patterns: contains NaN or Inf")
    if a.min() < 0:
        raise ValueError(f"patterns: illumination must be non-negative, minimum is {a.min():.3g}")
    return a
