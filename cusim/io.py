"""HDF5 datasets, format ``cusim-sim`` version 1 (DESIGN section 2).

``load(path) -> Dataset`` validates everything before returning; ``save(dataset, path)``,
``add_recon(path, ...)``, ``save_recon_as(source, out, ...)`` and ``set_pattern_params`` never leave a
half-written file: they write a temporary file in the same folder and rename it over the target (an atomic
step on POSIX file systems; a symlink is followed and kept). Writers of one file take turns: each holds an
exclusive lock (``cusim._files.file_lock``) from reading the file to the rename, so concurrent additions
are all kept.

Every problem is a :class:`DatasetError` (a ValueError) whose message names the file, the path inside
it and what was expected, in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._files import LockTimeout, atomic_target, file_lock, make_temporary, resolve, same_file
from ._syserrors import GiB, check_allocation, describe_os_error
from ._validate import check_int, check_number, check_positive
from .optics import Widefield, check_optics_value, validate_psf
from .patterns import HexagonalParams, SinusoidParams

FORMAT, FORMAT_VERSION = "cusim-sim", 1
RAW_DTYPES = (np.uint8, np.uint16, np.float32)
OPTICS_ATTRS = ("na", "wavelength_nm", "pixel_size_nm")


class DatasetError(ValueError):
    """A dataset that does not follow the format; the message names the file and the path inside it."""


class DatasetLocked(DatasetError):
    """Another process holds the file: a cusim writer (its lock, beyond the wait) or any program that has
    it open for writing (HDF5's own file lock)."""


@dataclass
class Recon:
    """One reconstruction: ``image`` (H, W) or (T, H, W), provenance ``attrs``, optional ``loss`` history."""

    image: np.ndarray
    attrs: dict = field(default_factory=dict)
    loss: np.ndarray | None = None


@dataclass
class Dataset:
    """One raw SIM acquisition with what is known about it. Fields mirror the file's paths."""

    raw: np.ndarray
    upsample: int
    patterns: np.ndarray | None = None
    pattern_params: SinusoidParams | HexagonalParams | None = None
    pattern_kind: str | None = None
    # the other attributes of /pattern_params (the provenance `cusim estimate` records: source, peak_snr, ...), kept
    # through a load and save (a region's file, --roi)
    pattern_attrs: dict = field(default_factory=dict)
    psf: np.ndarray | None = None
    na: float | None = None
    wavelength_nm: float | None = None
    pixel_size_nm: float | None = None
    ground_truth: np.ndarray | None = None
    recons: dict[str, Recon] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    path: Path | None = None
    # The camera as the importer was told (group ``/camera``, any of ``offset`` (counts at zero light),
    # ``gain`` (counts per photo-electron), ``read_sigma`` (counts)): the camera noise model's defaults
    # (noise "camera"); None: nothing known, everything estimated from the frames.
    camera: dict | None = None
    # In memory only (not in the file): the stored patterns of the field this one was cropped from and
    # the crop's fine-pixel origin in it, so that a crop's patterns extend past it (``margin_camera``).
    pattern_context: tuple | None = field(default=None, repr=False, compare=False)

    # -- derived shapes -------------------------------------------------------------------------
    @property
    def is_series(self) -> bool:
        return self.raw.ndim == 4

    @property
    def T(self) -> int:
        return self.raw.shape[0] if self.is_series else 1

    @property
    def K(self) -> int:
        return self.raw.shape[-3]

    @property
    def camera_shape(self) -> tuple[int, int]:
        return tuple(self.raw.shape[-2:])

    @property
    def fine_shape(self) -> tuple[int, int]:
        h, w = self.camera_shape
        return (h * self.upsample, w * self.upsample)

    def frames(self, t: int = 0) -> np.ndarray:
        """The raw frames (K, h, w) of time point ``t``, as float32."""
        return np.asarray(self.raw[t] if self.is_series else self.raw, dtype=np.float32)

    # -- what the operators need -----------------------------------------------------------------
    def has_patterns(self) -> bool:
        return self.patterns is not None or self.pattern_params is not None

    def _field_patterns(self) -> np.ndarray:
        if self.patterns is not None:
            return np.asarray(self.patterns, dtype=np.float32)
        if self.pattern_params is not None:
            return self._render(self.pattern_params, self.fine_shape)
        raise DatasetError(f"{self._name()}: no /patterns and no /pattern_params; estimate them first "
                           "(cusim estimate, or cusim run --estimate-patterns) or import the file with a pattern "
                           "stack")

    def _render(self, params: SinusoidParams, shape, margin_camera: int = 0) -> np.ndarray:
        """``params`` rendered on a fine grid of ``shape`` and clipped at 0, float32; NotEnoughMemory first
        when that grid would not fit the free memory."""
        H, W = shape
        grid = f"{H}x{W} fine pixels" + (f" (margin_camera {margin_camera})" if margin_camera else "")
        # the (K, H, W) float32 result, and float64 phase, cosine and sum planes while one frame is rendered
        check_allocation(self.K * H * W * 4 + H * W * 32,
                         f"{self._name()}: /pattern_params: rendering {self.K} patterns on {grid}")
        out = params.render((H, W))
        return np.maximum(out, 0, out=out)

    def _psf_reach_px(self, optics) -> int:
        """Fine pixels of the PSF's reach: its half-size, or 4 camera pixels for ideal optics."""
        return optics.shape[0] // 2 if isinstance(optics, np.ndarray) else 4 * self.upsample

    @property
    def field_isolated(self) -> bool:
        """Whether the attributes say no light from outside the field reaches the frames
        (``field_isolated``: ``cusim simulate``'s zero-padded model; :meth:`crop` drops it)."""
        return bool(self.attrs.get("field_isolated"))

    def margin_reach(self) -> int:
        """Camera pixels of the PSF's reach: how far outside the field structure still blurs into it."""
        return -(-self._psf_reach_px(self.optics()) // self.upsample)

    def margin_available(self) -> int | None:
        """Camera pixels by which the patterns are known past the field on every side: None (any
        number) for pattern parameters, the room left in the parent field for a crop of stored
        patterns (:meth:`crop`), else 0."""
        if self.patterns is None:
            return None if self.pattern_params is not None else 0
        if self.pattern_context is None:
            return 0
        parent, top, left = self.pattern_context
        H, W = self.fine_shape
        room = min(top, left, parent.shape[-2] - top - H, parent.shape[-1] - left - W)
        return room // self.upsample

    def default_margin(self) -> int:
        """The margin (camera pixels) a reconstruction uses unless told: the PSF's reach (:meth:`margin_reach`), as far
        as the patterns are known past the field (:meth:`margin_available`); 0 for a field marked
        ``field_isolated`` in its attributes (no light from outside it: ``cusim simulate``'s frames)."""
        if self.field_isolated:
            return 0
        avail, reach = self.margin_available(), self.margin_reach()
        return reach if avail is None else min(reach, avail)

    def check_margin(self, margin_camera: int) -> None:
        """Raise one DatasetError unless ``margin_camera`` (camera pixels) is an integer >= 0 within what
        the patterns cover."""
        margin = check_int("margin_camera", margin_camera, 0,
                           error=lambda msg: DatasetError(f"{self._name()}: {msg} (camera pixels)"))
        avail = self.margin_available() if margin else None
        if avail is not None and margin > avail:
            raise DatasetError(f"{self._name()}: margin_camera {margin}: the patterns are known only {avail} camera "
                               "pixels past the field (stored /patterns without /pattern_params); use a smaller "
                               "margin, or estimate pattern parameters (cusim estimate)")

    def get_patterns(self, margin_camera: int = 0) -> np.ndarray:
        """(K, H, W) float32: the stored patterns, or those generated from ``/pattern_params``; with
        ``margin_camera`` (camera pixels) on the grid extended by ``margin_camera * upsample`` fine pixels
        on every side. A grid too large for the free memory is refused before rendering
        (:class:`~cusim._syserrors.NotEnoughMemory`, a ValueError)."""
        self.check_margin(margin_camera)
        margin = int(margin_camera)
        if margin == 0:
            return self._field_patterns()
        e = margin * self.upsample
        H, W = self.fine_shape
        if self.patterns is not None:
            parent, top, left = self.pattern_context
            return np.asarray(parent[:, top - e : top + H + e, left - e : left + W + e], dtype=np.float32)
        return self._render(self.pattern_params.moved(-e, -e), (H + 2 * e, W + 2 * e), margin)

    def optics(self):
        """The PSF array, or :class:`~cusim.optics.Widefield` from the optics attributes."""
        if self.psf is not None:
            return self.psf
        if all(getattr(self, a) is not None for a in OPTICS_ATTRS):
            return Widefield(self.na, self.wavelength_nm, self.pixel_size_nm)
        raise DatasetError(f"{self._name()}: no /psf and no optics attributes {OPTICS_ATTRS}; "
                           "re-import with --psf or --na/--wavelength-nm/--pixel-size-nm")

    def operator(self, *, pad_fine: int | None = None, margin_camera: int = 0, device: str = "auto",
                 dtype: str = "float32"):
        """The :class:`~cusim.SIMOperator` of this acquisition: zero margin ``pad_fine`` fine pixels
        (default the PSF's half-size); with ``margin_camera`` its object extends that many camera pixels
        past the field (:meth:`get_patterns`)."""
        from .operators import SIMOperator  # noqa: PLC0415

        optics = self.optics()
        if pad_fine is None:
            pad_fine = self._psf_reach_px(optics)
        return SIMOperator(self.get_patterns(margin_camera), optics, self.upsample, pad_fine=pad_fine,
                           margin_camera=margin_camera, device=device, dtype=dtype)

    def crop(self, top: int, left: int, height: int, width: int) -> "Dataset":
        """The sub-field of fine-grid rows ``top..top+height`` and columns ``left..left+width``.

        All four must be multiples of ``upsample`` (the camera pixels are cropped with them). Patterns,
        pattern parameters (the phase moves with the origin) and ground truth follow; reconstructions
        are dropped. The result is no longer periodic: use the operator's ``pad_fine``, and its
        ``margin_camera`` (the crop keeps a reference to the whole field's patterns for that, in memory); nor isolated
        (the attribute ``field_isolated`` is dropped: structure outside a crop blurs into it). The attribute
        ``crop`` records the region as [top, left, height, width] in the fine pixels of the first uncropped
        field (a crop of a crop adds its origin to the one recorded).
        """
        s = self.upsample
        H, W = self.fine_shape
        if any(v % s for v in (top, left, height, width)) or min(top, left) < 0 or height < s or width < s \
                or top + height > H or left + width > W:
            raise DatasetError(f"{self._name()}: crop ({top}, {left}, {height}, {width}): expected multiples of "
                               f"upsample {s} inside the fine grid {H}x{W}")
        fine = (..., slice(top, top + height), slice(left, left + width))
        cam = (..., slice(top // s, (top + height) // s), slice(left // s, (left + width) // s))
        params = None if self.pattern_params is None else self.pattern_params.moved(top, left)
        context = None
        if self.patterns is not None:
            parent, t0, l0 = self.pattern_context or (self.patterns, 0, 0)
            context = (parent, t0 + top, l0 + left)
        return dataclasses.replace(
            self, raw=np.ascontiguousarray(self.raw[cam]), pattern_params=params, recons={},
            patterns=None if self.patterns is None else np.ascontiguousarray(self.patterns[fine]),
            ground_truth=None if self.ground_truth is None else np.ascontiguousarray(self.ground_truth[fine]),
            attrs={**{k: v for k, v in self.attrs.items() if k != "field_isolated"},
                   "crop": [*self._crop_origin(top, left), height, width]},
            pattern_context=context)

    def _crop_origin(self, top: int, left: int) -> tuple[int, int]:
        """(top, left) of a crop at (top, left) of this field, in the fine pixels of the field it was cut from."""
        prev = self.attrs.get("crop")
        try:
            t0, l0 = (int(v) for v in np.asarray(prev).reshape(-1)[:2]) if np.size(prev) == 4 else (0, 0)
        except (TypeError, ValueError):  # a hand-edited record: this crop alone
            t0, l0 = 0, 0
        return t0 + top, l0 + left

    def crop_center(self, size: int) -> "Dataset":
        """The central ``size`` x ``size`` fine-pixel crop (``size`` a multiple of ``upsample``)."""
        H, W = self.fine_shape
        s = self.upsample
        return self.crop((H - size) // 2 // s * s, (W - size) // 2 // s * s, size, size)

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "dataset"

    # -- validation ------------------------------------------------------------------------------
    def validate(self) -> "Dataset":
        """Check every field against the format; raises DatasetError naming the path."""
        n = self._name()
        raw = self.raw
        if not isinstance(raw, np.ndarray):  # a list reached raw.ndim as an AttributeError
            raise DatasetError(f"{n}: /raw: expected a NumPy array (K, h, w) or (T, K, h, w), got "
                               f"{type(raw).__name__}")
        _check_array(n, "/raw", raw)
        if raw.ndim not in (3, 4):
            raise DatasetError(f"{n}: /raw: expected shape (K, h, w) or (T, K, h, w), got {raw.shape}")
        check_int(f"{n}: attribute upsample", self.upsample, 1, 8, error=DatasetError)
        K, (H, W) = self.K, self.fine_shape
        if self.patterns is not None:
            _check_array(n, "/patterns", self.patterns)
            if self.patterns.shape != (K, H, W):
                raise DatasetError(f"{n}: /patterns: expected shape (K, H, W) = ({K}, {H}, {W}) from /raw "
                                   f"{raw.shape} and upsample {self.upsample}, got {self.patterns.shape}")
            if float(np.min(self.patterns)) < 0:
                raise DatasetError(f"{n}: /patterns: illumination must be non-negative")
        if self.pattern_params is not None and self.pattern_params.K != K:
            where = "phase" if isinstance(self.pattern_params, HexagonalParams) else "k"
            raise DatasetError(f"{n}: /pattern_params/{where}: expected {K} frames as in /raw, "
                               f"got {self.pattern_params.K}")
        if self.psf is not None:
            _check_array(n, "/psf", self.psf)
            try:
                validate_psf(self.psf)
            except ValueError as e:
                raise DatasetError(f"{n}: /{e}") from None
        for a in OPTICS_ATTRS:  # within cusim.optics' ranges: a value in the wrong unit is refused here
            if getattr(self, a) is not None:
                check_optics_value(a, getattr(self, a), label=f"{n}: attribute {a}", error=DatasetError)
        if self.ground_truth is not None:
            _check_array(n, "/ground_truth", self.ground_truth)
            want = (H, W) if not self.is_series else (self.T, H, W)
            if self.ground_truth.shape not in (want, (H, W)):
                raise DatasetError(f"{n}: /ground_truth: expected shape {want}, got {self.ground_truth.shape}")
        if self.camera is not None:
            check_camera(self.camera, error=lambda msg: DatasetError(f"{n}: /camera attribute {msg}"))
        isolated = self.attrs.get("field_isolated")
        if isolated is not None and not (isinstance(isolated, (bool, np.bool_))
                                         or (isinstance(isolated, (int, np.integer)) and isolated in (0, 1))):
            # bool("False") is True: a hand-edited text value would switch the margin off
            raise DatasetError(f"{n}: attribute field_isolated: expected true or false, got {isolated!r}")
        for name, rec in self.recons.items():
            _check_array(n, f"/recon/{name}", rec.image, finite=False)
            if rec.image.shape[-2:] != (H, W):
                raise DatasetError(f"{n}: /recon/{name}: expected fine grid {(H, W)}, got {rec.image.shape}")
        return self


CAMERA_KEYS = ("offset", "gain", "read_sigma")


def check_camera(camera: dict, *, error=ValueError) -> dict:
    """A ``/camera`` record: some of ``offset`` (any finite number), ``gain`` (> 0) and ``read_sigma`` (>= 0),
    as plain floats; anything else is refused (one line, ``error``)."""
    unknown = sorted(set(camera) - set(CAMERA_KEYS))
    if unknown:
        raise error(f"{unknown[0]}: unknown; expected some of {list(CAMERA_KEYS)}")
    checks = {"offset": lambda k, v: check_number(k, v, error=error),
              "gain": lambda k, v: check_positive(k, v, error=error),
              "read_sigma": lambda k, v: check_number(k, v, lo=0.0, error=error)}
    return {k: checks[k](k, camera[k]) for k in CAMERA_KEYS if k in camera}


def _check_array(n: str, where: str, a, finite: bool = True) -> None:
    a = np.asarray(a)
    if a.size == 0:
        raise DatasetError(f"{n}: {where}: empty array (shape {a.shape})")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DatasetError(f"{n}: {where}: expected a numeric (integer or float) dtype, got {a.dtype}")
    if finite and np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise DatasetError(f"{n}: {where}: contains NaN or Inf")


# -- reading ---------------------------------------------------------------------------------------
def _open(path: Path, mode: str = "r"):
    import h5py  # noqa: PLC0415

    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, expected an HDF5 file")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"{path}: not readable (permission denied)")
    try:
        if not h5py.is_hdf5(path):
            raise DatasetError(f"{path}: not an HDF5 file (expected format {FORMAT!r})")
        return h5py.File(path, mode)
    except DatasetError:
        raise
    except OSError as e:
        if _is_lock_error(e):
            raise DatasetLocked(f"{path}: locked by another process (a program has it open for writing); "
                                "try again once it has closed the file") from None
        raise DatasetError(f"{path}: unreadable HDF5 file (truncated or corrupt): {str(e).splitlines()[0]}") from None


def _is_lock_error(e: OSError) -> bool:
    """HDF5's file lock refused the file (``unable to lock file, errno = 11``): another process has it open."""
    return isinstance(e, BlockingIOError) or "unable to lock file" in str(e).lower()


def _check_fits_memory(f, n: str) -> None:
    """Before reading: the arrays :func:`load` reads, by their declared shapes, must fit the free memory."""
    import h5py  # noqa: PLC0415

    sizes = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and (name in ("raw", "patterns", "psf", "ground_truth")
                                              or name.startswith(("pattern_params/", "recon/"))):
            sizes.append(((obj.size or 0) * obj.dtype.itemsize, name, obj.shape, obj.dtype))

    f.visititems(visit)
    if sizes:
        big = max(sizes, key=lambda x: x[0])
        shape = "x".join(map(str, big[2] or ()))
        check_allocation(sum(x[0] for x in sizes),
                         f"{n}: loading its arrays (the largest, /{big[1]}, is {shape} {big[3]})")


def _read(f, n: str, where: str, required: bool = False):
    import h5py  # noqa: PLC0415

    if where not in f:
        if required:
            raise DatasetError(f"{n}: {where}: missing (required)")
        return None
    obj = f[where]
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(f"{n}: {where}: expected an array, found a group")
    try:
        return obj[()]
    except (OSError, TypeError, ValueError) as e:
        raise DatasetError(f"{n}: {where}: could not be read: {str(e).splitlines()[0]}") from None


def _attr(f, name):
    v = f.attrs.get(name)
    if v is None:
        return None
    v = v.item() if isinstance(v, np.generic) else v
    return v.decode() if isinstance(v, bytes) else v


def load(path) -> Dataset:
    """Read and validate a ``cusim-sim`` v1 file. Raises :class:`DatasetError` with one clear line
    (:class:`DatasetLocked` while another program has it open for writing), or
    :class:`~cusim._syserrors.NotEnoughMemory` before reading arrays that would not fit the memory."""
    path = Path(path)
    n = str(path)
    try:
        with _open(path) as f:
            fmt, ver = _attr(f, "format"), _attr(f, "format_version")
            if not isinstance(fmt, str) or fmt != FORMAT:  # an array attribute would not compare to one value
                raise DatasetError(f"{n}: attribute format: expected {FORMAT!r}, got {fmt!r}")
            if isinstance(ver, bool) or not isinstance(ver, int) or ver != FORMAT_VERSION:
                raise DatasetError(f"{n}: attribute format_version: expected {FORMAT_VERSION}, got {ver!r}")
            if "upsample" not in f.attrs:
                raise DatasetError(f"{n}: attribute upsample: missing (required)")
            _check_fits_memory(f, n)
            ds = Dataset(raw=_read(f, n, "/raw", required=True), upsample=_attr(f, "upsample"), path=path,
                         patterns=_read(f, n, "/patterns"), psf=_read(f, n, "/psf"),
                         ground_truth=_read(f, n, "/ground_truth"),
                         **{a: _attr(f, a) for a in OPTICS_ATTRS})
            if "pattern_params" in f:
                ds.pattern_params, ds.pattern_kind = _read_params(f, n)
                ds.pattern_attrs = {k: _json_or_value(_attr(f["pattern_params"], k)) for k in f["pattern_params"].attrs
                                    if k not in ("kind", "family")}
            if "camera" in f:
                ds.camera = {k: _attr(f["camera"], k) for k in f["camera"].attrs}
            ds.attrs = {k: _attr(f, k) for k in f.attrs
                        if k not in ("format", "format_version", "upsample", *OPTICS_ATTRS)}
            ds.recons = _read_recons(f, n)
    except DatasetError:
        raise
    except (OSError, KeyError, RuntimeError) as e:  # damaged internals found while reading
        raise DatasetError(f"{n}: unreadable HDF5 content: {str(e).splitlines()[0]}") from None
    return ds.validate()


def peek(path, recon: str | None = None) -> tuple[tuple, dict | None]:
    """The shape of ``/raw`` and the attributes of ``/recon/<recon>`` (None where there is none), read
    without loading any array: enough to plan a run (time points) and to see what it would replace. A
    file that is not a ``cusim-sim`` v1 dataset is a :class:`DatasetError` (one line, as :func:`load`);
    everything else is checked by :func:`load` where the data are read."""
    import h5py  # noqa: PLC0415

    path = Path(path)
    n = str(path)
    try:
        with _open(path) as f:
            fmt, ver = _attr(f, "format"), _attr(f, "format_version")
            if not (isinstance(fmt, str) and fmt == FORMAT and isinstance(ver, int) and ver == FORMAT_VERSION):
                raise DatasetError(f"{n}: attribute format/format_version: expected {FORMAT!r} version "
                                   f"{FORMAT_VERSION}, got {fmt!r} version {ver!r}")
            raw = f.get("raw")
            if not isinstance(raw, h5py.Dataset):
                raise DatasetError(f"{n}: /raw: missing (required)")
            where = f"recon/{recon}"
            attrs = None
            if recon is not None and where in f:
                attrs = {k: _json_or_value(_attr(f[where], k)) for k in f[where].attrs}
            return tuple(raw.shape), attrs
    except DatasetError:
        raise
    except (OSError, KeyError, RuntimeError) as e:
        raise DatasetError(f"{n}: unreadable HDF5 content: {str(e).splitlines()[0]}") from None


def acquisition(path) -> dict:
    """What a file's headers say of its acquisition, read without loading an array: the raw frames' shape and
    dtype, ``upsample`` and the optics attributes. Two files that differ here hold other acquisitions (the
    converse needs the data: :func:`check_same_acquisition`). A file that is no dataset: DatasetError."""
    path = Path(path)
    shape = peek(path)[0]
    with _open(path) as f:
        return {"raw": f"{shape} {f['raw'].dtype}", "upsample": _attr(f, "upsample"),
                **{a: _attr(f, a) for a in OPTICS_ATTRS}}


def _read_params(f, n: str):
    import h5py  # noqa: PLC0415

    g = f["pattern_params"]
    if not isinstance(g, h5py.Group):
        raise DatasetError(f"{n}: /pattern_params: expected a group (k, phase, modulation), found an array")
    family = _attr(g, "family")
    family = "sinusoidal" if family is None else family
    if not isinstance(family, str) or family not in ("sinusoidal", HexagonalParams.family):
        raise DatasetError(f"{n}: /pattern_params: attribute family: expected 'sinusoidal' or "
                           f"{HexagonalParams.family!r}, got {family!r}")
    kind = _attr(g, "kind")
    if kind is not None and not isinstance(kind, str):
        raise DatasetError(f"{n}: /pattern_params: attribute kind: expected text (e.g. 'estimated'), got {kind!r}")
    hexagonal = family == HexagonalParams.family
    names = ("k", "phase", "modulation") if hexagonal else ("k", "phase", "modulation", "harmonics")
    arrays = {k: _read(f, n, f"/pattern_params/{k}", required=k != "harmonics") for k in names}
    for k in names:
        if arrays[k] is not None and (k != "harmonics" or np.size(arrays[k])):  # (K, 0) harmonics: none
            arrays[k] = _numeric(n, f"/pattern_params/{k}", arrays[k])
    try:
        params = (HexagonalParams if hexagonal else SinusoidParams)(**arrays)
    except ValueError as e:
        raise DatasetError(f"{n}: /pattern_params: {e}") from None
    return params, kind


def _numeric(n, where, a):
    _check_array(n, where, a)
    return a


def _json_or_value(v):
    """Dict and list attributes are stored as JSON text (``params``, ``metrics``); decode them."""
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _read_recons(f, n: str) -> dict[str, Recon]:
    out = {}
    if "recon" not in f:
        return out
    import h5py  # noqa: PLC0415

    g = f["recon"]
    if not isinstance(g, h5py.Group):
        raise DatasetError(f"{n}: /recon: expected a group of reconstructions, found an array")
    for name in g:
        if name.endswith("_loss"):
            continue
        img = _read(f, n, f"/recon/{name}")
        attrs = {k: _json_or_value(_attr(g[name], k)) for k in g[name].attrs}
        out[name] = Recon(np.asarray(img), attrs, _read(f, n, f"/recon/{name}_loss"))
    return out


# -- writing ---------------------------------------------------------------------------------------
def _write_recon(g, name: str, rec: Recon) -> None:
    d = g.create_dataset(name, data=np.asarray(rec.image, dtype=np.float32))
    for k, v in rec.attrs.items():
        d.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    if rec.loss is not None:
        g.create_dataset(f"{name}_loss", data=np.asarray(rec.loss, dtype=np.float64))


def _write_params(f, p: SinusoidParams | HexagonalParams, kind: str, attrs: dict | None = None) -> None:
    g = f.create_group("pattern_params")
    g.attrs["kind"] = kind
    if isinstance(p, HexagonalParams):  # k (3, 2), phase (K, 3), modulation (3,): docs/data.md
        g.attrs["family"] = p.family
    for k, v in (attrs or {}).items():
        g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    g.create_dataset("k", data=p.k)
    g.create_dataset("phase", data=p.phase)
    g.create_dataset("modulation", data=p.modulation)
    if p.harmonics is not None:
        g.create_dataset("harmonics", data=p.harmonics)


def _write(f, ds: Dataset) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["upsample"] = int(ds.upsample)
    for a in OPTICS_ATTRS:
        if getattr(ds, a) is not None:
            f.attrs[a] = float(getattr(ds, a))
    for k, v in ds.attrs.items():
        f.attrs[k] = v
    raw = np.asarray(ds.raw)
    if raw.dtype not in RAW_DTYPES:
        raw = raw.astype(np.float32)
    f.create_dataset("raw", data=raw, chunks=True, compression="gzip", compression_opts=1)
    if ds.patterns is not None:
        f.create_dataset("patterns", data=np.asarray(ds.patterns, dtype=np.float32), chunks=True,
                         compression="gzip", compression_opts=1)
    if ds.pattern_params is not None:
        _write_params(f, ds.pattern_params, ds.pattern_kind or "sinusoidal", ds.pattern_attrs)
    if ds.camera:
        g = f.create_group("camera")
        for k, v in ds.camera.items():
            g.attrs[k] = float(v)
    if ds.psf is not None:
        f.create_dataset("psf", data=np.asarray(ds.psf, dtype=np.float32))
    if ds.ground_truth is not None:
        f.create_dataset("ground_truth", data=np.asarray(ds.ground_truth, dtype=np.float32))
    if ds.recons:
        g = f.create_group("recon")
        for name, rec in ds.recons.items():
            _write_recon(g, name, rec)


def _atomic(path: Path, fill, *, prepare=None, extra_bytes: int = 0, copies: bool = True) -> None:
    """Write ``path`` through a temporary file beside it, holding the writers' lock of ``path`` throughout.

    First :func:`check_writable` with the ``extra_bytes`` the write adds (HDF5 itself can crash the process
    on a full disk, so that is refused before it is asked), and with room for a copy of the existing file
    unless ``copies`` is False (a new file that does not start from it). Under the lock, ``prepare()`` (if given)
    re-reads what it must check, raises to refuse, and returns the file whose bytes the new file starts
    from (None: an empty file); then ``fill(h5file)`` completes the temporary file and it is renamed over
    ``path`` (its target, when ``path`` is a symlink). System errors become one DatasetError line; waiting
    longer than ``_files.LOCK_TIMEOUT_S`` is DatasetLocked.
    """
    import h5py  # noqa: PLC0415

    target = resolve(path)
    check_writable(path, extra_bytes, copy=copies)
    try:
        with file_lock(path):
            source = prepare() if prepare is not None else None
            with atomic_target(target) as tmp:
                if source is not None:
                    with _open(Path(source)):  # HDF5's lock keeps other programs from writing it while we copy
                        shutil.copyfile(source, tmp)
                with h5py.File(tmp, "a" if source is not None else "w") as f:
                    fill(f)
    except LockTimeout as e:
        raise DatasetLocked(str(e)) from None
    except OSError as e:
        raise DatasetError(describe_os_error(e, path)) from e


def check_writable(path, extra_bytes: int = 0, *, copy: bool = True) -> None:
    """Raise one DatasetError line unless ``path`` could be written now: its folder exists and takes a new
    file, the file (if any) is not write-protected, and the folder's file system has room for ``extra_bytes``
    plus, with ``copy``, a copy of the file (a write that starts from the existing file: adding to it). Meant for
    before a long computation whose result goes there; the write itself checks everything again."""
    target = resolve(path)
    if not target.parent.is_dir():
        raise DatasetError(f"{path}: folder {target.parent} does not exist")
    if target.is_dir():
        raise DatasetError(f"{path}: is a folder, expected an HDF5 file")
    if target.exists() and not os.access(target, os.W_OK):
        raise DatasetError(f"{path}: permission denied (the file is write-protected)")
    try:
        make_temporary(target).unlink()
        st = os.statvfs(target.parent)
        need = (target.stat().st_size if copy and target.exists() else 0) + int(extra_bytes)
    except OSError as e:
        raise DatasetError(describe_os_error(e, path)) from e
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise DatasetError(f"{path}: no space left on device (writing it needs {_size(need)} beside it, "
                           f"{_size(free)} are free)")


def _size(nbytes: int) -> str:
    if nbytes >= GiB:
        return f"{nbytes / GiB:.2f} GiB"
    return f"{nbytes / 2**20:.2f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KiB"


def save(ds: Dataset, path) -> Path:
    """Write ``ds`` to ``path`` atomically (temporary file + rename, under the writers' lock); validates first."""
    path = Path(path)
    ds.validate()
    arrays = [ds.raw, ds.patterns, ds.psf, ds.ground_truth, *(a for r in ds.recons.values() for a in (r.image, r.loss))]
    _atomic(path, lambda f: _write(f, ds), extra_bytes=stored_bytes(*arrays), copies=False)  # a new file, no copy
    return path


def stored_bytes(*arrays) -> int:
    """Bytes the arrays take in a file (None entries count nothing), plus 64 KiB for HDF5's own structures."""
    return sum(int(np.asarray(a).nbytes) for a in arrays if a is not None) + 2**16


def check_recon_name(path: Path, name: str) -> None:
    """A name a result can be stored under in ``path``'s ``/recon`` (DatasetError naming the rule otherwise)."""
    if not name.strip() or name in (".", "..") or "/" in name or name.endswith("_loss"):
        raise DatasetError(f"{path}: /recon/{name}: invalid name (expected some text other than '.' and '..', "
                           f"no '/', not ending in '_loss')")


def _check_recon_fits(path: Path, name: str, ds: Dataset, rec: Recon, force: bool) -> None:
    """Refuse an existing ``/recon/<name>`` (unless ``force``) and an image off the fine grid of ``ds``."""
    if name in ds.recons and not force:
        raise DatasetError(f"{path}: /recon/{name}: exists already; use --force to overwrite it")
    H, W = ds.fine_shape
    if np.asarray(rec.image).shape[-2:] != (H, W):
        raise DatasetError(f"{path}: /recon/{name}: expected fine grid {(H, W)}, got {np.asarray(rec.image).shape}")


def _recon_filler(name: str, rec: Recon):
    def fill(f):
        g = f.require_group("recon")
        for key in (name, f"{name}_loss"):
            if key in g:
                del g[key]
        _write_recon(g, name, rec)
    return fill


def add_recon(path, name: str, rec: Recon, *, force: bool = False) -> None:
    """Add ``/recon/<name>`` to an existing file without ever exposing a half-written file.

    An existing reconstruction of that name is kept unless ``force``. Writers of one file take turns
    (see :func:`_atomic`); the check for an existing name reads the file after this writer's turn came.
    """
    path = Path(path)
    check_recon_name(path, name)

    def prepare():
        _check_recon_fits(path, name, load(path), rec, force)
        return resolve(path)

    _atomic(path, _recon_filler(name, rec), prepare=prepare, extra_bytes=stored_bytes(rec.image, rec.loss))


def save_recon_as(source_path, out_path, name: str, rec: Recon, *, force: bool = False) -> Path:
    """Write the dataset of ``source_path`` with ``/recon/<name>`` added to ANOTHER file, ``out_path``.

    The input is only read (it may be read-only, in a read-only folder). A new ``out_path`` starts as a
    byte copy of the input (raw, patterns, PSF, optics, ground truth, existing reconstructions); an existing
    one must be a cusim dataset of the same raw data, and the reconstruction is added to it. The rules of
    :func:`add_recon` hold for ``out_path`` (atomic, writers take turns, no overwrite without ``force``,
    also of a reconstruction copied from the input). ``out_path`` naming the input itself (also through a
    symlink or hard link) is refused. Returns ``out_path``.
    """
    source, out = Path(source_path), Path(out_path)
    check_recon_name(out, name)

    def refuse_input():
        if same_file(source, out):
            raise DatasetError(f"{out}: is the input file {source}; write the result to another file, "
                               "or add it to the input itself")

    refuse_input()
    src = load(source)
    _check_recon_fits(out, name, src, rec, force=True)  # the fine grid; the name is checked where it goes

    def prepare():
        refuse_input()
        target = resolve(out)
        if not target.exists():
            if name in src.recons and not force:
                raise DatasetError(f"{out}: /recon/{name}: exists already in the input {source}, which the new "
                                   "file copies; use --force to replace it in the copy, or another name")
            return source
        try:
            dest = load(out)
        except DatasetLocked:
            raise
        except DatasetError as e:
            raise DatasetError(f"{e} (the output file exists already and is not a dataset to add to)") from None
        check_same_acquisition(out, dest, source, src)
        _check_recon_fits(out, name, dest, rec, force)
        return target

    copied = 0 if resolve(out).exists() else source.stat().st_size  # a new output starts as a copy of the input
    _atomic(out, _recon_filler(name, rec), prepare=prepare, extra_bytes=copied + stored_bytes(rec.image, rec.loss))
    return out


def _params_arrays(p) -> tuple:
    if p is None:
        return ()
    return (type(p).__name__, p.k, p.phase, p.modulation, getattr(p, "harmonics", None))


def check_same_acquisition(out, dest: Dataset, source, src: Dataset) -> None:
    """Refuse (one DatasetError line naming the first difference) to add a result computed from ``src`` (the
    file ``source``) to ``dest`` (the existing file ``out``): the result was made from ``src``'s raw frames,
    patterns, PSF, optics and camera, and a file that records others would claim it for them."""
    def same(a, b) -> bool:
        if isinstance(a, tuple) or isinstance(b, tuple):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if a is None or b is None:
            return a is b
        if isinstance(a, str) or isinstance(b, str):
            return a == b
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 0 and b.ndim == 0:  # a number: its value (an attribute may be stored as 520 or 520.0)
            return bool(a == b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))

    parts = (("raw data", (dest.upsample, dest.raw), (src.upsample, src.raw)),
             ("patterns (/patterns)", dest.patterns, src.patterns),
             ("pattern parameters (/pattern_params)", _params_arrays(dest.pattern_params),
              _params_arrays(src.pattern_params)),
             ("PSF (/psf)", dest.psf, src.psf),
             ("optics (na, wavelength_nm, pixel_size_nm)", (dest.na, dest.wavelength_nm, dest.pixel_size_nm),
              (src.na, src.wavelength_nm, src.pixel_size_nm)),
             ("camera (/camera)", dest.camera or {}, src.camera or {}))
    for what, a, b in parts:
        if not (a == b if isinstance(a, dict) else same(a, b)):
            raise DatasetError(f"{out}: exists already and holds other {what} than {source}; choose another "
                               "output file")


def set_pattern_params(path, params: SinusoidParams | HexagonalParams, *, kind: str = "estimated",
                       attrs: dict | None = None, force: bool = False) -> None:
    """Store ``/pattern_params`` in an existing file (atomically, under the writers' lock), e.g. the result
    of ``cusim estimate``.

    Existing parameters are kept unless ``force``. ``attrs`` (provenance) go on the group.
    """
    path = Path(path)

    def prepare():
        existing = load(path)
        if existing.pattern_params is not None and not force:
            raise DatasetError(f"{path}: /pattern_params: exists already; use --force to replace it")
        if params.K != existing.K:
            raise DatasetError(f"{path}: /pattern_params/k: expected {existing.K} frames as in /raw, got {params.K}")
        return resolve(path)

    def fill(f):
        if "pattern_params" in f:
            del f["pattern_params"]
        _write_params(f, params, kind, attrs)

    _atomic(path, fill, prepare=prepare)
