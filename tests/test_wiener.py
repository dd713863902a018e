"""Generalised Wiener SIM (cusim.recon.wiener): exact band separation, resolution beyond the widefield
cut-off, the quality bar on the PINN-paper microtubules, refusal of non-sinusoidal patterns, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from cusim import optics, patterns, simulate
from cusim.importers import import_paper
from cusim.io import Dataset
from cusim.metrics import compare
from cusim.recon import widefield
from cusim.recon import wiener as W

SIM_MT = ("pinn-sim-paper", "SIM", "microtubules")


def _sim(**kw):
    args = {"shape": (128, 128), "upsample": 2, "noise": False, "seed": 3, "device": "cpu"}
    return simulate(**{**args, **kw})


def _radial(shape):
    return np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])


def test_wiener_recovers_frequencies_beyond_the_widefield_cutoff():
    ds = _sim(pattern_freq=0.9)
    gt = ds.ground_truth
    fc = ds.optics().cutoff(ds.upsample)
    kmag = np.hypot(*ds.pattern_params.k[0])
    rec = W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample, w=0.02)
    wf = widefield.image(ds)
    ring = (_radial(gt.shape) > 1.15 * fc) & (_radial(gt.shape) < 0.85 * (fc + kmag))
    G = np.fft.fft2(gt - gt.mean())[ring]

    def correlation(img):  # spectral correlation with the truth in the ring the widefield cannot pass
        F = np.fft.fft2(img - img.mean())[ring]
        return float(np.real(np.vdot(G, F)) / np.sqrt(np.vdot(G, G).real * np.vdot(F, F).real))

    assert correlation(rec) > 0.8
    assert abs(correlation(wf)) < 0.3
    gain = compare(rec, gt, norm="lstsq", crop=8)["psnr_db"] - compare(wf, gt, norm="lstsq", crop=8)["psnr_db"]
    assert gain > 3.0


def _params_cases():
    lin = patterns.linear_params(period_px=5.2, n_angles=3, n_phases=3, angle_offset_deg=7.0)
    rng = np.random.default_rng(1)
    five = patterns.linear_params(period_px=5.2, n_angles=3, n_phases=5, angle_offset_deg=7.0, modulation=0.8)
    five = patterns.SinusoidParams(five.k, five.phase + rng.uniform(-0.4, 0.4, 15), five.modulation)
    nl = patterns.linear_params(period_px=9.0, n_angles=2, n_phases=5, angle_offset_deg=20.0, modulation=0.7)
    nl = patterns.SinusoidParams(nl.k, nl.phase, nl.modulation, np.full((10, 1), 0.4))
    return {"linear 3x3": (lin, 3, 3), "linear 3x5 unequal phases": (five, 3, 5), "harmonic 2x5": (nl, 2, 5)}


@pytest.mark.parametrize("case", [*_params_cases(), "pattern arrays with frame gains"])
def test_separated_bands_match_bands_computed_from_the_ground_truth(case):
    ds = _sim()
    H, Wd = ds.fine_shape
    pats, tol = None, 2e-4  # what is left: the Airy tails at the field edges
    if case == "pattern arrays with frame gains":  # per-frame intensity: only the arrays know it
        params, n_a, n_p = _params_cases()["harmonic 2x5"]
        pats = params.render((H, Wd), dtype=np.float64) * np.linspace(0.9, 1.1, params.K)[:, None, None]
        tol = 5e-4  # and the windowed measurement of the order coefficients
    else:
        params, n_a, n_p = _params_cases()[case]
    x = np.zeros((H, Wd))
    x[24:-24, 24:-24] = ds.ground_truth[24:-24, 24:-24]  # zero near the edges: no boundary effects
    ds = Dataset(raw=ds.raw, upsample=ds.upsample, patterns=pats, pattern_params=params, na=ds.na,
                 wavelength_nm=ds.wavelength_nm, pixel_size_nm=ds.pixel_size_nm)
    # a wide zero margin, so that the Airy PSF's tails do not wrap around in the forward model
    frames = ds.operator(pad_fine=64, device="cpu", dtype="float64").forward(x)
    b = W.bands(frames, params, ds.optics(), ds.upsample, n_angles=n_a, n_phases=n_p, patterns=pats)
    M = b.shape[1] // 2
    assert M == (1 if case.startswith("linear") else 2)
    big = np.zeros((2 * H, 2 * Wd))
    big[H // 2:H // 2 + H, Wd // 2:Wd // 2 + Wd] = x
    X = np.fft.fft2(big)
    k = params.k.reshape(n_a, n_p, 2)[:, 0]
    inner = (slice(16, -16), slice(16, -16))
    for a in range(n_a):
        for i, m in enumerate(range(-M, M + 1)):
            T = optics.shifted_transfer(ds.optics(), ds.upsample, big.shape, m * k[a], camera_band=True)
            # x convolved with the effective PSF modulated by exp(-2 pi i m k.r): no origin dependence
            direct = np.fft.ifft2(T * X)[H // 2:H // 2 + H, Wd // 2:Wd // 2 + Wd]
            err = np.linalg.norm((b[a, i] - direct)[inner]) / np.linalg.norm(direct[inner])
            assert err < tol, (a, m, err)


def test_sim_microtubules_sample1_beats_widefield_by_3db(shared_data):
    ds = import_paper(shared_data.joinpath(*SIM_MT), 1)
    img, info = W.reconstruct(ds)
    assert img.shape == ds.fine_shape and info["orders"] == 1
    rec = compare(img, ds.ground_truth, norm="lstsq", crop=20)
    wf = compare(widefield.image(ds), ds.ground_truth, norm="lstsq", crop=20)
    assert rec["psnr_db"] >= wf["psnr_db"] + 3.0, (rec, wf)
    assert rec["ssim"] > wf["ssim"] + 0.1


def test_lattice_patterns_are_refused_as_not_sinusoidal():
    ds = _sim(family="lattice")  # K = 25: the 5 x 5 default grouping applies, the sinusoid fit does not
    with pytest.raises(ValueError, match="not 5 angles x 5 phases of sinusoids"):
        W.reconstruct(ds)


def test_bad_input_raises_one_clear_error():
    ds = _sim()
    bare = Dataset(raw=ds.raw, upsample=ds.upsample, na=ds.na, wavelength_nm=ds.wavelength_nm,
                   pixel_size_nm=ds.pixel_size_nm)
    with pytest.raises(ValueError, match="cusim estimate"):
        W.reconstruct(bare)
    with pytest.raises(ValueError, match=r"frames: expected \(K, h, w\) with K = 9"):
        W.wiener(ds.frames()[:8], ds.pattern_params, ds.optics(), ds.upsample)
    with pytest.raises(ValueError, match="params: 9 frames, the dataset has K = 8"):
        W.reconstruct(Dataset(raw=ds.raw[:8], upsample=2, psf=ds.optics().psf(2)), params=ds.pattern_params)
    with pytest.raises(ValueError, match="no default for K = 8"):
        W.reconstruct(Dataset(raw=ds.raw[:8], upsample=2, patterns=ds.get_patterns()[:8], psf=ds.optics().psf(2)))
    with pytest.raises(ValueError, match="cusim estimate"):
        W.wiener(ds.frames(), None, ds.optics(), ds.upsample)
    with pytest.raises(TypeError, match="params: expected cusim.patterns.SinusoidParams"):
        W.wiener(ds.frames(), ds.get_patterns(), ds.optics(), ds.upsample)
    with pytest.raises(ValueError, match="apodisation"):
        W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample, apodisation="hann")


def test_time_series_returns_one_image_per_time_point(device):
    ds = _sim(T=2, noise=True, snr=30)
    img, info = W.reconstruct(ds, device=device)
    assert img.shape == (2, *ds.fine_shape) and img.dtype == np.float32
    one = W.wiener(ds.frames(1), ds.pattern_params, ds.optics(), ds.upsample)
    np.testing.assert_allclose(img[1], one, rtol=1e-5, atol=1e-5 * np.abs(one).max())
    assert info["params_source"] == "dataset"


# -- settings --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "match"), [
    ({"w": 0.0}, r"w: expected a finite number > 0, got 0.0"),
    ({"w": float("nan")}, r"w: expected a finite number > 0"),
    ({"apodisation": "hann"}, r"apodisation: expected one of \['triangle', 'cosine', None\], got 'hann'"),
    ({"apo_cutoff": -1.0}, r"apo_cutoff: expected a finite number > 0"),
    ({"apo_bend": 0}, r"apo_bend: expected a finite number > 0"),
    ({"n_angles": 1.5}, r"n_angles: expected an integer >= 1, got 1.5"),
    ({"n_phases": 2}, r"n_phases: expected an integer >= 3, got 2"),
    ({"orders": 0}, r"orders: expected an integer >= 1, got 0"),
])
def test_wiener_config_refuses_bad_settings_by_name(settings, match):
    with pytest.raises(ValueError, match=match):
        W.WienerConfig(**settings)


def test_wiener_config_from_params_refuses_unknown_keys_listing_the_valid_ones():
    cfg = W.WienerConfig.from_params({"w": 0.05, "orders": 1})
    assert (cfg.w, cfg.orders, cfg.apodisation, cfg.apo_cutoff, cfg.apo_bend) == (0.05, 1, "cosine", 1.2, 0.5)
    assert W.WienerConfig().w == W.W_DEFAULT == 0.15
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['pad', 'wiener_w'\]; expected some of "
                                         r"\['apo_bend', 'apo_cutoff', 'apodisation', 'n_angles', 'n_phases', "
                                         r"'orders', 'w'\]"):
        W.WienerConfig.from_params({"wiener_w": 0.1, "pad": 3})


def test_reconstruct_checks_its_settings_before_any_work():
    ds = _sim()
    bare = Dataset(raw=ds.raw, upsample=ds.upsample, na=ds.na, wavelength_nm=ds.wavelength_nm,
                   pixel_size_nm=ds.pixel_size_nm)  # no patterns at all: any work would fail differently
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['steps'\]"):
        W.reconstruct(bare, steps=3)
    with pytest.raises(ValueError, match="w: expected a finite number > 0"):
        W.reconstruct(bare, w=-0.1)


def test_orders_and_margin_are_checked_against_the_data():
    ds = _sim()
    with pytest.raises(ValueError, match=r"orders \(3 phases\): expected an integer (in )?1..1, got 2"):
        W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample, orders=2)
    with pytest.raises(ValueError, match=r"pad_camera: expected an integer >= 0, got -1"):
        W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample, pad_camera=-1)
    with pytest.raises(ValueError, match=r"upsample: expected an integer (in )?1..8, got 2.0"):
        W.wiener(ds.frames(), ds.pattern_params, ds.optics(), 2.0)
    # a wider camera-pixel margin changes only the edges
    a = W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample)
    b = W.wiener(ds.frames(), ds.pattern_params, ds.optics(), ds.upsample, pad_camera=24)
    inner = (slice(32, -32), slice(32, -32))
    assert np.abs(a - b)[inner].max() < 0.02 * np.abs(a[inner]).max()


def test_a_psf_array_and_the_widefield_optics_give_the_same_image():
    ds = _sim()
    wf = ds.optics()
    a = W.wiener(ds.frames(), ds.pattern_params, wf, ds.upsample)
    b = W.wiener(ds.frames(), ds.pattern_params, wf.psf(ds.upsample, size=127), ds.upsample)
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(a - b)[inner].max() < 0.03 * np.abs(a[inner]).max()


def test_camera_frames_reach_a_fine_grid_of_upsample_1_unchanged():
    """At upsample 1 the fine grid is the camera's: no Nyquist split (it halved the Nyquist column and quartered the
    row before)."""
    from types import SimpleNamespace  # noqa: PLC0415

    from cusim.recon.wiener import _to_fine  # noqa: PLC0415

    f = np.random.default_rng(0).normal(size=(2, 8, 8))
    plan = SimpleNamespace(s=1, pad_camera=0, padded=(8, 8), taper=np.ones((8, 8)))
    np.testing.assert_allclose(_to_fine(f, plan, np), f, atol=1e-12)


def test_a_run_given_pattern_parameters_records_them_and_can_be_stored(tmp_path):
    """params= held a SinusoidParams object in the record: json failed after the run ('not JSON serializable')."""
    from cusim import io, reconstruct  # noqa: PLC0415
    from cusim.patterns import params_record  # noqa: PLC0415

    ds = simulate(shape=(32, 32), seed=0, device="cpu")
    res = reconstruct(ds, "wiener", device="cpu", params=ds.pattern_params)
    assert res.params["params"] == params_record(ds.pattern_params)
    path = io.save(ds, tmp_path / "a.h5")
    io.add_recon(path, "w", res.to_recon(**res.recorded_extra()))
    assert io.load(path).recons["w"].attrs["params"]["params"]["k"] == params_record(ds.pattern_params)["k"]


def test_a_dataset_without_patterns_is_told_both_ways_to_estimate_them():
    """The batch path said "params: the dataset has no /pattern_params ...; run `cusim estimate` first", naming an
    argument and not --estimate-patterns, where a single run named the file and both ways."""
    from cusim import reconstruct  # noqa: PLC0415

    ds = simulate(shape=(32, 32), seed=0, device="cpu")
    ds.pattern_params, ds.patterns = None, None
    with pytest.raises(ValueError, match=r"^dataset: no /patterns and no /pattern_params; estimate them first "
                                         r"\(cusim estimate, or cusim run --estimate-patterns\)"):
        reconstruct(ds, "wiener", device="cpu")
