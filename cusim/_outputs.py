"""What an output path may be: never an input, never an existing file of another kind, never an
existing file without ``force``; a figure's format follows its suffix. One rule for every command.
"""

from __future__ import annotations

from pathlib import Path

from ._files import resolve, same_file

# leading bytes of the kinds of file cusim writes
_SIGNATURES = {
    "hdf5": (b"\x89HDF\r\n\x1a\n",),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "pdf": (b"%PDF",),
    "svg": (b"<?xml", b"<svg"),
    "jpeg": (b"\xff\xd8\xff",),
}
# figure suffix -> the kind of file matplotlib writes for it
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}
# suffixes that name a format: an output of another kind under one of them (an HDF5 file called data.tif) is refused
_SUFFIX_KINDS = {**FIGURE_FORMATS, ".h5": "hdf5", ".hdf5": "hdf5", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy",
                 ".npz": "npz", ".mrc": "mrc", ".zarr": "zarr", ".csv": "text", ".txt": "text"}


class OutputError(ValueError):
    """An output path that would destroy data or cannot be written; the message names the option."""


def file_kind(path) -> str | None:
    """The kind of an existing file from its first bytes (None: empty, unreadable or unknown)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for kind, sigs in _SIGNATURES.items():
        if any(head.startswith(s) for s in sigs):
            return kind
    return None


def check_output(option: str, path, kind: str, *, inputs=(), force: bool = False) -> Path:
    """Check ``path`` for an output of ``kind`` (a key of the signatures above) given as ``option``.

    Refused (OutputError, one line) when it is one of ``inputs`` (symlinks followed), a folder, in a
    folder that does not exist, an existing file of another kind (even with ``force``), or an existing
    file of this kind without ``force``.
    """
    path = Path(path)
    for inp in inputs:
        if same_file(path, Path(inp)):
            raise OutputError(f"{option}: {path} is the input {inp}; choose another output path")
    if path.is_dir():
        raise OutputError(f"{option}: {path} is a folder; expected a file path")
    if not path.parent.resolve().is_dir():
        raise OutputError(f"{option}: folder {path.parent} does not exist")
    if path.exists():
        have = file_kind(path)
        if have != kind:
            what = f"a {have.upper()} file" if have else "a file cusim did not write"
            raise OutputError(f"{option}: {path} exists and is {what}, not {kind.upper()}; it is not replaced "
                              f"(remove it yourself, or choose another path)")
        if not force:
            raise OutputError(f"{option}: {path} exists already; use --force to replace it")
    check_suffix(option, path, kind)
    return path


def check_suffix(option: str, path, kind: str) -> None:
    """Refuse (OutputError) a name whose suffix promises another format than ``kind`` (an HDF5 file data.tif)."""
    path = Path(path)
    named = _SUFFIX_KINDS.get(path.suffix.lower(), kind)
    if named != kind:
        what = "an OME-Zarr folder" if kind == "zarr" else kind.upper()
        raise OutputError(f"{option}: {path}: cusim writes {what} here, not {path.suffix}; expected a name "
                          f"that does not promise another format")


def check_distinct(*named) -> None:
    """Refuse (OutputError) two outputs ``(option, path)`` of one command that name one file, symlinks followed,
    also where neither exists yet (None paths: not asked for)."""
    for j, (option, path) in enumerate(named):
        for other, before in named[:j]:
            if path is not None and before is not None and resolve(path) == resolve(before):
                raise OutputError(f"{option}: {path} is also the {other}; expected two paths")


def figure_kind(option: str, path) -> str:
    """The figure format that ``path``'s suffix asks for, or OutputError naming the ones cusim writes."""
    kind = FIGURE_FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise OutputError(f"{option}: {path}: unknown figure format {Path(path).suffix or '(no suffix)'!r}; "
                          f"expected one of {', '.join(FIGURE_FORMATS)}")
    return kind
