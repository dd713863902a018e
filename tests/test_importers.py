"""Importers: the PINN-paper layout, generic TIFF/MRC stacks, both real sets with the options of docs/data.md."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from cusim.importers import (import_paper, import_paper_all, import_stack, paper_filename, paper_samples,
                             psf_from_radial_otf, to_angle_major)
from cusim.io import DatasetError, load, save
from cusim.optics import airy_psf

PAPER_K = {"SIM/microtubules": 9, "NL_SIM/ccp": 25, "NL_SIM/er": 25, "NL_SIM/factin": 25,
           "NL_SIM/microtubules": 25, "LPSIM/microtubules": 24}
# the documented options (docs/data.md), shared with the tests so that they cannot drift apart
DLSIM = dict(angles=3, phases=5, order="angle-major", upsample=2, binning=2,
             na=1.49, wavelength_nm=525.0, pixel_size_nm=44.0)
RDLSIM = dict(angles=3, phases=3, order="angle-major", upsample=2, na=1.3, wavelength_nm=525.0, pixel_size_nm=62.6)


def _one_line_naming(err: pytest.ExceptionInfo, name: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg
    return msg


# -- the PINN-paper layout --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PAPER_K))
def test_paper_sample_1_of_each_set(shared_data, name):
    ds = import_paper(shared_data / "pinn-sim-paper" / name, 1)
    K = PAPER_K[name]
    assert ds.raw.shape == (K, 120, 120) and ds.raw.dtype == np.uint8
    assert ds.patterns.shape == (K, 480, 480) and ds.patterns.dtype == np.float32
    assert 0 <= ds.patterns.min() and ds.patterns.max() <= 1
    assert ds.ground_truth.shape == (480, 480) and ds.ground_truth.dtype == np.float32
    assert ds.ground_truth.max() <= 1 and ds.psf.dtype == np.float32 and ds.psf.shape[0] % 2 == 1
    assert ds.upsample == 4 and ds.na is None and ds.wavelength_nm is None and ds.pixel_size_nm is None
    assert ds.attrs["set"] == name and ds.attrs["sample"] == 1 and ds.attrs["has_low_res"]


def test_paper_patterns_are_in_numeric_order(shared_data):
    root = shared_data / "pinn-sim-paper" / "NL_SIM" / "ccp"
    ds = import_paper(root, 1)
    for k in (2, 10, 25):  # lexicographic order would put 10.png second
        want = np.asarray(Image.open(root / "patterns" / f"{k}.png"), dtype=np.float32) / 255
        np.testing.assert_array_equal(ds.patterns[k - 1], want)
    assert not np.array_equal(ds.patterns[1], ds.patterns[9])


def test_paper_sample_round_trips_through_hdf5(shared_data, tmp_path):
    ds = import_paper(shared_data / "pinn-sim-paper" / "SIM" / "microtubules", 3)
    back = load(save(ds, tmp_path / "s3.h5"))
    for f in ("raw", "patterns", "psf", "ground_truth"):
        np.testing.assert_array_equal(getattr(back, f), getattr(ds, f))
    assert back.raw.dtype == np.uint8 and back.upsample == 4
    assert back.attrs["sample"] == 3 and back.attrs["set"] == "SIM/microtubules" and back.attrs["has_low_res"]


def test_paper_samples_and_missing_sample(shared_data):
    root = shared_data / "pinn-sim-paper" / "LPSIM" / "microtubules"
    assert paper_samples(root) == list(range(1, 11))
    with pytest.raises(ValueError) as e:
        import_paper(root, 11)
    assert "no sample 11" in _one_line_naming(e, "LPSIM/microtubules") and "1, 2, 3" in str(e.value)


def _tiny_paper_set(root, samples=(1, 2), K=4, n_patterns=None):
    rng = np.random.default_rng(0)
    for sub in ("input_frames", "patterns", "ground_truth", "low_res"):
        (root / sub).mkdir(parents=True)
    for n in samples:
        tifffile.imwrite(root / "input_frames" / f"{n}.tif", rng.integers(0, 255, (K, 8, 8), dtype=np.uint8),
                         photometric="minisblack")
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(root / "ground_truth" / f"{n}.png")
    for k in range(1, (n_patterns or K) + 1):
        Image.fromarray(np.full((32, 32), 20 * k, np.uint8)).save(root / "patterns" / f"{k}.png")
    Image.fromarray(np.pad(np.full((1, 1), 255, np.uint8), 2)).save(root / "psf.png")
    return root


def test_paper_all_writes_one_file_per_sample(tmp_path):
    root = _tiny_paper_set(tmp_path / "GRP" / "cells")
    paths = import_paper_all(root, tmp_path / "out")
    assert [p.name for p in paths] == ["GRP_cells_1.h5", "GRP_cells_2.h5"] == [paper_filename(root, n) for n in (1, 2)]
    ds = load(paths[1])
    assert ds.raw.shape == (4, 8, 8) and ds.attrs["sample"] == 2 and not ds.attrs["has_low_res"]
    np.testing.assert_allclose(ds.patterns[:, 0, 0], np.array([20, 40, 60, 80]) / 255, rtol=1e-6)
    bad = _tiny_paper_set(tmp_path / "GRP" / "bad", samples=(1, 2, 3))
    (bad / "input_frames" / "3.tif").write_bytes(b"not a TIFF")  # the last sample corrupt: nothing is written
    with pytest.raises(ValueError) as e:
        import_paper_all(bad, tmp_path / "out_bad")
    assert "unreadable raw file" in _one_line_naming(e, "3.tif") and not (tmp_path / "out_bad").exists()


def test_paper_layout_errors(tmp_path):
    root = _tiny_paper_set(tmp_path / "GRP" / "few", n_patterns=3)
    with pytest.raises(ValueError) as e:
        import_paper(root, 1)
    assert "expected 1.png..4.png" in _one_line_naming(e, "patterns") and "missing [4]" in str(e.value)
    (root / "psf.png").unlink()
    with pytest.raises(ValueError) as e:
        import_paper(root, 1)
    assert "psf.png" in _one_line_naming(e, "few")
    with pytest.raises(ValueError) as e:
        import_paper(tmp_path / "nowhere", 1)
    assert "no such folder" in _one_line_naming(e, "nowhere")


# -- the real sets, with the documented options --------------------------------------------------------
def _carrier_direction(frame: np.ndarray) -> float:
    """Direction (degrees mod 180) of the strongest off-centre spectral peak."""
    n = frame.shape[-1]
    w = np.outer(np.hanning(n), np.hanning(n))
    F = np.abs(np.fft.fft2((frame - frame.mean()) * w))
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    F[np.hypot(fy, fx) < 0.05] = 0
    i, j = np.unravel_index(F.argmax(), F.shape)
    return float(np.degrees(np.arctan2(fy[i, 0], fx[0, j])) % 180)


def test_dlsim_imports_with_documented_options(shared_data, tmp_path):
    ds = import_stack(shared_data / "real" / "dlsim-microtubules" / "raw_normal_light.tif", **DLSIM)
    assert ds.raw.shape == (15, 128, 128) and ds.raw.dtype == np.float32 and ds.fine_shape == (256, 256)
    assert ds.K == 15 and ds.attrs["angles"] == 3 and ds.attrs["phases"] == 5 and not ds.has_patterns()
    f = ds.frames()
    dirs = [[_carrier_direction(f[5 * a] - f[5 * a + j]) for j in (1, 4)] for a in range(3)]
    for a in range(3):  # angle-major: the five frames of one angle share one carrier direction
        assert abs(dirs[a][0] - dirs[a][1]) < 2, dirs
    assert min(abs(dirs[0][0] - dirs[1][0]), abs(dirs[1][0] - dirs[2][0])) > 30, dirs
    back = load(save(ds, tmp_path / "dlsim.h5"))
    assert back.optics().cutoff() == pytest.approx(0.25, abs=0.01)  # the measured widefield support


def test_rdlsim_imports_with_documented_options(shared_data):
    ds = import_stack(shared_data / "real" / "rdlsim-tirf-microtubules" / "raw.tif", **RDLSIM)
    assert ds.raw.shape == (9, 256, 256) and ds.raw.dtype == np.uint16 and ds.fine_shape == (512, 512)
    assert (ds.na, ds.wavelength_nm, ds.pixel_size_nm) == (1.3, 525.0, 62.6)


def test_psf_from_the_measured_radial_otf(shared_data):
    psf = psf_from_radial_otf(shared_data / "real" / "rdlsim-tirf-microtubules" / "otf_radial_488.npy",
                              0.0312, 62.6, 2)
    c = psf.shape[0] // 2
    assert psf.shape[0] % 2 == 1 and psf.sum() == pytest.approx(1, abs=1e-5) and psf.argmax() == c * psf.shape[1] + c
    # an ideal OTF profile gives back the Airy PSF
    step, fine_nm = 0.0312, 31.3
    f_per_px = np.arange(257) * step * fine_nm / 1000
    profile = _radial_ideal(f_per_px, 1.3, 525, fine_nm)
    mine, airy = psf_from_radial_otf(profile, step, 62.6, 2, size=31), airy_psf(1.3, 525, fine_nm, 31)
    assert np.corrcoef(mine.ravel(), airy.ravel())[0, 1] > 0.995


def test_an_otf_step_in_other_units_is_refused(shared_data, tmp_path):
    """1000 times the step (cycles per mm read as per um) gave a 3 x 3 PSF, nearly a delta; a tenth, a PSF of 623 px
    (refused where the optics say where the OTF ends); a millionth ended in an out-of-memory line."""
    otf = shared_data / "real" / "rdlsim-tirf-microtubules" / "otf_radial_488.npy"
    for step in (31.2, 0.0000312):
        with pytest.raises(ValueError, match=r"^step_per_um: with .* cycles/um per sample the OTF reaches .* where a "
                                             r"microscope's OTF ends at 2 NA / wavelength, 0.02 to 34 cycles/um"):
            psf_from_radial_otf(otf, step, 62.6, 2)
    with pytest.raises(ValueError, match=r"^step_per_um: the OTF reaches 4.99 cycles/um, beyond the fine grid's "
                                         r"sampling frequency 3.19 cycles/um \(pixel 626 nm / upsample 2\)"):
        psf_from_radial_otf(otf, 0.0312, 626, 2)  # the pixel in the wrong unit
    # with the optics given, a step a tenth of the true one (a plausible extent, 0.5 cycles/um) is off their cut-off
    kw = dict(angles=3, phases=3, upsample=2, pixel_size_nm=62.6, otf=otf, na=1.3, wavelength_nm=488)
    tifffile.imwrite(tmp_path / "raw.tif", np.random.default_rng(0).random((9, 16, 16), np.float32))
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "raw.tif", otf_step_per_um=0.00312, **kw)
    assert "the OTF reaches 0.499 cycles/um, where NA and wavelength put its cut-off at 5.33" \
        in _one_line_naming(e, "otf_radial_488.npy")
    # the true step: a 65 px PSF, larger than this 32 x 32 fine field, which the operator's padding takes
    assert import_stack(tmp_path / "raw.tif", otf_step_per_um=0.0312, **kw).psf.shape == (65, 65)
    # a measured profile's noise floor (2 %) out to 2.5 x its cut-off: where it first falls below 1 % decides
    fc = 2 * 1.4 / 0.52
    f = np.linspace(0, 2.5 * fc, 128)
    noisy = _radial_ideal(f, 1.4, 520, 1000.0) + np.abs(np.random.default_rng(0).normal(0, 0.02, f.size))
    assert psf_from_radial_otf(noisy, f[1], 65, 2, cutoff_per_um=fc).ndim == 2


def _radial_ideal(f_per_px, na, wavelength_nm, pixel_nm):
    q = np.minimum(f_per_px / (2 * na * pixel_nm / wavelength_nm), 1)
    return (2 / np.pi) * (np.arccos(q) - q * np.sqrt(1 - q**2))


# -- generic stacks on small synthetic files -------------------------------------------------------------
def _coded_stack(angles, phases, T=1, h=4, order="phase-major", dtype=np.uint16):
    """Frames whose value encodes (t, angle, phase) = 100 t + 10 a + p, written in ``order``."""
    out = []
    for t in range(T):
        idx = [(a, p) for p in range(phases) for a in range(angles)] if order == "phase-major" else \
              [(a, p) for a in range(angles) for p in range(phases)]
        out += [np.full((h, h), 100 * t + 10 * a + p, dtype) for a, p in idx]
    return np.stack(out)


def _expected(angles, phases, T=1):
    return np.array([[100 * t + 10 * (k // phases) + k % phases for k in range(angles * phases)] for t in range(T)])


def test_phase_major_tiff_is_reordered_with_its_patterns(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", _coded_stack(3, 5), photometric="minisblack")
    np.save(tmp_path / "pat.npy", _coded_stack(3, 5, h=8, dtype=np.float32))
    ds = import_stack(tmp_path / "raw.tif", angles=3, phases=5, order="phase-major", upsample=2,
                      patterns=tmp_path / "pat.npy")
    assert ds.raw.dtype == np.uint16 and ds.raw.shape == (15, 4, 4)
    np.testing.assert_array_equal(ds.raw[:, 0, 0], _expected(3, 5)[0])
    np.testing.assert_array_equal(ds.patterns[:, 0, 0], _expected(3, 5)[0])
    assert ds.attrs["source_order"] == "phase-major"


def test_time_series_and_angle_major(tmp_path):
    tifffile.imwrite(tmp_path / "series.tiff", _coded_stack(2, 3, T=3, order="angle-major"), photometric="minisblack")
    ds = import_stack(tmp_path / "series.tiff", angles=2, phases=3, upsample=1, time_points=3)
    assert ds.raw.shape == (3, 6, 4, 4) and ds.T == 3
    np.testing.assert_array_equal(ds.raw[:, :, 0, 0], _expected(2, 3, T=3))
    series = import_stack(tmp_path / "series.tiff", angles=2, phases=3, order="phase-major", upsample=1)
    np.testing.assert_array_equal(series.raw, to_angle_major(ds.raw, 2, 3))


def test_mrc_stack_and_dtypes(tmp_path):
    with mrcfile.new(tmp_path / "raw.mrc") as m:
        m.set_data(_coded_stack(3, 3, order="angle-major", dtype=np.int16))
    ds = import_stack(tmp_path / "raw.mrc", angles=3, phases=3, upsample=2, na=1.2, wavelength_nm=600,
                      pixel_size_nm=100)
    assert ds.raw.dtype == np.float32 and ds.raw.shape == (9, 4, 4)  # int16 is not a format dtype
    np.testing.assert_array_equal(ds.raw[:, 0, 0], _expected(3, 3)[0])
    with mrcfile.new(tmp_path / "f.mrc") as m:
        m.set_data(np.ones((9, 4, 4), np.float32))
    assert import_stack(tmp_path / "f.mrc", angles=3, phases=3, upsample=2).raw.dtype == np.float32


def test_big_endian_stacks_keep_their_integer_type(tmp_path):
    a = _coded_stack(3, 3, order="angle-major", dtype=np.uint16)
    with mrcfile.new(tmp_path / "be.mrc") as m:  # '>u2' != uint16: it was stored as float32
        m.set_data(a.astype(">u2"))
    tifffile.imwrite(tmp_path / "be.tif", a.astype(">u2"), byteorder=">", photometric="minisblack")
    for name in ("be.mrc", "be.tif"):
        ds = import_stack(tmp_path / name, angles=3, phases=3, upsample=2)
        assert ds.raw.dtype == np.uint16 and ds.attrs["source_dtype"] == "uint16"
        np.testing.assert_array_equal(ds.raw, a)


def test_a_tiff_written_series_by_series_is_read_whole(tmp_path):
    # tifffile.imwrite(..., append=True) per time point or per frame makes a file of several series;
    # tifffile.imread returns the first only (9 of 27 frames were imported, exit 0). Fiji shows every page.
    frames = _coded_stack(3, 3, T=3, order="angle-major")
    for t in range(3):
        tifffile.imwrite(tmp_path / "by_time.tif", frames[9 * t:9 * (t + 1)], append=True, photometric="minisblack")
    for k in range(27):
        tifffile.imwrite(tmp_path / "by_frame.tif", frames[k], append=True, photometric="minisblack")
    for name in ("by_time.tif", "by_frame.tif"):
        ds = import_stack(tmp_path / name, angles=3, phases=3, upsample=2)
        assert ds.raw.shape == (3, 9, 4, 4), name
        np.testing.assert_array_equal(ds.raw.reshape(27, 4, 4), frames)
    tifffile.imwrite(tmp_path / "mixed.tif", frames[:9], photometric="minisblack")
    tifffile.imwrite(tmp_path / "mixed.tif", np.zeros((8, 8), np.uint16), append=True, photometric="minisblack")
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "mixed.tif", angles=3, phases=3, upsample=2)
    assert "raw file holds 2 image series of different shapes or types: (8, 8) uint16, (9, 4, 4) uint16; " \
           "expected one stack of raw frames" in _one_line_naming(e, "mixed.tif")
    with tifffile.TiffWriter(tmp_path / "positions.ome.tif", ome=True) as tw:  # two fields: not frames of one
        tw.write(frames[:9], photometric="minisblack")
        tw.write(frames[9:18], photometric="minisblack")
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "positions.ome.tif", angles=3, phases=3, upsample=2)
    assert "raw file holds 2 OME images (positions or fields): (9, 4, 4) uint16" in _one_line_naming(e, "positions")


def test_psf_and_ground_truth_files(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", np.ones((9, 4, 4), np.uint8), photometric="minisblack")
    np.save(tmp_path / "psf.npy", np.pad(np.ones((1, 1), np.float32), 2))
    tifffile.imwrite(tmp_path / "gt.tif", np.arange(64, dtype=np.float32).reshape(8, 8))
    ds = import_stack(tmp_path / "raw.tif", angles=3, phases=3, upsample=2, psf=tmp_path / "psf.npy",
                      ground_truth=tmp_path / "gt.tif")
    assert ds.raw.dtype == np.uint8 and ds.psf.shape == (5, 5) and ds.ground_truth.shape == (8, 8)
    np.save(tmp_path / "even.npy", np.ones((4, 4), np.float32))
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "raw.tif", angles=3, phases=3, upsample=2, psf=tmp_path / "even.npy")
    assert "odd" in _one_line_naming(e, "even.npy")  # the file whose problem it is, not the raw stack
    tifffile.imwrite(tmp_path / "gt4.tif", np.arange(16, dtype=np.float32).reshape(4, 4))
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "raw.tif", angles=3, phases=3, upsample=2, ground_truth=tmp_path / "gt4.tif")
    assert "/ground_truth: expected shape (8, 8)" in _one_line_naming(e, "gt4.tif")


def test_colour_stacks_and_2d_otf_images_are_refused_not_scrambled(tmp_path):
    """An RGB stack flattened as frames would turn its colours into rows; a 2-D OTF image raveled, into a profile.
    (tifffile itself writes an array whose last axis is 3 or 4 long as colour unless told otherwise: the grey
    4 x 4 frames of the other tests here say photometric="minisblack".)"""
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((9, 16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "rgb.tif", angles=3, phases=3, upsample=2)
    assert "its pixels are colour (3 samples each" in _one_line_naming(e, "rgb.tif")
    tifffile.imwrite(tmp_path / "raw.tif", np.random.default_rng(0).random((9, 16, 16), np.float32))
    np.save(tmp_path / "otf.npy", np.ones((5, 5)))
    with pytest.raises(ValueError) as e:
        import_stack(tmp_path / "raw.tif", angles=3, phases=3, upsample=2, pixel_size_nm=100, otf=tmp_path / "otf.npy",
                     otf_step_per_um=0.05)
    assert "expected a 1-D radial profile" in _one_line_naming(e, "otf.npy")
    psf = psf_from_radial_otf(np.linspace(1, 0, 20)[None], 0.25, 100, 2)  # a (1, n) profile is one still
    assert psf.ndim == 2 and psf.shape[0] % 2 == 1


def test_a_damaged_file_is_one_line_without_the_readers_own_complaints(tmp_path):
    """mrcfile printed eight RuntimeWarning lines about a header, tifffile logged 'invalid offset to first page'
    twice, before our one line."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    (tmp_path / "bad.mrc").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    (tmp_path / "broken.tif").write_bytes(b"II*\x00\xff\xff\xff\x0f")
    for name in ("bad.mrc", "broken.tif"):
        res = subprocess.run([sys.executable, "-m", "cusim.cli", "import", "stack", str(tmp_path / name), "--angles",
                              "3", "--phases", "3", "--upsample", "2", "-o", str(tmp_path / "x.h5")],
                             capture_output=True, text=True, timeout=120)
        lines = (res.stdout + res.stderr).strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / name}"), lines
    assert not (tmp_path / "x.h5").exists()


def test_bad_stacks_fail_with_one_line_naming_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((14, 4, 4), np.uint16), photometric="minisblack")
    cases = [
        (dict(path=tmp_path / "raw.tif"), "raw.tif: 14 frames, expected a multiple of angles*phases = 15"),
        (dict(path=tmp_path / "raw.png"), "unsupported raw file type '.png'"),
        (dict(path=tmp_path / "gone.tif"), "no such raw file"),
        (dict(path=tmp_path / "raw.tif", patterns=tmp_path / "p.txt", angles=2, phases=7), "unsupported patterns"),
    ]
    (tmp_path / "junk.mrc").write_bytes(b"not an mrc file at all")
    cases.append((dict(path=tmp_path / "junk.mrc"), "unreadable raw file"))
    for kwargs, want in cases:
        args = dict(angles=3, phases=5, upsample=2) | kwargs
        with pytest.raises(ValueError) as e:
            import_stack(args.pop("path"), **args)
        assert want in _one_line_naming(e, args.get("patterns", kwargs["path"]).name), str(e.value)
    with pytest.raises(DatasetError, match="time_points"):
        import_stack(tmp_path / "raw.tif", angles=7, phases=2, upsample=2, time_points=2)
    with pytest.raises(DatasetError, match="order: expected one of angle-major, phase-major"):
        import_stack(tmp_path / "raw.tif", angles=7, phases=2, upsample=2, order="phase_major")
