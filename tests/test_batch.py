"""Many inputs and long time series on a Dask cluster (issue 21), on a real ``distributed.LocalCluster``
(2 single-threaded worker processes) and on a scheduler and a worker started as separate processes:
outputs written per input with the worker and host, a malformed input reported in one line while the
others go on (exit 1 naming it), ``--resume`` running nothing twice, and a PINN time series split in
chunks whose first points start cold exactly as a single process does."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import cusim
from cusim import batch, io
from cusim._threads import set_threads, threads
from cusim.cli import app

distributed = pytest.importorskip("distributed")


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


def four_inputs(folder):
    """Three small datasets and one that is a cusim file but malformed (a NaN in its frames: only reading
    the data, on a worker, finds it)."""
    good = [io.save(cusim.simulate(shape=(32, 32), seed=i), folder / f"s{i}.h5") for i in range(3)]
    bad = io.save(cusim.simulate(shape=(32, 32), seed=9), folder / "bad.h5")
    with h5py.File(bad, "a") as f:
        f["raw"][0, 0, 0] = np.nan
    return good, bad


def test_many_files_on_a_local_cluster_one_malformed_then_resume_runs_nothing_twice(tmp_path, cluster):
    good, bad = four_inputs(tmp_path)
    before = digest(bad)
    code, text = cli("run", tmp_path, "--method", "wiener", "--scheduler", cluster.scheduler_address)
    assert code == 1, text
    failures = [ln for ln in text.splitlines() if ln.startswith("failed:")]
    assert len(failures) == 1 and "bad.h5: /raw: contains NaN or Inf" in failures[0], text
    assert text.strip().splitlines()[-1] == f"error: 1 of 4 inputs failed: {bad}", text
    assert "Traceback" not in text and digest(bad) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    addresses = set(cluster.scheduler_info["workers"])
    for p in good:
        rec = io.load(p).recons["wiener"]
        assert rec.attrs["method"] == "wiener" and rec.attrs["worker"] in addresses, rec.attrs
        assert rec.attrs["host"] == socket.gethostname() and rec.image.shape == (32, 32)
        ref = cusim.reconstruct(io.load(p), "wiener", device="cpu").image
        np.testing.assert_allclose(rec.image, ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max()))

    done = {p: digest(p) for p in good}
    code, text = cli("run", *good, bad, "--method", "wiener", "--resume", "--scheduler", cluster.scheduler_address)
    assert code == 1 and {p: digest(p) for p in good} == done, text  # nothing written again
    assert text.count("skipped") == 3 and len([ln for ln in text.splitlines() if ln.startswith("failed:")]) == 1

    code, text = cli("run", *good, "--method", "wiener", "--wiener-w", "0.3", "--resume",
                     "--scheduler", cluster.scheduler_address)
    assert code == 1 and "exists already with other settings" in text and {p: digest(p) for p in good} == done


def test_time_series_chunks_start_cold_like_a_single_process(tmp_path, client):
    """6 time points in 2 chunks on 2 workers: each chunk is bit-identical to one process reconstructing
    that range (the first point of every chunk cold, the rest warm-started); points after a chunk's
    first differ from the single process's unbroken chain by the PINN's start, within 35 % (relative L2;
    0.17-0.23 measured on three simulated series, seeds 0-2, at this setting)."""
    path = io.save(cusim.simulate(shape=(32, 32), seed=1, T=6), tmp_path / "series.h5")
    kw = {"steps": 60, "warm_start_steps": 20, "stop": "max", "width": 8, "depth": 2}
    res = batch.reconstruct_many([path], "pinn", client, time_chunk=3, threads=1, device="cpu", **kw)
    assert [r.status for r in res] == ["done"] and res[0].time_chunks == [(0, 3), (3, 6)], res
    rec = io.load(path).recons["pinn"]
    assert rec.attrs["time_chunks"] == [[0, 3], [3, 6]] and rec.attrs["steps_run"] == 2 * (60 + 2 * 20)

    previous = threads()
    set_threads(1)
    try:
        ds = io.load(path)
        whole = cusim.reconstruct(ds, "pinn", device="cpu", **kw).image
        second = io.Dataset(**{**vars(ds), "raw": ds.raw[3:], "ground_truth": ds.ground_truth[3:], "recons": {}})
        cold = cusim.reconstruct(second, "pinn", device="cpu", **kw).image
    finally:
        set_threads(previous)
    np.testing.assert_array_equal(rec.image[:3], whole[:3])
    np.testing.assert_array_equal(rec.image[3:], cold)
    for t in (4, 5):
        rel = np.linalg.norm(rec.image[t] - whole[t]) / np.linalg.norm(whole[t])
        assert rel < 0.35, (t, rel)
    # the split is part of a PINN result's settings: --resume skips the same split only
    same = batch.reconstruct_many([path], "pinn", client, time_chunk=3, resume=True, device="cpu", **kw)
    other = batch.reconstruct_many([path], "pinn", client, time_chunk=2, resume=True, device="cpu", **kw)
    assert same[0].status == "skipped" and other[0].status == "failed", (same, other)
    # the settings are the same, the split is not: said so, with what sets it (it said "with other settings")
    assert ("exists already with the same settings fitted over time points [[0, 3], [3, 6]], now time points "
            "[[0, 2], [2, 4], [4, 6]]") in other[0].error and "run with that run's --workers" in other[0].error
    plain = batch.reconstruct_many([path], "pinn", client, time_chunk=2, device="cpu", **kw)  # no --resume
    assert "add --resume and that run's --workers to skip it" in plain[0].error, plain[0].error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def started(*args):
    proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_cli_runs_on_a_scheduler_and_worker_started_as_processes(tmp_path):
    good = [io.save(cusim.simulate(shape=(32, 32), seed=i), tmp_path / f"s{i}.h5") for i in range(2)]
    address = f"tcp://127.0.0.1:{free_port()}"
    with started("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"), \
            started("worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"):
        deadline = time.monotonic() + 60
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
            worker = next(iter(c.scheduler_info()["workers"]))
        code, text = cli("run", *good, "--method", "widefield", "--scheduler", address)
    assert code == 0, text
    for p in good:
        assert io.load(p).recons["widefield"].attrs["worker"] == worker


def test_a_chunked_series_is_recorded_and_refused_as_one_run_of_it(tmp_path, client):
    """A chunk's failure named the time point within its chunk (0 for the series' 2) after the file's path twice;
    the stored result had no metrics and the first chunk's sigma ("of the last time point")."""
    ds = cusim.simulate(shape=(32, 32), seed=2, T=3)
    whole = cusim.reconstruct(ds, "iterative", device="cpu")
    path = io.save(ds, tmp_path / "series.h5")
    res = batch.reconstruct_many([path], "iterative", client, time_chunk=2, threads=1, device="cpu")
    assert [r.status for r in res] == ["done"] and res[0].time_chunks == [(0, 2), (2, 3)], res
    attrs = io.load(path).recons["iterative"].attrs
    assert attrs["sigma"] == pytest.approx(whole.extra["sigma"], rel=1e-6)
    from cusim.report import image_metrics  # noqa: PLC0415

    want = image_metrics(ds, whole.image)
    for key in ("psnr_db", "ssim", "nrmse"):
        assert attrs["metrics"][key] == pytest.approx(want[key], rel=1e-5), key
    assert attrs["metrics"]["time_points"] == want["time_points"] == 3
    raw = ds.raw.copy()
    raw[2, 4] = 0  # time point 2, frame 4: in the second chunk, its first point
    zero = io.save(dataclasses.replace(ds, raw=raw), tmp_path / "zero.h5")
    res = batch.reconstruct_many([zero], "wiener", client, time_chunk=2, threads=1, device="cpu")
    assert res[0].status == "failed" and res[0].error.startswith(f"{zero}: /raw: time point 2, frame 4 is constant")
    assert res[0].error.count(str(zero)) == 1, res[0].error


def test_an_out_file_of_another_acquisition_fails_before_the_compute(tmp_path, client, monkeypatch):
    """Its write refused it, but only after the reconstruction had run."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src = io.save(cusim.simulate(shape=(32, 32), seed=0), tmp_path / "in" / "s.h5")
    io.save(cusim.simulate(shape=(48, 48), seed=0), tmp_path / "out" / "s.h5")  # another field, same name
    res = batch.reconstruct_many([src], "wiener", client, out_dir=tmp_path / "out", device="cpu")
    assert res[0].status == "failed" and res[0].runtime_s is None, res
    assert res[0].error.startswith(f"{tmp_path / 'out' / 's.h5'}: exists already and holds another acquisition than")
    assert "raw (9, 24, 24) float32 against (9, 16, 16) float32" in res[0].error, res[0].error


def test_bad_batch_requests_are_one_line_before_any_work(tmp_path):
    import dask  # noqa: PLC0415

    good = [io.save(cusim.simulate(shape=(32, 32), seed=i), tmp_path / f"s{i}.h5") for i in range(2)]
    for args, needle in ((["--tiff", tmp_path / "x.tif"], "--tiff: for one input only"),
                         (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers: the workers of an existing"),
                         (["--workers", "0"], "--workers: expected an integer >= 1, got 0"),
                         (["--steps", "5"], "--steps: only for --method pinn"),
                         (["--method", "pinn", "--checkpoint-every", "5"], "--checkpoint-every: for one input only"),
                         (["--name", ""], "/recon/: invalid name"),  # it became the method's name
                         (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler tcp://127.0.0.1:1: no Dask scheduler")):
        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):  # the unreachable scheduler
            code, text = cli("run", *good, *args)
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and needle in lines[0], (args, text)
    with pytest.raises(ValueError, match="no file matches"):
        batch.expand_inputs([str(tmp_path / "*.nothing")])
    assert batch.expand_inputs([tmp_path, str(tmp_path / "s*.h5")]) == good


def test_a_batch_result_records_the_camera_model_and_background_as_cusim_run_does(tmp_path, client):
    path = io.save(cusim.simulate(shape=(32, 32), snr=5, seed=3), tmp_path / "cam.h5")
    kw = {"steps": 3, "width": 4, "depth": 1, "noise": "camera", "background": "shared"}
    res = batch.reconstruct_many([path], "pinn", client, threads=1, device="cpu", **kw)
    assert [r.status for r in res] == ["done"], res
    attrs = io.load(path).recons["pinn"].attrs
    assert attrs["params"]["noise"] == "camera" and attrs["camera"]["gain"] > 0
    assert attrs["params"]["background"] == "shared" and "background" in attrs


def test_workers_in_another_folder_read_relative_inputs(tmp_path, client, monkeypatch):
    # A worker started elsewhere (dask worker, a job queue) got the path as typed: "no such file".
    io.save(cusim.simulate(shape=(32, 32), seed=4), tmp_path / "rel.h5")
    monkeypatch.chdir(tmp_path)
    before = client.run(lambda: __import__("os").getcwd())
    client.run(lambda: __import__("os").chdir("/"))
    try:
        res = batch.reconstruct_many(["rel.h5"], "widefield", client, device="cpu")
    finally:
        for address, cwd in before.items():
            client.run(lambda cwd=cwd: __import__("os").chdir(cwd), workers=[address])
    assert [r.status for r in res] == ["done"], res
    assert "widefield" in io.load(tmp_path / "rel.h5").recons


def test_a_chunked_series_uses_the_patterns_estimated_from_the_whole_series(tmp_path, client):
    # Each chunk estimated from its own first time point (phases 0.2 rad apart at t = 1) and only chunk 0's
    # patterns were recorded: the images at t >= 1 differed from one run's by 9-10 % of the maximum.
    path = io.save(cusim.simulate(shape=(32, 32), seed=2, T=3), tmp_path / "series.h5")
    res = batch.reconstruct_many([path], "wiener", client, time_chunk=1, estimate_patterns=True, device="cpu")
    assert [r.status for r in res] == ["done"] and res[0].time_chunks == [(0, 1), (1, 2), (2, 3)], res
    rec = io.load(path).recons["wiener"]
    one = cusim.reconstruct(io.load(path), "wiener", device="cpu", estimate_patterns=True)
    np.testing.assert_allclose(rec.image, one.image, rtol=0, atol=1e-5 * float(np.abs(one.image).max()))
    assert rec.attrs["params"]["estimate_patterns"] is True
    np.testing.assert_allclose(rec.attrs["pattern_params"]["phase"], one.extra["pattern_params"]["phase"])


def test_a_batch_that_could_only_fail_at_writing_fails_before_computing(tmp_path, client):
    good = [io.save(cusim.simulate(shape=(32, 32), seed=i), tmp_path / f"s{i}.h5") for i in range(2)]
    with pytest.raises(ValueError, match="/recon/a/b: invalid name"):
        batch.reconstruct_many(good, "widefield", client, name="a/b", device="cpu")
    with pytest.raises(ValueError, match=r"device: expected one of \['auto', 'cpu', 'cuda'\], got 'gpu'"):
        batch.reconstruct_many(good, "widefield", client, device="gpu")
    res = batch.reconstruct_many(good, "widefield", client, out_dir=tmp_path, device="cpu")  # the inputs' folder
    assert [r.status for r in res] == ["failed", "failed"]
    assert "is the input itself (the results' folder is the input's own)" in res[0].error, res[0].error
    batch.reconstruct_many(good[:1], "widefield", client, device="cpu")  # s0.h5 holds /recon/widefield now
    (tmp_path / "out").mkdir()
    res = batch.reconstruct_many(good, "widefield", client, out_dir=tmp_path / "out", device="cpu")
    assert [r.status for r in res] == ["failed", "done"], res
    assert res[0].error == (f"{tmp_path / 'out' / 's0.h5'}: /recon/widefield: exists already in the input "
                            f"{good[0]}, which the new file copies; use --force to replace it in the copy, or "
                            "another --name")
    assert res[0].runtime_s is None and not (tmp_path / "out" / "s0.h5").exists()  # nothing was computed for it


def test_a_local_cluster_reports_a_bad_input_in_one_line_without_dasks_traceback(tmp_path, capfd):
    good, bad = four_inputs(tmp_path)
    code, text = cli("run", good[0], bad, "--method", "widefield", "--workers", "1")
    err = capfd.readouterr().err
    assert code == 1 and "bad.h5: /raw: contains NaN or Inf" in text, text
    assert "Compute Failed" not in err and "Traceback" not in err and "Warning" not in err, err
