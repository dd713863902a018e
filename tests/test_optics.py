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


@pytest.mark.parametrize("kwargs", [dict(na=0), dict(wavelength_nm=-1), dict(pixel_size_nm=np.nan), dict(na=3)])
def test_widefield_rejects_unphysical_optics(kwargs):
    args = dict(na=1.2, wavelength_nm=520, pixel_size_nm=100) | kwargs
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        optics.Widefield(**args)
