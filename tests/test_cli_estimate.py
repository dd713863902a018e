"""`cusim estimate` and `--estimate-patterns`: the illumination from the frames, stored or used in place."""

from __future__ import annotations

import dataclasses

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
