"""Never lose a user's data: writers take turns, symlinks are followed, locked is not corrupt, stale
temporaries go, results can go to another file, and system errors read as one line."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import stat
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cusim import _files, io, patterns
from cusim._files import atomic_target, file_lock
from cusim._syserrors import NotEnoughMemory, available_memory, check_allocation, describe_os_error, out_of_memory
from cusim.cli import app

FORK = multiprocessing.get_context("fork")
FINE = (16, 20)


def dataset(seed: int = 0) -> io.Dataset:
    rng = np.random.default_rng(seed)
    return io.Dataset(
        raw=rng.integers(0, 4000, (9, 8, 10)).astype(np.uint16), upsample=2,
        pattern_params=patterns.linear_params(period_px=5), pattern_kind="linear",
        psf=rng.random((5, 5)).astype(np.float32), na=1.2, wavelength_nm=520.0, pixel_size_nm=100.0,
        ground_truth=rng.random(FINE).astype(np.float32),
        recons={"old": io.Recon(rng.random(FINE).astype(np.float32), {"method": "wiener"}, np.linspace(1, 0, 5))},
        attrs={"source": "unit test"})


def recon(value: float = 1.0, method: str = "x") -> io.Recon:
    return io.Recon(np.full(FINE, value, np.float32), {"method": method})


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(folder) -> list[str]:
    """Temporary and lock files in ``folder``."""
    return sorted(p for p in os.listdir(folder) if p.endswith((".tmp", ".lock")))


# ---- 1. writers of one file take turns -------------------------------------------------------------

def _add_after(barrier, results, path, name, value):
    barrier.wait()
    try:
        io.add_recon(path, name, recon(value, name))
        results.put((name, "ok"))
    except io.DatasetError as e:
        results.put((name, str(e)))
    except BaseException as e:  # noqa: BLE001 - report anything else to the parent as a failure
        results.put((name, repr(e)))


def _race(path, names) -> list[tuple[str, str]]:
    barrier, results = FORK.Barrier(len(names)), FORK.Queue()
    procs = [FORK.Process(target=_add_after, args=(barrier, results, str(path), n, i + 1)) for i, n in enumerate(names)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def test_two_processes_adding_different_recons_to_one_file_both_land_in_20_rounds(tmp_path):
    for r in range(20):
        path = io.save(dataset(), tmp_path / f"r{r}.h5")
        outcome = dict(_race(path, ["A", "B"]))
        assert outcome == {"A": "ok", "B": "ok"}, (r, outcome)
        back = io.load(path)
        assert set(back.recons) == {"old", "A", "B"}, r
        np.testing.assert_array_equal(back.recons["A"].image, np.full(FINE, 1, np.float32))
        np.testing.assert_array_equal(back.recons["B"].image, np.full(FINE, 2, np.float32))
        np.testing.assert_array_equal(back.recons["old"].image, dataset().recons["old"].image)
    assert leftovers(tmp_path) == []


def test_two_processes_adding_the_same_name_give_one_success_and_one_refusal(tmp_path):
    for r in range(8):
        path = io.save(dataset(), tmp_path / f"r{r}.h5")
        outcome = [msg for _, msg in _race(path, ["same", "same"])]
        refusals = [m for m in outcome if m != "ok"]
        assert outcome.count("ok") == 1 and len(refusals) == 1, (r, outcome)
        assert f"{path}: /recon/same: exists already; use --force" in refusals[0]
        assert io.load(path).recons["same"].attrs["method"] == "same"
    assert leftovers(tmp_path) == []


def _hold_lock(path, ready, release):
    with file_lock(path):
        ready.set()
        release.wait(60)


def test_a_writer_gives_up_after_the_timeout_naming_the_holder_and_changes_nothing(tmp_path, monkeypatch):
    path = io.save(dataset(), tmp_path / "a.h5")
    before = digest(path)
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        monkeypatch.setattr(_files, "LOCK_TIMEOUT_S", 0.3)
        t0 = time.monotonic()
        with pytest.raises(io.DatasetLocked) as info:
            io.add_recon(path, "new", recon())
        assert 0.3 <= time.monotonic() - t0 < 5
        assert str(info.value) == f"{path}: locked by another cusim process (pid {holder.pid}?) for more than 0.3 s"
        with pytest.raises(io.DatasetLocked):
            io.set_pattern_params(path, patterns.linear_params(period_px=4), force=True)
        assert digest(path) == before
        assert leftovers(tmp_path) == [".a.h5.lock"]  # the holder's
    finally:
        release.set()
        holder.join(30)
    assert leftovers(tmp_path) == []  # the holder removed its lock file
    io.add_recon(path, "new", recon())  # and the next writer gets in at once
    assert "new" in io.load(path).recons


def test_a_killed_lock_holder_releases_the_lock_and_its_file_is_reused(tmp_path, monkeypatch):
    path = io.save(dataset(), tmp_path / "a.h5")
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(str(path), ready, release))
    holder.start()
    assert ready.wait(30)
    holder.kill()
    holder.join(30)
    assert leftovers(tmp_path) == [".a.h5.lock"]
    monkeypatch.setattr(_files, "LOCK_TIMEOUT_S", 2.0)
    io.add_recon(path, "new", recon())
    assert "new" in io.load(path).recons and leftovers(tmp_path) == []


def test_a_file_system_without_locks_still_gets_the_result_with_a_warning(tmp_path, monkeypatch):
    path = io.save(dataset(), tmp_path / "a.h5")
    monkeypatch.setattr(_files.fcntl, "flock", _fail(OSError(errno.ENOLCK, "No locks available")))
    with pytest.warns(RuntimeWarning, match=r"does not support file locks \(No locks available\)"):
        io.add_recon(path, "new", recon())
    assert "new" in io.load(path).recons and leftovers(tmp_path) == []


# ---- 2. symlinks are followed ------------------------------------------------------------------

def test_writing_through_a_symlink_updates_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    real = io.save(dataset(), tmp_path / "data" / "real.h5")
    link = tmp_path / "links" / "link.h5"
    link.symlink_to(os.path.relpath(real, link.parent))
    io.add_recon(link, "new", recon(3.0))
    io.set_pattern_params(link, patterns.linear_params(period_px=4), force=True)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, link.parent)
    back = io.load(real)
    np.testing.assert_array_equal(back.recons["new"].image, np.full(FINE, 3, np.float32))
    assert back.pattern_kind == "estimated"
    io.save(dataset(seed=1), link)  # replacing the whole dataset through the link, too
    assert link.is_symlink()
    np.testing.assert_array_equal(io.load(real).raw, dataset(seed=1).raw)
    assert sorted(os.listdir(tmp_path / "links")) == ["link.h5"]
    assert sorted(os.listdir(tmp_path / "data")) == ["real.h5"]


# ---- 3. a file another program writes is locked, not corrupt ---------------------------------------

HOLD_OPEN = ("import sys, time, h5py\n"
             "f = h5py.File(sys.argv[1], 'a')\n"
             "print('open', flush=True)\n"
             "sys.stdin.readline()\n")


@pytest.mark.skipif(os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE",
                    reason="HDF5 file locking is turned off in this environment")
def test_a_file_open_for_writing_elsewhere_is_reported_as_locked_not_corrupt(tmp_path):
    path = io.save(dataset(), tmp_path / "a.h5")
    proc = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        for action in (lambda: io.load(path), lambda: io.add_recon(path, "new", recon())):
            with pytest.raises(io.DatasetLocked) as info:
                action()
            msg = str(info.value)
            assert msg.startswith(f"{path}: locked by another process") and "corrupt" not in msg
            assert "\n" not in msg
        assert leftovers(tmp_path) == []
    finally:
        proc.communicate("\n", timeout=30)
    assert "new" not in io.load(path).recons


# ---- 4. stale temporary files ----------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_write_removes_temporaries_of_dead_writers_of_that_file_only(tmp_path):
    path = io.save(dataset(), tmp_path / "a.h5")
    host, dead = _files._host(), _dead_pid()
    stale = f".a.h5.{dead}.{host}.abc_1234.tmp"
    keep = [f".a.h5.{os.getppid()}.{host}.live0001.tmp",  # a live writer's
            f".a.h5.{dead}.otherhost.abc_1234.tmp",  # another machine's (its pids mean nothing here)
            f".b.h5.{dead}.{host}.abc_1234.tmp",  # another file's
            ".a.h5.q1w2e3r4.tmp"]  # an old-style name without a pid
    for name in [stale, *keep]:
        (tmp_path / name).write_bytes(b"half-written")
    io.add_recon(path, "new", recon())
    assert sorted(os.listdir(tmp_path)) == sorted(["a.h5", *keep])
    assert "new" in io.load(path).recons


def test_a_dead_writers_temporary_folder_goes_too(tmp_path):
    # an OME-Zarr export writes a folder under the temporary name; a killed one left it behind
    host, dead = _files._host(), _dead_pid()
    stale = tmp_path / f".out.zarr.{dead}.{host}.abc_1234.tmp"
    (stale / "0").mkdir(parents=True)
    (stale / "0" / "chunk").write_bytes(b"half-written")
    assert _files.remove_stale_temporaries(tmp_path / "out.zarr") == [stale]
    assert not list(tmp_path.iterdir())
    (stale / "0").mkdir(parents=True)  # and the next export removes it (it had never called the clean-up)
    pytest.importorskip("ome_zarr")
    from cusim import ome  # noqa: PLC0415

    ome.write_ome_zarr(tmp_path / "out.zarr", np.ones((32, 32)), pixel_um=0.05, description={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_temporary_files_carry_the_writers_pid_and_host(tmp_path):
    with atomic_target(tmp_path / "x.bin") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(f".x.bin.{os.getpid()}.{_files._host()}.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"data")
    assert os.listdir(tmp_path) == ["x.bin"]


# ---- 5. the result written to another file ---------------------------------------------------------

def test_save_recon_as_copies_a_read_only_input_into_a_new_file_with_the_recon(tmp_path):
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    src = io.save(dataset(), src_dir / "a.h5")
    io.set_pattern_params(src, patterns.linear_params(period_px=5), kind="estimated", attrs={"by": "test"},
                          force=True)
    before = digest(src)
    os.chmod(src, 0o444)
    os.chmod(src_dir, 0o555)
    try:
        out = io.save_recon_as(src, out_dir / "b.h5", "new", recon(4.0))
        assert sorted(os.listdir(src_dir)) == ["a.h5"] and digest(src) == before
        assert stat.S_IMODE(os.stat(src).st_mode) == 0o444
    finally:
        os.chmod(src_dir, 0o755)
        os.chmod(src, 0o644)
    a, b = io.load(src), io.load(out)
    for name in ("raw", "psf", "ground_truth"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    assert (b.upsample, b.na, b.wavelength_nm, b.pixel_size_nm, b.attrs) == (2, 1.2, 520.0, 100.0, a.attrs)
    np.testing.assert_array_equal(b.pattern_params.k, a.pattern_params.k)
    np.testing.assert_array_equal(b.recons["old"].image, a.recons["old"].image)
    np.testing.assert_array_equal(b.recons["new"].image, np.full(FINE, 4, np.float32))
    assert "new" not in a.recons
    with h5py.File(out) as f:
        assert f["pattern_params"].attrs["by"] == "test"  # a byte copy: provenance load() ignores is kept too
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~_umask()
    assert sorted(os.listdir(out_dir)) == ["b.h5"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_save_recon_as_reads_an_input_nobody_may_write(tmp_path):
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    src = io.save(dataset(), src_dir / "a.h5")
    os.chmod(src, 0o444)
    os.chmod(src_dir, 0o555)
    try:
        with pytest.raises(io.DatasetError, match="permission denied"):
            io.add_recon(src, "new", recon())
        io.save_recon_as(src, tmp_path / "b.h5", "new", recon())
        assert sorted(os.listdir(src_dir)) == ["a.h5"]
    finally:
        os.chmod(src_dir, 0o755)
        os.chmod(src, 0o644)


def test_save_recon_as_adds_to_an_existing_output_of_the_same_raw_data_by_the_add_recon_rules(tmp_path):
    src = io.save(dataset(), tmp_path / "a.h5")
    out = io.save_recon_as(src, tmp_path / "b.h5", "first", recon(1.0))
    io.save_recon_as(src, out, "second", recon(2.0))
    assert set(io.load(out).recons) == {"old", "first", "second"}
    before = digest(out)
    with pytest.raises(io.DatasetError, match=rf"^{out}: /recon/second: exists already; use --force"):
        io.save_recon_as(src, out, "second", recon(9.0))
    assert digest(out) == before
    io.save_recon_as(src, out, "second", recon(9.0), force=True)
    np.testing.assert_array_equal(io.load(out).recons["second"].image, np.full(FINE, 9, np.float32))
    assert "first" not in io.load(src).recons
    assert leftovers(tmp_path) == []


def test_save_recon_as_refuses_a_recon_name_the_input_has_unless_forced(tmp_path):
    src = io.save(dataset(), tmp_path / "a.h5")
    with pytest.raises(io.DatasetError, match=r"/recon/old: exists already in the input"):
        io.save_recon_as(src, tmp_path / "b.h5", "old", recon())
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]
    io.save_recon_as(src, tmp_path / "b.h5", "old", recon(5.0), force=True)
    np.testing.assert_array_equal(io.load(tmp_path / "b.h5").recons["old"].image, np.full(FINE, 5, np.float32))


def test_save_recon_as_refuses_the_input_itself_under_any_name(tmp_path):
    src = io.save(dataset(), tmp_path / "a.h5")
    before = digest(src)
    (tmp_path / "sym.h5").symlink_to("a.h5")
    os.link(src, tmp_path / "hard.h5")
    for out in (src, tmp_path / "sym.h5", tmp_path / "hard.h5", tmp_path / "." / "a.h5"):
        with pytest.raises(io.DatasetError) as info:
            io.save_recon_as(src, out, "new", recon())
        assert str(info.value) == (f"{out}: is the input file {src}; write the result to another file, "
                                   "or add it to the input itself")
    assert digest(src) == before and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["other raw data", "not HDF5", "a folder"])
def test_save_recon_as_refuses_an_existing_output_that_is_another_dataset(tmp_path, kind):
    src = io.save(dataset(), tmp_path / "a.h5")
    out = tmp_path / "b.h5"
    if kind == "other raw data":
        io.save(dataset(seed=1), out)
        message = rf"^{out}: exists already and holds other raw data than {src}; choose another output file$"
    elif kind == "not HDF5":
        out.write_text("my notes\n")
        message = rf"^{out}: not an HDF5 file .*\(the output file exists already and is not a dataset to add to\)$"
    else:
        out.mkdir()
        message = rf"^{out}: is a folder"
    before = digest(out) if out.is_file() else None
    with pytest.raises(io.DatasetError, match=message):
        io.save_recon_as(src, out, "new", recon())
    if before is not None:
        assert digest(out) == before
    assert leftovers(tmp_path) == []


# ---- 6. system errors in one line --------------------------------------------------------------

@pytest.mark.parametrize("code, phrase", [
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"),
    (errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "no space left on device"),
    (errno.EROFS, "read-only file system"), (errno.EISDIR, "is a folder, expected a file"),
    (errno.ENOENT, "no such file or folder"), (errno.ENOTDIR, "a part of the path is not a folder"),
    (errno.EIO, os.strerror(errno.EIO))])
def test_describe_os_error_gives_one_line_naming_the_path(code, phrase):
    exc = OSError(code, os.strerror(code), "/data/.a.h5.123.host.x.tmp")
    line = describe_os_error(exc, "/data/a.h5")
    assert line.startswith(f"/data/a.h5: {phrase}") and line.endswith("(/data/.a.h5.123.host.x.tmp)")
    assert describe_os_error(exc).startswith(f"/data/.a.h5.123.host.x.tmp: {phrase}")
    assert "\n" not in line


def test_describe_os_error_finds_the_errno_inside_an_hdf5_message():
    exc = OSError("Can't write data (file write failed: time = x,\n errno = 28, error message = 'No space left')")
    assert describe_os_error(exc, "a.h5") == "a.h5: no space left on device"
    assert describe_os_error(OSError("odd\nthing"), "a.h5") == "a.h5: odd"


def test_check_allocation_refuses_more_than_the_available_memory(monkeypatch):
    assert available_memory() > 0
    check_allocation(1024, "a small array")
    monkeypatch.setattr("cusim._syserrors.available_memory", lambda: 3 * 2**30)
    with pytest.raises(NotEnoughMemory) as info:
        check_allocation(10 * 2**30, "the reconstruction")
    assert str(info.value) == "the reconstruction needs 10.0 GiB, only 3.0 GiB of memory is available"


def test_running_out_of_memory_in_torch_is_one_line_and_any_other_runtime_error_is_not_hidden(tmp_path, monkeypatch):
    # torch reports an allocation it cannot make as a RuntimeError (CPU) or torch.OutOfMemoryError (CUDA), not a
    # MemoryError: `cusim run --method pinn --ensemble 64` on a 256 x 256 field under a 4 GB limit ended in a traceback.
    import torch  # noqa: PLC0415

    from cusim import recon as recon_module  # noqa: PLC0415

    path = io.save(dataset(), tmp_path / "a.h5")
    before = digest(path)
    # 4 EiB, beyond any address space: refused at once, whatever the kernel's overcommit setting
    monkeypatch.setattr(recon_module, "reconstruct", lambda *a, **k: torch.empty(2**60))
    res = CliRunner().invoke(app, ["run", str(path), "--method", "wiener"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith("error: out of memory (a further 4294967296.00 GiB was asked for): the data or the "
                               "reconstruction does not fit; try a smaller region (--roi)"), res.output
    assert digest(path) == before and sorted(os.listdir(tmp_path)) == ["a.h5"]
    gpu = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")
    assert out_of_memory(gpu) == "out of GPU memory (a further 2.00 GiB was asked for)"
    assert out_of_memory(MemoryError()) == "out of memory"
    with pytest.raises(MemoryError) as numpy_oom:  # numpy's own words: "Unable to allocate 2.00 EiB for an array ..."
        np.empty(2**58)
    assert out_of_memory(numpy_oom.value) == "out of memory (a further 2.00 EiB was asked for)"
    from cusim import batch  # noqa: PLC0415  (a batch input's failure line: the same words, naming the input)

    assert batch._message(path, gpu) == f"{path}: out of GPU memory (a further 2.00 GiB was asked for)"
    for other in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("memory: 3")):
        assert out_of_memory(other) is None
    monkeypatch.setattr(recon_module, "reconstruct", _fail(RuntimeError("mat1 and mat2 shapes cannot be multiplied")))
    res = CliRunner().invoke(app, ["run", str(path), "--method", "wiener"])
    assert type(res.exception) is RuntimeError  # a bug stays a traceback (not SystemExit), not a user's mistake


def test_loading_a_file_larger_than_memory_fails_with_one_line_before_reading(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # 90 GB declared, a few kB on disk: nothing is ever written
        f.attrs.update(format="cusim-sim", format_version=1, upsample=2)
        f.create_dataset("raw", shape=(9, 50000, 50000), dtype=np.float32, chunks=(1, 1000, 1000), compression="gzip")
        f["psf"] = np.ones((3, 3), np.float32)
    assert path.stat().st_size < 10**6
    with pytest.raises(NotEnoughMemory) as info:
        io.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: loading its arrays (the largest, /raw, is 9x50000x50000 float32) needs 83.8 GiB, "
                          "only ") and msg.endswith(" GiB of memory is available")
    res = CliRunner().invoke(app, ["info", str(path)])
    assert res.exit_code == 1 and "needs 83.8 GiB" in res.output and "Traceback" not in res.output


# ---- failed writes leave nothing behind ----------------------------------------------------------

def _fail(exc):
    def raise_it(*args, **kwargs):
        raise exc
    return raise_it


@pytest.mark.parametrize("stage", ["create", "copy", "write", "rename"])
def test_a_failed_atomic_write_leaves_the_target_and_no_temporary_file(tmp_path, monkeypatch, stage):
    target = tmp_path / "x.bin"
    target.write_bytes(b"precious")
    full, denied = OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "Permission denied")
    if stage == "create":
        monkeypatch.setattr(_files.tempfile, "mkstemp", _fail(denied))
    elif stage == "copy":
        monkeypatch.setattr(_files.shutil, "copyfile", _fail(full))
    elif stage == "rename":
        monkeypatch.setattr(_files.os, "replace", _fail(denied))
    with pytest.raises(OSError):
        with atomic_target(target, copy_existing=True) as tmp:
            tmp.write_bytes(b"new")
            if stage == "write":
                raise full
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["x.bin"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_atomic_target_in_a_read_only_folder_raises_and_leaves_nothing(tmp_path):
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(PermissionError):
            with atomic_target(tmp_path / "x.bin") as tmp:
                tmp.write_bytes(b"new")
        assert os.listdir(tmp_path) == []
    finally:
        os.chmod(tmp_path, 0o755)


def test_a_disk_full_during_add_recon_is_one_line_and_changes_nothing(tmp_path, monkeypatch):
    path = io.save(dataset(), tmp_path / "a.h5")
    before = digest(path)
    monkeypatch.setattr(io, "_write_recon", _fail(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(io.DatasetError) as info:
        io.add_recon(path, "new", recon())
    assert str(info.value) == f"{path}: no space left on device"
    assert digest(path) == before and sorted(os.listdir(tmp_path)) == ["a.h5"]


def test_a_write_protected_dataset_is_not_replaced(tmp_path, monkeypatch):
    path = io.save(dataset(), tmp_path / "a.h5")
    before = digest(path)
    real_access = os.access
    monkeypatch.setattr(io.os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    for action in (lambda: io.add_recon(path, "new", recon()), lambda: io.save(dataset(), path),
                   lambda: io.check_writable(path)):
        with pytest.raises(io.DatasetError, match=rf"^{path}: permission denied \(the file is write-protected\)$"):
            action()
    assert digest(path) == before and sorted(os.listdir(tmp_path)) == ["a.h5"]


def test_check_writable_before_a_long_run(tmp_path):
    path = io.save(dataset(), tmp_path / "a.h5")
    io.check_writable(path)
    io.check_writable(tmp_path / "new.h5", extra_bytes=10**6)
    with pytest.raises(io.DatasetError, match=rf"^{tmp_path}/nowhere/a.h5: folder {tmp_path}/nowhere does not exist$"):
        io.check_writable(tmp_path / "nowhere" / "a.h5")
    with pytest.raises(io.DatasetError, match=rf"^{path}: no space left on device \(writing it needs .* GiB beside it"):
        io.check_writable(path, extra_bytes=2**60)
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]


def test_a_failed_write_names_the_file_asked_for_not_its_hidden_temporary(tmp_path):
    """A full disk or a protected folder while writing a figure, TIFF or dataset: the one line names that file."""
    target = tmp_path / "f.png"
    with pytest.raises(OSError) as e:
        with atomic_target(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    assert describe_os_error(e.value) == f"{target}: no space left on device"
    with pytest.raises(PermissionError) as e:  # h5py's kind: no errno attribute, the code inside its message
        with atomic_target(target):
            raise PermissionError(None, "Unable to create file (errno = 13, error message = 'Permission denied')")
    assert describe_os_error(e.value) == f"{target}: permission denied"
    assert not list(tmp_path.iterdir())
