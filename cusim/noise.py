"""Noise level of raw SIM frames, estimated from the frames themselves.

Outside the passband of the imaging model (:meth:`SIMOperator.passband`) a raw frame's spectrum holds
only noise; its mean power there is the mean noise variance per pixel (white noise, shot noise
included as its average). Where the passband fills the camera spectrum, the estimate falls back to
Immerkaer's Laplacian-difference estimator (Immerkaer 1996), which is biased upwards by fine structure.
At very high SNR (> 100) the out-of-band leakage of a cropped, non-periodic field dominates and the
spectral estimate errs high.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.signal import windows

from ._validate import check_number, check_positive

_MIN_FRACTION = 0.02  # of the spectrum outside the passband, for the spectral estimate


def spectral_sigma(frames: np.ndarray, passband: np.ndarray) -> float | None:
    """Noise sigma from the power outside ``passband`` (fft2 layout, frame shape); None if too few bins."""
    out = ~passband
    out[0, 0] = False
    if out.mean() < _MIN_FRACTION:
        return None
    f = np.asarray(frames, dtype=np.float64)
    # A window stops the frame edges (non-periodic fields) from leaking signal out of the band, but it
    # also weights the pixels, and shot noise varies over the field: a Tukey window with 25% cosine
    # tapers keeps both errors to about 10% for SNR 5-20, 15% at 50 (a Hann window's weighting errs by up to 20%).
    win = np.outer(windows.tukey(f.shape[-2], 0.25), windows.tukey(f.shape[-1], 0.25))
    spec = np.abs(np.fft.fft2((f - f.mean(axis=(-2, -1), keepdims=True)) * win)) ** 2 / (win**2).sum()
    return float(np.sqrt(spec[..., out].mean()))


def immerkaer_sigma(frames: np.ndarray) -> float:
    """Immerkaer's estimator: mean |Laplacian difference| scaled to the sigma of white Gaussian noise."""
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    f = np.asarray(frames, dtype=np.float64).reshape(-1, *np.shape(frames)[-2:])
    vals = [np.abs(ndimage.convolve(fr, m, mode="reflect"))[1:-1, 1:-1].mean() for fr in f]
    return float(np.sqrt(np.pi / 2) / 6 * np.mean(vals))


def estimate_sigma(frames: np.ndarray, op=None) -> tuple[float, str]:
    """Noise sigma of ``frames`` (K, h, w) in their own units, and the method used."""
    if op is not None:
        s = spectral_sigma(frames, op.passband())
        if s is not None:
            return s, "spectral"
    return immerkaer_sigma(frames), "immerkaer"


# --- the camera: offset, gain, shot and read noise ------------------------------------------------------

_MV_BINS = 16  # mean-variance: quantile bins of the local mean
_MV_SMOOTH_PX = 2.0  # Gaussian sigma (camera pixels) of the local mean
_CHI2_1_MEDIAN = 0.4549364231195724  # median of a chi-square variable of one degree of freedom


@dataclass(frozen=True)
class CameraNoise:
    """The camera's noise model, in the frames' own units (counts):

        y = offset + gain * Poisson(photons) + Normal(0, read_sigma^2),   var(y) = gain * (E y - offset) + read_sigma^2

    ``method`` says where the numbers came from ("mean-variance", "given", or both joined by "+").
    """

    offset: float
    gain: float
    read_sigma: float = 0.0
    method: str = "given"

    def __post_init__(self):
        check_number("offset", self.offset)
        check_positive("gain", self.gain)
        check_number("read_sigma", self.read_sigma, lo=0.0)

    def variance(self, signal):
        """Per-pixel noise variance at the expected counts ``signal`` (a NumPy, CuPy or torch array)."""
        return self.gain * (signal - self.offset).clip(min=0) + self.read_sigma**2

    def to_photons(self, frames) -> np.ndarray:
        """Photo-electrons per pixel, ``(frames - offset) / gain`` (float64; read noise stays in)."""
        return (np.asarray(frames, dtype=np.float64) - self.offset) / self.gain

    def from_photons(self, photons) -> np.ndarray:
        return np.asarray(photons, dtype=np.float64) * self.gain + self.offset

    def record(self) -> dict:
        """The provenance record (``/recon/<name>`` attribute ``params``, key ``camera``)."""
        return {"offset": float(self.offset), "gain": float(self.gain), "read_sigma": float(self.read_sigma),
                "method": self.method}


def noise_band(shape, *, passband: np.ndarray | None = None, cutoff: float | None = None,
               band_top: float | None = None) -> np.ndarray | None:
    """Boolean mask (fft2 layout, frame ``shape``) of the frequencies where frames hold noise only: outside
    ``passband`` (:meth:`SIMOperator.passband`) or beyond the radial ``cutoff`` (cycles per camera pixel),
    and below ``band_top`` when given; None when neither is given or too little of the spectrum is left."""
    fy = np.fft.fftfreq(shape[-2])[:, None]
    fx = np.fft.fftfreq(shape[-1])[None, :]
    f = np.hypot(fy, fx)
    if passband is not None:
        out = ~np.asarray(passband, dtype=bool)
    elif cutoff is not None:
        out = f > cutoff
    else:
        return None
    out = out & (f <= (np.inf if band_top is None else band_top))
    out[0, 0] = False
    return out if out.mean() >= _MIN_FRACTION else None


def _noise_residual(frames: np.ndarray, band: np.ndarray | None) -> np.ndarray:
    """Per-pixel noise residual of every frame with unit variance gain: the frames' spectrum in ``band``
    (:func:`noise_band`) scaled by the share of the spectrum it keeps, or without a band Immerkaer's
    Laplacian difference / 6."""
    f = np.asarray(frames, dtype=np.float64)
    if band is not None:
        return np.fft.ifft2(np.fft.fft2(f) * band).real / np.sqrt(band.mean())
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64) / 6.0
    return np.stack([ndimage.convolve(fr, m, mode="reflect") for fr in f.reshape(-1, *f.shape[-2:])]).reshape(f.shape)


def mean_variance(frames: np.ndarray, band: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local means and noise variances of ``frames`` (K, h, w), one pair per quantile bin of the local mean:
    the local mean is a Gaussian-smoothed frame, the variance the median of the squared noise residual
    (:func:`_noise_residual`) over the bin's pixels, so that structure leaking into the residual at
    filament edges moves it little."""
    f = np.asarray(frames, dtype=np.float64).reshape(-1, *np.shape(frames)[-2:])
    e = _noise_residual(f, band)
    mu = np.stack([ndimage.gaussian_filter(fr, _MV_SMOOTH_PX, mode="reflect") for fr in f])
    # the frame edge: a non-periodic field's jump across it rings through the residual there (3 px left
    # out of the dlsim frames: the darkest bins' variance 1.8x the next ones'; 8 px: 1.0x)
    b = max(1, min(8, min(f.shape[-2:]) // 8))
    mu, e2 = mu[:, b:-b, b:-b].ravel(), (e[:, b:-b, b:-b] ** 2).ravel()
    edges = np.quantile(mu, np.linspace(0, 1, _MV_BINS + 1))
    idx = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, _MV_BINS - 1)
    # where many pixels share one local mean (a black or clipped region) quantile edges coincide and some bins
    # hold no pixel: those are left out, so fewer than _MV_BINS pairs may come back
    full = [i for i in range(_MV_BINS) if np.any(idx == i)]
    means = np.array([mu[idx == i].mean() for i in full])
    variances = np.array([np.median(e2[idx == i]) / _CHI2_1_MEDIAN for i in full])
    return means, variances


def estimate_camera(frames: np.ndarray, *, passband: np.ndarray | None = None, cutoff: float | None = None,
                    band_top: float | None = None, offset: float | None = None, gain: float | None = None,
                    read_sigma: float | None = None) -> CameraNoise:
    """The camera's :class:`CameraNoise` from the frames themselves (mean-variance), any part overridden.

    The binned local means and variances (:func:`mean_variance`) are fitted by ``var = gain * mean + c``
    (least squares, the brightest bin left out: structure leaks most there). Only ``c = read_sigma^2 -
    gain * offset`` is identified, not its two parts: the offset is taken where the line reaches zero
    variance (the read noise folded in: a 1.5 e- read noise moves it by ~2 gains), capped at the darkest
    bin's mean, and the read noise is what the cap leaves. A given ``offset`` or ``gain`` is kept and
    the rest refitted. The noise band (:func:`noise_band`) is outside ``passband`` (the operator's) or
    beyond ``cutoff`` (cycles per camera pixel, the OTF's); ``band_top`` (cycles per camera pixel) ends the noise band where frames were resampled (interpolated
    and binned frames, whose noise is no longer white: their spectrum falls towards the corners).
    """
    means, var = mean_variance(frames, noise_band(np.shape(frames), passband=passband, cutoff=cutoff,
                                                  band_top=band_top))
    m, v = means[:-1], var[:-1]
    if gain is None and len(m) < 3:
        raise ValueError(f"frames: their local means take {len(means)} distinct levels (large flat or black "
                         f"regions), too few to fit the noise's growth with the signal; give the camera gain and "
                         f"offset")
    if gain is None:
        if offset is None:
            g, c = np.polyfit(m, v, 1)
        else:  # var = g (mean - offset) + r^2: fit g and r^2
            g, c = np.polyfit(m - offset, v, 1)
            c -= g * offset
        if not np.isfinite(g) or g <= 0:
            raise ValueError(f"frames: the noise variance does not grow with the signal (mean-variance slope "
                             f"{g:.3g}); give the camera gain and offset")
    else:
        g = check_positive("gain", gain)
        c = float(np.median(v - g * m))
    if read_sigma is not None:
        read_sigma = check_number("read_sigma", read_sigma, lo=0.0)
    if offset is not None:
        off = check_number("offset", offset)
    elif read_sigma is None:  # where the line reaches zero variance (the read noise folded in)
        off = min(-c / g, float(means[0]))
    else:  # the offset that, with the given read noise, keeps the fitted line: g (mean - off) + r^2 = g mean + c
        off = min((read_sigma**2 - c) / g, float(means[0]))
    r2 = c + g * off
    r = math.sqrt(max(r2, 0.0)) if read_sigma is None else read_sigma
    given = [n for n, val in (("offset", offset), ("gain", gain), ("read_sigma", read_sigma)) if val is not None]
    method = "mean-variance" if not given else ("given" if len(given) == 3 else "mean-variance+given " + ",".join(given))
    return CameraNoise(float(off), float(g), float(r), method)


def camera_model(frames: np.ndarray, op, cfg) -> CameraNoise | None:
    """The :class:`CameraNoise` of a method's settings ``cfg`` (a PINNConfig or IterativeConfig) with
    ``cfg.noise == "camera"``: estimated from ``frames`` beyond the operator's passband, ``cfg.camera_*``
    overriding its parts; None for white noise."""
    if cfg.noise != "camera":
        return None
    passband = op.passband() if hasattr(op, "passband") else None
    return estimate_camera(frames, passband=passband, offset=cfg.camera_offset, gain=cfg.camera_gain,
                           read_sigma=cfg.camera_read_sigma)


def thin(frames: np.ndarray, camera: CameraNoise, fraction: float, seed: int = 0) -> np.ndarray:
    """Frames at ``fraction`` of the light: photo-electrons (rounded, negatives 0) binomially thinned
    (seeded), back to counts with the same offset and gain. Binomial thinning of a Poisson count is a
    Poisson count of the thinned mean, so the result is what the camera would have recorded with less
    light (its read noise scaled by the thinning, a small error where shot noise dominates)."""
    check_number("fraction", fraction, lo=0.0, hi=1.0)
    n = np.rint(camera.to_photons(frames)).clip(0).astype(np.int64)
    kept = np.random.default_rng(seed).binomial(n, fraction)
    return camera.from_photons(kept).astype(np.float32)
