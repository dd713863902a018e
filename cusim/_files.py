"""Safe file output: atomic replacement, an exclusive lock per target, and clean-up of stale temporaries.

- :func:`atomic_target` writes to a temporary file beside the target and renames it over the target. A
  symlink is followed: the file it points to is replaced (in its own folder) and the link stays.
- :func:`file_lock` serialises writers of one target across processes with ``fcntl.flock`` on a sidecar
  ``.<name>.lock`` beside it (removed again on release, safely: see the function).
- Temporary files are named ``.<name>.<pid>.<host>.<random>.tmp``; the next atomic write of the same
  target removes those whose writer (same host) is no longer alive.

On a network file system flock works where the server supports it (NFSv4 on Linux emulates it with
byte-range locks); the pid check of stale temporaries only trusts temporaries of the same host.
A failed write (disk full, permission denied, ...) removes its temporary file; a write killed by a
signal leaves one, which the next write of that target removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path

_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # flock unsupported here: write unlocked, with a warning
LOCK_TIMEOUT_S = 120.0  # how long a writer waits for another writer of the same file before giving up


class LockTimeout(TimeoutError):
    """Another process held the lock of ``path`` for more than ``timeout_s``; ``pid`` is its last known holder."""

    def __init__(self, path: Path, timeout_s: float, pid: int | None):
        self.path, self.timeout_s, self.pid = path, timeout_s, pid
        super().__init__(f"{path}: locked by another cusim process (pid {pid if pid else 'unknown'}?) "
                         f"for more than {timeout_s:g} s")


def same_file(a, b) -> bool:
    """Whether two paths name one file (symlinks and hard links followed); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resolve(path) -> Path:
    """The file a write of ``path`` must replace: symlinks followed (also a dangling one's target)."""
    return Path(os.path.realpath(path))


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporary files of ``target`` left by dead writers of this host; return what was removed.
    A temporary folder (an OME-Zarr export's) goes with everything in it."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.([A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.tmp")
    host, removed = _host(), []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or m.group(2) != host or _pid_alive(int(m.group(1))):
            continue
        path = target.parent / name
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def make_temporary(target: Path) -> Path:
    """Create an empty temporary file (mode 0600) beside ``target``, named for :func:`remove_stale_temporaries`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.{_host()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_target(path, *, copy_existing: bool = False):
    """Yield a temporary path in the target's folder; on success it replaces ``path`` in one rename.

    ``path`` may be a symlink: the file it points to is replaced and the link kept. With ``copy_existing``
    the temporary file starts as a copy of the target (for appending). The new file keeps the mode of the
    file it replaces (or the umask default). On any error, or if the process dies, the target is untouched;
    on an error the temporary file is removed (a killed writer's is removed by the next write).
    """
    target = resolve(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", str(folder))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    remove_stale_temporaries(target)
    try:
        tmp = make_temporary(target)
    except OSError as e:
        raise _naming(e, path) from e
    try:
        if copy_existing:
            shutil.copyfile(target, tmp)
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if target.exists():
            shutil.copymode(target, tmp)
        else:  # mkstemp makes 0600; a new file gets the usual umask-governed mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise
    _fsync_folder(folder)


def _naming(e: OSError, path) -> OSError:
    """``e`` as the error of writing ``path`` (a full disk, a write-protected folder): its file name is the
    target the user named, not the hidden temporary file it happened in."""
    if e.filename is not None and str(e.filename) == str(path):
        return e
    try:
        named = type(e)(e.errno, e.strerror or str(e), str(path))
    except TypeError:  # a subclass with another constructor
        named = OSError(e.errno, e.strerror or str(e), str(path))
    return named


def _holder_pid(lock: Path) -> int | None:
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _open_lock(lock: Path) -> int:
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock needs no write access
        return os.open(lock, os.O_RDONLY)


def _acquire(lock: Path, path, timeout_s: float) -> int | None:
    """An fd of ``lock`` holding its exclusive flock, once the path still names that file; None where the
    file system has no locks."""
    deadline, pause = time.monotonic() + timeout_s, 0.005
    while True:
        fd = _open_lock(lock)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(Path(path), timeout_s, _holder_pid(lock)) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
            try:
                if os.path.samestat(os.fstat(fd), os.stat(lock)):
                    return fd
            except FileNotFoundError:
                pass
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_LOCKS:
                raise
            warnings.warn(f"{path}: this file system does not support file locks ({e.strerror}); writing without "
                          "one, so concurrent writers of this file are not serialised", RuntimeWarning, stacklevel=4)
            with contextlib.suppress(OSError):
                lock.unlink()
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed that file: lock the current one


@contextlib.contextmanager
def file_lock(path, timeout_s: float | None = None):
    """Hold an exclusive lock on ``path`` (its resolved target) against every other user of this lock.

    The lock is ``flock`` on ``.<name>.lock`` beside the target, created if missing. A holder writes its
    pid into it, for the message of a waiter that gives up after ``timeout_s`` (default
    :data:`LOCK_TIMEOUT_S`) with :class:`LockTimeout`. The holder removes the lock file before it unlocks;
    a waiter that then gets the lock of the removed file sees that the path no longer names the file it
    locked and tries again, so removing it never lets two writers in. A killed holder's lock is released
    by the OS; its file is reused by the next writer. Where the file system has no locks (ENOLCK), this
    warns and holds nothing: refusing to write would lose the result.
    """
    target = resolve(path)
    lock = target.parent / f".{target.name}.lock"
    fd = _acquire(lock, path, LOCK_TIMEOUT_S if timeout_s is None else timeout_s)
    if fd is None:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
