"""Resolution targets and their measurement (issue 23): exact spacings, the analytic contrast of a
blurred line pair, the theoretical limit, the highest pattern frequency, and the hallucination metric."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cusim import patterns, phantoms, resolution
from cusim.cli import app
from cusim.optics import ideal_otf
from cusim.phantoms import LinePair
from cusim.simulate import simulate


def _line_centroids(img: np.ndarray, pair: LinePair) -> tuple[float, float]:
    """Mass-weighted offsets along the normal of the two lines (pixels on either side of the centre,
    within the pair's cell)."""
    r, c = np.mgrid[: img.shape[0], : img.shape[1]].astype(np.float64)
    dr, dc = r - pair.centre[0], c - pair.centre[1]
    u = dr * pair.normal[0] + dc * pair.normal[1]
    v = dr * pair.direction[0] + dc * pair.direction[1]
    near = (np.abs(v) <= pair.length_px / 2 + 3) & (np.abs(u) <= pair.spacing_px / 2 + 3)
    out = []
    for side in (u < 0, u >= 0):
        w = img * (near & side)
        out.append(float((w * u).sum() / w.sum()))
    return out[0], out[1]


def test_line_pair_target_draws_every_spacing_exactly():
    spacings = (4.0, 5.5, 7.25)
    pairs = phantoms.line_pair_layout((120, 120), spacings, n_orientations=3, seed=2)
    img = phantoms.line_pairs((120, 120), spacings, n_orientations=3, seed=2).astype(np.float64)
    assert sorted({p.spacing_px for p in pairs}) == list(spacings) and len(pairs) == 9
    assert sorted({p.angle_deg for p in pairs}) == [0.0, 60.0, 120.0]
    for p in pairs:
        lo, hi = _line_centroids(img, p)
        assert hi - lo == pytest.approx(p.spacing_px, abs=0.01)
        assert (lo + hi) / 2 == pytest.approx(0.0, abs=0.01)


def test_line_pair_layout_refuses_cells_too_small_and_the_default_ladder_fits():
    with pytest.raises(ValueError, match="shape: 64x64 .* a cell needs"):
        phantoms.line_pair_layout((64, 64), (2.0, 12.0))
    pairs = phantoms.line_pair_layout((256, 256))
    assert sorted({p.spacing_px for p in pairs}) == list(phantoms.LINE_PAIR_SPACINGS_PX)


def _gaussian_pair_image(pair: LinePair, sigma: float, shape=(64, 64)) -> np.ndarray:
    r, c = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    u = (r - pair.centre[0]) * pair.normal[0] + (c - pair.centre[1]) * pair.normal[1]
    g = lambda x: np.exp(-x**2 / (2 * sigma**2))  # noqa: E731
    return g(u - pair.spacing_px / 2) + g(u + pair.spacing_px / 2)


@pytest.mark.parametrize("spacing", [4.0, 5.5, 7.0, 9.0])
@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0])
def test_pair_contrast_of_blurred_lines_is_the_analytic_value(spacing, angle):
    sigma = 2.2  # two lines of Gaussian profile: C = 1 - 2 g(d/2) / (g(0) + g(d))
    pair = LinePair((32.3, 31.6), angle, spacing, 30.0)
    measured = resolution.pair_contrast(_gaussian_pair_image(pair, sigma), pair)
    assert measured == pytest.approx(float(resolution.gaussian_pair_contrast(spacing, sigma)), abs=2e-3)


def test_resolved_spacing_is_the_first_crossing_from_the_coarse_end():
    d = [2.0, 3.0, 4.0, 5.0, 6.0]
    c = [0.5, 0.1, 0.2, 0.36, 0.9]  # a spurious rise at 2 px must not count
    assert resolution.resolved_spacing(d, c) == pytest.approx(5.0 - (0.36 - 0.26) / (0.36 - 0.2))  # 5 -> 4
    assert resolution.resolved_spacing(d, [0.1] * 5) == np.inf
    assert resolution.resolved_spacing(d, [0.9] * 5) == 2.0


@pytest.mark.parametrize("transfer", ["ideal", "flat"])
def test_theory_spacing_reaches_the_rayleigh_contrast_through_its_transfer(transfer):
    # independent check: two thin lines (along the rows) imaged through the transfer by FFT
    fc, n = 0.2, 512
    d = resolution.theory_spacing(fc, transfer=transfer)
    fx = np.fft.fftfreq(n)
    x0 = n / 2
    spec = np.exp(-2j * np.pi * fx * (x0 - d / 2)) + np.exp(-2j * np.pi * fx * (x0 + d / 2))
    t = ideal_otf(np.abs(fx), fc) if transfer == "ideal" else (np.abs(fx) <= fc).astype(float)
    line = np.fft.ifft(spec * t).real
    img = np.tile(line, (64, 1))
    pair = LinePair((32.0, x0), 90.0, d, 40.0)  # lines along the rows: angle 90
    assert resolution.pair_contrast(img, pair) == pytest.approx(resolution.RAYLEIGH, abs=5e-3)
    assert resolution.theory_spacing(2 * fc, transfer=transfer) == pytest.approx(d / 2)
    assert resolution.theory_spacing(fc, resolution.SPARROW, transfer) < d
    assert 0.7 < d * fc < 1.2  # between a perfect deconvolution and none, around Abbe's 1 / fc


@pytest.mark.parametrize("threshold", [0.5, 0.76, 0.8, 0.9])
def test_theory_spacing_is_the_smallest_spacing_that_reaches_the_threshold(threshold):
    """Through the flat transfer the contrast of two lines rises to 1.42 near d fc = 1.5 and dips to 0.745 near
    2.5, so a threshold above 0.745 is reached at three spacings; the first is the resolution (it returned the
    last, 2.70 / fc for 0.8). Independent: the sinc line-spread function on a fine scan of spacings."""
    fc = 0.25
    line = lambda u: np.sinc(2 * fc * u)  # noqa: E731  (the flat transfer's line image, up to a scale)
    d = np.linspace(0.3 / fc, 3.0 / fc, 27001)
    peak = line(0.0) + line(d)
    first = d[np.argmax((peak - 2 * line(d / 2)) / peak >= threshold)]
    assert resolution.theory_spacing(fc, threshold, "flat") == pytest.approx(first, abs=2e-3 / fc)


def test_pattern_max_frequency_counts_harmonics_and_lattice_orders():
    k = 0.1
    lin = patterns.linear_params(period_px=1 / k, angle_offset_deg=10)
    assert resolution.pattern_max_frequency(lin) == pytest.approx(k)
    assert resolution.pattern_max_frequency(lin.render((96, 96))) == pytest.approx(k, rel=0.01)
    sat = patterns.nonlinear_params(saturation=3.0, period_px=1 / k)  # order amplitudes 0.24, 0.057, 0.0104, 0.0015
    assert resolution.pattern_max_frequency(sat) == pytest.approx(4 * k)
    assert resolution.pattern_max_frequency(sat, rel=0.02) == pytest.approx(3 * k)
    lat = patterns.lattice((96, 96), period_px=2 / (np.sqrt(3) * k), n_shifts=1, angle_offset_deg=10)
    assert resolution.pattern_max_frequency(lat) == pytest.approx(2 * k, rel=0.01)  # squared: sums of two


def test_energy_beyond_a_band_on_two_cosines():
    n = 128
    r, c = np.mgrid[:n, :n]
    low, high = np.cos(2 * np.pi * 8 / n * c), 0.3 * np.cos(2 * np.pi * 40 / n * r)
    frac = resolution.energy_beyond(5 + low + high, 0.15)  # 8/128 = 0.06 below, 40/128 = 0.31 above
    assert frac == pytest.approx(0.09 / 1.09, rel=1e-3)
    assert resolution.energy_beyond(5 + low, 0.15) < 1e-6
    assert resolution.energy_beyond(5 + low + high, 0.15, border_px=63) >= 0  # a 2 x 2 centre is left
    for border in (-1, 64):  # numpy's "Invalid number of FFT data points (0)" before
        with pytest.raises(ValueError, match="border_px: expected an integer 0..63"):
            resolution.energy_beyond(5 + low, 0.15, border_px=border)


def test_simulate_keeps_the_harmonics_asked_for_and_passes_phantom_settings():
    ds = simulate(phantom="line_pairs", shape=(96, 96), upsample=4, family="nonlinear", n_harmonics=1,
                  noise=False, phantom_params={"spacings_px": (3.0, 6.0), "n_orientations": 2})
    assert ds.pattern_params.harmonics.shape == (25, 1)
    np.testing.assert_array_equal(ds.ground_truth, phantoms.line_pairs((96, 96), (3.0, 6.0), n_orientations=2))
    with pytest.raises(ValueError, match="n_harmonics: only the nonlinear"):
        simulate(family="linear", n_harmonics=1, shape=(48, 48))
    with pytest.raises(ValueError, match="phantom_params: line_pairs"):
        simulate(phantom="line_pairs", shape=(48, 48), phantom_params={"spacing": 3})


def test_cli_simulates_the_line_pair_target_and_refuses_a_field_too_small(tmp_path):
    res = CliRunner().invoke(app, ["simulate", "-o", str(tmp_path / "t.h5"), "--phantom", "line_pairs",
                                   "--size", "128", "--upsample", "2"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["simulate", "-o", str(tmp_path / "u.h5"), "--phantom", "line_pairs",
                                   "--size", "8", "--upsample", "2"])
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and "shape" in lines[0], res.output
    assert not (tmp_path / "u.h5").exists()


def test_resolution_benchmark_reports_wiener_near_theory_and_widefield_unresolved(tmp_path):
    from benchmarks import resolution as bench

    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--device", "cpu", "--cases", "linear", "--methods", "widefield", "wiener",
                       "--out", str(out), "--figure", str(tmp_path / "r.png")]) == 0
    data = json.loads(out.read_text())
    th = data["theory"]["linear"]
    assert th["f_max"] == pytest.approx(0.115385 * 1.9, rel=1e-4)  # cut-off + 0.9 x cut-off
    assert th["abbe_px"] == pytest.approx(1 / th["f_max"])
    assert th["rayleigh_ideal_px"] == pytest.approx(resolution.theory_spacing(th["f_max"]))
    wf, wiener = data["runs"]["linear|20|widefield"], data["runs"]["linear|20|wiener"]
    assert wf["rayleigh_px"] == np.inf  # the ladder stops at 9 px, below the widefield limit (10.1 px)
    assert th["rayleigh_flat_px"] < wiener["rayleigh_px"] < th["rayleigh_ideal_px"]
    assert data["hallucination"]["linear|wiener"]["pass"] and data["hallucination"]["linear|widefield"]["pass"]
    assert (tmp_path / "r.png").stat().st_size > 0 and out.with_suffix(".md").exists()


def test_resolution_benchmark_experiments_name_their_settings(tmp_path, capsys):
    from benchmarks import resolution as bench

    args = bench.parse(["--pinn-param", "steps=2500", "lr_every=125", "stop=max", "--saturation", "10"])
    assert args.pinn_param == {"steps": 2500, "lr_every": 125, "stop": "max"} and args.saturation == 10.0
    with pytest.raises(SystemExit):
        bench.parse(["--pinn-param", "2500"])
    assert "KEY=VALUE" in capsys.readouterr().err
    out = tmp_path / "r.json"  # a result made with other settings is not resumed as if it were the defaults'
    out.write_text(json.dumps({"settings": {"size": 96}}))
    with pytest.raises(SystemExit, match="other settings"):
        bench.run(bench.parse(["--quick", "--saturation", "10", "--resume", "--out", str(out)]))
