"""Illumination parameter estimation: known patterns, the paper data, simulations, real data, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cusim import SIMOperator, io, simulate
from cusim.estimate import (
    EstimationError,
    carrier_guess,
    estimate_dataset,
    estimate_params,
    params_from_patterns,
)
from cusim.importers import import_paper, import_stack
from cusim.patterns import SinusoidParams, linear_params

# the accuracy the estimator must reach against the truth (DESIGN section 2 convention)
K_PERCENT, ANGLE_DEG, PHASE_RAD = 0.3, 0.2, 0.1


def errors(est: SinusoidParams, truth: SinusoidParams):
    """Worst |k| error (%), angle error (deg) and phase error (rad, modulo 2 pi) over all frames."""
    est, truth = est.normalised(), truth.normalised()
    kmag = np.hypot(*est.k.T) / np.hypot(*truth.k.T) - 1
    dang = np.angle(np.exp(1j * (np.arctan2(*est.k.T) - np.arctan2(*truth.k.T))))
    dphi = np.angle(np.exp(1j * (est.phase - truth.phase)))
    return 100 * np.abs(kmag).max(), np.degrees(np.abs(dang)).max(), np.abs(dphi).max()


def within_bounds(est, truth) -> bool:
    k, a, p = errors(est, truth)
    return k < K_PERCENT and a < ANGLE_DEG and p < PHASE_RAD


# -- known patterns ------------------------------------------------------------------------------------------
def test_params_from_patterns_recovers_rendered_parameters_with_harmonics():
    truth = SinusoidParams(k=[[0.031, -0.072], [0.0, 0.1], [-0.05, 0.0]], phase=[1.0, -2.0, 0.3],
                           modulation=[0.8, 0.5, 1.0], harmonics=[[0.3, -0.05], [0.0, 0.0], [0.1, 0.02]])
    fit = params_from_patterns(3.0 * truth.render((96, 80), dtype=np.float64))  # any scale
    ref = truth.normalised()
    np.testing.assert_allclose(fit.k, ref.k, atol=1e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (fit.phase - ref.phase))), 0, atol=1e-4)
    np.testing.assert_allclose(fit.modulation, ref.modulation, atol=1e-5)
    np.testing.assert_allclose(fit.harmonics, ref.harmonics, atol=1e-5)


def test_params_from_patterns_follows_the_sign_convention_and_reproduces_the_patterns():
    truth = SinusoidParams(k=[[0.04, -0.06], [-0.07, 0.0]], phase=[2.5, -1.0], modulation=[0.7, 0.9])
    pats = truth.render((64, 64), dtype=np.float64)
    fit = params_from_patterns(pats)
    assert fit.k[0, 1] > 0 and fit.k[1, 1] == pytest.approx(0, abs=1e-9) and fit.k[1, 0] > 0
    assert fit.harmonics is None
    np.testing.assert_allclose(fit.render((64, 64), dtype=np.float64), pats, atol=1e-4)


def test_params_from_patterns_shares_one_carrier_per_angle():
    truth = linear_params(period_px=9.5, n_angles=3, n_phases=3, angle_offset_deg=7.0)
    fit = params_from_patterns(truth.render((90, 90)))  # K = 9: 3 angles x 3 phases
    assert errors(fit, truth)[0] < 1e-4
    np.testing.assert_array_equal(fit.k[0], fit.k[2])


# -- the PINN-paper data (truth from the pattern PNGs) -----------------------------------------------------
def test_estimate_meets_the_accuracy_bounds_on_every_paper_sim_microtubules_sample(shared_data):
    set_dir = shared_data / "pinn-sim-paper" / "SIM" / "microtubules"
    truth = params_from_patterns(import_paper(set_dir, 1).get_patterns())  # one pattern set for all samples
    assert np.hypot(*truth.k[0]) == pytest.approx(1 / 12, rel=1e-4)
    for sample in range(1, 11):
        ds = import_paper(set_dir, sample)
        res = estimate_dataset(ds)
        k, a, p = errors(res.params, truth)
        assert k < K_PERCENT and a < ANGLE_DEG and p < PHASE_RAD, \
            f"sample {sample}: |k| {k:.3f} %, angle {a:.3f} deg, phase {p:.3f} rad"
        assert res.modulation.min() > 0.8  # the patterns are fully modulated


def test_estimate_with_second_harmonic_on_nonlinear_sim(shared_data):
    ds = import_paper(shared_data / "pinn-sim-paper" / "NL_SIM" / "microtubules", 1)
    truth = params_from_patterns(ds.get_patterns())
    assert truth.harmonics is not None and truth.harmonics.shape[1] >= 2  # saturated: orders 2 and 3
    res = estimate_dataset(ds, order=2)
    assert within_bounds(res.params, truth), errors(res.params, truth)
    assert res.params.harmonics.shape == (25, 1)
    assert abs(np.median(res.harmonic) - np.median(truth.harmonics[:, 0])) < 0.1


# -- simulations --------------------------------------------------------------------------------------------
def test_estimate_meets_the_accuracy_bounds_at_snr_5_for_9_of_10_seeds():
    passed = 0
    for seed in range(10):
        ds = simulate(snr=5, seed=seed, device="cpu")
        passed += within_bounds(estimate_dataset(ds).params, ds.pattern_params)
    assert passed >= 9


def test_a_diagonal_carrier_beyond_half_a_cycle_per_camera_pixel_is_found():
    # An undersampled camera (125 nm pixels, NA 1.2): the carrier (0.367, 0.367) cycles per camera pixel, |k| 0.52,
    # is sampled (each component below 0.5) but lay outside the searched circle |k| < 0.5; another peak came back,
    # 10 % off in |k|, with no warning.
    ds = simulate(shape=(128, 128), upsample=2, snr=20, seed=0, device="cpu", pixel_size_nm=125, pattern_freq=0.9,
                  n_angles=1, angle_offset_deg=45)
    res = estimate_dataset(ds, n_angles=1, n_phases=3)
    k, a, p = errors(res.params, ds.pattern_params)
    assert k < 0.2 and a < 0.2 and p < 0.15, (k, a, p)


def test_unequal_phase_steps_are_measured_and_used():
    ds = simulate(snr=20, seed=3, device="cpu")
    rng = np.random.default_rng(0)
    p0 = ds.pattern_params
    truth = SinusoidParams(p0.k, p0.phase + rng.uniform(-0.4, 0.4, p0.K), np.full(p0.K, 0.8))
    op = SIMOperator(truth.render(ds.fine_shape), ds.optics(), ds.upsample, pad_fine=8, device="cpu")
    clean = np.asarray(op.forward(ds.ground_truth))
    frames = rng.poisson(100 * clean / clean.mean()) + 10.0  # shot noise and a camera offset
    res = estimate_params(frames, upsample=ds.upsample, psf=ds.optics())
    k, a, p = errors(res.params, truth)
    assert k < 0.05 and a < 0.05 and p < 0.2  # equidistant steps would be off by up to 0.5 rad
    np.testing.assert_allclose(res.modulation, 0.8, atol=0.05)


# -- real data (no truth: the documented carriers) ----------------------------------------------------------
def test_dlsim_carriers_have_the_documented_period_and_spacing(shared_data):
    ds = import_stack(shared_data / "real" / "dlsim-microtubules" / "raw_normal_light.tif", angles=3, phases=5,
                      order="angle-major", binning=2, upsample=2, na=1.49, wavelength_nm=525, pixel_size_nm=44)
    res = estimate_dataset(ds)
    np.testing.assert_allclose(1 / res.period_px, 0.061, rtol=0.05)
    spacing = np.diff(np.sort(res.angle_deg % 180))
    np.testing.assert_allclose(spacing, 60, atol=2)
    assert res.peak_snr.min() > 50


def test_rdlsim_carriers_need_a_guess_at_this_snr(shared_data):
    """Blind, one angle of this very noisy TIRF set stays below the significance threshold; near the
    documented carriers (|k0| 0.346 cycles per camera pixel; its angles are measured from the y axis)
    all three are found."""
    ds = import_stack(shared_data / "real" / "rdlsim-tirf-microtubules" / "raw.tif", angles=3, phases=3,
                      order="angle-major", upsample=2, na=1.3, wavelength_nm=525, pixel_size_nm=62.6)
    # blind, only angle 3 stands out alone; near where it puts angle 1, that one scores below the lattice's 6
    with pytest.raises(EstimationError, match=r"angle 1 of 3: no carrier peak stands out of the noise.* Searched "
                                              r"again where the angles found \(3\) put its carrier"):
        estimate_dataset(ds)
    theta = np.array([0.0908, -0.9564, -2.0036])
    guess = 0.346 / ds.upsample * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    res = estimate_dataset(ds, k_guess=guess, min_peak_snr=4)
    np.testing.assert_allclose(np.hypot(*res.k_camera.T), 0.346, rtol=0.01)
    readme_angle = np.arctan2(res.k_camera[:, 1], res.k_camera[:, 0])
    np.testing.assert_allclose(np.angle(np.exp(2j * (readme_angle - theta))) / 2, 0, atol=np.radians(1))


def _carrier_error(k_camera, full):
    """Relative distance of each carrier from the full-light one (a carrier and its negative are one)."""
    return np.minimum(np.hypot(*(k_camera - full).T), np.hypot(*(k_camera + full).T)) / np.hypot(*full.T)


def test_a_weak_carrier_of_very_dark_frames_is_found_on_the_lattice_or_refused_with_the_way_to_take_it(
        shared_data):
    """dlsim thinned to 1/300 of its photons (about 0.6 photo-electrons per camera pixel): only one angle reaches
    the default significance alone. The lattice pass finds the other two where that one puts them, within
    1.5 % of the full-light estimate; without it the refusal names min_peak_snr, and with 5 every carrier is
    found alone (the benchmark's thinning; docs/quality.md)."""
    from benchmarks.low_light import IMPORT, camera_of
    from cusim.noise import thin

    ds = import_stack(shared_data / "real" / "dlsim-microtubules" / "raw_normal_light.tif", **IMPORT)
    full = estimate_dataset(ds).k_camera
    dark = dataclasses.replace(ds, raw=thin(ds.raw, camera_of(ds), 1 / 300, seed=0))
    res = estimate_dataset(dark)
    assert res.lattice == (1, 2) and res.peak_snr[0] >= 10 and 6 <= res.peak_snr[1:].min() < 10
    assert _carrier_error(res.k_camera, full).max() < 0.015
    assert "angles 2, 3: not found alone; found near the lattice of the others" in " ".join(res.summary().split())
    with pytest.raises(EstimationError, match=r"may be the carrier of very dark frames: min_peak_snr below "):
        estimate_dataset(dark, lattice=False)
    res = estimate_dataset(dark, min_peak_snr=5, lattice=False)
    assert 5 <= res.peak_snr.min() < 10 and res.lattice == ()
    assert _carrier_error(res.k_camera, full).max() < 0.015


def _one_angle_replaced(seed: int, snr: float, modulation: float, angle: int = 1):
    """benchmarks.estimate_null's stack at 192 x 192: ``angle`` at ``modulation``, and the full simulation."""
    from benchmarks.estimate_null import angle_replaced

    return angle_replaced(seed, snr, 192, modulation, angle)


def test_an_angle_too_weak_alone_is_found_on_the_lattice_of_the_others():
    for seed in (0, 1, 2):
        raw, ds = _one_angle_replaced(seed, snr=10, modulation=0.07)  # that angle's significance 8-9.5
        with pytest.raises(EstimationError, match="angle 2 of 3: no carrier peak"):
            estimate_params(raw, upsample=2, psf=ds.optics(), lattice=False)
        res = estimate_params(raw, upsample=2, psf=ds.optics())
        assert res.lattice == (1,) and 6 <= res.peak_snr[1] < 10
        k, truth = res.params.normalised().k[::3], ds.pattern_params.normalised().k[::3]
        assert np.abs(np.hypot(*k.T) / np.hypot(*truth.T) - 1).max() < 0.005
        dang = np.angle(np.exp(2j * (np.arctan2(*k.T) - np.arctan2(*truth.T)))) / 2
        assert np.degrees(np.abs(dang)).max() < 0.3


def test_one_guessed_carrier_is_angle_1s_and_the_others_follow_on_its_lattice():
    ds = simulate(shape=(192, 192), snr=20, seed=3, device="cpu")
    truth = ds.pattern_params.normalised().k[::3]
    res = estimate_params(ds.raw, upsample=2, psf=ds.optics(), k_guess=truth[0] * 1.03)
    assert res.lattice == (1, 2) and not res.lattice_alone and "found on the lattice of angle 1" in res.summary()
    np.testing.assert_allclose(res.params.normalised().k[::3], truth, rtol=2e-3, atol=1e-5)


def test_a_guess_that_took_a_side_lobe_is_doubted_and_a_right_one_is_not():
    """Angle 2's carrier guessed as angle 1's: the guided search takes a side lobe of angle 1's own carrier (the
    region holds no carrier); that carrier, 20x as significant outside the region, is named in a warning."""
    import warnings

    from cusim import CusimWarning

    ds = simulate(shape=(192, 192), snr=20, seed=3, device="cpu")
    truth = ds.pattern_params.normalised().k[::3]
    with pytest.warns(CusimWarning, match=r"angle 1 of 3: the guessed carrier .* may be a side lobe: .* "
                                          r"period 4\.[78][0-9] fine px at 10\.0 deg"):
        estimate_params(ds.raw, upsample=2, psf=ds.optics(), k_guess=truth[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CusimWarning)
        estimate_params(ds.raw, upsample=2, psf=ds.optics(), k_guess=truth * 1.03)
        estimate_params(ds.raw, upsample=2, psf=ds.optics(), k_guess=truth[0] * 1.03)


def test_a_run_that_estimates_its_patterns_records_the_angles_found_on_the_lattice():
    import dataclasses as dc

    import cusim

    raw, ds = _one_angle_replaced(0, snr=10, modulation=0.07)
    data = dc.replace(ds, raw=raw.astype(np.float32), pattern_params=None, pattern_kind=None, patterns=None)
    res = cusim.reconstruct(data, "wiener", device="cpu", estimate_patterns=True)
    assert res.extra["pattern_params"]["lattice_angles"] == [2] and len(res.extra["pattern_params"]["k"]) == 9
    full = cusim.reconstruct(dc.replace(ds, pattern_params=None, pattern_kind=None, patterns=None), "wiener",
                             device="cpu", estimate_patterns=True)
    assert "lattice_angles" not in full.extra["pattern_params"]


def test_an_angle_without_a_carrier_is_not_taken_from_the_lattice():
    """The lattice pass's threshold (6) stands above what an angle without any carrier reaches near the
    lattice (at most 5.3 over 288 simulated stacks: benchmarks.estimate_null)."""
    for seed, snr in ((0, 5), (1, 20), (2, 3), (3, 20)):
        raw, ds = _one_angle_replaced(seed, snr=snr, modulation=0.0, angle=seed % 3)
        with pytest.raises(EstimationError, match=rf"angle {seed % 3 + 1} of 3: no carrier peak .* Searched again "
                                                  r"where the angles found \([0-9, ]+\) put its carrier"):
            estimate_params(raw, upsample=2, psf=ds.optics())


def test_carrier_guess_reads_the_summarys_period_and_angle_columns():
    ds = simulate(snr=20, seed=2, device="cpu")
    res = estimate_dataset(ds)
    guess = carrier_guess(res.period_px, res.angle_deg)  # cycles per fine pixel
    np.testing.assert_allclose(guess * ds.upsample, res.k_camera, rtol=1e-9, atol=1e-12)
    again = estimate_dataset(ds, k_guess=guess)
    np.testing.assert_allclose(again.k_camera, res.k_camera, atol=1e-4)


# -- refusals ----------------------------------------------------------------------------------------------
def test_pure_noise_and_widefield_frames_are_refused(shared_data):
    rng = np.random.default_rng(1)
    ds = import_paper(shared_data / "pinn-sim-paper" / "SIM" / "microtubules", 1)
    widefield = ds.frames().mean(axis=0)
    flicker = 1 + 0.05 * rng.standard_normal((9, 1, 1))
    cases = {"noise": rng.normal(50, 3, (9, 120, 120)),
             "widefield": widefield + rng.normal(0, 3, (9, 120, 120)),
             "flickering widefield": widefield * flicker + rng.normal(0, 3, (9, 120, 120)),
             "drifting widefield": np.stack([np.roll(widefield, i, axis=1) for i in range(9)])}
    says = {"noise": "no carrier peak stands out of the noise", "widefield": "no carrier peak stands out of the noise",
            "flickering widefield": "no carrier peak stands out of the noise",
            # a drift between frames is significant, but no carrier: named as such (the line had said "no carrier
            # peak stands out of the noise" beside a significance of 89)
            "drifting widefield": r"the strongest peak \(at .*, significance .*\) is not a carrier: its band fit"}
    for name, frames in cases.items():
        with pytest.raises(EstimationError, match=says[name]):
            estimate_params(frames, upsample=4, psf=ds.psf)
            pytest.fail(f"{name}: accepted")
    flat = simulate(snr=20, modulation=0.0, seed=0, device="cpu")  # widefield through the real forward model
    with pytest.raises(EstimationError, match="angle 1 of 3"):
        estimate_dataset(flat)


def test_an_unknown_setting_is_named_not_a_private_functions_type_error():
    with pytest.raises(EstimationError, match=r"^n_angle: unknown setting; expected some of upsample, n_angles"):
        estimate_dataset(simulate(shape=(32, 32), seed=0, device="cpu"), n_angle=3)  # TypeError from _estimate


def test_constant_frames_are_named_as_such():
    """All-zero frames got "nothing to take for a carrier in the frames", where cusim run says what is wrong."""
    for K in (9, 7):
        with pytest.raises(EstimationError, match=rf"^frames: all {K} frames are constant \(every pixel 0: no signal\)"):
            estimate_dataset(io.Dataset(raw=np.zeros((K, 16, 16), np.uint16), upsample=2))


def test_a_significance_just_below_the_threshold_is_not_printed_as_the_threshold():
    """'has significance 4.0 ...; expected significance >= 4' hid why a guided estimate was refused."""
    from types import SimpleNamespace  # noqa: PLC0415

    from cusim.estimate import _choose  # noqa: PLC0415

    corr = SimpleNamespace(zscore=lambda c: 3.9996, score=lambda c: 0.5, T=SimpleNamespace(s=2))
    with pytest.raises(EstimationError, match=r"has significance 3\.9996 and band fit 0\.50; expected significance "
                                              r">= 4\)"):
        _choose(corr, [np.array([0.1, 0.0])], 4.0, "angle 1 of 3")
    corr.zscore = lambda c: 3.2
    with pytest.raises(EstimationError, match=r"has significance 3\.2 and"):
        _choose(corr, [np.array([0.1, 0.0])], 4.0, "angle 1 of 3")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"upsample": 2, "n_angles": 3, "n_phases": 4}, r"9 frames are not 3 angles x 4 phases"),
    ({"upsample": 2, "order": 2}, "cannot separate the orders up to 2; expected at least 5"),
    ({"upsample": 0}, "upsample: expected an integer 1..8"),
    ({"upsample": 2, "min_peak_snr": 0}, "min_peak_snr: expected a finite number > 0"),
    ({"upsample": 2, "order": 3}, r"order: expected one of \[1, 2\], got 3"),
    ({"upsample": 2, "n_angles": 0}, "n_angles: expected an integer >= 1, got 0"),
    ({"upsample": 2, "k_guess": np.full((2, 2), 0.1)},
     r"k_guess: expected one carrier \(2,\) or one per angle \(3, 2\) in cycles per fine pixel, got shape \(2, 2\)"),
    ({"upsample": 2, "k_guess": [[0.1, 0.0], [0.0, 0.0], [0.1, 0.1]]}, "expected finite, non-zero carriers"),
    ({"upsample": 2, "k_guess": "near 0.1"}, "k_guess: expected one carrier"),
    ({"upsample": 2, "psf": 0.0}, "psf: expected a finite number > 0"),  # a cut-off: ZeroDivisionError before
    ({"upsample": 2, "psf": float("nan")}, "psf: expected a finite number > 0"),
    ({"upsample": 2, "k_guess": [[0.1, 0.1], [0.1]]}, r"k_guess: expected one carrier .* got \[\[0.1, 0.1\], \[0.1\]\]"),
])
def test_bad_arguments_raise_one_clear_error(kwargs, match):
    with pytest.raises(EstimationError, match=match):
        estimate_params(np.ones((9, 32, 32)), **kwargs)


def test_a_hexagonal_guess_needs_three_carriers():
    from cusim.estimate import estimate_hexagonal

    with pytest.raises(EstimationError, match=r"k_guess: expected shape \(3, 2\) for hexagonal SIM .* shape \(2,\)"):
        estimate_hexagonal(np.ones((7, 32, 32)), upsample=2, k_guess=[0.1, 0.0])


def test_bad_frames_raise_one_clear_error():
    with pytest.raises(EstimationError, match="10 frames fit neither the linear SIM layouts .* nor hexagonal SIM "
                       r"\(7 frames\); give n_angles and n_phases"):
        estimate_params(np.ones((10, 32, 32)), upsample=2)
    with pytest.raises(EstimationError, match="7 frames are hexagonal SIM's layout, not a linear one .* estimate them "
                                              "as hexagonal SIM"):  # it said they fit neither, hexagonal included
        estimate_params(np.ones((7, 32, 32)), upsample=2)
    with pytest.raises(EstimationError, match="NaN or Inf"):
        estimate_params(np.full((9, 32, 32), np.nan), upsample=2)
    with pytest.raises(EstimationError, match="too small"):
        estimate_params(np.ones((9, 8, 8)), upsample=2)
    with pytest.raises(EstimationError, match=r"expected an array \(K, h, w\)"):
        params_from_patterns(np.ones((32, 32)))


def test_pattern_fitting_is_reexported_with_the_same_error_type():
    from cusim import pattern_fit  # noqa: PLC0415

    assert params_from_patterns is pattern_fit.params_from_patterns
    assert EstimationError is pattern_fit.EstimationError and issubclass(EstimationError, ValueError)
    with pytest.raises(EstimationError, match=r"n_angles, n_phases: 9 frames are not 2 angles x 4 phases \(8 frames\)"):
        params_from_patterns(np.ones((9, 16, 16)), n_angles=2, n_phases=4)


# -- reporting ---------------------------------------------------------------------------------------------
def test_summary_and_figure_report_every_angle(tmp_path):
    ds = simulate(snr=20, seed=1, device="cpu")
    res = estimate_dataset(ds)
    text = res.summary()
    assert "3 angles x 3 phases" in text and len(text.splitlines()) == 6
    png = tmp_path / "estimate.png"
    res.figure(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_carrier_returned_is_as_significant_as_asked():
    # 9 frames of 3 angles read as 1 angle of 9 phases: the fitted phase steps separated the bands again and the
    # carrier's significance fell to 3.4, below the 10 asked; it was returned (and stored by cusim estimate).
    ds = simulate(shape=(64, 64), seed=0, device="cpu")
    try:
        res = estimate_dataset(ds, n_angles=1, n_phases=9, min_peak_snr=10)
    except EstimationError:
        return
    assert res.peak_snr.min() >= 10, res.peak_snr


def test_lattice_and_speckle_frames_are_not_estimated_as_sinusoids():
    # They gave 5 significant "angles" within 1 degree of one another (lattice) or random carriers (speckle), which
    # Wiener then used without complaint.
    for family in ("lattice", "speckle"):
        ds = simulate(shape=(64, 64), family=family, seed=0, device="cpu")
        with pytest.raises(EstimationError, match=f"simulated with {family} illumination, which is not sinusoidal"):
            estimate_dataset(ds)
        with pytest.raises(EstimationError, match=r"angles \d and \d of 5: carriers in one direction"):
            estimate_params(ds.frames(0), upsample=ds.upsample, psf=ds.optics(), n_angles=5, n_phases=5)
