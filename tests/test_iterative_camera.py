"""FISTA under the camera noise model (IterativeConfig noise "camera"), and the camera stored by the importer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import typer.testing

import cusim
from cusim import io
from cusim.cli import app
from cusim.optim import fista
from cusim.recon.config import IterativeConfig


def _one_line_failure(res, needle: str) -> None:
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and needle in lines[0], res.output
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def small():
    return cusim.simulate(shape=(48, 48), snr=6, seed=3, device="cpu")


def test_weighted_fista_with_equal_weights_matches_the_unweighted_path(small):
    op, y = small.operator(device="cpu"), small.frames()
    kw = dict(n_iter=15, prior="tv", fit_gain_offset=True, refit_every=5, tol=0.0)
    white = fista(op, y, prior_weight=0.5, **kw)
    ones = fista(op, y, prior_weight=0.5, weights=np.ones_like(y), **kw)
    np.testing.assert_array_equal(ones.x, white.x)  # weight 1 is the unweighted arithmetic exactly
    np.testing.assert_array_equal(ones.loss, white.loss)
    # a constant weight c scales the data term: with the prior's weight scaled alike, the same problem
    # (the step 1 / L scales with max(w), the weighted refit of a constant weight is the plain one)
    three = fista(op, y, prior_weight=1.5, weights=np.full_like(y, 3.0), **kw)
    np.testing.assert_allclose(three.x, white.x, rtol=1e-4, atol=1e-5 * float(white.x.max()))
    np.testing.assert_allclose(three.loss, 3.0 * white.loss, rtol=1e-4)
    np.testing.assert_allclose(three.gain, white.gain, rtol=1e-5)
    one_dark = np.ones_like(y)
    one_dark[1] = 0.0
    for bad in (np.zeros_like(y), np.full_like(y, -1.0), one_dark):
        with pytest.raises(ValueError, match="weights: expected finite values >= 0, not all 0 in any frame"):
            fista(op, y, weights=bad)
    with pytest.raises(ValueError, match="weights: expected the frames' shape"):
        fista(op, y, weights=np.ones(y.shape[1:], np.float32))


def test_camera_fista_beats_the_white_one_on_simulated_low_light():
    # 16.9 photons per camera pixel (SNR 4), the camera estimated from the frames. Measured (cpu): TV white
    # 26.63 dB, camera 27.17 dB; Hessian 26.88 / 27.44 (seed 2: +0.98 / +1.09 dB). Asserted with a margin.
    from benchmarks.quality import quality

    ds = cusim.simulate(phantom="filaments", shape=(128, 128), upsample=2, snr=4, seed=1, device="cpu")
    white = cusim.reconstruct(ds, "iterative", device="cpu")
    camera = cusim.reconstruct(ds, "iterative", device="cpu", noise="camera")
    q_white = quality(white.image.astype(np.float64), ds.ground_truth)["psnr_db"]
    q_camera = quality(camera.image.astype(np.float64), ds.ground_truth)["psnr_db"]
    assert q_camera >= q_white + 0.3, (q_camera, q_white)
    # provenance: the noise model in the parameters, the camera model used beside them
    assert camera.params["noise"] == "camera" and white.params["noise"] == "white"
    cam = camera.recorded_extra()["camera"]
    assert cam["method"] == "mean-variance" and cam["gain"] == pytest.approx(1.0, rel=0.1)
    assert "camera" not in white.extra
    assert camera.extra["stop_reason"].startswith("white stage")


def test_rl_refuses_the_camera_model_with_one_line(small, tmp_path):
    with pytest.raises(ValueError, match="noise: algorithm 'rl' has its own"):
        IterativeConfig(algorithm="rl", noise="camera")
    with pytest.raises(ValueError, match="camera_gain: only for noise 'camera'"):
        IterativeConfig(camera_gain=2.0)
    path = io.save(small, tmp_path / "s.h5")
    run = typer.testing.CliRunner().invoke
    _one_line_failure(run(app, ["run", str(path), "--method", "iterative", "--algorithm", "rl", "--noise", "camera"]),
                      "--noise: algorithm 'rl' has its own")
    _one_line_failure(run(app, ["run", str(path), "--method", "iterative", "--camera-read-sigma", "-1", "--noise",
                                "camera"]), "--camera-read-sigma: expected a finite number >= 0")
    _one_line_failure(run(app, ["run", str(path), "--method", "wiener", "--noise", "camera"]),
                      "--noise: only for --method pinn or iterative")


def test_import_stack_stores_the_camera_and_runs_take_it_as_their_default(small, tmp_path):
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, small.raw)
    out = tmp_path / "imported.h5"
    run = typer.testing.CliRunner().invoke
    res = run(app, ["import", "stack", str(tif), "--angles", "3", "--phases", "3", "--upsample", "2", "-o", str(out),
                    "--camera-offset", "100", "--camera-gain", "1.5", "--camera-read-sigma", "2"])
    assert res.exit_code == 0, res.output
    assert io.load(out).camera == {"offset": 100.0, "gain": 1.5, "read_sigma": 2.0}
    with h5py.File(out) as f:
        assert dict(f["camera"].attrs) == {"offset": 100.0, "gain": 1.5, "read_sigma": 2.0}
    info = run(app, ["info", str(out)])
    assert info.exit_code == 0 and "gain 1.5 counts/e-" in info.output
    # a file's camera is the default of noise "camera"; a setting given wins
    path = io.save(small.__class__(**{**vars(small), "camera": {"offset": 100.0, "gain": 1.5}}), tmp_path / "c.h5")
    res = run(app, ["run", str(path), "--method", "iterative", "--noise", "camera", "--camera-gain", "1.2",
                    "--iterations", "5"])
    assert res.exit_code == 0, res.output
    cam = io.load(path).recons["iterative"].attrs["camera"]
    assert (cam["offset"], cam["gain"], cam["from_file"]) == (100.0, 1.2, ["offset"])
    assert cam["method"] == "mean-variance+given offset,gain"
    # white noise ignores it
    white = cusim.reconstruct(io.load(path), "iterative", device="cpu", n_iter=3)
    assert "camera" not in white.extra


@pytest.mark.parametrize("option, value, needle", [
    ("--camera-gain", "0", "--camera-gain: expected a finite number > 0, got 0.0"),
    ("--camera-read-sigma", "-0.5", "--camera-read-sigma: expected a finite number >= 0, got -0.5"),
    ("--camera-offset", "nan", "--camera-offset: expected a finite number"),
])
def test_import_stack_refuses_bad_camera_values_with_one_line_and_no_file(small, tmp_path, option, value, needle):
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, small.raw)
    out = tmp_path / "imported.h5"
    res = typer.testing.CliRunner().invoke(app, ["import", "stack", str(tif), "--angles", "3", "--phases", "3",
                                                 "--upsample", "2", "-o", str(out), option, value])
    _one_line_failure(res, needle)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["raw.tif"]


def test_a_file_with_a_bad_camera_record_is_refused_naming_it(small, tmp_path):
    path = io.save(small, tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        f.create_group("camera").attrs["gain"] = -1.0
    with pytest.raises(io.DatasetError, match=r"s\.h5: /camera attribute gain: expected a finite number > 0"):
        io.load(path)
