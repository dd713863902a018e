"""Metrics: normalisation conventions, PSNR/SSIM/NRMSE, Fourier ring correlation."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from cusim import metrics


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    ref = rng.random((64, 64))
    return ref, ref + 0.05 * rng.standard_normal((64, 64))


def test_minmax_psnr_ignores_gain_and_offset(images):
    ref, img = images
    a = metrics.psnr(img, ref, norm="minmax")
    b = metrics.psnr(3.0 * img + 7.0, ref, norm="minmax")
    assert a == pytest.approx(b, rel=1e-12)


def test_lstsq_fits_scale_and_offset_exactly():
    rng = np.random.default_rng(1)
    ref = rng.random((32, 32))
    assert metrics.psnr(-2.0 * ref + 5.0, ref, norm="lstsq") > 250  # a perfect linear map
    assert metrics.nrmse(4 * ref, ref, norm="lstsq") < 1e-12
    assert metrics.fit_scale_offset(ref, -2.0 * ref + 5.0) == pytest.approx((-2.0, 5.0), rel=1e-12)


def test_lstsq_fits_on_the_compared_region_only():
    """A border spoiled beyond the crop does not move the fit: the map is exact inside."""
    rng = np.random.default_rng(2)
    ref = rng.random((32, 32))
    img = 3.0 * ref - 1.0
    img[:4], img[:, :4] = 100.0, -50.0
    assert metrics.psnr(img, ref, norm="lstsq", crop=4) > 250
    assert metrics.psnr(img, ref, norm="lstsq", crop=2) < 40


def test_psnr_matches_the_textbook_formula_without_normalisation():
    ref = np.zeros((10, 10))
    img = np.full((10, 10), 0.1)
    assert metrics.psnr(img, ref, norm="none", data_range=1.0) == pytest.approx(20.0)


def test_minmax_normalises_the_whole_image_before_cropping_the_border():
    ref = np.zeros((20, 20))
    ref[10, 10] = 1.0
    img = ref.copy()
    img[0, 0] = 10.0  # a hot pixel in the border still sets the image's range
    inner_img, inner_ref = metrics.normalise(img, ref, "minmax", crop=2)
    assert inner_img.max() == pytest.approx(0.1) and inner_ref.max() == 1.0


def test_ssim_is_the_gaussian_window_definition(images):
    ref, img = images
    n_img, n_ref = metrics.normalise(img, ref, "minmax", crop=4)
    expected = structural_similarity(n_img, n_ref, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert metrics.ssim(img, ref, crop=4) == pytest.approx(expected)
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norm: expected one of"):
        metrics.psnr(np.ones((4, 4)), np.ones((4, 4)), norm="zscore")
    with pytest.raises(ValueError, match=r"image: shape \(4, 4\) does not match"):
        metrics.ssim(np.ones((4, 4)), np.ones((5, 5)))
    with pytest.raises(ValueError, match="crop: 3 px leaves nothing"):
        metrics.psnr(np.ones((6, 6)), np.ones((6, 6)), crop=3)
    with pytest.raises(ValueError, match="threshold"):
        metrics.frc(np.ones((8, 8)), np.ones((8, 8)), threshold="1/3")


def _lowpass(img, fmax):
    n = img.shape[0]
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * (f < fmax)))


def test_frc_finds_the_band_limit_of_two_noisy_copies():
    rng = np.random.default_rng(2)
    n, fmax = 256, 0.2
    signal = _lowpass(rng.standard_normal((n, n)), fmax)
    noise = 0.02 * signal.std()
    a = signal + noise * rng.standard_normal((n, n))
    b = signal + noise * rng.standard_normal((n, n))
    res = metrics.frc(a, b, threshold="1/7", pixel_size_nm=40.0)
    # the Hann window and the 3-ring smoothing blur the edge by a few rings (1 ring = 1/n)
    assert abs(res.cutoff - fmax) < 4 / n
    assert res.resolution_nm == pytest.approx(40.0 / res.cutoff)
    assert metrics.frc(a, b, threshold="0.5").cutoff <= res.cutoff


def test_frc_of_identical_images_never_crosses():
    img = np.random.default_rng(3).random((64, 64))
    assert metrics.frc(img, img).cutoff is None


def test_resolution_gain_is_the_ratio_of_cutoffs():
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((128, 128))
    sharp, blurry = _lowpass(truth, 0.3), _lowpass(truth, 0.15)
    assert metrics.resolution_gain(sharp, blurry, truth) == pytest.approx(2.0, rel=0.1)


def test_frc_of_unrelated_images_has_zero_cutoff_not_an_extrapolation():
    rng = np.random.default_rng(6)
    res = metrics.frc(rng.random((64, 64)), -_lowpass(rng.random((64, 64)), 0.05))
    assert res.cutoff is not None and 0.0 <= res.cutoff <= 0.5


def test_the_zero_frequency_ring_does_not_decide_the_frc_cutoff():
    # Ring 0 of mean-subtracted, windowed images is one pixel whose correlation is a sign. With -1 there (a smooth
    # 5 % change of one image's background flips it) the 3-ring smoothing pulled ring 1 below 0.5: cut-off 0,
    # "no correlation", for images whose rings 1.. correlate above 0.94.
    from scipy import ndimage  # noqa: PLC0415

    from cusim import phantoms  # noqa: PLC0415

    a = phantoms.make("filaments", (128, 128), 0).astype(float)
    b = ndimage.gaussian_filter(a, 1.0) + 0.02 * np.random.default_rng(1).standard_normal(a.shape)
    win = np.outer(np.hanning(128), np.hanning(128))
    dc = lambda x: float(((x - x.mean()) * win).sum())  # noqa: E731
    bump = ndimage.gaussian_filter(np.pad([[1.0]], ((64, 63), (64, 63))), 20)
    flipped = b - 2 * dc(b) / dc(bump) * bump
    assert np.sign(dc(flipped)) != np.sign(dc(b)) and np.sign(dc(b)) == np.sign(dc(a))
    before, after = metrics.frc(b, a, threshold="0.5"), metrics.frc(flipped, a, threshold="0.5")
    assert after.frc[0] == pytest.approx(-1) and after.cutoff == pytest.approx(before.cutoff, abs=0.01)
    assert 0.25 < before.cutoff < 0.4


def test_frc_odd_smoothing_and_a_zero_cutoff_in_its_derived_numbers():
    rng = np.random.default_rng(5)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    for smooth in (2, 4, 0):
        with pytest.raises(ValueError, match="smooth: expected"):
            metrics.frc(a, a, smooth=smooth)
    res = metrics.FRCResult(np.zeros(1), np.zeros(1), 0.5, 0.0, pixel_size_nm=50.0)
    assert res.resolution_nm == float("inf")  # it divided by zero
    with pytest.raises(ValueError, match="the widefield image does not correlate"):
        metrics.resolution_gain(b, 1 - a, a, threshold="0.5")
    with pytest.raises(ValueError, match="ssim: expected an image of at least 11 px a side .* got 10x10 after a 1 px"):
        metrics.ssim(a[:12, :12], b[:12, :12], crop=1)


def test_a_nan_image_and_impossible_settings_are_refused_naming_the_argument():
    """A NaN image was min-max normalised to zeros and scored like a black one (PSNR 4.7 dB, FRC 0); ring_width 0,
    a 3 x 3 image, threshold None, a fractional crop, a negative data_range and stacks failed deep or were taken."""
    rng = np.random.default_rng(0)
    ref = rng.random((32, 40))
    img = ref + 0.1 * rng.standard_normal(ref.shape)
    cases = [(metrics.psnr, (img * np.nan, ref), {}, r"^image: contains NaN or Inf"),
             (metrics.ssim, (img, ref * np.inf), {}, r"^reference: contains NaN or Inf"),
             (metrics.frc, (img * np.nan, ref), {}, r"^image_a: contains NaN or Inf"),
             (metrics.frc, (img, ref), {"ring_width": 0}, r"^ring_width: expected a finite number > 0, got 0"),
             (metrics.frc, (img[:3, :3], ref[:3, :3]), {}, r"^image_a: a 3x3 image has fewer than 2 rings"),
             (metrics.frc, (img, ref), {"threshold": None}, r"^threshold: expected '1/7', '0.5' or a number"),
             (metrics.frc, (np.stack([img, img]), np.stack([ref, ref])), {}, r"^image_a: expected a 2-D image"),
             (metrics.psnr, (img, ref), {"crop": 2.5}, r"^crop: expected an integer >= 0, got 2.5"),
             (metrics.psnr, (img, ref), {"data_range": -1}, r"^data_range: expected a finite number > 0"),
             (metrics.ssim, (np.stack([img, img]), np.stack([ref, ref])), {}, r"^image: expected a 2-D image for ssim")]
    for fn, args, kw, says in cases:
        with pytest.raises(ValueError, match=says):
            fn(*args, **kw)
    assert metrics.frc(img, ref, threshold=1 / 7).threshold == pytest.approx(1 / 7)
