"""HDF5 format cusim-sim v1: round trip, validation of malformed files through the CLI, atomic writes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cusim import io, patterns
from cusim.cli import app


def full_dataset(series: bool = False) -> io.Dataset:
    """A dataset that uses every field of the format."""
    rng = np.random.default_rng(0)
    raw_shape = (3, 9, 8, 10) if series else (9, 8, 10)
    gt_shape = (3, 16, 20) if series else (16, 20)
    p = patterns.nonlinear_params(period_px=5, n_angles=3, n_phases=3, saturation=2)
    return io.Dataset(
        raw=rng.integers(0, 4000, raw_shape).astype(np.uint16), upsample=2,
        patterns=rng.random((9, 16, 20)).astype(np.float32), pattern_params=p, pattern_kind="nonlinear",
        psf=rng.random((5, 5)).astype(np.float32), na=1.2, wavelength_nm=520.0, pixel_size_nm=100.0,
        ground_truth=rng.random(gt_shape).astype(np.float32),
        recons={"pinn": io.Recon(rng.random(gt_shape).astype(np.float32),
                                 {"method": "pinn", "params": {"lr": 0.001, "steps": 10}, "device": "cpu",
                                  "runtime_s": 1.5, "final_loss": 0.25},
                                 np.linspace(1, 0.25, 10))},
        attrs={"source": "unit test"},
    )


@pytest.mark.parametrize("series", [False, True])
def test_save_then_load_gives_identical_arrays_and_attributes(tmp_path, series):
    ds = full_dataset(series)
    path = io.save(ds, tmp_path / "a.h5")
    back = io.load(path)
    for name in ("raw", "patterns", "psf", "ground_truth"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
        assert getattr(back, name).dtype == getattr(ds, name).dtype
    for name in ("k", "phase", "modulation", "harmonics"):
        np.testing.assert_array_equal(getattr(back.pattern_params, name), getattr(ds.pattern_params, name))
    assert (back.upsample, back.na, back.wavelength_nm, back.pixel_size_nm) == (2, 1.2, 520.0, 100.0)
    assert back.pattern_kind == "nonlinear" and back.attrs == {"source": "unit test"}
    rec, orig = back.recons["pinn"], ds.recons["pinn"]
    np.testing.assert_array_equal(rec.image, orig.image)
    np.testing.assert_array_equal(rec.loss, orig.loss)
    assert rec.attrs == orig.attrs
    with h5py.File(path) as f:
        assert f.attrs["format"] == "cusim-sim" and f.attrs["format_version"] == 1


def test_parametric_patterns_are_generated_on_load(tmp_path):
    p = patterns.linear_params(period_px=6)
    ds = io.Dataset(raw=np.ones((9, 8, 8), np.float32), upsample=3, pattern_params=p, pattern_kind="linear",
                    na=1.1, wavelength_nm=600.0, pixel_size_nm=90.0)
    back = io.load(io.save(ds, tmp_path / "p.h5"))
    np.testing.assert_allclose(back.get_patterns(), p.render((24, 24)), atol=1e-6)
    assert back.operator(device="cpu").K == 9


def test_patterns_past_the_field_come_from_parameters_or_the_field_a_crop_was_cut_from(tmp_path):
    p = patterns.linear_params(period_px=5.3, angle_offset_deg=7)
    whole = io.Dataset(raw=np.ones((9, 20, 24), np.float32), upsample=2, pattern_params=p, psf=np.ones((7, 7)))
    crop = whole.crop(8, 12, 20, 24)  # fine rows 8..28, columns 12..36
    window = (slice(None), slice(8 - 4, 28 + 4), slice(12 - 4, 36 + 4))  # margin 2 camera px = 4 fine px
    assert crop.margin_available() is None and crop.margin_reach() == 2  # PSF 7: reach 3 fine px
    np.testing.assert_allclose(crop.get_patterns(2), whole.get_patterns()[window], atol=2e-5)
    op = crop.operator(margin_camera=2, device="cpu")
    assert op.input_shape == (28, 32) and op.camera_shape == crop.camera_shape and op.margin_camera == 2
    assert op.pad_fine == 4  # default: the PSF's half-size, 3 fine px, rounded up to whole camera pixels
    assert crop.operator(pad_fine=0, device="cpu").pad_fine == 0

    stored = io.Dataset(raw=np.ones((9, 20, 24), np.float32), upsample=2, patterns=whole.get_patterns(),
                        psf=np.ones((7, 7)))
    inner = stored.crop(8, 12, 20, 24).crop(2, 2, 14, 16)  # a crop of a crop: fine rows 10..24, cols 14..30
    assert inner.margin_available() == 5  # the least room is above it: 10 fine rows = 5 camera px
    np.testing.assert_array_equal(inner.get_patterns(3), stored.patterns[:, 10 - 6 : 24 + 6, 14 - 6 : 30 + 6])
    with pytest.raises(io.DatasetError, match=r"margin_camera 6: the patterns are known only 5 camera pixels past the field"):
        inner.get_patterns(6)
    assert stored.margin_available() == 0  # stored patterns of a whole field: nothing known past it
    with pytest.raises(io.DatasetError, match=r"margin_camera 1: the patterns are known only 0 camera pixels"):
        stored.operator(margin_camera=1, device="cpu")
    with pytest.raises(io.DatasetError, match=r"margin_camera: expected an integer >= 0, got -1 \(camera pixels\)"):
        stored.get_patterns(-1)
    with pytest.raises(io.DatasetError, match=r"margin_camera: expected an integer >= 0, got 1\.0"):
        stored.check_margin(1.0)
    back = io.load(io.save(inner, tmp_path / "c.h5"))  # the context stays in memory: a file holds its field
    assert back.margin_available() == 0 and back.pattern_context is None


def test_a_crop_records_its_region_in_the_first_field_and_keeps_the_estimates_provenance(tmp_path):
    """A crop of a crop recorded its origin in its parent's pixels ([8, 8, ...] for a region at 16, 16), and the
    attributes `cusim estimate` puts on /pattern_params were dropped by a load and save (a --roi result's file)."""
    p = patterns.linear_params(period_px=5.3)
    ds = io.Dataset(raw=np.ones((9, 32, 32), np.float32), upsample=2, pattern_params=p, pattern_kind="estimated",
                    pattern_attrs={"source": "estimated from /raw", "peak_snr": [12.5, 13.0, 11.0]})
    first = io.load(io.save(ds.crop(8, 8, 48, 48), tmp_path / "a.h5"))
    assert list(first.attrs["crop"]) == [8, 8, 48, 48]
    assert first.pattern_attrs == {"source": "estimated from /raw", "peak_snr": [12.5, 13.0, 11.0]}
    second = first.crop(8, 4, 32, 32)
    assert second.attrs["crop"] == [16, 12, 32, 32]
    assert io.load(io.save(second, tmp_path / "b.h5")).pattern_attrs == first.pattern_attrs


def test_info_shows_a_file_whose_reconstruction_is_not_finite_or_whose_attributes_were_edited(tmp_path):
    """A NaN reconstruction (which load accepts: a diverged run's image) made info print LAPACK's DLASCL lines and
    'SVD did not converge'; a runtime stored as text ended in 'Unknown format code'."""
    import cusim  # noqa: PLC0415

    path = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "a.h5")
    io.add_recon(path, "x", io.Recon(np.full((32, 32), np.nan, np.float32), {"method": "pinn", "runtime_s": "fast"}))
    res, text = _invoke(["info", str(path)])
    assert res.exit_code == 0, text
    flat = " ".join(re.sub(r"[│┌┐└┘─┬┴├┤┼]", " ", text).split())  # the table's cells, unwrapped
    assert "not finite (NaN or Inf), not scored" in flat and "runtime 'fast'" in flat, text


def test_raw_frames_given_as_a_list_are_named():
    with pytest.raises(io.DatasetError, match=r"^dataset: /raw: expected a NumPy array .* got list$"):
        io.Dataset(raw=np.ones((9, 8, 8)).tolist(), upsample=2).validate()  # AttributeError before


def test_add_recon_keeps_an_existing_one_unless_forced(tmp_path):
    path = io.save(full_dataset(), tmp_path / "a.h5")
    new = io.Recon(np.zeros((16, 20), np.float32), {"method": "widefield"})
    with pytest.raises(io.DatasetError, match=r"/recon/pinn: exists already; use --force"):
        io.add_recon(path, "pinn", new)
    assert io.load(path).recons["pinn"].attrs["method"] == "pinn"
    io.add_recon(path, "pinn", new, force=True)
    back = io.load(path)
    assert back.recons["pinn"].attrs == {"method": "widefield"} and back.recons["pinn"].loss is None


# ---- malformed files: each makes `cusim run` and `cusim info` exit 1 with one line --------------

def _good(f):
    f.attrs.update(format="cusim-sim", format_version=1, upsample=2)
    f["raw"] = np.ones((9, 8, 8), np.float32)
    f["psf"] = np.ones((3, 3), np.float32)


def _write(path, edit):
    with h5py.File(path, "w") as f:
        _good(f)
        edit(f)


def _replace(name, value):
    def edit(f):
        del f[name]
        f[name] = value
    return edit


def _truncated(path):
    _write(path, lambda f: f.create_dataset("big", data=np.random.default_rng(0).random(50000)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


MALFORMED = {
    "missing /raw": (lambda p: _write(p, lambda f: f.__delitem__("raw")), "/raw: missing"),
    "raw of rank 2": (lambda p: _write(p, _replace("raw", np.ones((8, 8), np.float32))), "/raw: expected shape"),
    "K of patterns": (lambda p: _write(p, lambda f: f.create_dataset("patterns", data=np.ones((8, 16, 16)))),
                      r"/patterns: expected shape \(K, H, W\) = \(9, 16, 16\)"),
    "H != upsample*h": (lambda p: _write(p, lambda f: f.create_dataset("patterns", data=np.ones((9, 15, 16)))),
                        r"/patterns: expected shape \(K, H, W\) = \(9, 16, 16\)"),
    "ground truth grid": (lambda p: _write(p, lambda f: f.create_dataset("ground_truth", data=np.ones((8, 8)))),
                          "/ground_truth: expected shape"),
    "NaN in raw": (lambda p: _write(p, _replace("raw", np.full((9, 8, 8), np.nan, np.float32))),
                   "/raw: contains NaN or Inf"),
    "negative PSF": (lambda p: _write(p, _replace("psf", -np.ones((3, 3), np.float32))),
                     "/psf: must be non-negative"),
    "even PSF": (lambda p: _write(p, _replace("psf", np.ones((4, 4), np.float32))), "/psf: expected odd sides"),
    "truncated file": (_truncated, "truncated or corrupt"),
    "not HDF5": (lambda p: p.write_text("raw,frames\n1,2\n"), "not an HDF5 file"),
    "wrong format_version": (lambda p: _write(p, lambda f: f.attrs.__setitem__("format_version", 2)),
                             "attribute format_version: expected 1, got 2"),
    "wrong format": (lambda p: _write(p, lambda f: f.attrs.__setitem__("format", "other")),
                     "attribute format: expected 'cusim-sim'"),
    "missing upsample": (lambda p: _write(p, lambda f: f.attrs.__delitem__("upsample")),
                         "attribute upsample: missing"),
    "upsample 0": (lambda p: _write(p, lambda f: f.attrs.__setitem__("upsample", 0)),
                   "attribute upsample: expected an integer 1..8"),
    "empty raw": (lambda p: _write(p, _replace("raw", np.ones((0, 8, 8), np.float32))), "/raw: empty array"),
    "non-numeric raw": (lambda p: _write(p, _replace("raw", np.array([[[b"a"]]]))),
                        "/raw: expected a numeric"),
    "pattern params K": (lambda p: _write(p, lambda f: (f.create_group("pattern_params"),
                                                       f["pattern_params"].create_dataset("k", data=np.zeros((3, 2))),
                                                       f["pattern_params"].create_dataset("phase", data=np.zeros(3)),
                                                       f["pattern_params"].create_dataset("modulation", data=np.ones(3)))),
                         "/pattern_params/k: expected 9 frames"),
    "NA above any immersion's": (lambda p: _write(p, lambda f: f.attrs.__setitem__("na", 14.9)),
                                 r"attribute na: expected a finite number > 0 and <= 1.7, got 14.9"),
    "wavelength in micrometres": (lambda p: _write(p, lambda f: f.attrs.__setitem__("wavelength_nm", 0.52)),
                                  r"attribute wavelength_nm: expected nanometres, 100 to 2000, got 0.52 \(a value in "
                                  r"micrometres\?\)"),
    "recon an array": (lambda p: _write(p, lambda f: f.create_dataset("recon", data=np.ones((16, 16)))),
                       "/recon: expected a group of reconstructions, found an array"),
    # hand-edited attributes and groups: each message names the file and the path inside it (they named neither,
    # the wrong one, or ended in numpy's "truth value of an array ... is ambiguous")
    "format an array": (lambda p: _write(p, lambda f: f.attrs.__setitem__("format", np.array([b"cusim-sim", b"x"]))),
                        r"attribute format: expected 'cusim-sim', got array"),
    "family an array": (lambda p: _write(p, lambda f: (_params(f), f["pattern_params"].attrs.__setitem__(
        "family", np.array([b"hexagonal", b"x"])))), r"/pattern_params: attribute family: expected"),
    "kind a number": (lambda p: _write(p, lambda f: (_params(f), f["pattern_params"].attrs.__setitem__("kind", 5))),
                      r"/pattern_params: attribute kind: expected text .* got 5"),
    "pattern params k missing": (lambda p: _write(p, lambda f: (_params(f), f["pattern_params"].__delitem__("k"))),
                                 r"/pattern_params/k: missing \(required\)"),
    "pattern params an array": (lambda p: _write(p, lambda f: f.create_dataset("pattern_params", data=np.ones(3))),
                                r"/pattern_params: expected a group"),
    "harmonics text": (lambda p: _write(p, lambda f: (_params(f), f["pattern_params"].create_dataset(
        "harmonics", data=np.array([[b"a"]] * 9)))), r"/pattern_params/harmonics: expected a numeric"),
    "harmonics NaN": (lambda p: _write(p, lambda f: (_params(f), f["pattern_params"].create_dataset(
        "harmonics", data=np.full((9, 1), np.nan)))), r"/pattern_params/harmonics: contains NaN or Inf"),
    "recon a group": (lambda p: _write(p, lambda f: f.create_group("recon/x")), r"/recon/x: expected an array"),
    "field_isolated as text": (lambda p: _write(p, lambda f: f.attrs.__setitem__("field_isolated", "False")),
                               r"attribute field_isolated: expected true or false, got 'False'"),
}


def _params(f):
    g = f.create_group("pattern_params")
    g.attrs["kind"] = "linear"
    g["k"], g["phase"], g["modulation"] = np.full((9, 2), 0.1), np.zeros(9), np.ones(9)


def _invoke(args):
    res = CliRunner().invoke(app, args)
    text = res.output + (res.stderr if hasattr(res, "stderr") and res.stderr not in res.output else "")
    return res, text


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_exits_1_with_one_line_and_stays_unchanged(tmp_path, case):
    make, message = MALFORMED[case]
    path = tmp_path / "bad.h5"
    make(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for verb in (["run", str(path), "--method", "widefield"], ["info", str(path)]):
        res, text = _invoke(verb)
        assert res.exit_code == 1, (case, text)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 1, (case, text)
        assert str(path) in lines[0]
        assert pytest.importorskip("re").search(message, lines[0]), (case, lines[0])
        assert "Traceback" not in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert [p.name for p in tmp_path.iterdir()] == ["bad.h5"]  # no temporary files left behind


@pytest.mark.parametrize("target", ["missing.h5", "."])
def test_unreadable_paths_exit_1_with_one_line(tmp_path, target):
    path = tmp_path / target if target != "." else tmp_path
    for verb in (["run", str(path)], ["info", str(path)]):
        res, text = _invoke(verb)
        assert res.exit_code == 1 and len(text.strip().splitlines()) == 1, text
        assert ("no such file" in text) or ("is a folder" in text)


# ---- interrupted writes ----------------------------------------------------------------------

KILL_MID_WRITE = textwrap.dedent("""
    import sys, time
    import numpy as np
    from cusim import io
    real = io._write_recon if sys.argv[2] == "recon" else io._write
    def slow(*args):
        real(*args)          # half of the new content is in the temporary file ...
        print("writing", flush=True)
        time.sleep(60)       # ... when the parent kills us
    if sys.argv[2] == "recon":
        io._write_recon = slow
        io.add_recon(sys.argv[1], "new", io.Recon(np.zeros((16, 20), np.float32), {"method": "x"}))
    else:
        io._write = slow
        ds = io.load(sys.argv[1])
        ds.raw = ds.raw * 0
        io.save(ds, sys.argv[1])
""")


@pytest.mark.parametrize("kind", ["save", "recon"])
def test_killed_write_leaves_the_previous_file_intact(tmp_path, kind):
    path = io.save(full_dataset(), tmp_path / "a.h5")
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID_WRITE, str(path), kind], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()
        proc.wait()
    assert path.read_bytes() == before
    back = io.load(path)
    np.testing.assert_array_equal(back.raw, full_dataset().raw)
    assert "new" not in back.recons
