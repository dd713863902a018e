"""Pattern families: the parametric formula, sign convention, harmonics, lattice, speckle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from cusim import pattern_fit, patterns


def test_render_follows_the_design_formula_at_integer_pixel_indices():
    p = patterns.SinusoidParams(k=[[0.05, 0.1]], phase=[0.3], modulation=[0.8], harmonics=[[0.25]])
    img = p.render((7, 9), dtype=np.float64)[0]
    r, c = 4, 6
    theta = 2 * np.pi * (0.05 * r + 0.1 * c) + 0.3
    assert img[r, c] == pytest.approx(1 + 0.8 * np.cos(theta) + 0.8 * 0.25 * np.cos(2 * theta))


def test_linear_patterns_are_angle_major_with_the_requested_period_and_phases():
    p = patterns.linear_params(period_px=12, n_angles=3, n_phases=3)
    assert p.K == 9
    np.testing.assert_allclose(np.hypot(p.k[:, 0], p.k[:, 1]), 1 / 12)
    # frames 0..2 share the first angle, and their phases step by 2 pi / 3
    np.testing.assert_allclose(p.k[0], p.k[2])
    steps = np.angle(np.exp(1j * np.diff(p.phase[:3])))
    np.testing.assert_allclose(np.abs(steps), 2 * np.pi / 3)
    angles = np.rad2deg(np.arctan2(p.k[::3, 0], p.k[::3, 1])) % 180
    np.testing.assert_allclose(np.sort(angles), [0, 60, 120], atol=1e-9)


def test_period_in_nm_uses_the_fine_pixel():
    assert patterns.period_to_k(period_nm=240, pixel_size_nm=80, upsample=2) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="Nyquist"):
        patterns.period_to_k(1.5)


def test_normalised_flips_k_and_phase_together_and_keeps_the_pattern():
    p = patterns.SinusoidParams(k=[[0.03, -0.07], [-0.1, 0.0]], phase=[1.0, -2.0], modulation=[1, 1])
    q = p.normalised()
    assert q.k[0, 1] > 0 and q.k[1, 0] > 0
    np.testing.assert_allclose(p.render((16, 16)), q.render((16, 16)), atol=1e-5)


def test_moved_keeps_the_patterns_and_wraps_the_phases():
    """A PINN run with a margin recorded its refined phases moved back onto the field unwrapped (6.29, 8.35, ...)."""
    for p in (patterns.linear_params(period_px=5.3), patterns.hexagonal_params(period_px=5.3)):
        m = p.moved(17, 23)
        assert np.all(np.abs(m.phase) <= np.pi)
        np.testing.assert_allclose(m.render((12, 14), np.float64), p.render((30, 40), np.float64)[:, 17:29, 23:37],
                                   atol=1e-9)


@pytest.mark.parametrize("a", [5.0, 50.0, 100.0])  # 16 orders, the cap before, left 1e-3 at 50 and 2e-2 at 100
def test_saturated_series_reproduces_the_saturating_response(a):
    t = np.linspace(0, 2 * np.pi, 257)
    m, rel = patterns.saturated_harmonics(a)
    series = 1 + m * np.cos(t) + sum(m * c * np.cos((j + 2) * t) for j, c in enumerate(rel))
    exact = (1 - np.exp(-a * (1 + np.cos(t)) / 2)) / (1 - special.ive(0, a / 2))
    np.testing.assert_allclose(series, exact, atol=1e-6)
    assert len(rel) >= 3  # strong saturation has real harmonics
    with pytest.raises(ValueError, match=r"saturation: 1e\+06 needs more than 256 orders"):
        patterns.saturated_harmonics(1e6)


def test_nonlinear_patterns_have_harmonics_and_stay_non_negative():
    pats = patterns.nonlinear((60, 60), period_px=12, saturation=4)
    assert pats.shape == (25, 60, 60) and pats.min() >= 0
    spec = np.abs(np.fft.fft2(pats[0]))
    p = patterns.nonlinear_params(period_px=12, saturation=4)
    ky, kx = p.k[0] * 60
    assert spec[int(round(2 * ky)) % 60, int(round(2 * kx)) % 60] > 0.05 * spec[0, 0]


def test_lattice_is_a_periodic_spot_pattern_shifted_over_the_cell():
    pats = patterns.lattice((48, 48), period_px=12, n_shifts=3)
    assert pats.shape == (9, 48, 48) and pats.min() >= 0
    np.testing.assert_allclose(pats[0], np.roll(pats[0], 12, axis=1), atol=1e-4)
    np.testing.assert_allclose(pats.mean(axis=(1, 2)), 1.0, rtol=1e-5)
    # the shifts tile the cell: the sum over frames is far flatter than one frame
    assert pats.sum(0).std() / pats.sum(0).mean() < 0.2 * pats[0].std() / pats[0].mean()


def test_speckle_is_seeded_and_has_unit_mean():
    a = patterns.speckle((32, 32), 3, seed=7)
    b = patterns.speckle((32, 32), 3, seed=7)
    c = patterns.speckle((32, 32), 3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(a.mean(axis=(1, 2)), 1.0, rtol=1e-5)
    # fully developed speckle: intensity contrast std/mean close to 1
    assert 0.7 < a.std() / a.mean() < 1.3


@pytest.mark.parametrize(
    "arr,match",
    [(np.ones((4, 4)), r"\(K, H, W\)"), (-np.ones((1, 2, 2)), "non-negative"), (np.full((1, 2, 2), np.inf), "NaN")],
)
def test_from_array_validates(arr, match):
    with pytest.raises(ValueError, match=match):
        patterns.from_array(arr)


def test_sinusoid_params_validate_shapes_and_ranges():
    with pytest.raises(ValueError, match=r"phase: expected shape \(2,\)"):
        patterns.SinusoidParams(k=np.zeros((2, 2)), phase=[0.0], modulation=[1, 1])
    with pytest.raises(ValueError, match="modulation: expected values in 0..1"):
        patterns.SinusoidParams(k=np.zeros((1, 2)), phase=[0.0], modulation=[1.5])


# -- angle and phase counts ----------------------------------------------------------------------------
def test_angle_phase_counts_defaults_and_the_missing_count_from_k():
    assert patterns.angle_phase_counts(9) == (3, 3)
    assert patterns.angle_phase_counts(15) == (3, 5)
    assert patterns.angle_phase_counts(25) == (5, 5)
    assert patterns.angle_phase_counts(15, n_phases=5) == (3, 5)
    assert patterns.angle_phase_counts(12, n_angles=4) == (4, 3)
    assert patterns.angle_phase_counts(np.int64(8), 2, 4) == (2, 4)
    assert all(type(v) is int for v in patterns.angle_phase_counts(np.int64(8), np.int64(2), None))


class _MyError(ValueError):
    pass


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((10,), {}, r"no default for K = 10 frames; give n_angles and n_phases"),
    ((9, 3, 4), {}, r"n_angles, n_phases: 9 frames are not 3 angles x 4 phases \(12 frames\)"),
    ((9,), {"n_phases": 2}, r"n_phases: 9 frames do not split into 2 phases; expected a divisor of 9 \(1, 3, 9\)"),
    ((15, 4), {}, r"n_angles: 15 frames do not split into 4 angles; expected a divisor of 15 \(1, 3, 5, 15\)"),
    ((8, 4, 2), {"min_phases": 3}, "at least 3 phases per angle"),
    ((9, 0), {}, r"n_angles: expected an integer >= 1, got 0"),
    ((9, None, 1.5), {}, r"n_phases: expected an integer >= 1, got 1.5"),
])
def test_angle_phase_counts_refuses_with_the_callers_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        patterns.angle_phase_counts(*args, **kwargs)
    with pytest.raises(_MyError, match=match):
        patterns.angle_phase_counts(*args, **kwargs, error=_MyError)


# -- fitting known pattern arrays (cusim.pattern_fit) --------------------------------------------------------
def test_fit_sinusoids_recovers_linear_and_nonlinear_parameters():
    for p in (patterns.linear_params(period_px=6.3, angle_offset_deg=11.0, modulation=0.9),
              patterns.nonlinear_params(saturation=2.0, period_px=8.5, n_angles=3, n_phases=5, angle_offset_deg=5.0)):
        pats = 7.0 * np.maximum(p.render((128, 128)), 0)  # any scale
        fit, worst = pattern_fit.fit_sinusoids(pats, n_angles=3, n_phases=p.K // 3)
        np.testing.assert_allclose(fit.k, p.k, atol=2e-5)
        np.testing.assert_allclose(np.angle(np.exp(1j * (fit.phase - p.phase))), 0, atol=5e-3)
        np.testing.assert_allclose(fit.modulation, p.modulation, atol=5e-3)
        assert worst < 0.01
        np.testing.assert_allclose(pattern_fit.fit_residual(pats, fit).max(), worst, rtol=1e-12)


def test_fit_residual_is_the_unexplained_fraction_of_each_frame():
    p = patterns.linear_params(period_px=7.0)
    clean = p.render((64, 64), dtype=np.float64)
    assert pattern_fit.fit_residual(5.0 * clean - 2.0, p).max() < 1e-10
    noise = np.random.default_rng(0).standard_normal(clean.shape)
    noise *= 0.3 * clean.std(axis=(1, 2), keepdims=True) / noise.std(axis=(1, 2), keepdims=True)
    r = pattern_fit.fit_residual(clean + noise, p)  # rms 0.3 of the signal's: 0.3 / sqrt(1 + 0.09)
    np.testing.assert_allclose(r, 0.3 / np.sqrt(1.09), rtol=0.03)


def test_fit_sinusoids_refuses_lattices_and_speckle():
    lat = patterns.lattice((64, 64), period_px=8.0)  # K = 25: 5 angles x 5 phases by default
    with pytest.raises(pattern_fit.EstimationError,
                       match=r"patterns: not 5 angles x 5 phases of sinusoids \(worst relative fit residual"):
        pattern_fit.fit_sinusoids(lat)
    with pytest.raises(ValueError, match=r"patterns: not 7 sinusoids \(worst relative fit residual [0-9.]+ > 0.25"):
        pattern_fit.fit_sinusoids(patterns.speckle((64, 64), 7, seed=2))
    assert pattern_fit.MAX_FIT_RESIDUAL == 0.25


def test_generators_name_a_bad_grid_seed_period_or_upsample():
    """An int shape, an empty or negative grid, a negative seed, a period given as text and upsample 0 failed in
    numpy (TypeError, ZeroDivisionError, "negative dimensions") or returned an empty stack."""
    from cusim import optics  # noqa: PLC0415

    cases = [(lambda: patterns.linear(16, period_px=6), r"^shape: expected two positive integers \(H, W\), got 16$"),
             (lambda: patterns.linear((0, 24), period_px=6), r"^shape: expected two positive integers"),
             (lambda: patterns.linear((-4, 24), period_px=6), r"^shape: expected two positive integers"),
             (lambda: patterns.speckle((0, 24), 2), r"^shape: expected two positive integers"),
             (lambda: patterns.lattice(16, period_px=6), r"^shape: expected two positive integers"),
             (lambda: patterns.speckle((16, 24), 2, seed=-1), r"^seed: expected an integer >= 0, got -1$"),
             (lambda: patterns.linear((16, 24), period_px="6"), r"^period_px: expected a finite number, got '6'$"),
             (lambda: patterns.linear((16, 24), period_nm=300, pixel_size_nm=100, upsample=0),
              r"^upsample: expected an integer >= 1, got 0$"),
             (lambda: optics.Widefield(1.2, 520, 100).psf(0), r"^upsample: expected an integer >= 1, got 0$"),
             (lambda: optics.Widefield(1.2, 520, 100).otf((8, 8), 0), r"^upsample: expected an integer >= 1"),
             (lambda: optics.widefield_otf(8, 1.2, 520, 50), r"^shape: expected two positive integers")]
    for make, says in cases:
        with pytest.raises(ValueError, match=says):
            make()
    assert patterns.linear((16.0, 24), period_px=6).shape == (9, 16, 24)  # a whole number given as a float
