"""Never lose a user's data (issue 17): degenerate frames and too-large grids fail with one clear line
before any long computation; frames in the wrong order and clipped pixels give a CusimWarning."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import cusim
from cusim import _syserrors, io
from cusim.cli import app
from cusim.estimate import EstimationError, estimate_dataset, estimate_params
from cusim.importers import import_stack, to_angle_major, to_phase_major
from cusim.optics import Widefield

GiB = 2**30
METHODS = {"widefield": {}, "wiener": {}, "iterative": {}, "pinn": {"steps": 2, "width": 4}}


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, res.output


@pytest.fixture
def small():
    return cusim.simulate(shape=(32, 32), seed=0, device="cpu")


@pytest.fixture
def little_memory(monkeypatch):
    """8 GiB of free memory, whatever the machine has: the memory checks become deterministic."""
    monkeypatch.setattr(_syserrors, "available_memory", lambda: 8 * GiB)


@contextlib.contextmanager
def no_cusim_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", cusim.CusimWarning)
        yield


# -- 1. degenerate frames ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("value, says", [(0, r"every pixel 0: no signal"), (1000, r"every pixel 1000"),
                                         (65535, r"every pixel 65535: saturated")])
def test_constant_frames_are_refused_by_every_method_before_any_work(small, method, value, says):
    if method == "pinn":
        pytest.importorskip("torch")
    small.raw = np.full(small.raw.shape, value, np.uint16)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^raw: time point 0, all 9 frames are constant \({says}\); "
                                         r"nothing to reconstruct from them$"):
        cusim.reconstruct(small, method, device="cpu", **METHODS[method])
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("method", list(METHODS))
def test_nan_frames_are_refused_by_every_method_before_any_work(small, method):
    """widefield said 'these settings made the reconstruction diverge', the PINN blamed its learning rate."""
    if method == "pinn":
        pytest.importorskip("torch")
    raw = small.raw.astype(np.float32)
    raw[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"^raw: contains NaN or Inf; expected finite frames$"):
        cusim.reconstruct(dataclasses.replace(small, raw=raw), method, device="cpu", **METHODS[method])


def test_reconstruct_refuses_what_it_cannot_use_naming_the_argument(small):
    """A bare array got AttributeError, widefield a TypeError for a setting, estimate_patterns="no" estimated."""
    with pytest.raises(ValueError, match=r"^dataset: expected a cusim Dataset .*got ndarray$"):
        cusim.reconstruct(small.raw, "widefield")
    with pytest.raises(ValueError, match=r"^widefield: unknown parameter\(s\) \['w'\]; it takes none$"):
        cusim.reconstruct(small, "widefield", w=0.1)
    for bad in ("no", 1):
        with pytest.raises(ValueError, match=r"^estimate_patterns: expected True, False or an EstimateResult"):
            cusim.reconstruct(small, "wiener", estimate_patterns=bad)
    assert cusim.reconstruct(small, "wiener", device="cpu", estimate_patterns=np.False_).image.shape == (32, 32)


@pytest.mark.parametrize("method", list(METHODS))
def test_one_constant_frame_is_named_with_its_time_point(small, method):
    if method == "pinn":
        pytest.importorskip("torch")
    raw = np.clip(small.raw, 0, 60000).astype(np.uint16)
    raw[3] = 65535
    small.raw = raw
    with pytest.raises(ValueError, match=r"^raw: time point 0, frame 3 is constant \(every pixel 65535: saturated\); "
                                         "nothing to reconstruct from it$"):
        cusim.reconstruct(small, method, device="cpu", **METHODS[method])
    series = cusim.simulate(shape=(32, 32), T=3, seed=0, device="cpu")
    series.raw[2, 4] = 7.5
    series.raw[2, 6] = 0.0
    with pytest.raises(ValueError, match=r"time point 2, frame 4 is constant \(every pixel 7.5\), and 1 more frame;"):
        cusim.reconstruct(series, method, device="cpu", **METHODS[method])


def test_the_check_comes_before_the_method_and_the_pattern_estimate(small, monkeypatch, tmp_path):
    import cusim.recon as recon

    def never(*a, **k):
        raise AssertionError("reached the method")

    monkeypatch.setattr(recon, "_method_module", never)
    monkeypatch.setattr(recon, "with_estimated_patterns", never)
    small.raw = np.zeros(small.raw.shape, np.float32)
    with pytest.raises(ValueError, match="all 9 frames are constant"):
        cusim.reconstruct(small, "pinn", estimate_patterns=True)
    path = io.save(small, tmp_path / "zeros.h5")  # a loaded dataset: the message names the file
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: /raw: time point 0, all 9 frames are constant"):
        cusim.reconstruct(io.load(path), "wiener")


def test_frames_that_vary_only_below_their_first_row_are_accepted(small):
    small.raw[:, 0, :] = 5.0  # a constant first row must not be mistaken for a constant frame
    res = cusim.reconstruct(small, "widefield")
    assert np.isfinite(res.image).all()


def test_methods_called_directly_refuse_constant_frames_too(small):
    from cusim.recon import iterative

    op = small.operator(device="cpu")
    flat = np.full(small.raw.shape, 3.0, np.float32)
    with pytest.raises(ValueError, match=r"^frames: all 9 frames are constant \(every pixel 3\)"):
        iterative.solve(flat, op)
    pytest.importorskip("torch")
    from cusim.recon import pinn

    with pytest.raises(ValueError, match=r"^frames: all 9 frames are constant"):
        pinn.optimise(flat, op, pinn.PINNConfig(steps=2, width=4))


def test_cli_run_on_saturated_frames_fails_with_one_line(small, tmp_path):
    small.raw = np.full(small.raw.shape, 65535, np.uint16)
    path = io.save(small, tmp_path / "saturated.h5")
    res, text = _cli("run", path, "--method", "widefield")
    assert res.exit_code == 1, text
    assert len(text.strip().splitlines()) == 1
    assert "time point 0, all 9 frames are constant (every pixel 65535: saturated)" in " ".join(text.split())
    assert "widefield" not in io.load(path).recons


# -- 2. memory checked before allocating ----------------------------------------------------------------------
def test_simulating_a_grid_beyond_memory_is_refused_before_allocating(little_memory):
    t0 = time.perf_counter()
    with pytest.raises(_syserrors.NotEnoughMemory,
                       match=r"^shape: simulating 9 frames of 100000x100000 fine pixels needs \d+\.\d GiB, "
                             r"only 8\.0 GiB of memory is available$"):
        cusim.simulate(shape=(100000, 100000))
    with pytest.raises(ValueError, match="at 4 time points needs"):
        cusim.simulate(shape=(8192, 8192), T=4)
    assert time.perf_counter() - t0 < 2.0
    assert cusim.simulate(shape=(64, 64)).raw.shape == (9, 32, 32)  # ordinary sizes are untouched


def test_the_simulation_estimate_is_honest(monkeypatch):
    # measured peak (ru_maxrss) of simulate at 2048^2: 0.83 GiB for one time point, 2.04 GiB for three;
    # the estimate says 0.86 and 2.03. At 4096^2 it says 3.4 GiB: 2 GiB must refuse it, 5 GiB must not.
    import sys

    check = sys.modules["cusim.simulate"]._check_memory
    monkeypatch.setattr(_syserrors, "available_memory", lambda: 2 * GiB)
    with pytest.raises(ValueError, match=r"needs 3\.[45] GiB"):
        check((4096, 4096), 2, 9, 1)
    monkeypatch.setattr(_syserrors, "available_memory", lambda: 5 * GiB)
    check((4096, 4096), 2, 9, 1)


def test_cli_simulate_of_a_huge_size_fails_with_one_line(little_memory, tmp_path):
    out = tmp_path / "huge.h5"
    res, text = _cli("simulate", "-o", out, "--size", "100000")
    assert res.exit_code == 1, text
    assert len(text.strip().splitlines()) == 1 and "GiB of memory is available" in text
    assert not out.exists()


def test_a_margin_that_makes_a_huge_grid_is_refused_before_rendering(small, little_memory):
    with pytest.raises(_syserrors.NotEnoughMemory,
                       match=r"^dataset: /pattern_params: rendering 9 patterns on 40032x40032 fine pixels "
                             r"\(margin_camera 10000\) needs \d+\.\d GiB, only 8\.0 GiB"):
        small.get_patterns(margin_camera=10000)
    with pytest.raises(ValueError, match="margin_camera 10000"):
        small.operator(margin_camera=10000, device="cpu")
    np.testing.assert_allclose(small.get_patterns(margin_camera=1)[:, 2:-2, 2:-2], small.get_patterns(), atol=1e-5)


def test_an_operator_on_a_huge_padded_grid_is_refused_before_allocating(little_memory, monkeypatch):
    wf = Widefield(1.2, 520.0, 100.0)
    with pytest.raises(_syserrors.NotEnoughMemory,
                       match=r"^SIMOperator: the padded \d{6}x\d{6} fine grid \(its transfer function\) needs"):
        cusim.SIMOperator(np.ones((1, 32, 32), np.float32), wf, 2, pad_fine=100000, device="cpu")
    # the frames' share: a forward pass holds K padded planes and their spectra, 8 bytes a pixel in float32;
    # the 80 x 80 grid's transfer function (0.4 MB) fits 1 MB, 25 frames of it (1.3 MB) do not
    monkeypatch.setattr(_syserrors, "available_memory", lambda: 10**6)
    pats = np.ones((25, 64, 64), np.float32)
    with pytest.raises(_syserrors.NotEnoughMemory, match=r"^SIMOperator: the padded 80x80 fine grid with 25 frames"):
        cusim.SIMOperator(pats, wf, 2, pad_fine=8, device="cpu")
    assert cusim.SIMOperator(pats[:9], wf, 2, pad_fine=8, device="cpu").K == 9


# -- 4a. frame order --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear():
    return cusim.simulate(shape=(128, 128), seed=0, device="cpu")


def test_phase_major_frames_read_as_angle_major_are_refused_with_the_order_to_import(linear):
    """As given, their three "angles" share a direction (70, 70, 131 deg): that estimate was stored, with a warning,
    and the reconstructions used it."""
    frames = to_phase_major(linear.raw, 3, 3)  # the file's order was phase-major, imported as angle-major
    with pytest.raises(EstimationError, match=r"^frames look phase-major, not angle-major: the estimate with that "
                                              r"order has evenly spaced angles \(10, 70, 130 deg; .*re-import "
                                              r"with --order phase-major$"):
        estimate_params(frames, upsample=2, psf=linear.optics())


def test_frames_of_the_other_order_with_distinct_angles_as_given_get_a_warning():
    ds = cusim.simulate(shape=(128, 128), n_angles=2, n_phases=3, seed=0, device="cpu")
    with pytest.warns(cusim.CusimWarning, match=r"^frames look phase-major, not angle-major: .*--order phase-major$"):
        res = estimate_params(to_phase_major(ds.raw, 2, 3), upsample=2, psf=ds.optics(), n_angles=2, n_phases=3)
    assert res.n_angles == 2  # the frames as given: their uneven phase steps are the warning's reason


def test_angle_major_frames_imported_as_phase_major_get_the_opposite_advice(tmp_path):
    import tifffile

    ds = cusim.simulate(shape=(128, 128), n_phases=5, seed=1, device="cpu")
    path = tmp_path / "angle_major.tif"
    tifffile.imwrite(path, ds.raw)
    wrong = import_stack(path, angles=3, phases=5, order="phase-major", upsample=2, na=1.2, wavelength_nm=520,
                         pixel_size_nm=100)
    with pytest.raises(EstimationError, match="frames look angle-major, not phase-major.*--order angle-major$"):
        estimate_dataset(wrong)


def test_frames_in_the_right_order_give_no_warning(linear):
    with no_cusim_warning():
        res = estimate_dataset(linear)
    np.testing.assert_allclose(np.sort(res.angle_deg % 180), [10, 70, 130], atol=0.5)


# -- 4b. saturation ----------------------------------------------------------------------------------------------
def test_a_simulation_that_clips_warns_with_the_fraction():
    with pytest.warns(cusim.CusimWarning, match=r"^raw: 100 % of the pixels clipped at 65535 \(uint16\); "
                                                "lower --photons$"):
        ds = cusim.simulate(shape=(32, 32), photons=1e12, dtype="uint16")
    assert ds.raw.max() == 65535
    with pytest.warns(cusim.CusimWarning, match=r"^raw: 21\.5 % of the pixels clipped"):
        cusim.simulate(shape=(64, 64), photons=4e4, dtype="uint16", seed=2)  # the brightest pixels only
    with no_cusim_warning():
        cusim.simulate(shape=(64, 64), photons=2e4, dtype="uint16", seed=2)  # 0.7 % clipped: below the bar
        cusim.simulate(shape=(32, 32), dtype="uint16")


@pytest.mark.parametrize("saturated, warns", [(0.05, True), (0.005, False)])
def test_importing_saturated_integer_frames_warns(tmp_path, saturated, warns):
    import tifffile

    rng = np.random.default_rng(0)
    raw = rng.integers(100, 4000, (9, 32, 32)).astype(np.uint16)
    n = int(saturated * raw.size)
    raw.reshape(-1)[rng.choice(raw.size, n, replace=False)] = 65535
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, raw)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        import_stack(path, angles=3, phases=3, upsample=2)
    notes = [str(w.message) for w in seen if issubclass(w.category, cusim.CusimWarning)]
    if warns:
        assert len(notes) == 1 and notes[0].startswith(f"{path}: {100 * n / raw.size:.3g} % of the pixels clipped "
                                                       "at 65535 (uint16); the camera saturated there")
    else:
        assert notes == []
    float_raw = np.full((9, 32, 32), 65535.0, np.float32)  # float data has no saturation value
    tifffile.imwrite(path, float_raw + rng.normal(0, 1, float_raw.shape).astype(np.float32))
    with no_cusim_warning():
        import_stack(path, angles=3, phases=3, upsample=2)


def test_cli_prints_each_warning_as_one_note_line(linear, tmp_path):
    two = cusim.simulate(shape=(128, 128), n_angles=2, n_phases=3, seed=0, device="cpu")
    ds = dataclasses.replace(two, raw=to_phase_major(two.raw, 2, 3), pattern_params=None, attrs={})
    path = io.save(ds, tmp_path / "phase_major.h5")
    res, text = _cli("estimate", path, "--no-write", "--angles", "2", "--phases", "3")
    assert res.exit_code == 0, text
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: frames look phase-major, not angle-major: ")
    assert notes[0].endswith("re-import with --order phase-major")
    three = io.save(dataclasses.replace(linear, raw=to_phase_major(linear.raw, 3, 3), pattern_params=None),
                    tmp_path / "three.h5")
    res, text = _cli("estimate", three)  # its carriers as given share a direction: refused, nothing stored
    lines = text.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, text
    assert lines[0].startswith(f"error: {three}: frames look phase-major") and lines[0].endswith("--order phase-major")
    assert io.load(three).pattern_params is None
    res, text = _cli("simulate", "-o", tmp_path / "bright.h5", "--size", "64", "--photons", "1e12", "--dtype", "uint16")
    assert res.exit_code == 0, text
    assert "note: raw: 100 % of the pixels clipped at 65535 (uint16); lower --photons" in text.splitlines()


def test_the_warning_class_is_public_and_a_user_warning():
    assert issubclass(cusim.CusimWarning, UserWarning) and "CusimWarning" in cusim.__all__
    assert to_angle_major(to_phase_major(np.arange(15.0).reshape(15, 1, 1), 3, 5), 3, 5).ravel().tolist() == \
        list(range(15))
