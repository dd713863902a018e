"""`cusim estimate` and `--estimate-patterns`: the illumination from the frames, stored or used in place."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import cusim
from cusim import io
from cusim.cli import app


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, res.output


@pytest.fixture()
def no_params(tmp_path):
    """A simulated linear-SIM file (SNR 20) stored without its patterns, and the true parameters."""
    ds = cusim.simulate(shape=(192, 192), snr=20, seed=5)
    truth = ds.pattern_params
    return io.save(dataclasses.replace(ds, pattern_params=None, pattern_kind=None), tmp_path / "raw.h5"), truth


def test_estimate_stores_pattern_params_close_to_the_truth(no_params, tmp_path):
    path, truth = no_params
    res, text = _cli("estimate", path, "--figure", tmp_path / "peaks.png")
    assert res.exit_code == 0, text
    assert (tmp_path / "peaks.png").stat().st_size > 1000
    ds = io.load(path)
    assert ds.pattern_kind == "estimated"
    got, want = ds.pattern_params.normalised(), truth.normalised()
    np.testing.assert_allclose(got.k, want.k, atol=2e-3 * np.abs(want.k).max())
    assert np.abs(np.angle(np.exp(1j * (got.phase - want.phase)))).max() < 0.1
    res, text = _cli("run", path, "--method", "wiener")  # the reconstructions now find patterns
    assert res.exit_code == 0, text


def test_estimate_keeps_existing_params_unless_forced_and_no_write_writes_nothing(no_params):
    path, _ = no_params
    before = path.read_bytes()
    res, text = _cli("estimate", path, "--no-write")
    assert res.exit_code == 0 and path.read_bytes() == before
    assert _cli("estimate", path)[0].exit_code == 0
    res, text = _cli("estimate", path)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--force" in text
    assert _cli("estimate", path, "--force")[0].exit_code == 0


def test_a_narrow_output_keeps_every_row_of_the_estimate_on_one_line(no_params):
    """Piped to a log (no terminal: rich's width 80) or a narrow window, a row is still one line to read or parse."""
    res = CliRunner().invoke(app, ["estimate", str(no_params[0]), "--no-write"], env={"COLUMNS": "50"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(i for i, line in enumerate(lines) if "peak SNR" in line)
    rows = [line.split() for line in lines[header + 1:header + 4]]
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(len(r) == 7 for r in rows), res.output
    assert len(next(line for line in lines if line.startswith("phases (rad):")).split()) == 2 + 9, res.output


def test_a_file_the_estimate_cannot_be_written_into_is_refused_before_it_is_estimated(no_params, monkeypatch):
    """(Simulated: root may write a write-protected file.) One line, and no estimate printed first."""
    from cusim import io as cio  # noqa: PLC0415

    path = no_params[0]

    def protected(target, extra_bytes=0):
        raise cio.DatasetError(f"{target}: permission denied (the file is write-protected)")

    monkeypatch.setattr(cio, "check_writable", protected)
    res, text = _cli("estimate", path)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "permission denied" in text, text
    res, text = _cli("estimate", path, "--no-write")  # nothing to write: it runs
    assert res.exit_code == 0 and "peak SNR" in text, text


def test_estimate_refuses_frames_without_a_carrier(tmp_path):
    rng = np.random.default_rng(0)
    ds = io.Dataset(raw=(100 + 5 * rng.standard_normal((9, 64, 64))).astype(np.float32), upsample=2,
                    na=1.2, wavelength_nm=520.0, pixel_size_nm=100.0)
    path = io.save(ds, tmp_path / "noise.h5")
    before = path.read_bytes()
    res, text = _cli("estimate", path)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1, text
    assert path.read_bytes() == before


def test_run_with_estimate_patterns_records_the_estimate(no_params):
    path, truth = no_params
    res, text = _cli("run", path, "--method", "iterative", "--estimate-patterns", "--iterations", "20")
    assert res.exit_code == 0, text
    rec = io.load(path).recons["iterative"]
    assert rec.attrs["params"]["estimate_patterns"] is True
    k = np.array(rec.attrs["pattern_params"]["k"])
    np.testing.assert_allclose(np.abs(k), np.abs(truth.normalised().k), atol=2e-3)


def test_estimate_takes_a_guess_and_a_lower_significance_for_the_very_noisy_tirf_set(shared_data, tmp_path):
    """rdlsim-tirf (real, very low SNR): blind, an angle stays in the noise; with the documented carriers as
    --guess (period 2 / 0.346 fine pixels at upsample 2; the README's angles from the y axis, so 90 - theta here)
    and --min-peak-snr 4 every carrier is found, stored, and the settings recorded with it."""
    import math

    h5 = tmp_path / "rd.h5"
    res, text = _cli("import", "stack", shared_data / "real" / "rdlsim-tirf-microtubules" / "raw.tif", "--out", h5,
                     "--angles", 3, "--phases", 3, "--order", "angle-major", "--upsample", 2, "--na", 1.3,
                     "--wavelength-nm", 525, "--pixel-size-nm", 62.6)
    assert res.exit_code == 0, text
    res, text = _cli("estimate", h5)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "stands out of the noise" in text
    guess = ",".join(f"{2 / 0.346:.3f}@{90 - math.degrees(th):.2f}" for th in (0.0908, -0.9564, -2.0036))
    res, text = _cli("estimate", h5, "--guess", guess, "--min-peak-snr", 4)
    assert res.exit_code == 0, text
    ds = io.load(h5)
    k_cam = ds.pattern_params.normalised().k[::3] * 2
    np.testing.assert_allclose(np.hypot(*k_cam.T), 0.346, rtol=0.01)
    with h5py.File(h5, "r") as f:
        stored = dict(f["pattern_params"].attrs)
    assert stored["min_peak_snr"] == 4.0 and np.shape(json.loads(stored["k_guess"])) == (3, 2), stored
    assert stored["otf"].startswith("ideal widefield"), stored

    # angle 1's carrier alone: the others are searched on its lattice, and the estimate is the same
    res, text = _cli("estimate", h5, "--guess", guess.split(",")[0], "--min-peak-snr", 4, "--force")
    assert res.exit_code == 0 and "angles 2, 3: found on the lattice of angle 1" in " ".join(text.split()), text
    single = io.load(h5)
    np.testing.assert_allclose(single.pattern_params.k, ds.pattern_params.k, rtol=1e-9)
    np.testing.assert_allclose(single.pattern_params.phase, ds.pattern_params.phase, atol=1e-9)

    # imported with the measured OTF as its PSF, --ideal-otf scores the carriers as above: the same estimate,
    # while the file keeps the measured PSF for the reconstructions
    d = shared_data / "real" / "rdlsim-tirf-microtubules"
    h5m = tmp_path / "rd_measured.h5"
    res, text = _cli("import", "stack", d / "raw.tif", "--out", h5m, "--angles", 3, "--phases", 3, "--upsample", 2,
                     "--na", 1.3, "--wavelength-nm", 525, "--pixel-size-nm", 62.6, "--otf", d / "otf_radial_488.npy",
                     "--otf-step-per-um", 0.0312)
    assert res.exit_code == 0, text
    res, text = _cli("estimate", h5m, "--ideal-otf", "--guess", guess, "--min-peak-snr", 4)
    assert res.exit_code == 0, text
    measured = io.load(h5m)
    assert measured.psf is not None and measured.psf.shape == (65, 65)
    np.testing.assert_allclose(measured.pattern_params.k, ds.pattern_params.k, rtol=1e-6)
    np.testing.assert_allclose(measured.pattern_params.phase, ds.pattern_params.phase, atol=1e-6)


def test_ideal_otf_needs_the_optics_attributes(shared_data, tmp_path):
    h5 = tmp_path / "paper.h5"  # the paper's layout: a PSF image, no na / wavelength / pixel size
    assert _cli("import", "paper", shared_data / "pinn-sim-paper" / "SIM" / "microtubules", "--sample", 1,
                "-o", h5)[0].exit_code == 0
    res, text = _cli("estimate", h5, "--ideal-otf", "--no-write")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "--ideal-otf: the file has no optics" in text


@pytest.mark.parametrize(("args", "needle"), [
    (("--guess", "16.4@14,16.4"), "--guess: expected PERIOD@ANGLE pairs"),
    (("--guess", "0@14"), "--guess: expected PERIOD@ANGLE pairs (a period > 0"),
    (("--guess", "16@nan,16@60,16@120"), "--guess: expected PERIOD@ANGLE pairs"),
    (("--guess", "16@0,16@60"),
     "--guess (as carriers in cycles per fine pixel): expected one carrier (2,) or one per angle (3, 2)"),
    # the option's name, not the library's, and no "expected n_angles * n_phases = 2 * 4 to make 9"
    (("--angles", 2), "--angles: 9 frames do not split into 2 angles; expected a divisor of 9 (1, 3, 9)"),
    (("--t", 3), "--t: expected an integer"),
    (("--min-peak-snr", 0), "--min-peak-snr: expected a finite number > 0"),
    (("--min-peak-snr", "nan"), "--min-peak-snr: expected a finite number > 0"),
])
def test_estimate_refuses_a_bad_guess_or_significance_in_one_line_and_writes_nothing(no_params, args, needle):
    path, _ = no_params
    before = path.read_bytes()
    res, text = _cli("estimate", path, *args)
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and needle in text, text
    assert path.read_bytes() == before


def test_the_lattice_pass_is_on_by_default_recorded_and_can_be_turned_off(tmp_path):
    """An angle too weak alone (modulation 0.07 at SNR 10) is found near the lattice of the other two; the file
    records which; --no-lattice refuses it in one line."""
    from benchmarks.estimate_null import angle_replaced

    raw, ds = angle_replaced(seed=0, snr=10, size=192, modulation=0.07, angle=1)
    h5 = io.save(dataclasses.replace(ds, raw=raw.astype(np.float32), pattern_params=None, pattern_kind=None),
                 tmp_path / "weak.h5")
    res, text = _cli("estimate", h5, "--no-lattice")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1 and "angle 2 of 3: no carrier" in text
    assert io.load(h5).pattern_params is None
    res, text = _cli("estimate", h5)
    assert res.exit_code == 0 and "angle 2: not found alone; found near the lattice" in " ".join(text.split()), text
    with h5py.File(h5, "r") as f:
        assert json.loads(f["pattern_params"].attrs["lattice_angles"]) == [2]
    # one guessed carrier stands for every angle through the lattice: --no-lattice with it was dropped silently
    res, text = _cli("estimate", h5, "--no-lattice", "--no-write", "--guess", "8@10")
    assert res.exit_code == 1 and len(text.strip().splitlines()) == 1, text
    assert "--no-lattice: one carrier guessed (angle 1's) stands for 3 angles through their lattice, which is off" \
        in " ".join(text.split())


def test_the_lattice_help_names_the_librarys_threshold():
    from cusim.estimate import LATTICE_Z

    res = CliRunner().invoke(app, ["estimate", "--help"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and f"taken from significance {LATTICE_Z:g} " in " ".join(res.output.split())
