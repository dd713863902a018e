"""Image quality and resolution metrics, with explicit normalisation and border crop.

Every comparison metric takes ``(image, reference)`` and the keyword choices

- ``norm``: ``"minmax"`` maps each image to [0, 1] by its own min and max; ``"lstsq"`` maps the
  reference to [0, 1] by min-max and the image onto it by the least-squares scale and offset;
  ``"none"`` compares raw values (``data_range`` then defaults to the reference's span);
- ``crop``: pixels left out at every border (after min-max normalisation of the whole image, before
  the least-squares fit and the metric).

SSIM is scikit-image's Gaussian-window SSIM (sigma 1.5, population covariance, K1 0.01, K2 0.03),
the common definition of Wang et al. 2004.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_int, check_number

NORMS = ("minmax", "lstsq", "none")


def crop_border(img: np.ndarray, crop: int) -> np.ndarray:
    crop = check_int("crop", crop, 0)
    if crop == 0:
        return img
    if 2 * crop >= min(img.shape[-2:]):
        raise ValueError(f"crop: {crop} px leaves nothing of an image of shape {img.shape}")
    return img[..., crop:-crop, crop:-crop]


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def fit_scale_offset(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """The least-squares ``(scale, offset)`` that maps ``image`` onto ``reference`` (same shape), in float64."""
    img = np.asarray(image, dtype=np.float64).ravel()
    A = np.stack([img, np.ones(img.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(A, np.asarray(reference, dtype=np.float64).ravel(), rcond=None)
    return float(scale), float(offset)


def normalise(image, reference, norm: str = "minmax", crop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (image, reference) pair after normalisation and crop, as float64.

    Min-max normalisation uses the WHOLE image (then the border is cropped); the least-squares scale
    and offset are fitted on the cropped region that is compared.
    """
    img = np.asarray(image, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if img.shape != ref.shape:
        raise ValueError(f"image: shape {img.shape} does not match the reference {ref.shape}")
    _check_finite(image=img, reference=ref)
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    if norm == "none":
        return crop_border(img, crop), crop_border(ref, crop)
    ref = crop_border(_minmax(ref), crop)
    if norm == "minmax":
        return crop_border(_minmax(img), crop), ref
    img = crop_border(img, crop)
    scale, offset = fit_scale_offset(img, ref)
    return scale * img + offset, ref


def _check_finite(**arrays) -> None:
    """A NaN image was min-max normalised to zeros and scored like a black one (PSNR 4.7 dB, FRC 0)."""
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains NaN or Inf; expected a finite image")


def _range(ref: np.ndarray, norm: str, data_range: float | None) -> float:
    if data_range is not None:
        return check_number("data_range", data_range, lo=0.0, strict=True)
    return 1.0 if norm != "none" else float(ref.max() - ref.min())


def psnr(image, reference, *, norm: str = "minmax", crop: int = 0, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB."""
    img, ref = normalise(image, reference, norm, crop)
    mse = float(np.mean((img - ref) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(_range(ref, norm, data_range) ** 2 / mse))


def nrmse(image, reference, *, norm: str = "minmax", crop: int = 0) -> float:
    """Root-mean-square error divided by the reference's root-mean-square (after normalisation)."""
    img, ref = normalise(image, reference, norm, crop)
    return float(np.sqrt(np.mean((img - ref) ** 2)) / np.sqrt(np.mean(ref**2)))


# the side of SSIM's Gaussian window (sigma 1.5, truncated at 3.5 sigma): the least image SSIM can score
SSIM_WINDOW = 11


def ssim(image, reference, *, norm: str = "minmax", crop: int = 0, data_range: float | None = None) -> float:
    """Gaussian-window structural similarity (scikit-image); the image after ``crop`` must be at least
    ``SSIM_WINDOW`` pixels a side (ValueError)."""
    from skimage.metrics import structural_similarity  # noqa: PLC0415

    img, ref = normalise(image, reference, norm, crop)
    if img.ndim != 2:  # (a stack was refused as "at least 11 px a side, got 2x32")
        raise ValueError(f"image: expected a 2-D image for ssim, got shape {img.shape}")
    if min(img.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: expected an image of at least {SSIM_WINDOW} px a side (its Gaussian window), got "
                         f"{img.shape[0]}x{img.shape[1]}" + (f" after a {crop} px border" if crop else ""))
    return float(structural_similarity(img, ref, data_range=_range(ref, norm, data_range), gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


@dataclass(frozen=True)
class FRCResult:
    """Fourier ring correlation: ``frequency`` (cycles per pixel, ring centres) and ``frc`` values;
    ``resolution`` is the first crossing of ``threshold`` as a frequency, ``None`` if never crossed
    (the curve stays above it up to Nyquist)."""

    frequency: np.ndarray
    frc: np.ndarray
    threshold: float
    cutoff: float | None
    pixel_size_nm: float | None = None

    @property
    def resolution_nm(self) -> float | None:
        """Resolution as a period (1 / cut-off) in nm, when the pixel size is known; inf where nothing correlates
        (cut-off 0)."""
        if self.cutoff is None or self.pixel_size_nm is None:
            return None
        return self.pixel_size_nm / self.cutoff if self.cutoff > 0 else float("inf")


def _hann2(shape) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def frc(image_a, image_b, *, threshold: float | str = "1/7", pixel_size_nm: float | None = None,
        crop: int = 0, ring_width: float = 1.0, smooth: int = 3) -> FRCResult:
    """Fourier ring correlation between two images of the same field.

    ``threshold`` is a number or ``"1/7"`` / ``"0.5"`` (or ``"half"``). Both images are mean-subtracted
    and Hann-windowed (non-periodic fields), rings are ``ring_width`` frequency bins wide, the curve is
    smoothed by a ``smooth``-ring running mean (odd) before the first crossing is located by linear
    interpolation. Ring 0, the zero frequency of the mean-subtracted images, is left out of the smoothing and
    of the search: its correlation is a sign, +1 or -1 (at -1 it pulled ring 1 below 0.5, a cut-off of 0 for
    images that correlate above 0.94 everywhere else). Frequencies are in cycles per pixel of the given images.
    """
    thr = {"1/7": 1 / 7, "0.5": 0.5, "half": 0.5}.get(threshold, threshold) if isinstance(threshold, str) \
        else threshold
    if isinstance(thr, bool) or not isinstance(thr, (int, float, np.integer, np.floating)) or not 0 < thr < 1:
        raise ValueError(f"threshold: expected '1/7', '0.5' or a number in (0, 1), got {threshold!r}")
    if check_int("smooth", smooth, 1) % 2 == 0:  # an even window pairs each mean with a frequency half a ring off
        raise ValueError(f"smooth: expected an odd number of rings, got {smooth}")
    check_number("ring_width", ring_width, lo=0.0, strict=True)
    a = crop_border(np.asarray(image_a, dtype=np.float64), crop)
    b = crop_border(np.asarray(image_b, dtype=np.float64), crop)
    if a.ndim != 2:
        raise ValueError(f"image_a: expected a 2-D image, got shape {a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"image_b: expected the shape of image_a {a.shape}, got {b.shape}")
    _check_finite(image_a=a, image_b=b)
    if int(min(a.shape) / 2 / ring_width) < 2:
        raise ValueError(f"image_a: a {a.shape[0]}x{a.shape[1]} image has fewer than 2 rings of width {ring_width:g}; "
                         "expected a larger image (or narrower rings)")
    win = _hann2(a.shape)
    Fa = np.fft.fft2((a - a.mean()) * win)
    Fb = np.fft.fft2((b - b.mean()) * win)
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    n = min(a.shape)
    ring = np.floor(np.hypot(fy, fx) * n / ring_width).astype(int).ravel()
    n_rings = int(n / 2 / ring_width)
    keep = ring < n_rings
    num = np.bincount(ring[keep], (Fa * np.conj(Fb)).real.ravel()[keep], n_rings)
    da = np.bincount(ring[keep], (np.abs(Fa) ** 2).ravel()[keep], n_rings)
    db = np.bincount(ring[keep], (np.abs(Fb) ** 2).ravel()[keep], n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(da * db > 0, num / np.sqrt(da * db), 0.0)
    if smooth > 1:
        rest = np.convolve(np.pad(curve[1:], smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")
        curve = np.concatenate([curve[:1], rest])
    freq = (np.arange(n_rings) + 0.5) * ring_width / n
    cutoff = None
    below = np.nonzero(curve[1:] < thr)[0]  # ring 0 (DC neighbourhood) is not a resolution
    if below.size:
        i = below[0] + 1
        f0, f1, c0, c1 = freq[i - 1], freq[i], curve[i - 1], curve[i]
        if c0 < thr:  # below the threshold from the first rings on: no resolved frequency at all
            cutoff = 0.0
        else:  # linear interpolation between the last ring above and the first below
            cutoff = float(f0 + (c0 - thr) * (f1 - f0) / (c0 - c1))
    return FRCResult(freq, curve, thr, cutoff, pixel_size_nm)


def resolution_gain(recon, widefield, reference, *, threshold: float | str = "1/7", crop: int = 0) -> float:
    """Ratio of FRC cut-offs (reconstruction vs reference) over (widefield vs reference)."""
    r = frc(recon, reference, threshold=threshold, crop=crop).cutoff
    w = frc(widefield, reference, threshold=threshold, crop=crop).cutoff
    if r is None or w is None:
        raise ValueError("resolution_gain: an FRC curve never crossed the threshold; no finite cut-off")
    if w == 0:
        raise ValueError("resolution_gain: the widefield image does not correlate with the reference (cut-off 0)")
    return r / w


def compare(image, reference, *, norm: str = "minmax", crop: int = 0) -> dict[str, float]:
    """PSNR, SSIM and NRMSE of ``image`` against ``reference`` in one dict."""
    return {"psnr_db": psnr(image, reference, norm=norm, crop=crop),
            "ssim": ssim(image, reference, norm=norm, crop=crop),
            "nrmse": nrmse(image, reference, norm=norm, crop=crop)}
