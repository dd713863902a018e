"""OME outputs: `cusim run --tiff` writes an OME-TIFF that tifffile reads back with the fine grid's
physical pixel size, the axes and the provenance; `cusim export --ome-zarr` writes an OME-Zarr image that
ome-zarr-py's reader opens with its multiscale pyramid at the right scale; outputs of another kind are
never replaced. Tiny simulated data (64 x 64 fine grid, 100 nm camera pixel, upsample 2: 0.05 um)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import cusim
from cusim.cli import app

FINE_UM = 0.05


def cli(*args, code=0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A 2-time-point series with a widefield reconstruction (T, H, W)."""
    path = tmp_path_factory.mktemp("ome") / "series.h5"
    cli("simulate", "-o", path, "--size", 64, "--upsample", 2, "--pixel-size-nm", 100, "-T", 2, "--threads", 1)
    cli("run", path, "--method", "widefield", "--threads", 1)
    return path


def ome_image(path):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        meta = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        return series.axes, series.asarray(), meta


def test_run_tiff_is_an_ome_tiff_with_the_fine_pixel_size_axes_and_provenance(tmp_path):
    sim = tmp_path / "s.h5"
    cli("simulate", "-o", sim, "--size", 64, "--upsample", 2, "--pixel-size-nm", 100, "--threads", 1)
    cli("run", sim, "--method", "wiener", "--tiff", tmp_path / "w.ome.tif", "--threads", 1)
    axes, data, meta = ome_image(tmp_path / "w.ome.tif")
    assert axes == "YX"
    np.testing.assert_array_equal(data, cusim.load(sim).recons["wiener"].image)
    px = meta["Pixels"]
    assert px["PhysicalSizeX"] == pytest.approx(FINE_UM) and px["PhysicalSizeY"] == pytest.approx(FINE_UM)
    assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == "µm"
    prov = json.loads(meta["Description"])
    assert prov["method"] == "wiener" and prov["dataset"] == "/recon/wiener" and "w" in prov["params"]
    assert prov["source"] == str(sim.resolve())


def test_export_writes_a_time_series_as_ome_zarr_and_ome_tiff_at_the_right_scale(series, tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = cli("export", series, "--ome-zarr", tmp_path / "s.zarr", "--ome-tiff", tmp_path / "s.ome.tif").output
    assert "ome-zarr:" in out and "ome-tiff:" in out
    image = cusim.load(series).recons["widefield"].image
    assert image.shape == (2, 64, 64)
    node = next(iter(Reader(parse_url(str(tmp_path / "s.zarr")))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, "micrometer", "micrometer"]
    levels = [np.asarray(d) for d in node.data]
    assert [lv.shape for lv in levels] == [(2, 64, 64), (2, 32, 32)]  # the pyramid stops at 32 px a side
    np.testing.assert_array_equal(levels[0], image)
    scales = [next(t["scale"] for t in ts if t["type"] == "scale") for ts in node.metadata["coordinateTransformations"]]
    np.testing.assert_allclose(scales, [[1, FINE_UM, FINE_UM], [1, 2 * FINE_UM, 2 * FINE_UM]])
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["cusim"]["method"] == "widefield"
    axes, data, meta = ome_image(tmp_path / "s.ome.tif")
    assert axes == "TYX" and data.shape == (2, 64, 64)
    assert meta["Pixels"]["PhysicalSizeX"] == pytest.approx(FINE_UM)


def test_export_never_replaces_what_is_not_its_own_kind_and_names_what_is_missing(series, tmp_path):
    zarr_dir = tmp_path / "s.zarr"
    cli("export", series, "--ome-zarr", zarr_dir)
    before = sorted(p.name for p in zarr_dir.rglob("*"))
    res = cli("export", series, "--ome-zarr", zarr_dir, code=1)
    assert "exists already; use --force" in res.output and "Traceback" not in res.output
    cli("export", series, "--ome-zarr", zarr_dir, "--force")  # an OME-Zarr is replaced when forced
    assert sorted(p.name for p in zarr_dir.rglob("*")) == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    res = cli("export", series, "--ome-zarr", tmp_path / "mine", "--force", code=1)
    assert "not an OME-Zarr image; it is not replaced" in res.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    res = cli("export", series, "--ome-zarr", series, code=1)
    assert "is the input" in res.output
    res = cli("export", series, "--ome-zarr", tmp_path / "x.zarr", "--name", "pinn", code=1)
    assert "/recon/pinn: no such reconstruction; expected one of ['widefield']" in res.output
    assert not (tmp_path / "x.zarr").exists()
    res = cli("export", series, code=1)
    assert "give --ome-zarr DIR and/or --ome-tiff FILE" in res.output
    res = cli("export", series, "--ome-zarr", tmp_path / "y.h5", code=1)  # a folder under an HDF5 file's name
    assert "cusim writes an OME-Zarr folder here, not .h5" in res.output and not (tmp_path / "y.h5").exists()
    res = cli("export", series, "--ome-zarr", tmp_path / "both", "--ome-tiff", tmp_path / "both", code=1)
    assert "is also the --ome-zarr" in res.output and not (tmp_path / "both").exists()  # not the Zarr, then refused
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_export_writes_nothing_when_one_of_its_outputs_cannot_be_written(series, tmp_path, monkeypatch):
    """A folder that takes no new file (write-protected; simulated, as root may write anywhere) for the OME-TIFF:
    refused before the OME-Zarr is written."""
    import errno  # noqa: PLC0415

    from cusim import ome  # noqa: PLC0415

    made = ome.make_temporary

    def protected(target):
        if target.parent.name == "ro":
            raise PermissionError(errno.EACCES, "Permission denied", str(target.parent / ".s.tif.tmp"))
        return made(target)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(ome, "make_temporary", protected)
    res = cli("export", series, "--ome-zarr", tmp_path / "s.zarr", "--ome-tiff", tmp_path / "ro" / "s.tif", code=1)
    assert f"--ome-tiff: {tmp_path / 'ro' / 's.tif'}: permission denied" in res.output, res.output
    assert not (tmp_path / "s.zarr").exists()


def test_a_missing_optional_extra_is_one_line_naming_the_extra(series, tmp_path, monkeypatch):
    # Without cusim[ome] (or cusim[dask]) the export (or a run over several files) ended in a traceback.
    monkeypatch.setitem(sys.modules, "ome_zarr.writer", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "distributed", None)
    res = cli("export", series, "--ome-zarr", tmp_path / "s.zarr", code=1)
    assert res.output.strip() == ("error: OME-Zarr export (--ome-zarr) needs ome_zarr, which is not installed: "
                                  "pip install 'cusim[ome]'"), res.output
    assert not list(tmp_path.iterdir())
    res = cli("run", series, series.with_name("other.h5"), "--method", "widefield", code=1)
    assert res.output.strip() == ("error: reconstructing several inputs on a Dask cluster needs distributed, which is "
                                  "not installed: pip install 'cusim[dask]'"), res.output
