"""System errors as one line a user can act on: :func:`describe_os_error`, :func:`check_allocation`,
:func:`out_of_memory`, :func:`import_extra`."""

from __future__ import annotations

import errno
import importlib
import os
import re

GiB = 2**30

_PHRASES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "no space left on device (disk quota exceeded)",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is not a folder",
}


class NotEnoughMemory(ValueError):
    """An input or result that would not fit the memory available (raised before allocating it).

    A ValueError: like any input that cannot be processed, it is reported as one line (exit code 1).
    """


def _errno(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    m = re.search(r"errno\s*=\s*(\d+)", str(exc))  # HDF5 reports the system error inside its message
    return int(m.group(1)) if m else None


def describe_os_error(exc: OSError, path=None) -> str:
    """One line for an OSError: ``PATH: permission denied`` and the like, naming ``path`` (default: the
    exception's file name); the exception's own file, when it differs (a temporary or lock file), follows
    in parentheses."""
    code = _errno(exc)
    phrase = _PHRASES.get(code)
    if phrase is None:
        first = (str(exc).splitlines() or [""])[0]
        phrase = exc.strerror or first or (os.strerror(code) if code else type(exc).__name__)
    named = exc.filename
    where = path if path is not None else named
    line = phrase if where is None else f"{where}: {phrase}"
    if path is not None and named is not None and str(named) != str(path):
        line += f" ({named})"
    return " ".join(line.split())


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate: /proc/meminfo ``MemAvailable`` (the lesser of it and
    a cgroup v2 limit's room), else free pages from ``os.sysconf``; None when neither is known."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit.isdigit():
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return avail


def check_allocation(nbytes: int, what: str) -> None:
    """Raise :class:`NotEnoughMemory` ("WHAT needs N GiB, only M GiB of memory is available") when
    ``nbytes`` exceed the available memory; do nothing when that is unknown."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise NotEnoughMemory(f"{what} needs {nbytes / GiB:.1f} GiB, only {avail / GiB:.1f} GiB of memory is available")


# torch reports memory it could not get as a RuntimeError: on the CPU "DefaultCPUAllocator: can't allocate memory:
# you tried to allocate N bytes", on a GPU torch.OutOfMemoryError "CUDA out of memory. Tried to allocate 2.00 GiB".
# CuPy's OutOfMemoryError is a MemoryError.
_OOM_TEXT = re.compile(r"can't allocate memory|CUDA out of memory|out of memory on device", re.IGNORECASE)


def out_of_memory(exc: BaseException) -> str | None:
    """One line for an exception that says memory ran out (Python's MemoryError, CuPy's, or torch's on the CPU or
    a GPU), with the size that failed where the message gives it; None for any other exception."""
    gpu = any(c.__name__ == "OutOfMemoryError" for c in type(exc).__mro__)
    if not (isinstance(exc, MemoryError) or gpu or (isinstance(exc, RuntimeError) and _OOM_TEXT.search(str(exc)))):
        return None
    text = str(exc)
    gpu = gpu or "CUDA" in text or "device" in text.lower()
    size = re.search(r"allocate (\d+) bytes", text)
    unit = re.search(r"allocate (\d+(?:\.\d*)?) ?([KMGTPE]iB)", text, re.IGNORECASE)  # numpy: "711. PiB"
    size = f"{int(size.group(1)) / GiB:.2f} GiB" if size else (f"{unit.group(1).rstrip('.')} {unit.group(2)}"
                                                                if unit else None)
    where = "GPU memory" if gpu else "memory"
    return f"out of {where}" + (f" (a further {size} was asked for)" if size else "")


class MissingExtra(ImportError):
    """An optional dependency (one of cusim's extras) that a feature needs is not installed; the message says
    which extra installs it. An ImportError, so code that catches those still does; the CLI prints it as one line."""


def import_extra(module: str, extra: str, what: str):
    """``module`` imported, or :class:`MissingExtra` ("WHAT needs MODULE, which is not installed: pip install
    'cusim[EXTRA]'")."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = (e.name or module).split(".")[0]
        raise MissingExtra(f"{what} needs {missing}, which is not installed: pip install 'cusim[{extra}]'") from None
