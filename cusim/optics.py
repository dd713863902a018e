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


def _check_optics(na: float, wavelength_nm: float, pixel_size_nm: float) -> None:
    for name, v in (("na", na), ("wavelength_nm", wavelength_nm), ("pixel_size_nm", pixel_size_nm)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a positive number, got {v!r}")
    if na > 1.7:
        raise ValueError(f"na: expected a numerical aperture up to ~1.7, got {na}")


def widefield_otf(shape: tuple[int, int], na: float, wavelength_nm: float, pixel_size_nm: float) -> np.ndarray:
    """Ideal incoherent OTF of an aberration-free circular pupil on a grid of ``shape`` pixels.

    ``pixel_size_nm`` is the size of one pixel of THIS grid. Uses the transfer formula
    ``(2/pi) (acos q - q sqrt(1 - q^2))`` with ``q = |f| / (2 NA / lambda)``; zero beyond the cut-off.
    """
    _check_optics(na, wavelength_nm, pixel_size_nm)
    fc = otf_cutoff(na, wavelength_nm, pixel_size_nm)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    q = np.minimum(np.sqrt(fy**2 + fx**2) / fc, 1.0)
    return (2.0 / np.pi) * (np.arccos(q) - q * np.sqrt(1.0 - q**2))


def airy_psf(na: float, wavelength_nm: float, pixel_size_nm: float, size: int | None = None) -> np.ndarray:
    """Airy-disc PSF ``(2 J1(v) / v)^2`` with ``v = 2 pi NA r / lambda`` on pixels of ``pixel_size_nm``.

    ``size`` (odd) defaults to about four first-zero radii across. Returned with unit sum.
    """
    _check_optics(na, wavelength_nm, pixel_size_nm)
    r0_px = 0.61 * wavelength_nm / na / pixel_size_nm
    if size is None:
        size = 2 * int(np.ceil(4 * r0_px)) + 1
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd positive integer, got {size}")
    c = np.arange(size) - size // 2
    r = np.hypot(c[:, None], c[None, :]) * pixel_size_nm
    v = 2 * np.pi * na * r / wavelength_nm
    with np.errstate(invalid="ignore", divide="ignore"):
        psf = np.where(v > 0, (2 * special.j1(v) / v) ** 2, 1.0)
    return psf / psf.sum()


def gaussian_psf(sigma_px: float, size: int | None = None) -> np.ndarray:
    """Gaussian PSF of standard deviation ``sigma_px`` pixels, unit sum, odd ``size`` (default 8 sigma)."""
    if not (np.isfinite(sigma_px) and sigma_px > 0):
        raise ValueError(f"sigma_px: expected a positive number, got {sigma_px!r}")
    if size is None:
        size = 2 * int(np.ceil(4 * sigma_px)) + 1
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: expected an odd positive integer, got {size}")
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
    p = validate_psf(psf)
    full = np.zeros(shape, dtype=np.float64)
    cy, cx = p.shape[0] // 2, p.shape[1] // 2
    rows = (np.arange(p.shape[0]) - cy) % shape[0]
    cols = (np.arange(p.shape[1]) - cx) % shape[1]
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
        return otf_cutoff(self.na, self.wavelength_nm, self.pixel_size_nm / upsample)

    def otf(self, shape: tuple[int, int], upsample: int = 1) -> np.ndarray:
        """Full-plane OTF on a fine grid of ``shape`` (pixel = camera pixel / ``upsample``)."""
        return widefield_otf(shape, self.na, self.wavelength_nm, self.pixel_size_nm / upsample)

    def psf(self, upsample: int = 1, size: int | None = None) -> np.ndarray:
        """Airy PSF on the fine grid (camera pixel / ``upsample``)."""
        return airy_psf(self.na, self.wavelength_nm, self.pixel_size_nm / upsample, size)
