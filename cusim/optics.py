"""Point-spread and optical transfer functions of a widefield fluorescence microscope.

Conventions: a PSF array is sampled on the FINE grid (camera pixel / upsample), has odd size with the
peak at the centre pixel, and is normalised to unit sum. An OTF array is the full-plane transfer
function with the zero frequency at element [0, 0] (the layout of ``numpy.fft.fft2``), equal to 1 there.

Physical parameters carry their unit in the name; ``pixel_size_nm`` is always the CAMERA pixel, as in
the HDF5 format (DESIGN section 2), and functions that sample on the fine grid take ``upsample``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ._validate import check_int, check_number, check_positive, check_shape


def validate_psf(psf, name: str = "psf") -> np.ndarray:
    """Check a measured or computed PSF array and return it as float64 with unit sum.

    Raises ValueError naming ``name`` when the array is not 2-D, has an even side, holds NaN/Inf or
    negative values, or sums to zero.
    """
    a = np.asarray(psf)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name}: expected a 2-D array (p, q) with odd p and q, got shape {a.shape}")
    if a.shape[0] % 2 == 0 or a.shape[1] % 2 == 0:
        raise ValueError(
            f"{name}: expected odd sides so that the peak sits on the centre pixel, got shape {a.shape}"
        )
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or Inf")
    if a.min() < 0:
        raise ValueError(f"{name}: must be non-negative, minimum is {a.min():.3g}")
    total = a.sum()
    if total <= 0:
        raise ValueError(f"{name}: all zero; a PSF needs positive total intensity")
    return a / total


def otf_cutoff(na: float, wavelength_nm: float, pixel_size_nm: float) -> float:
    """Incoherent cut-off frequency 2 NA / lambda in cycles per pixel of size ``pixel_size_nm``."""
    return 2.0 * na * pixel_size_nm / wavelength_nm


# What the optics may be, so a value in the wrong unit is one clear error, not a PSF a thousand times too wide or
# too narrow: no immersion medium gives an NA above ~1.7; fluorescence light lies within 100-2000 nm (0.525, a
# wavelength in micrometres, is refused); a camera pixel at the sample is 1-50000 nm (0.065 in micrometres is refused;
# 6500, the bare pixel of a camera without the magnification, is accepted: it is a plausible low-magnification pixel).
OPTICS_RANGES = {"na": (0.0, 1.7), "wavelength_nm": (100.0, 2000.0), "pixel_size_nm": (1.0, 50000.0)}


def check_optics_value(name: str, value, *, label: str | None = None, error=ValueError) -> float:
    """``value`` of the optics attribute ``name`` (a key of ``OPTICS_RANGES``) within its range; ``label`` names
    it in the message (default ``name``)."""
    lo, hi = OPTICS_RANGES[name]
    if name == "na":
        return check_number(label or name, value, lo=lo, strict=True, hi=hi, error=error)
    value = check_number(label or name, value, error=error)
    if not lo <= value <= hi:
        slip = " (a value in micrometres?)" if value < lo else ""
        raise error(f"{label or name}: expected nanometres, {lo:g} to {hi:g}, got {value:g}{slip}")
    return value


def _check_optics(na: float, wavelength_nm: float, pixel_size_nm: float) -> None:
    for name, value in (("na", na), ("wavelength_nm", wavelength_nm), ("pixel_size_nm", pixel_size_nm)):
        check_optics_value(name, value)


def _check_size(size: int) -> int:
    if check_int("size", size, 1) % 2 == 0:
        raise ValueError(f"size: expected an odd positive integer, got {size!r}")
    return int(size)


def widefield_otf(shape: tuple[int, int], na: float, wavelength_nm: float, pixel_size_nm: float) -> np.ndarray:
    """Ideal incoherent OTF of an aberration-free circular pupil on a grid of ``shape`` pixels.

    ``pixel_size_nm`` is the size of one pixel of THIS grid. Uses the transfer formula
    ``(2/pi) (acos q - q sqrt(1 - q^2))`` with ``q = |f| / (2 NA / lambda)``; zero beyond the cut-off.
    """
    _check_optics(na, wavelength_nm, pixel_size_nm)
    H, W = check_shape(shape)
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.fftfreq(W)[None, :]
    return ideal_otf(np.sqrt(fy**2 + fx**2), otf_cutoff(na, wavelength_nm, pixel_size_nm))


def ideal_otf(f_radius, cutoff: float) -> np.ndarray:
    """The incoherent transfer formula ``(2/pi) (acos q - q sqrt(1 - q^2))``, ``q = f_radius / cutoff``
    (clipped to 1: zero at and beyond the cut-off).

    ``f_radius`` (any shape) and ``cutoff`` (2 NA / lambda) are in the same unit, e.g. cycles per fine pixel.
    """
    q = np.minimum(np.asarray(f_radius, dtype=np.float64) / cutoff, 1.0)
    return (2.0 / np.pi) * (np.arccos(q) - q * np.sqrt(1.0 - q**2))


def pixel_box(f, s: int) -> np.ndarray:
    """Transfer of the mean over ``s`` neighbouring fine pixels (one camera pixel along one axis) at ``f``
    cycles per FINE pixel: ``sin(pi s f) / (s sin(pi f))``, 1 where ``sin(pi f) = 0``."""
    f = np.asarray(f, dtype=np.float64)
    den = s * np.sin(np.pi * f)
    ok = np.abs(den) > 1e-12
    return np.where(ok, np.sin(np.pi * s * f) / np.where(ok, den, 1.0), 1.0)


def airy_psf(na: float, wavelength_nm: float, pixel_size_nm: float, size: int | None = None) -> np.ndarray:
    """Airy-disc PSF ``(2 J1(v) / v)^2`` with ``v = 2 pi NA r / lambda`` on pixels of ``pixel_size_nm``.

    ``size`` (odd) defaults to about four first-zero radii across. Returned with unit sum.
    """
    _check_optics(na, wavelength_nm, pixel_size_nm)
    r0_px = 0.61 * wavelength_nm / na / pixel_size_nm
    size = _check_size(2 * int(np.ceil(4 * r0_px)) + 1 if size is None else size)
    c = np.arange(size) - size // 2
    r = np.hypot(c[:, None], c[None, :]) * pixel_size_nm
    v = 2 * np.pi * na * r / wavelength_nm
    with np.errstate(invalid="ignore", divide="ignore"):
        psf = np.where(v > 0, (2 * special.j1(v) / v) ** 2, 1.0)
    return psf / psf.sum()


def gaussian_psf(sigma_px: float, size: int | None = None) -> np.ndarray:
    """Gaussian PSF of standard deviation ``sigma_px`` pixels, unit sum, odd ``size`` (default 8 sigma)."""
    check_positive("sigma_px", sigma_px)
    size = _check_size(2 * int(np.ceil(4 * sigma_px)) + 1 if size is None else size)
    c = np.arange(size) - size // 2
    g = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma_px**2))
    return g / g.sum()


def gaussian_sigma_nm(na: float, wavelength_nm: float) -> float:
    """Standard deviation of the Gaussian that best matches the Airy disc in the paraxial limit."""
    return 0.21 * wavelength_nm / na


def psf_to_otf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full-plane OTF on ``shape`` of a centred PSF array (validated, normalised to unit sum).

    The PSF is embedded with its centre pixel at element [0, 0] (circular wrap, the ``ifftshift``
    of DESIGN section 1) and transformed. A PSF larger than the grid is wrapped (summed modulo the
    grid), which is what circular convolution on that grid means.
    """
    return _centred_fft(validate_psf(psf), shape)


def _centred_fft(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """FFT on ``shape`` of the (real or complex) centred array ``p``, its centre pixel put at [0, 0]."""
    full = np.zeros(shape, dtype=np.result_type(p, np.float64))
    rows = (np.arange(p.shape[0]) - p.shape[0] // 2) % shape[0]
    cols = (np.arange(p.shape[1]) - p.shape[1] // 2) % shape[1]
    # add, not assign: a PSF larger than the grid wraps onto it, which is exactly circular convolution
    np.add.at(full, np.ix_(rows, cols), p)
    return np.fft.fft2(full)


@dataclass(frozen=True)
class Widefield:
    """An ideal widefield microscope: ``na``, emission ``wavelength_nm`` and CAMERA ``pixel_size_nm``.

    Pass it to :class:`cusim.SIMOperator` as ``psf`` to use the analytic OTF (no truncated PSF).
    """

    na: float
    wavelength_nm: float
    pixel_size_nm: float

    def __post_init__(self) -> None:
        _check_optics(self.na, self.wavelength_nm, self.pixel_size_nm)

    def cutoff(self, upsample: int = 1) -> float:
        """OTF cut-off in cycles per fine pixel (camera pixel / ``upsample``)."""
        return otf_cutoff(self.na, self.wavelength_nm, self.pixel_size_nm / check_int("upsample", upsample, 1))

    def otf(self, shape: tuple[int, int], upsample: int = 1) -> np.ndarray:
        """Full-plane OTF on a fine grid of ``shape`` (pixel = camera pixel / ``upsample``)."""
        fine_nm = self.pixel_size_nm / check_int("upsample", upsample, 1)
        return widefield_otf(shape, self.na, self.wavelength_nm, fine_nm)

    def psf(self, upsample: int = 1, size: int | None = None) -> np.ndarray:
        """Airy PSF on the fine grid (camera pixel / ``upsample``)."""
        return airy_psf(self.na, self.wavelength_nm, self.pixel_size_nm / check_int("upsample", upsample, 1), size)


# -- the transfer of OTF and camera pixel together (estimation, Wiener) ----------------------------------
def _is_ideal(psf) -> bool:
    return isinstance(psf, Widefield) or np.ndim(psf) == 0


def _ideal(psf, s: int, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Ideal OTF of a :class:`Widefield` (at ``upsample = s``) or of a cut-off number at (fy[i], fx[j])."""
    cutoff = psf.cutoff(s) if isinstance(psf, Widefield) else float(psf)
    return ideal_otf(np.hypot(fy[:, None], fx[None, :]), cutoff)


def transfer(psf, s: int, fy, fx) -> np.ndarray:
    """OTF times the camera pixel's block mean at the frequencies ``(fy[i], fx[j])``, cycles per FINE pixel.

    ``psf``: a PSF array on the fine grid (its OTF is evaluated exactly at these frequencies, any ones, as
    the DFT of the centred PSF by two small matrix products: cheap for few frequencies), a
    :class:`Widefield` (ideal OTF of its cut-off at ``upsample = s``) or a number (the cut-off of an
    ideal OTF, cycles per fine pixel). ``s``: fine pixels per camera pixel (``s = 1``: no block mean).
    Returns an array (len(fy), len(fx)), real for the ideal OTF, complex for a PSF array.
    """
    fy, fx = np.asarray(fy, dtype=np.float64), np.asarray(fx, dtype=np.float64)
    box = np.outer(pixel_box(fy, s), pixel_box(fx, s))
    if _is_ideal(psf):
        return _ideal(psf, s, fy, fx) * box
    p = validate_psf(psf)
    cy, cx = np.arange(p.shape[0]) - p.shape[0] // 2, np.arange(p.shape[1]) - p.shape[1] // 2
    ey = np.exp(-2j * np.pi * np.outer(fy, cy))
    ex = np.exp(-2j * np.pi * np.outer(cx, fx))
    return _mm(_mm(ey, p), ex) * box


def shifted_transfer(psf, s: int, shape: tuple[int, int], shift=(0.0, 0.0), *, camera_band: bool = False) -> np.ndarray:
    """:func:`transfer` at ``f + shift`` for every frequency ``f`` of the FFT grid of ``shape`` FINE pixels.

    ``shift`` (ky, kx) is in cycles per fine pixel. For a PSF array the OTF comes from one FFT (of the
    PSF modulated by ``exp(-2 pi i shift . r)``, which is its OTF at ``f + shift``), the fast way for a
    whole grid. ``camera_band`` zeroes the result where ``f + shift`` lies outside the band the camera
    samples without aliasing (``|fy|, |fx| <= 0.5 / s``).
    """
    fy = np.fft.fftfreq(shape[0]) + shift[0]
    fx = np.fft.fftfreq(shape[1]) + shift[1]
    if _is_ideal(psf):
        otf = _ideal(psf, s, fy, fx)
    else:
        p = validate_psf(psf)
        ry = (np.arange(p.shape[0]) - p.shape[0] // 2)[:, None]
        rx = (np.arange(p.shape[1]) - p.shape[1] // 2)[None, :]
        otf = _centred_fft(p * np.exp(-2j * np.pi * (shift[0] * ry + shift[1] * rx)), shape)
    out = otf * np.outer(pixel_box(fy, s), pixel_box(fx, s))
    if camera_band:
        nyq = 0.5 / s
        out = out * np.outer(np.abs(fy) <= nyq, np.abs(fx) <= nyq)
    return out


def transfer_cutoff(psf, s: int, shape: tuple[int, int]) -> float:
    """Widefield cut-off in cycles per FINE pixel: 2 NA / lambda for a :class:`Widefield`, the number
    itself for a number, and for a PSF array the largest radius on the FFT grid of ``shape`` fine
    pixels where its |OTF| (without the pixel's block mean) reaches 1 % of its peak."""
    if _is_ideal(psf):
        return psf.cutoff(s) if isinstance(psf, Widefield) else float(psf)
    otf = np.abs(psf_to_otf(psf, shape))
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    return float(f[otf >= 0.01 * otf.max()].max())


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in row blocks small enough for single-threaded BLAS: these products are small, and a
    multithreaded BLAS on a busy machine makes them a hundred times slower."""
    rows = max(1, 32768 // max(a.shape[-1] * b.shape[-1], 1))
    if a.shape[0] <= rows:
        return a @ b
    return np.concatenate([a[i:i + rows] @ b for i in range(0, a.shape[0], rows)])
