"""The data verbs end to end: import, simulate, run --method widefield, info."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from cusim import io, metrics
from cusim.cli import app
from cusim.optics import Widefield


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, res.output  # Typer's runner puts stderr into the output too


def test_widefield_on_paper_sample_1_scores_the_bicubic_baseline(shared_data, tmp_path):
    h5 = tmp_path / "mt1.h5"
    res, text = cli("import", "paper", shared_data / "pinn-sim-paper" / "SIM" / "microtubules", "--sample", 1, "-o", h5)
    assert res.exit_code == 0, text
    res, text = cli("run", h5, "--method", "widefield", "--norm", "minmax", "--tiff", tmp_path / "wf.tif",
                    "--figure", tmp_path / "wf.png")
    assert res.exit_code == 0, text
    assert "PSNR" in text and "widefield" in text
    rec = io.load(h5).recons["widefield"]
    m = rec.attrs["metrics"]
    assert (m["norm"], m["border_px"], m["frc_threshold"]) == ("minmax", 20, "0.5")
    assert m["psnr_db"] == pytest.approx(13.8, abs=0.6)
    assert m["ssim"] == pytest.approx(0.55, abs=0.04)
    for key in ("method", "params", "cusim_version", "created", "device", "runtime_s"):
        assert key in rec.attrs
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "wf.tif"), rec.image)
    assert (tmp_path / "wf.png").read_bytes()[:4] == b"\x89PNG"
    # a second run keeps the first unless --force
    res, text = cli("run", h5, "--method", "widefield")
    assert res.exit_code == 1 and "exists already; use --force" in text
    assert cli("run", h5, "--method", "widefield", "--force")[0].exit_code == 0
    res, text = cli("info", h5)
    assert res.exit_code == 0 and "/recon/widefield" in text and "PSNR" in text


def test_widefield_frc_resolution_matches_the_simulated_otf_cutoff(tmp_path):
    h5 = tmp_path / "sim.h5"
    res, text = cli("simulate", "-o", h5, "--size", 256, "--upsample", 2, "--snr", 50, "--seed", 3)
    assert res.exit_code == 0, text
    ds = io.load(h5)
    assert cli("run", h5, "--method", "widefield")[0].exit_code == 0
    image = io.load(h5).recons["widefield"].image
    cutoff = Widefield(ds.na, ds.wavelength_nm, ds.pixel_size_nm).cutoff(ds.upsample)
    measured = metrics.frc(image, ds.ground_truth, threshold="1/7").cutoff
    assert measured == pytest.approx(cutoff, rel=0.10)


def test_simulate_writes_a_complete_dataset_and_refuses_to_overwrite(tmp_path):
    h5 = tmp_path / "s.h5"
    assert cli("simulate", "-o", h5, "--size", 64, "--family", "nonlinear", "--upsample", 4)[0].exit_code == 0
    ds = io.load(h5)
    assert ds.K == 25 and ds.ground_truth.shape == (64, 64) and ds.pattern_params.harmonics is not None
    res, text = cli("simulate", "-o", h5, "--size", 64)
    assert res.exit_code == 1 and "exists already" in text


@pytest.mark.parametrize("args,message", [
    (["simulate", "--size", 63, "--upsample", 2], "--size: expected H and W divisible by upsample=2"),
    (["simulate", "--family", "moire"], "--family: expected one of"),
    (["simulate", "--snr", -3], "--snr: expected a finite number > 0"),
    (["simulate", "-T", 0], "--time-points: expected an integer >= 1"),  # the options' names, not the library's
    # a unit slip, micrometres for nanometres (the PSF was a thousand times too narrow or too wide)
    (["simulate", "--wavelength-nm", 0.525], "--wavelength-nm: expected nanometres, 100 to 2000, got 0.525 (a value "
                                             "in micrometres?)"),
    (["simulate", "--pixel-size-nm", 0.065], "--pixel-size-nm: expected nanometres, 1 to 50000, got 0.065"),
    (["import", "stack", "RAW", "--angles", 3, "--phases", 3, "--upsample", 2], "no such raw file"),
    (["import", "paper", "/nonexistent/set", "--sample", 1], "nonexistent"),
    (["import", "paper", "/nonexistent/set"], "exactly one of --sample N or --all"),
])
def test_data_verbs_exit_1_with_one_line_on_bad_input(tmp_path, args, message):
    args = [a if a != "RAW" else tmp_path / "missing.tif" for a in args]
    res, text = cli(*args, "-o", tmp_path / "out.h5")
    assert res.exit_code == 1, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], text
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("name,args", [
    ("dlsim-microtubules/raw_normal_light.tif",
     ["--angles", 3, "--phases", 5, "--binning", 2, "--upsample", 2, "--na", 1.49, "--wavelength-nm", 525,
      "--pixel-size-nm", 44]),
    ("rdlsim-tirf-microtubules/raw.tif",
     ["--angles", 3, "--phases", 3, "--upsample", 2, "--na", 1.3, "--wavelength-nm", 525, "--pixel-size-nm", 62.6]),
])
def test_real_sets_import_with_the_documented_options(shared_data, tmp_path, name, args):
    h5 = tmp_path / "real.h5"
    res, text = cli("import", "stack", shared_data / "real" / name, *args, "-o", h5)
    assert res.exit_code == 0, text
    ds = io.load(h5)
    assert not ds.has_patterns() and ds.na is not None
    assert cli("run", h5, "--method", "widefield")[0].exit_code == 0


def test_import_stack_takes_a_measured_radial_otf_as_the_psf(shared_data, tmp_path):
    from cusim.importers import psf_from_radial_otf

    d = shared_data / "real" / "rdlsim-tirf-microtubules"
    base = ["import", "stack", d / "raw.tif", "--angles", 3, "--phases", 3, "--upsample", 2, "--na", 1.3,
            "--wavelength-nm", 525]
    h5 = tmp_path / "otf.h5"
    res, text = cli(*base, "--pixel-size-nm", 62.6, "--otf", d / "otf_radial_488.npy", "--otf-step-per-um", 0.0312,
                    "-o", h5)
    assert res.exit_code == 0 and "PSF 65x65 from the radial OTF" in " ".join(text.split()), text
    ds = io.load(h5)
    np.testing.assert_array_equal(ds.psf, psf_from_radial_otf(d / "otf_radial_488.npy", 0.0312, 62.6, 2))
    assert ds.attrs["psf_source"].endswith("otf_radial_488.npy, 0.0312 cycles/um per sample")
    bad = [(["--pixel-size-nm", 62.6, "--otf", d / "otf_radial_488.npy"], "--otf-step-per-um: needed with otf"),
           (["--pixel-size-nm", 62.6, "--otf-step-per-um", 0.03], "--otf-step-per-um: given without otf"),
           (["--pixel-size-nm", 62.6, "--otf", d / "otf_radial_488.npy", "--otf-step-per-um", 0], "> 0, got 0"),
           (["--otf", d / "otf_radial_488.npy", "--otf-step-per-um", 0.03], "--otf: needs pixel_size_nm"),
           (["--pixel-size-nm", 62.6, "--otf", d / "raw.tif", "--otf-step-per-um", 0.03], "expected one of .npy"),
           (["--pixel-size-nm", 62.6, "--otf", d / "otf_radial_488.npy", "--otf-step-per-um", 0.03, "--psf",
             d / "otf_radial_488.npy"], "--otf: give a PSF or a radial OTF, not both")]
    for extra, message in bad:
        out = tmp_path / "bad.h5"
        res, text = cli(*base, *extra, "-o", out)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert res.exit_code == 1 and len(lines) == 1 and message in lines[0], (extra, text)
        assert not out.exists()


def test_a_field_too_small_to_score_is_reconstructed_and_stored_unscored(tmp_path):
    # SSIM's 11 px window did not fit a 12 x 12 image less its border: scikit-image's error after the whole run,
    # and the result was not stored.
    path = tmp_path / "tiny.h5"
    assert cli("simulate", "-o", path, "--size", 12, "--threads", 1)[0].exit_code == 0
    res, text = cli("run", path, "--method", "wiener")
    assert res.exit_code == 0, text
    assert "note: metrics: the 12x12 image is smaller than SSIM's 11 px window once a 1 px border is left out" in text
    assert "wiener" in io.load(path).recons and "metrics" not in io.load(path).recons["wiener"].attrs
    res, text = cli("run", path, "--method", "wiener", "--name", "w2", "--metrics-border", 1)
    assert res.exit_code == 1 and "--metrics-border: a 1 px border leaves less of the 12x12 image than SSIM's 11 px" \
        in text and "expected 0 <= border <= 0" in text, text
    smaller = tmp_path / "smaller.h5"  # below the window with any border: said so, not "expected 0 <= border <= 0"
    assert cli("simulate", "-o", smaller, "--size", 8, "--threads", 1)[0].exit_code == 0
    res, text = cli("run", smaller, "--method", "wiener", "--metrics-border", 0)
    assert res.exit_code == 1 and "the 8x8 image is smaller than SSIM's 11 px window with any border" in text, text


def test_info_names_both_pattern_sources_the_family_and_the_units_of_k():
    # An estimate of hexagonal frames read like linear SIM's; pattern arrays beside parameters were not shown;
    # |k| was labelled cyc/px where it meant fine pixels (cusim estimate prints camera pixels).
    import dataclasses  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from cusim import simulate  # noqa: PLC0415
    from cusim.report import dataset_summary  # noqa: PLC0415

    ds = simulate(shape=(64, 64), family="hexagonal", seed=0, device="cpu")
    ds = dataclasses.replace(ds, pattern_kind="estimated", patterns=ds.pattern_params.render(ds.fine_shape))
    console = Console(record=True, width=200)
    console.print(dataset_summary(ds))
    text = console.export_text()
    k = np.hypot(*ds.pattern_params.k.T)
    assert "parametric (estimated, hexagonal)" in text and f"{k.min():.4f}..{k.max():.4f} cycles/fine px" in text
    assert f"({2 * k.min():.4f}..{2 * k.max():.4f} cycles/camera px)" in text
    assert "pattern arrays" in text and "(7, 64, 64) (iterative and pinn use these; wiener its carriers from the " \
        "parameters above, phases and modulation from these)" in text


def test_a_series_table_and_figure_say_what_they_show(tmp_path, monkeypatch):
    """The table is the mean over the time points and the figure time point 0; neither said so."""
    import cusim  # noqa: PLC0415

    path = io.save(cusim.simulate(shape=(32, 32), T=2, seed=0), tmp_path / "ts.h5")
    res, text = cli("run", path, "--method", "wiener", "--figure", tmp_path / "f.pdf")
    assert res.exit_code == 0, text
    assert "mean over the 2 time points)" in " ".join(text.split())
    from cusim.report import save_figure  # noqa: PLC0415

    ds = io.load(path)
    seen = []
    import matplotlib.figure  # noqa: PLC0415

    real = matplotlib.figure.Figure.suptitle  # the figure's title as drawn (a PDF or SVG holds glyphs, not text)
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", lambda self, t, **kw: seen.append(t) or real(self, t, **kw))
    save_figure(tmp_path / "g.png", ds, ds.recons["wiener"].image, "wiener")
    assert seen == ["time point 0 of 2"]
    # info and the stored record say so too (info's line read like one image's score)
    assert ds.recons["wiener"].attrs["metrics"]["time_points"] == 2
    res, text = cli("info", path)
    assert res.exit_code == 0 and "mean over the 2 time points" in " ".join(text.replace("│", " ").split()), text
