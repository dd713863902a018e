"""Resolution on a target with a known truth: line-pair contrast, the smallest spacing resolved, the
theoretical limit, and a check that a reconstruction invents no structure beyond the truth's band.

FRC against a ground truth measures agreement, not resolution (on a sparse phantom a positivity-
constrained reconstruction extrapolates). Here resolution is what a microscopist checks: two lines a
known distance apart, resolved when the dip between them is deep enough.

- :func:`pair_contrast`: the profile across one pair (:class:`cusim.phantoms.LinePair`), averaged along
  the lines, and its contrast ``C = (P - V) / P``: ``P`` the mean of the profile at the two line centres
  (+-spacing/2, known from the target), ``V`` its value midway between them. For two lines of Gaussian
  profile (standard deviation ``sigma``) ``C = 1 - 2 g(d/2) / (g(0) + g(d))``, ``g(u) = exp(-u^2 / 2 sigma^2)``.
- :func:`resolved_spacing`: the smallest spacing of a ladder whose contrast, coming down from the
  coarsest, stays at or above :data:`RAYLEIGH` (0.26: the dip of the Rayleigh criterion) or ``0``
  (Sparrow: no dip at all), interpolated linearly between the ladder's rungs.
- the theoretical limit: Abbe's ``1 / f_max``, ``f_max`` = detection cut-off + highest pattern frequency
  present (:func:`pattern_max_frequency`); and, for the same contrast criterion, :func:`theory_spacing`:
  the spacing at which two thin lines imaged noise-free through a transfer function of cut-off
  ``f_max`` reach it, ``alpha / f_max``, with ``alpha`` computed for the ideal incoherent OTF
  (:func:`cusim.optics.ideal_otf`, no deconvolution: 1.17 at the Rayleigh contrast) or a flat transfer
  (perfect deconvolution up to the cut-off: 0.76). A line sees the 2-D transfer along its normal.
- :func:`energy_beyond`: the fraction of an image's (mean-free, windowed) spectral energy beyond a
  radial frequency: the hallucination check on a target that holds nothing beyond it.

Frequencies are in cycles per fine pixel, spacings in fine pixels.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage, optimize, signal

from ._validate import check_choice, check_int, check_number, check_positive
from .optics import ideal_otf

__all__ = ["RAYLEIGH", "SPARROW", "profile", "pair_contrast", "gaussian_pair_contrast", "resolved_spacing",
           "theory_spacing", "pattern_max_frequency", "energy_beyond"]

RAYLEIGH = 0.26  # contrast of the Rayleigh criterion: the dip is 26 % below the peaks
SPARROW = 0.0  # the Sparrow criterion: the dip just vanishes
_DU = 0.25  # sampling of profiles across the lines, fine pixels


def profile(image: np.ndarray, pair, half_width_px: float, along_fraction: float = 0.8):
    """(u, p): the image across ``pair`` at offsets ``u`` (fine px, step 0.25, ``|u| <= half_width_px``)
    from its centre along its normal, averaged over the central ``along_fraction`` of the lines' length
    (samples every half pixel, cubic-spline interpolation)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image: expected a 2-D array, got shape {img.shape}")
    u = np.arange(-half_width_px, half_width_px + _DU / 2, _DU)
    half = along_fraction * pair.length_px / 2
    v = np.arange(-half, half + 0.25, 0.5)
    pts = (np.asarray(pair.centre)[:, None, None] + u[None, :, None] * pair.normal[:, None, None]
           + v[None, None, :] * pair.direction[:, None, None])
    samples = ndimage.map_coordinates(img, pts.reshape(2, -1), order=3, mode="nearest").reshape(u.size, v.size)
    return u, samples.mean(axis=1)


def pair_contrast(image: np.ndarray, pair) -> float:
    """Contrast ``(P - V) / P`` of one line pair (module docstring); ``image`` in the truth's units with
    its background at 0 (e.g. mapped onto the truth by a least-squares scale and offset). Negative when
    the pair images as one line; ``nan`` when the peaks are not above 0."""
    u, p = profile(image, pair, pair.spacing_px / 2 + 1)
    at = functools.partial(np.interp, xp=u, fp=p)
    peak = 0.5 * (at(-pair.spacing_px / 2) + at(pair.spacing_px / 2))
    return float((peak - at(0.0)) / peak) if peak > 0 else float("nan")


def gaussian_pair_contrast(spacing_px, sigma_px: float):
    """The analytic contrast of two lines of Gaussian profile (standard deviation ``sigma_px``)."""
    d = np.asarray(spacing_px, dtype=np.float64)
    g = lambda x: np.exp(-x**2 / (2 * sigma_px**2))  # noqa: E731
    return 1 - 2 * g(d / 2) / (g(0.0) + g(d))


def resolved_spacing(spacings, contrasts, threshold: float = RAYLEIGH) -> float:
    """The smallest spacing resolved: walking the ladder from the coarsest spacing down, the first
    crossing of ``threshold`` by the contrast, interpolated linearly between the two rungs. ``inf`` when
    even the coarsest is below it; the finest spacing when none is (the ladder ends before the limit)."""
    d = np.asarray(spacings, dtype=np.float64)
    c = np.asarray(contrasts, dtype=np.float64)
    if d.shape != c.shape or d.ndim != 1 or d.size == 0:
        raise ValueError(f"contrasts: expected one value per spacing ({d.shape}), got {c.shape}")
    order = np.argsort(-d)
    d, c = d[order], np.where(np.isfinite(c[order]), c[order], -np.inf)
    if c[0] < threshold:
        return float("inf")
    below = np.nonzero(c < threshold)[0]
    if below.size == 0:
        return float(d[-1])
    i = below[0]
    if not np.isfinite(c[i]):
        return float(d[i - 1])
    return float(d[i - 1] + (c[i - 1] - threshold) * (d[i] - d[i - 1]) / (c[i - 1] - c[i]))


TRANSFERS = ("ideal", "flat")


@functools.lru_cache(maxsize=8)
def _alpha(threshold: float, transfer: str = "ideal") -> float:
    """Spacing x cut-off at which two thin lines imaged through ``transfer`` reach ``threshold``."""
    f = np.linspace(0.0, 1.0, 4001)  # frequency in units of the cut-off
    t = ideal_otf(f, 1.0) if transfer == "ideal" else np.ones_like(f)
    w = t * np.where((f == 0) | (f == 1), 0.5, 1.0)  # trapezoid weights (f >= 0 half)

    def img(u, d):  # profile of lines at +-d/2: sum over f of T(f) 2 cos(pi f d) cos(2 pi f u)
        return np.sum(w * np.cos(np.pi * f * d) * np.cos(2 * np.pi * f * u))

    def contrast(d):
        peak = img(d / 2, d)
        return (peak - img(0.0, d)) / peak - threshold

    # the smallest root: through "flat" the contrast is not monotonic in d (it peaks near 1.5 and dips to 0.745
    # near 2.5), so a threshold above 0.745 has three roots in [0.3, 3] and brentq on the whole range found the
    # largest (2.70 for 0.8, against 0.916); bracket the first sign change of a scan instead
    grid = np.linspace(0.3, 3.0, 271)
    above = np.nonzero([contrast(d) >= 0 for d in grid])[0]
    if above.size == 0 or above[0] == 0:
        raise ValueError(f"threshold: no spacing in [0.3, 3] / cut-off first reaches contrast {threshold}")
    i = above[0]
    return float(optimize.brentq(contrast, grid[i - 1], grid[i], xtol=1e-6))


def theory_spacing(f_max: float, threshold: float = RAYLEIGH, transfer: str = "ideal") -> float:
    """Smallest spacing (fine px) whose thin line pair reaches contrast ``threshold`` noise-free through
    a transfer function of cut-off ``f_max`` (cycles per fine pixel): ``"ideal"``, the incoherent OTF
    formula, or ``"flat"``, 1 up to the cut-off (a perfect deconvolution)."""
    check_positive("f_max", f_max)
    check_number("threshold", threshold, lo=0.0, hi=0.9)
    check_choice("transfer", transfer, TRANSFERS)
    return _alpha(float(threshold), transfer) / f_max


def pattern_max_frequency(patterns, rel: float = 0.01, pad: int = 4) -> float:
    """Highest frequency (cycles per fine pixel) of the illumination whose amplitude reaches ``rel`` of
    the mean intensity.

    ``patterns``: :class:`~cusim.patterns.SinusoidParams` (exact: ``|k|`` times the highest order whose
    amplitude ``m`` or ``m c_j`` reaches ``rel``), :class:`~cusim.patterns.HexagonalParams` (the largest
    ``|k_j|`` whose cosine's amplitude ``(2/3) m_j`` reaches it), or arrays (K, H, W): the largest radius of a local
    maximum above ``rel`` of the spectrum of each pattern (normalised to its mean) under a
    Blackman-Harris window (side lobes below 1e-4, so they pass for no frequency), zero-padded ``pad``
    times so the radius is read to a fraction of a frequency bin; the windowed zero frequency's own
    main lobe (5 bins) is left out.
    """
    from .patterns import HEX_AMPLITUDE, HexagonalParams, SinusoidParams  # noqa: PLC0415

    check_positive("rel", rel)
    if isinstance(patterns, HexagonalParams):  # three cosines of amplitude (2/3) m_j
        on = HEX_AMPLITUDE * patterns.modulation >= rel
        return float(np.hypot(patterns.k[on, 0], patterns.k[on, 1]).max(initial=0.0))
    if isinstance(patterns, SinusoidParams):
        amp = patterns.modulation[:, None]
        if patterns.harmonics is not None:
            amp = np.concatenate([amp, np.abs(patterns.modulation[:, None] * patterns.harmonics)], axis=1)
        orders = np.arange(1, amp.shape[1] + 1)
        top = np.array([orders[a >= rel].max(initial=0) for a in amp])
        return float((np.hypot(patterns.k[:, 0], patterns.k[:, 1]) * top).max())
    a = np.asarray(patterns, dtype=np.float64)
    a = a[None] if a.ndim == 2 else a
    H, W = a.shape[-2:]
    win = np.outer(signal.windows.blackmanharris(H), signal.windows.blackmanharris(W))
    shape = (pad * H, pad * W)
    spec = np.zeros(shape)
    for img in a:  # a cosine of amplitude m gives a peak m/2 at +-k: compare with rel/2
        spec = np.maximum(spec, np.abs(np.fft.fft2(img / img.mean() * win, shape)) / win.sum())
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :]
    peaks = (spec == ndimage.maximum_filter(spec, size=3, mode="wrap")) & (spec >= rel / 2)
    peaks &= np.hypot(fy * H, fx * W) > 5
    return float(np.hypot(fy, fx)[peaks].max()) if peaks.any() else 0.0


def energy_beyond(image: np.ndarray, f_cut: float, border_px: int = 0) -> float:
    """Fraction of the spectral energy of ``image`` (mean removed, ``border_px`` cropped, Hann window)
    at radial frequencies above ``f_cut`` cycles per pixel."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image: expected a 2-D image, got shape {img.shape}")
    check_int("border_px", border_px, 0, (min(img.shape) - 1) // 2)
    if border_px:
        img = img[border_px:-border_px, border_px:-border_px]
    H, W = img.shape
    spec = np.abs(np.fft.fft2((img - img.mean()) * np.outer(np.hanning(H), np.hanning(W)))) ** 2
    radius = np.hypot(np.fft.fftfreq(H)[:, None], np.fft.fftfreq(W)[None, :])
    total = spec.sum()
    return float(spec[radius > f_cut].sum() / total) if total > 0 else 0.0
