"""Noise level from the frames themselves; the operator's passband; cropping a dataset."""

from __future__ import annotations

import numpy as np
import pytest

import cusim
from cusim import noise, optics, patterns
from cusim.operators import SIMOperator


@pytest.mark.parametrize("snr,tol", [(5, 0.10), (20, 0.10), (50, 0.15)])
def test_noise_sigma_is_estimated_from_the_out_of_band_spectrum(snr, tol):
    ds = cusim.simulate(shape=(128, 128), snr=snr, seed=snr)
    op = ds.operator(device="cpu")
    clean = op.forward(ds.ground_truth) * ds.attrs["sim_gain"] + ds.attrs["sim_offset"]
    true = float((ds.raw - clean).std())
    sigma, how = noise.estimate_sigma(ds.frames(), op)
    assert how == "spectral"
    assert sigma == pytest.approx(true, rel=tol)  # leakage of the cropped field grows with the SNR


def test_immerkaer_fallback_measures_white_noise():
    rng = np.random.default_rng(0)
    frames = 100 + 3.0 * rng.standard_normal((4, 64, 64))
    assert noise.immerkaer_sigma(frames) == pytest.approx(3.0, rel=0.05)
    # an operator whose passband fills the camera spectrum leaves no out-of-band noise: fall back
    op = SIMOperator(np.ones((4, 64, 64)), np.ones((1, 1)), 1, device="cpu")
    assert op.passband().all()
    assert noise.estimate_sigma(frames, op)[1] == "immerkaer"


def test_passband_of_widefield_optics_is_the_otf_disc_on_the_camera_grid():
    wf = optics.Widefield(na=1.0, wavelength_nm=500, pixel_size_nm=100)  # cut-off 0.4 cyc / camera px
    op = SIMOperator(np.ones((1, 128, 128)), wf, 2, device="cpu")
    band = op.passband(rel=1e-6)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij"))
    assert band[f < 0.38].all() and not band[f > 0.42].any()


def test_crop_keeps_the_forward_model_of_the_sub_field():
    p = patterns.linear_params(period_px=5.5, angle_offset_deg=12)
    ds = cusim.Dataset(raw=np.zeros((9, 16, 16), np.float32), upsample=2, pattern_params=p, pattern_kind="linear",
                       psf=optics.gaussian_psf(1.0, size=5), ground_truth=np.ones((32, 32), np.float32))
    sub = ds.crop(6, 10, 20, 14)
    np.testing.assert_allclose(sub.get_patterns(), ds.get_patterns()[:, 6:26, 10:24], atol=1e-5)
    assert sub.raw.shape == (9, 10, 7) and sub.ground_truth.shape == (20, 14)
    assert ds.crop_center(20).attrs["crop"] == [6, 6, 20, 20]
    with pytest.raises(ValueError, match="multiples of upsample 2"):
        ds.crop(1, 0, 10, 10)
