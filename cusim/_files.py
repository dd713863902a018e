"""Atomic file output: write to a temporary file beside the target, then rename it over the target."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path, *, copy_existing: bool = False):
    """Yield a temporary path in the target's folder; on success it replaces ``path`` in one rename.

    With ``copy_existing`` the temporary file starts as a copy of ``path`` (for appending). The new
    file keeps the mode of the file it replaces (or the umask default). On any error, or if the
    process dies, ``path`` is untouched; on an error the temporary file is removed.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        if copy_existing:
            shutil.copyfile(path, tmp)
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        else:  # mkstemp makes 0600; a new file gets the usual umask-governed mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
