"""Never lose a user's data (issue 17), through the command line as a user meets it: outputs that would
destroy an input or another file are refused in one line before any work (every pre-existing file
byte-identical afterwards, no temporary file left), concurrent runs keep both results, a symlinked
dataset keeps its link, results can go to another file, Ctrl-C/SIGTERM say what was kept, one scoring
convention, a region of interest, thread control."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import cusim
from cusim import io
from cusim.cli import app


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def one_line_error(code, text, *needles):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), text
    for n in needles:
        assert n in lines[0], (n, lines[0])


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def no_temporaries(folder):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def sim(tmp_path):
    return io.save(cusim.simulate(shape=(64, 64), seed=0), tmp_path / "s.h5")


OVERWRITES = {  # case of the report -> (arguments, what the one line must say)
    "tiff onto the dataset": (["run", "{s}", "--tiff", "{s}"], "is the input"),
    "figure onto the dataset": (["run", "{s}", "--figure", "{s}"], "unknown figure format '.h5'"),
    "figure.png onto the dataset": (["run", "{s}", "--figure", "{link_png}"], "is the input"),
    "estimate figure onto the dataset": (["estimate", "{s}", "--figure", "{s}", "--no-write"], "unknown figure format"),
    "tiff onto an existing tiff": (["run", "{s}", "--tiff", "{tif}"], "exists already; use --force"),
    "tiff onto a PNG, even forced": (["run", "{s}", "--tiff", "{png_as_tif}", "--force"], "is a PNG file, not TIFF"),
    "figure onto an existing figure": (["run", "{s}", "--figure", "{png}"], "exists already; use --force"),
    "folder as tiff": (["run", "{s}", "--tiff", "{folder}"], "is a folder"),
    "folder as --out": (["run", "{s}", "--out", "{folder}"], "is a folder"),
    "dataset as its own --out": (["run", "{s}", "--out", "{s}"], "is the input"),
    "import stack onto its raw, forced": (["import", "stack", "{tif}", "-o", "{tif}", "--angles", "1", "--phases", "1",
                                           "--upsample", "1", "--force"], "is the input"),
    "simulate onto a TIFF, forced": (["simulate", "-o", "{tif}", "--size", "32", "--force"], "is a TIFF file, not HDF5"),
    "checkpoint every 0": (["run", "{s}", "--method", "pinn", "--checkpoint-every", "0"], "--checkpoint-every: expected"),
    "checkpoint every -1": (["run", "{s}", "--method", "pinn", "--checkpoint-every", "-1"], "--checkpoint-every"),
    "roi without --out": (["run", "{s}", "--roi", "0", "0", "32", "32"], "--roi: the result of a region"),
    "a tiff where nothing can be written, before a PINN run": (["run", "{s}", "--method", "pinn", "--tiff",
                                                                "/proc/cusim-test.tif"], "/proc/cusim-test.tif"),
    "an existing result of that name": (["run", "{s}", "--name", "first"], "/recon/first: exists already"),
    "a margin whose grid needs 100 GiB": (["run", "{s}", "--method", "iterative", "--margin-camera", "10000"],
                                          "GiB of memory is available"),
    "a simulation that needs 2 TiB": (["simulate", "-o", "{folder}/big.h5", "--size", "100000"],
                                      "GiB of memory is available"),
    "an HDF5 file under a TIFF's name": (["simulate", "-o", "{folder}/new.tif", "--size", "32"],
                                         "cusim writes HDF5 here, not .tif"),
    "a result to an HDF5 file under a PNG's name": (["run", "{s}", "--out", "{folder}/r.png"], "not .png"),
    "a result named '.'": (["run", "{s}", "--name", "."], "--name: "),
    "a result named ' '": (["run", "{s}", "--name", " "], "invalid name"),
    "the figure onto the tiff": (["run", "{s}", "--tiff", "{folder}/x.png", "--figure", "{folder}/x.png"],
                                 "is also the --tiff"),
    "the tiff onto a new --out": (["run", "{s}", "--out", "{folder}/res", "--tiff", "{folder}/res"],  # the TIFF replaced
                                  "--tiff: {folder}/res is also the --out"),  # the HDF5 result written a moment before
    "a PINN that diverges, after its steps": (["run", "{s}", "--method", "pinn", "--steps", "3", "--stop", "max",
                                               "--lr", "1e30"], "--lr: the network's fit diverged"),
}


@pytest.mark.parametrize("case", list(OVERWRITES))
def test_an_output_that_would_destroy_data_is_refused_in_one_line(tmp_path, sim, case):
    tifffile.imwrite(tmp_path / "w.tif", np.zeros((4, 4), np.float32))
    png = tmp_path / "f.png"
    assert cli("run", sim, "--figure", png, "--name", "first")[0] == 0
    (tmp_path / "p.tif").write_bytes(png.read_bytes())  # a PNG under a .tif name
    (tmp_path / "folder").mkdir()
    (tmp_path / "s.png").symlink_to(sim)  # the dataset under a figure's name
    args, needle = OVERWRITES[case]
    subst = {"s": sim, "tif": tmp_path / "w.tif", "png": png, "png_as_tif": tmp_path / "p.tif",
             "folder": tmp_path / "folder", "link_png": tmp_path / "s.png"}
    before = digests(tmp_path)
    code, text = cli(*[a.format(**subst) if "{" in a else a for a in args])
    one_line_error(code, text, needle.format(**subst) if "{" in needle else needle)
    assert digests(tmp_path) == before and no_temporaries(tmp_path)


def test_a_constant_ground_truth_is_refused_at_import_and_scores_nothing_in_an_older_file(tmp_path, sim):
    raw, gt = tmp_path / "raw.tif", tmp_path / "gt.tif"
    tifffile.imwrite(raw, io.load(sim).raw)
    tifffile.imwrite(gt, np.zeros((64, 64), np.float32))
    code, text = cli("import", "stack", raw, "--angles", "3", "--phases", "3", "--upsample", "2", "--ground-truth", gt,
                     "-o", tmp_path / "i.h5")
    one_line_error(code, text, "the ground truth is one value (0) everywhere")
    assert not (tmp_path / "i.h5").exists()
    ds = io.load(sim)
    ds.ground_truth = np.ones_like(ds.ground_truth)
    old = io.save(ds, tmp_path / "old.h5")  # made otherwise: the run keeps its result and prints no scores
    code, text = cli("run", old, "--method", "wiener")
    assert code == 0 and "against /ground_truth" not in text, text
    assert "metrics" not in io.load(old).recons["wiener"].attrs


def test_the_demo_replaces_its_own_outputs_only_and_checks_its_options_before_making_its_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "demo.h5").write_text("my notes")
    before = digests(tmp_path / "d")
    one_line_error(*cli("demo", "--out", tmp_path / "d", "--size", "32", "--steps", "2"), "a file cusim did not write")
    assert digests(tmp_path / "d") == before
    one_line_error(*cli("demo", "--out", tmp_path / "e", "--steps", "0"), "--steps: expected an integer >= 1")
    one_line_error(*cli("demo", "--out", tmp_path / "e", "--seed", "-1"), "--seed: expected an integer >= 0")
    assert not (tmp_path / "e").exists()


def test_an_frc_below_the_threshold_from_the_start_prints_as_no_correlation():
    from cusim.report import frc_text  # noqa: PLC0415

    assert frc_text(0.0, 30.0) == "none (no correlation)" and frc_text(None) == "beyond Nyquist"
    # which pixel: the fine grid's (a paper set's file has no pixel size to give nm beside it)
    assert frc_text(0.25, 30.0) == "0.250 cyc/fine px (120 nm)" and frc_text(0.25) == "0.250 cyc/fine px"


def test_force_replaces_an_output_of_the_same_kind_and_the_figure_follows_its_suffix(tmp_path, sim):
    tif, pdf = tmp_path / "w.tif", tmp_path / "f.pdf"
    tifffile.imwrite(tif, np.zeros((4, 4), np.float32))
    code, text = cli("run", sim, "--tiff", tif, "--figure", pdf, "--force")
    assert code == 0, text
    assert tifffile.imread(tif).shape == (64, 64) and pdf.read_bytes()[:4] == b"%PDF"
    code, text = cli("estimate", sim, "--figure", tmp_path / "peaks.svg", "--no-write")
    assert code == 0 and b"<svg" in (tmp_path / "peaks.svg").read_bytes()[:400]


@pytest.mark.slow
def test_import_paper_all_twice_keeps_the_stored_reconstructions_unless_forced(tmp_path, shared_data):
    set_dir = shared_data / "pinn-sim-paper" / "LPSIM" / "microtubules"
    out = tmp_path / "paper"
    assert cli("import", "paper", set_dir, "--all", "-o", out)[0] == 0
    first = sorted(out.iterdir())[0]
    assert cli("run", first, "--name", "mine")[0] == 0
    before = digests(out)
    code, text = cli("import", "paper", set_dir, "--all", "-o", out)
    one_line_error(code, text, "exists already; use --force")
    assert digests(out) == before and "mine" in io.load(first).recons
    assert cli("import", "paper", set_dir, "--all", "-o", out, "--force")[0] == 0
    assert "mine" not in io.load(first).recons


RUN_ONE = "import sys; from cusim.cli import app; sys.argv = ['cusim', *sys.argv[1:]]; app()"


@pytest.mark.slow
def test_two_concurrent_runs_on_one_file_keep_both_results_twenty_times_over(tmp_path):
    path = io.save(cusim.simulate(shape=(32, 32), seed=1), tmp_path / "c.h5")
    for i in range(20):
        procs = [subprocess.Popen([sys.executable, "-c", RUN_ONE, "run", str(path), "--name", f"r{i}{side}",
                                   "--metrics-border", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for side in "ab"]
        for p in procs:
            assert p.wait(timeout=120) == 0, p.stderr.read().decode()
        assert {f"r{i}a", f"r{i}b"} <= set(io.load(path).recons), i
    assert len(io.load(path).recons) == 40 and no_temporaries(tmp_path)


def test_a_symlinked_dataset_keeps_its_link_and_its_target_gets_the_result(tmp_path, sim):
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "l.h5"
    link.symlink_to(sim)
    assert cli("run", link, "--name", "via_link")[0] == 0
    assert link.is_symlink() and os.path.samefile(link, sim)
    assert "via_link" in io.load(sim).recons


def test_a_read_only_input_is_only_read_when_the_result_goes_elsewhere(tmp_path, sim):
    out = tmp_path / "out" / "r.h5"
    out.parent.mkdir()
    before = digests(tmp_path)
    os.chmod(sim, 0o444)
    try:
        code, text = cli("run", sim, "--method", "wiener", "--out", out)
        assert code == 0, text
    finally:
        os.chmod(sim, 0o644)
    assert digests(tmp_path) == before  # the input, byte for byte
    got = io.load(out)
    assert "wiener" in got.recons and "wiener" not in io.load(sim).recons
    np.testing.assert_array_equal(got.raw, io.load(sim).raw)
    code, text = cli("run", sim, "--method", "wiener", "--out", out)  # the same name there: refused
    one_line_error(code, text, "exists already")


def test_a_region_of_interest_is_a_dataset_of_its_own_with_the_whole_fields_context(tmp_path, sim):
    out = tmp_path / "roi.h5"
    code, text = cli("run", sim, "--method", "iterative", "--iterations", "5", "--roi", 16, 8, 32, 40, "--out", out)
    assert code == 0, text
    got = io.load(out)
    assert got.raw.shape[-2:] == (16, 20) and got.recons["iterative"].image.shape == (32, 40)
    np.testing.assert_array_equal(got.ground_truth, io.load(sim).ground_truth[16:48, 8:48])
    assert got.recons["iterative"].attrs["margin_camera"] > 0  # the pattern parameters reach past the region
    code, text = cli("run", sim, "--roi", 1, 0, 32, 32, "--out", tmp_path / "bad.h5")
    one_line_error(code, text, "expected multiples of upsample")


def test_run_info_and_demo_score_by_one_named_convention(tmp_path, sim):
    code, text = cli("run", sim, "--name", "wf")
    assert code == 0 and "least-squares fit" in text and "FRC at 0.5" in text
    stored = io.load(sim).recons["wf"].attrs["metrics"]
    assert (stored["norm"], stored["border_px"], stored["frc_threshold"]) == ("lstsq", 8, "0.5")  # 64 px: 64 // 8
    code, text = cli("info", sim)
    assert code == 0 and f"PSNR {stored['psnr_db']:.2f} dB" in text and "least-squares fit" in text


def test_the_metrics_border_adapts_to_small_images_and_the_old_flag_still_works(tmp_path):
    small = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "small.h5")
    code, text = cli("run", small)
    assert code == 0, text  # the former fixed 20 px border refused every image under 40 px
    assert io.load(small).recons["widefield"].attrs["metrics"]["border_px"] == 4
    code, text = cli("run", small, "--crop", 2, "--name", "c")
    assert code == 0 and "note: --crop is deprecated" in text
    assert io.load(small).recons["c"].attrs["metrics"]["border_px"] == 2
    one_line_error(*cli("run", small, "--metrics-border", 16, "--name", "d"), "--metrics-border: a 16 px border")


def test_threads_sets_every_pool(sim):
    from threadpoolctl import threadpool_info

    from cusim import _threads

    try:
        assert cli("run", sim, "--threads", 1, "--name", "t1")[0] == 0
        assert _threads.threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
        one_line_error(*cli("run", sim, "--threads", 0, "--name", "t0"), "threads: expected an integer >= 1")
    finally:
        _threads.set_threads(None)
    assert _threads.threads() == _threads.available_cores()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_pinn_says_what_was_kept_and_how_to_resume(tmp_path, sig):
    path = io.save(cusim.simulate(shape=(64, 64), seed=3), tmp_path / "i.h5")
    ckpt = tmp_path / ".i.h5.pinn.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", RUN_ONE, "run", str(path), "--method", "pinn", "--steps", "5000",
                             "--stop", "max", "--checkpoint-every", "5", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint was written"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:  # never leave a 5000-step run behind
            proc.kill()
            proc.wait()
    text = proc.stderr.read().decode()
    assert "interrupted at step" in text and str(ckpt) in text and "--resume" in text, text
    assert ckpt.exists() and no_temporaries(tmp_path) and "pinn" not in io.load(path).recons


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB file system (tmpfs), where it can be mounted (root in a container that allows it)."""
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(small)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here to fill a disk")
    try:
        yield small
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_the_room_for_a_result_is_counted_as_the_write_will_take_it(full_disk, tmp_path, monkeypatch):
    """A new --out starts as a copy of the input, so its room is the input's size and the image's (only the image's
    was counted: the run went on and its result was refused after it); a file replaced whole (--force) needs no room
    for a copy of itself (its size was counted twice)."""
    src = io.save(cusim.simulate(shape=(64, 64), seed=0), tmp_path / "s.h5")
    size = src.stat().st_size
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - size - 16 * 1024))  # room for the copy, not the image
    computed = []
    monkeypatch.setattr(cusim.recon, "reconstruct", lambda *a, **k: computed.append(1) / 0)
    code, text = cli("run", src, "--method", "widefield", "--out", full_disk / "r.h5")
    one_line_error(code, text, "no space left on device", "KiB are free")
    assert computed == [] and sorted(p.name for p in full_disk.iterdir()) == ["filler"]
    (full_disk / "filler").unlink()
    ds = cusim.simulate(shape=(128, 128), seed=0)
    big = io.save(ds, full_disk / "big.h5")
    need, size = io.stored_bytes(ds.raw, ds.patterns, ds.psf, ds.ground_truth), big.stat().st_size
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - size - need - size // 2))  # room for one, not two
    code, text = cli("simulate", "-o", big, "--size", 128, "--force")  # needs its own size again, not twice
    assert code == 0, text


@pytest.mark.parametrize("differs", ["raw", "optics", "psf", "patterns"])
def test_an_out_file_of_another_acquisition_is_refused_before_the_run(tmp_path, monkeypatch, differs):
    """The result of s.h5's data must not be filed under another acquisition's optics or patterns (the optics,
    PSF and patterns were not compared), and other raw data were refused only after the whole run."""
    ds = cusim.simulate(shape=(64, 64), seed=0)
    src = io.save(ds, tmp_path / "s.h5")
    other = {"raw": dict(raw=ds.raw + np.float32(1)), "optics": dict(na=ds.na - 0.1),
             "psf": dict(psf=np.ones((5, 5), np.float32) / 25),
             "patterns": dict(pattern_params=ds.pattern_params.moved(0, 1))}[differs]
    out = io.save(dataclasses.replace(ds, **other), tmp_path / "o.h5")
    before = digests(tmp_path)
    monkeypatch.setattr(cusim.recon, "reconstruct", lambda *a, **k: 1 / 0)
    code, text = cli("run", src, "--method", "wiener", "--out", out)
    what = {"raw": "raw data", "optics": "optics", "psf": "PSF", "patterns": "pattern parameters"}[differs]
    one_line_error(code, text, f"{out}: exists already and holds other {what}", f"than {src}")
    assert digests(tmp_path) == before


def test_a_run_refused_for_its_data_names_the_file(tmp_path):
    """Errors found while reconstructing (no carrier for --estimate-patterns, patterns Wiener cannot use) named no
    file, and --threads 0 was called 'threads'."""
    lattice = io.save(cusim.simulate(shape=(64, 64), family="lattice", seed=0), tmp_path / "y.h5")
    code, text = cli("run", lattice, "--method", "wiener")
    one_line_error(code, text, f"error: {lattice}: patterns: not 5 angles x 5 phases of sinusoids")
    flat = io.save(cusim.simulate(shape=(64, 64), modulation=0.0, seed=0), tmp_path / "flat.h5")
    code, text = cli("run", flat, "--method", "wiener", "--estimate-patterns")
    one_line_error(code, text, f"error: {flat}: angle 1 of 3: no carrier peak")
    code, text = cli("run", flat, "--method", "widefield", "--threads", "0")
    one_line_error(code, text, "error: --threads: expected an integer >= 1, got 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.h5", "y.h5"]


def test_a_full_disk_is_one_line_before_writing_and_leaves_nothing(full_disk, sim):
    # without the check, HDF5 crashed the process (exit 139) and left a temporary file the size of the disk
    code, text = cli("simulate", "-o", full_disk / "big.h5", "--size", 512)
    one_line_error(code, text, "no space left on device", "MiB are free")
    assert not list(full_disk.iterdir())
    (full_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # leave ~64 KiB: less than the copy
    code, text = cli("run", sim, "--out", full_disk / "r.h5")
    one_line_error(code, text, "no space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
