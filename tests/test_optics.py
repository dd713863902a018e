"""Optics: Airy and Gaussian PSFs, the incoherent OTF formula, PSF validation."""

from __future__ import annotations

import numpy as np
import pytest

from cusim import optics


def test_widefield_otf_is_one_at_dc_zero_beyond_cutoff_and_matches_the_airy_psf():
    na, wl, px = 1.2, 520.0, 25.0
    n = 256
    otf = optics.widefield_otf((n, n), na, wl, px)
    fc = optics.otf_cutoff(na, wl, px)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    assert otf[0, 0] == pytest.approx(1.0)
    assert np.all(otf[f > fc] == 0)
    assert np.all(otf[f < 0.9 * fc] > 0)
    # The Airy PSF sampled on the same grid has (up to sampling and truncation) this OTF.
    airy_otf = np.real(optics.psf_to_otf(optics.airy_psf(na, wl, px, size=n - 1), (n, n)))
    assert np.abs(airy_otf - otf).max() < 0.02


def test_airy_first_zero_is_at_0p61_lambda_over_na():
    na, wl, px = 1.0, 500.0, 5.0
    psf = optics.airy_psf(na, wl, px, size=301)
    row = psf[150, 150:]
    first_min = np.argmax(np.diff(row) > 0)  # where the profile starts to rise again
    assert first_min * px == pytest.approx(0.61 * wl / na, abs=px)


def test_gaussian_psf_has_the_requested_width():
    g = optics.gaussian_psf(2.5, size=41)
    c = np.arange(41) - 20
    var = (g.sum(axis=0) * c**2).sum()
    assert np.sqrt(var) == pytest.approx(2.5, rel=1e-3)
    assert g.sum() == pytest.approx(1.0)


def test_widefield_object_samples_the_fine_grid_from_the_camera_pixel():
    wf = optics.Widefield(na=1.4, wavelength_nm=600, pixel_size_nm=80)
    assert wf.cutoff(upsample=2) == pytest.approx(2 * 1.4 * 40 / 600)
    assert wf.psf(upsample=2).shape[0] % 2 == 1


@pytest.mark.parametrize(
    "psf,match",
    [
        (np.ones((2, 3)), "odd sides"),
        (np.ones(5), "2-D array"),
        (np.zeros((3, 3)), "all zero"),
        (np.array([[0, -1, 0], [0, 5, 0], [0, 0, 0]]), "non-negative"),
        (np.array([[np.nan]]), "NaN or Inf"),
        (np.ones((3, 3), dtype=complex), "real numbers"),
    ],
)
def test_validate_psf_rejects_bad_arrays_by_name(psf, match):
    with pytest.raises(ValueError, match=rf"psf: .*{match}"):
        optics.validate_psf(psf)


@pytest.mark.parametrize("kwargs", [dict(na=0), dict(wavelength_nm=-1), dict(pixel_size_nm=np.nan), dict(na=3),
                                    dict(wavelength_nm=0.52), dict(wavelength_nm=5e4), dict(pixel_size_nm=0.1)])
def test_widefield_rejects_unphysical_optics(kwargs):
    args = dict(na=1.2, wavelength_nm=520, pixel_size_nm=100) | kwargs
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        optics.Widefield(**args)


# -- the transfer formulas shared by estimation and Wiener --------------------------------------------------
def test_ideal_otf_is_the_widefield_otf_and_has_its_known_values():
    na, wl, px, shape = 1.2, 520.0, 40.0, (64, 48)
    fc = optics.otf_cutoff(na, wl, px)
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    np.testing.assert_allclose(optics.ideal_otf(f, fc), optics.widefield_otf(shape, na, wl, px), rtol=0, atol=1e-15)
    q = np.array([0.0, 0.5, 1.0, 1.5])
    expected = [1.0, (2 / np.pi) * (np.arccos(0.5) - 0.5 * np.sqrt(0.75)), 0.0, 0.0]
    np.testing.assert_allclose(optics.ideal_otf(0.2 * q, 0.2), expected, rtol=0, atol=1e-15)


def test_pixel_box_is_the_transfer_of_the_centred_s_pixel_mean():
    f = np.linspace(-0.6, 0.6, 61)
    for s in (1, 2, 3, 4):
        n = np.arange(s) - (s - 1) / 2  # centred block of s fine pixels
        direct = np.exp(-2j * np.pi * np.outer(f, n)).mean(axis=1)
        np.testing.assert_allclose(optics.pixel_box(f, s), direct.real, rtol=0, atol=1e-12)
        assert np.abs(direct.imag).max() < 1e-12
    assert optics.pixel_box(0.25, 2) == pytest.approx(1 / np.sqrt(2), abs=1e-15)
    assert optics.pixel_box(0.5, 2) == pytest.approx(0.0, abs=1e-15)
    assert optics.pixel_box(0.0, 3) == 1.0


@pytest.mark.parametrize("s", [1, 3])
def test_transfer_at_any_frequency_matches_the_shifted_fft_grid(s):
    psf = optics.gaussian_psf(1.7, size=15)
    shape, shift = (40, 34), (0.073, -0.121)
    grid = optics.shifted_transfer(psf, s, shape, shift)
    fy, fx = np.fft.fftfreq(shape[0]) + shift[0], np.fft.fftfreq(shape[1]) + shift[1]
    np.testing.assert_allclose(optics.transfer(psf, s, fy, fx), grid, rtol=0, atol=1e-12)
    # unshifted, without the block mean, it is the PSF's OTF
    np.testing.assert_allclose(optics.shifted_transfer(psf, 1, shape), optics.psf_to_otf(psf, shape), atol=1e-12)
    wf = optics.Widefield(na=1.1, wavelength_nm=510, pixel_size_nm=90)
    box = np.outer(optics.pixel_box(fy, s), optics.pixel_box(fx, s))
    np.testing.assert_allclose(optics.shifted_transfer(wf, s, shape, shift),
                               optics.ideal_otf(np.hypot(fy[:, None], fx[None, :]), wf.cutoff(s)) * box, atol=1e-15)
    # a number is the cut-off of an ideal OTF
    np.testing.assert_allclose(optics.transfer(wf.cutoff(s), s, fy, fx), optics.transfer(wf, s, fy, fx), atol=0)


def test_camera_band_keeps_only_what_the_camera_samples_without_aliasing():
    s, shape, shift = 2, (32, 32), (0.1, 0.0)
    wf = optics.Widefield(na=1.4, wavelength_nm=500, pixel_size_nm=160)  # cut-off 0.45 > 0.25 per fine px
    full = optics.shifted_transfer(wf, s, shape, shift)
    band = optics.shifted_transfer(wf, s, shape, shift, camera_band=True)
    fy = np.fft.fftfreq(shape[0])[:, None] + shift[0]
    fx = np.fft.fftfreq(shape[1])[None, :] + shift[1]
    inside = (np.abs(fy) <= 0.25) & (np.abs(fx) <= 0.25)
    np.testing.assert_array_equal(band[inside], full[inside])
    assert np.all(band[~inside] == 0) and np.abs(full[~inside]).max() > 0.05


def test_transfer_cutoff_is_analytic_for_widefield_and_measured_for_a_psf():
    wf = optics.Widefield(na=1.2, wavelength_nm=520, pixel_size_nm=100)
    s, shape = 2, (256, 256)
    assert optics.transfer_cutoff(wf, s, shape) == wf.cutoff(s)
    assert optics.transfer_cutoff(0.17, s, shape) == 0.17
    measured = optics.transfer_cutoff(wf.psf(s, size=255), s, shape)
    # 1 % of the ideal OTF is reached at q ~ 0.96; the grid step is 1/256
    assert 0.93 * wf.cutoff(s) < measured <= wf.cutoff(s) + 1 / 256


def test_size_and_sigma_use_the_shared_messages():
    with pytest.raises(ValueError, match="size: expected an odd positive integer, got 4"):
        optics.gaussian_psf(1.0, size=4)
    with pytest.raises(ValueError, match=r"size: expected an integer >= 1, got 2.5"):
        optics.airy_psf(1.2, 520, 40, size=2.5)
    with pytest.raises(ValueError, match="sigma_px: expected a finite number > 0, got -1"):
        optics.gaussian_psf(-1)
