"""The napari plugin: the reader opens what `cusim simulate` + `cusim run` write, with the layers, shapes
and physical scales the file implies; the dock widget runs a widefield and a 5-step PINN reconstruction in
a viewer and adds them as layers (writing to the file only when asked); cancel stops a running PINN;
the pattern view marks the carriers on the frames' spectrum.

Headless: Qt's offscreen platform, with the OpenGL context napari's canvas needs taken from Xvfb, which
pytest-xvfb starts (`.ci/run` installs Xvfb). Tiny data: a 64 x 64 fine grid.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import cusim  # noqa: E402
from cusim.cli import app  # noqa: E402
from cusim.napari._reader import get_reader  # noqa: E402
from cusim.napari._spectrum import pattern_layers  # noqa: E402

CAMERA_UM, FINE_UM = 0.1, 0.05  # --pixel-size-nm 100, --upsample 2


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("napari") / "sim.h5"
    cli("simulate", "-o", path, "--size", 64, "--upsample", 2, "--pixel-size-nm", 100, "--snr", 30, "--threads", 1)
    cli("run", path, "--method", "widefield", "--threads", 1)
    return path


@pytest.fixture
def sim(sim_file, tmp_path):
    """A fresh copy per test (the widget may write to it)."""
    copy = tmp_path / "sim.h5"
    copy.write_bytes(sim_file.read_bytes())
    return copy


def by_name(layers):
    return {kw["name"].split(" ", 1)[1]: (data, kw, kind) for data, kw, kind in layers}


def test_reader_yields_raw_frames_recons_and_truth_at_the_physical_pixel_size(sim, tmp_path):
    read = get_reader(str(sim))
    assert read is not None
    layers = by_name(read(str(sim)))
    assert set(layers) == {"raw", "ground truth", "widefield"}
    raw, kw, kind = layers["raw"]
    assert kind == "image" and raw.shape == (3, 3, 32, 32)  # 9 frames as 3 angles x 3 phases, camera grid
    assert kw["axis_labels"] == ("angle", "phase", "y", "x")
    np.testing.assert_allclose(kw["scale"], (1, 1, CAMERA_UM, CAMERA_UM))
    np.testing.assert_allclose(kw["translate"], (0, 0, FINE_UM / 2, FINE_UM / 2))  # camera centre over its 2x2 block
    for name in ("ground truth", "widefield"):
        data, kw, _ = layers[name]
        assert data.shape == (64, 64)
        np.testing.assert_allclose(kw["scale"], (FINE_UM, FINE_UM))
        assert kw["units"] == ("um", "um")
    prov = layers["widefield"][1]["metadata"]["cusim"]
    assert prov["dataset"] == "/recon/widefield" and prov["provenance"]["method"] == "widefield"
    assert prov["path"] == str(sim.resolve())
    np.testing.assert_array_equal(layers["widefield"][0], cusim.load(sim).recons["widefield"].image)
    # not ours: another HDF5 file, another suffix
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert get_reader(str(tmp_path / "other.h5")) is None
    assert get_reader(str(tmp_path / "sim.tif")) is None


def test_a_time_series_raw_layer_shares_its_t_axis_with_the_fine_layers(tmp_path):
    # napari lines the axes of layers up from the right: with t first, (t, angle, phase, y, x) against a fine
    # (t, y, x), the reconstruction's t followed the raw layer's phase slider.
    path = tmp_path / "ts.h5"
    cli("simulate", "-o", path, "--size", 32, "--upsample", 2, "-T", 3, "--threads", 1)
    cli("run", path, "--method", "widefield", "--threads", 1)
    ds = cusim.load(path)
    layers = by_name(get_reader(str(path))(str(path)))
    raw, kw, _ = layers["raw"]
    assert kw["axis_labels"] == ("angle", "phase", "t", "y", "x") and raw.shape == (3, 3, 3, 16, 16)
    assert len(kw["scale"]) == len(kw["translate"]) == len(kw["units"]) == 5
    fine, fkw, _ = layers["widefield"]
    assert fkw["axis_labels"] == kw["axis_labels"][-3:] and fine.shape == (3, 32, 32)
    for t in range(3):
        np.testing.assert_array_equal(raw[:, :, t], ds.raw[t].reshape(3, 3, 16, 16))
        np.testing.assert_array_equal(fine[t], ds.recons["widefield"].image[t])


def test_the_pattern_view_marks_the_true_carriers_on_the_frames_spectrum(sim):
    ds = cusim.load(sim)
    (spec, skw, _), (points, pkw, kind), (stored, _, _) = pattern_layers(ds)
    assert spec.shape == (32, 32) and kind == "points"
    true = np.unique(np.round(ds.pattern_params.k * ds.upsample, 6), axis=0)  # cycles per camera pixel
    assert len(points) == 2 * len(true) == len(stored)
    for p in points:  # every estimated carrier (+k and -k) within 0.005 cycles/px of a true one
        assert min(np.hypot(*(p - s)) for s in np.concatenate([true, -true])) < 5e-3
    # in the spectrum's coordinates, the carrier's pixel is brighter than the ring's median at its radius
    h = spec.shape[0]
    iy, ix = np.round((points[0] - skw["translate"]) / skw["scale"]).astype(int)
    yy, xx = np.mgrid[:h, :h] - h // 2
    ring = np.abs(np.hypot(yy, xx) - np.hypot(iy - h // 2, ix - h // 2)) < 1
    assert spec[iy, ix] > np.median(spec[ring]) + 1.0  # ten times the power


def test_a_job_that_could_not_store_its_result_is_refused_before_it_runs(sim):
    # A name already taken (or one HDF5 cannot hold) failed at add_recon, after the whole reconstruction, and the
    # result was lost; the status line said "use --force", which the widget does not have.
    from cusim.napari._jobs import Job  # noqa: PLC0415

    for name, needle in (("widefield", "/recon/widefield: exists already; choose another name"),
                         ("a/b", "/recon/a/b: invalid name")):
        with pytest.raises(ValueError, match=needle):
            Job(sim, "iterative", {"n_iter": 30}, name=name, store=True)
    assert Job(sim, "widefield", name="widefield").store is False  # shown only: no file rule applies
    layer = Job(sim, "widefield", name="wf_copy", store=True)()
    assert layer[1]["metadata"]["cusim"]["dataset"] == "/recon/wf_copy" and "wf_copy" in cusim.load(sim).recons


# -- in a viewer --------------------------------------------------------------------------------------------
@pytest.fixture
def viewer_with(request, sim):
    pytest.importorskip("napari", reason="the napari extra is not installed: pip install -e '.[test]'")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("napari's canvas needs OpenGL, which Qt's offscreen platform gets only from an X server: "
                    "install Xvfb (apt-get install xvfb; pytest-xvfb then starts it)")
    viewer = request.getfixturevalue("make_napari_viewer")()
    layers = viewer.open(str(sim), plugin="cusim")
    viewer.layers.selection.active = layers[-1]
    return viewer


def test_napari_opens_a_cusim_file_through_the_plugin(viewer_with):
    names = [layer.name for layer in viewer_with.layers]
    assert names == ["sim raw", "sim ground truth", "sim widefield"]
    wf = viewer_with.layers["sim widefield"]
    np.testing.assert_allclose(wf.scale, (FINE_UM, FINE_UM))
    np.testing.assert_allclose(viewer_with.layers["sim raw"].scale[-2:], (CAMERA_UM, CAMERA_UM))
    assert wf.metadata["cusim"]["provenance"]["method"] == "widefield"


def run_widget(qtbot, widget, timeout_ms=60_000):
    widget.start()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout_ms)


def test_the_widget_runs_widefield_and_a_five_step_pinn_and_adds_their_layers(viewer_with, qtbot, sim):
    from cusim.napari._widget import ReconstructWidget

    widget = ReconstructWidget(viewer_with)
    widget.method.value = "widefield"
    widget.recon_name.value = "wf2"
    run_widget(qtbot, widget)
    assert "done" in widget.status.value and "not stored" in widget.status.value
    layer = viewer_with.layers["sim wf2"]
    np.testing.assert_allclose(layer.data, cusim.load(sim).recons["widefield"].image, rtol=1e-6)
    np.testing.assert_allclose(layer.scale, (FINE_UM, FINE_UM))
    assert "wf2" not in cusim.load(sim).recons  # not written unless asked

    widget.method.value = "pinn"
    widget.steps.value = 5
    widget.device.value = "cpu"
    widget.recon_name.value = "pinn5"
    widget.store.value = True
    run_widget(qtbot, widget)
    assert "stored as sim.h5:/recon/pinn5" in widget.status.value, widget.status.value
    assert widget.progress.value == widget.progress.max == 5
    layer = viewer_with.layers["sim pinn5"]
    stored = cusim.load(sim).recons["pinn5"]
    assert stored.attrs["method"] == "pinn" and stored.attrs["params"]["steps"] == 5 and len(stored.loss) == 5
    np.testing.assert_array_equal(layer.data, stored.image)
    assert layer.metadata["cusim"]["provenance"]["params"]["steps"] == 5
    widget.pattern_button.native.click()  # the pattern view: spectrum + estimated and stored carriers
    kinds = {layer.name: type(layer).__name__ for layer in viewer_with.layers}
    assert kinds["sim carriers (estimated)"] == kinds["sim carriers (/pattern_params)"] == "Points"
    assert len(viewer_with.layers["sim carriers (estimated)"].data) == 6  # +k and -k of 3 angles
    viewer_with.reset_view()
    shot = viewer_with.screenshot(canvas_only=False, flash=False)  # (canvas_only grabs black offscreen)
    assert shot.ndim == 3 and shot[..., :3].std() > 1  # the canvas draws the layers


def test_cancel_stops_a_running_pinn_and_adds_nothing(viewer_with, qtbot, sim):
    from cusim.napari._widget import ReconstructWidget

    widget = ReconstructWidget(viewer_with)
    viewer_with.layers.selection.active = viewer_with.add_image(np.zeros((4, 4)), name="not from a file")
    widget.start()  # bad input: one line in the status, nothing started
    assert not widget.running and widget.status.value.startswith("error: select a layer opened from a cusim file")
    viewer_with.layers.selection.active = viewer_with.layers["sim raw"]
    widget.method.value = "pinn"
    widget.steps.value = 100_000
    widget.device.value = "cpu"
    widget.store.value = True
    before = len(viewer_with.layers)
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.job.step >= 2, timeout=30_000)
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert "cancelled after step" in widget.status.value, widget.status.value
    assert 2 <= widget.job.step < 100
    assert len(viewer_with.layers) == before
    assert "pinn" not in cusim.load(sim).recons
    assert widget.run_button.enabled and not widget.cancel_button.enabled
