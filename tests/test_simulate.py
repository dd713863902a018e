"""cusim.simulate: the toolkit's forward model exactly, the requested noise level, seeded, saveable."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cusim import io, phantoms
from cusim.simulate import FAMILIES, photon_level, simulate

SMALL = dict(shape=(48, 48), upsample=2, device="cpu")


def _noise_free(ds):
    return ds.operator(device="cpu").forward(ds.ground_truth)


@pytest.mark.parametrize("family", FAMILIES)
def test_noise_off_is_exactly_the_operator(family):
    ds = simulate(family=family, noise=False, seed=1, **SMALL)
    a = ds.attrs
    got = (ds.raw.astype(np.float64) - a["sim_offset"]) / a["sim_gain"]
    want = _noise_free(ds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    assert ds.raw.dtype == np.float32 and ds.raw.shape == (ds.K, 24, 24)
    assert a["sim_family"] == family and a["sim_snr"] == np.inf


def test_ground_truth_is_the_named_phantom():
    ds = simulate(phantom="ccp", seed=7, noise=False, **SMALL)
    np.testing.assert_array_equal(ds.ground_truth, phantoms.make("ccp", (48, 48), 7))


@pytest.mark.parametrize("snr, read_noise", [(10.0, 1.0), (4.0, 6.0), (30.0, 0.0)])
def test_requested_snr_is_achieved(snr, read_noise):
    kw = dict(shape=(96, 96), upsample=2, device="cpu", snr=snr, read_noise=read_noise, seed=3)
    ds, clean = simulate(**kw), simulate(noise=False, **kw)
    signal = clean.raw.astype(np.float64) - clean.attrs["sim_offset"]
    noise = ds.raw.astype(np.float64) - clean.raw
    assert signal.mean() / noise.std() == pytest.approx(snr, rel=0.05)
    assert ds.attrs["sim_snr"] == pytest.approx(snr, rel=0.05)
    assert ds.attrs["sim_snr_requested"] == snr
    assert ds.attrs["sim_photons"] == pytest.approx(photon_level(snr, read_noise))


def test_default_noise_is_snr_20():
    assert simulate(**SMALL).attrs["sim_snr_requested"] == 20.0


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_photons_mode_mean(dtype):
    ds = simulate(photons=50.0, offset=100.0, dtype=dtype, **SMALL)
    assert ds.raw.dtype == np.dtype(dtype)
    assert ds.raw.astype(np.float64).mean() - 100.0 == pytest.approx(50.0, rel=0.02)
    assert ds.attrs["sim_photons_requested"] == 50.0 and "sim_snr_requested" not in ds.attrs
    if dtype == "uint16":
        assert "clipped" in ds.attrs["sim_quantization"] and ds.attrs["sim_clipped_fraction"] == 0.0


@pytest.mark.parametrize("family", ["linear", "speckle"])
def test_seeded(family):
    a, b = simulate(family=family, seed=5, **SMALL), simulate(family=family, seed=5, **SMALL)
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.get_patterns(), b.get_patterns())
    c = simulate(family=family, seed=6, **SMALL)
    assert not np.array_equal(a.raw, c.raw) and not np.array_equal(a.ground_truth, c.ground_truth)


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_through_hdf5(family, tmp_path):
    ds = simulate(family=family, phantom="er", noise=False, **SMALL)
    back = io.load(io.save(ds, tmp_path / f"{family}.h5"))
    np.testing.assert_array_equal(back.raw, ds.raw)
    np.testing.assert_array_equal(back.ground_truth, ds.ground_truth)
    np.testing.assert_array_equal(back.get_patterns(), ds.get_patterns())
    assert back.attrs == ds.attrs
    assert (back.patterns is None) == (family in ("linear", "nonlinear", "hexagonal"))  # parametric families
    assert back.psf is None and (back.na, back.wavelength_nm, back.pixel_size_nm) == (1.2, 520.0, 100.0)
    # what is stored is enough to reproduce the noise-free frames
    np.testing.assert_allclose(_noise_free(back), _noise_free(ds), rtol=1e-6, atol=1e-7)


def test_frame_counts():
    assert simulate(**SMALL).K == 9
    assert simulate(family="nonlinear", **SMALL).K == 25
    assert simulate(family="linear", n_angles=2, n_phases=4, **SMALL).K == 8
    assert simulate(family="lattice", n_phases=3, **SMALL).K == 9
    assert simulate(family="speckle", n_frames=7, **SMALL).K == 7
    assert simulate(family="hexagonal", **SMALL).K == 7


def test_time_series_drifts():
    ds = simulate(T=3, drift_px=2.0, **SMALL)
    assert ds.raw.shape == (3, 9, 24, 24) and ds.ground_truth.shape == (3, 48, 48)
    assert ds.attrs["sim_T"] == 3 and ds.attrs["sim_drift_px"] == 2.0
    g0, g2 = ds.ground_truth[0], ds.ground_truth[2]
    xc = np.fft.ifft2(np.fft.fft2(g2) * np.conj(np.fft.fft2(g0))).real
    dy, dx = np.unravel_index(np.argmax(xc), xc.shape)
    dy, dx = (dy + 24) % 48 - 24, (dx + 24) % 48 - 24
    assert np.hypot(dy, dx) == pytest.approx(4.0, abs=1.0)  # 2 time steps of 2 px
    np.testing.assert_allclose(ds.frames(1), ds.raw[1])


@pytest.mark.parametrize("kwargs, name", [
    (dict(snr=-1.0), "snr"),
    (dict(snr=10.0, photons=100.0), "snr, photons"),
    (dict(photons=0.0), "photons"),
    (dict(family="structured"), "family"),
    (dict(phantom="nucleus"), "phantom"),
    (dict(shape=(49, 48)), "shape"),
    (dict(shape=(4, 4)), "shape"),
    (dict(upsample=0), "upsample"),
    (dict(pattern_freq=0.0), "pattern_freq"),
    (dict(pattern_freq=3.0), "pattern_freq"),
    (dict(modulation=1.5), "modulation"),
    (dict(read_noise=-1.0), "read_noise"),
    (dict(offset=float("nan")), "offset"),
    (dict(T=0), "T"),
    (dict(seed=-1), "seed"),
    (dict(dtype="uint8"), "dtype"),
    (dict(na=0.0), "na"),
    (dict(n_frames=4), "n_frames"),
    (dict(family="speckle", n_phases=4), "n_phases"),
    (dict(n_angles=0), "n_angles"),
])
def test_bad_arguments_are_named(kwargs, name):
    args = {**SMALL, **kwargs}
    with pytest.raises(ValueError, match=f"^{name}"):
        simulate(**args)


def test_uint16_frames_clipped_at_zero_say_so():
    # Read noise below a zero offset: 45 % of the pixels clipped at 0, recorded only in an attribute, while the
    # file's noise model (Poisson + Gaussian read noise) no longer described its frames.
    import cusim  # noqa: PLC0415

    with pytest.warns(cusim.CusimWarning, match=r"^raw: \d+\.?\d* % of the pixels clipped at 0 \(uint16\)"):
        ds = simulate(shape=(64, 64), dtype="uint16", offset=0, photons=1, read_noise=3, seed=0, device="cpu")
    assert ds.attrs["sim_clipped_fraction"] > 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same frames above a camera's usual offset: nothing to say
        simulate(shape=(64, 64), dtype="uint16", offset=100, photons=1, read_noise=3, seed=0, device="cpu")


def test_settings_a_family_does_not_use_are_refused_naming_why():
    """saturation was ignored for every family but the nonlinear one; the hexagonal family's refusal of n_angles
    ended in "(it takes )"."""
    with pytest.raises(ValueError, match=r"^saturation: only the nonlinear family saturates, got family 'linear'$"):
        simulate(shape=(32, 32), family="linear", saturation=10)
    with pytest.raises(ValueError, match=r"^n_angles: not used by family 'hexagonal' \(its frame count is fixed\)$"):
        simulate(shape=(32, 32), family="hexagonal", n_angles=3)
    assert simulate(shape=(32, 32), family="nonlinear", noise=False).attrs["sim_saturation"] == 3.0
    assert simulate(shape=(32, 32), family="nonlinear", saturation=5, noise=False).attrs["sim_saturation"] == 5.0
