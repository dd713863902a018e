"""Importers behind ``cusim import``: foreign layouts in, validated :class:`~cusim.io.Dataset` out.

Two sources (docs/data.md gives the commands for every shared data set):

* :func:`import_paper` -- one sample of a set of the PINN-for-SIM paper's layout (``input_frames/N.tif``,
  ``patterns/1..K.png``, ``psf.png``, ``ground_truth/N.png``; upsample 4).
* :func:`import_stack` -- a generic raw stack (TIFF or MRC) of ``angles x phases`` frames per time point,
  in angle-major or phase-major order, with the optics given as arguments and optional pattern, PSF and
  ground-truth files. Frames are stored in the canonical angle-major order: frame ``a * phases + p``.

Every problem is a :class:`~cusim.io.DatasetError` (a ValueError) with one line that names the file.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from ._outputs import check_output
from ._validate import check_int, check_number
from ._warnings import warn_saturated
from .io import RAW_DTYPES, Dataset, DatasetError, check_camera, save
from .patterns import HEX_PHASES

PAPER_UPSAMPLE = 4
ORDERS = ("angle-major", "phase-major")
FAMILIES = ("linear", "hexagonal")  # the layouts of a stack: angles x phases of sinusoids, or 7 hexagonal frames
RAW_SUFFIXES = (".tif", ".tiff", ".mrc", ".mrcs")
PATTERN_SUFFIXES = (*RAW_SUFFIXES, ".npy")
IMAGE_SUFFIXES = (*PATTERN_SUFFIXES, ".png")


# -- reading single files ----------------------------------------------------------------------------
def _fail(path, message: str) -> DatasetError:
    return DatasetError(f"{path}: {message}")


def read_array(path, what: str = "array", suffixes=IMAGE_SUFFIXES, *, real: bool = True) -> np.ndarray:
    """Read a TIFF (tifffile), MRC (mrcfile), NumPy ``.npy`` or PNG (Pillow) file into an array.

    ``what`` names the role in messages; ``suffixes`` are the accepted endings for that role; ``real``
    rejects complex and non-numeric arrays.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise _fail(path, f"unsupported {what} file type {path.suffix or '(none)'!r}; "
                          f"expected one of {', '.join(suffixes)}")
    if not path.is_file():
        raise _fail(path, f"no such {what} file" if not path.exists() else f"is not a file ({what} expected)")
    try:
        with _quiet_readers():
            a = _READERS[suffix](path)
    except _Unusable as e:  # readable, but not one array of this role
        raise _fail(path, f"{what} file {e}") from None
    except Exception as e:  # noqa: BLE001 -- any reader failure is one clear line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(path, f"unreadable {what} file: {first}") from None
    if a is None or a.size == 0:
        raise _fail(path, f"{what} file holds no image data (empty or unreadable)")
    if real and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise _fail(path, f"{what}: expected real numbers, got dtype {a.dtype}")
    if not a.dtype.isnative:  # big-endian MRC or TIFF: this machine's byte order ('>u2' is uint16, kept as such)
        a = a.astype(a.dtype.newbyteorder("="))
    return a


@contextlib.contextmanager
def _quiet_readers():
    """The file readers' own complaints (mrcfile's RuntimeWarnings about a header, tifffile's logged 'invalid
    offset to first page') silenced: a damaged file is one line of ours, not eight of theirs before it."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class _Unusable(ValueError):
    """A file its reader read, holding something other than one array (the message says what)."""


def _read_tiff(path: Path) -> np.ndarray:
    """The TIFF's image data. A file of several series (frames or stacks written one by one with ``append=True``)
    is read whole, the series one after another in file order, as Fiji shows its pages: tifffile's ``imread``
    returns the first series only (18 of 27 frames were dropped silently). Series of different shapes or types,
    or the several images of an OME-TIFF (positions, fields), are refused: which of them are the raw frames?"""
    import tifffile  # noqa: PLC0415

    with tifffile.TiffFile(path) as t:
        series = t.series
        if len(series) <= 1:
            return np.asarray(t.asarray())
        kinds = sorted({f"{tuple(s.shape)} {np.dtype(s.dtype)}" for s in series})
        if t.is_ome or len(kinds) > 1:
            what = "OME images (positions or fields)" if t.is_ome else "image series of different shapes or types"
            raise _Unusable(f"holds {len(series)} {what}: {', '.join(kinds[:4])}{' ...' if len(kinds) > 4 else ''}"
                             "; expected one stack of raw frames: save the acquisition to import as a file of its own")
        parts = [np.asarray(s.asarray()) for s in series]
    return np.stack(parts) if parts[0].ndim == 2 else np.concatenate(parts)


def _read_mrc(path: Path) -> np.ndarray:
    import mrcfile  # noqa: PLC0415

    with mrcfile.open(path, mode="r", permissive=True) as m:
        return None if m.data is None else np.array(m.data)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415

    with Image.open(path) as im:
        a = np.asarray(im)
    if a.ndim != 2:
        raise ValueError(f"expected a single-channel (grayscale) image, got shape {a.shape}")
    return a


_READERS = {".tif": _read_tiff, ".tiff": _read_tiff, ".mrc": _read_mrc, ".mrcs": _read_mrc,
            ".npy": lambda p: np.load(p, allow_pickle=False), ".png": _read_png}


def _unit_scale(a: np.ndarray) -> np.ndarray:
    """Integer images to float32 in [0, 1] (value / dtype maximum); floats unchanged."""
    if np.issubdtype(a.dtype, np.integer):
        return (a / np.iinfo(a.dtype).max).astype(np.float32)
    return a.astype(np.float32)


# -- the PINN-paper layout -----------------------------------------------------------------------------
def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    return {int(p.stem): p for p in folder.glob(f"*{suffix}") if re.fullmatch(r"\d+", p.stem)}


def _paper_root(set_dir) -> Path:
    root = Path(set_dir)
    if not root.is_dir():
        raise _fail(root, "no such folder (expected a PINN-paper set such as .../pinn-sim-paper/SIM/microtubules)")
    for sub in ("input_frames", "patterns", "ground_truth"):
        if not (root / sub).is_dir():
            raise _fail(root, f"missing folder {sub}/ of the PINN-paper layout "
                              "(input_frames/, patterns/, ground_truth/, psf.png)")
    if not (root / "psf.png").is_file():
        raise _fail(root, "missing psf.png of the PINN-paper layout")
    return root


def paper_set_name(set_dir) -> str:
    """``group/set`` from the last two folder names, e.g. ``NL_SIM/ccp``."""
    root = Path(set_dir).resolve()
    return f"{root.parent.name}/{root.name}"


def paper_samples(set_dir) -> list[int]:
    """The sample numbers N with an ``input_frames/N.tif`` in the set, ascending."""
    return sorted(_numbered(_paper_root(set_dir) / "input_frames", ".tif"))


def paper_filename(set_dir, sample: int) -> str:
    """File name for ``--all``: ``<group>_<set>_<N>.h5``, e.g. ``NL_SIM_ccp_3.h5``."""
    return f"{paper_set_name(set_dir).replace('/', '_')}_{sample}.h5"


def _paper_patterns(root: Path, K: int) -> np.ndarray:
    files = _numbered(root / "patterns", ".png")
    missing = [k for k in range(1, K + 1) if k not in files]
    extra = sorted(k for k in files if not 1 <= k <= K)
    if missing or extra:
        raise _fail(root / "patterns", f"expected 1.png..{K}.png for the K = {K} raw frames, "
                                       f"found {len(files)} numbered PNGs (missing {missing}, extra {extra})")
    pats = [_unit_scale(read_array(files[k], "pattern", (".png",))) for k in range(1, K + 1)]
    shapes = {p.shape for p in pats}
    if len(shapes) != 1:
        raise _fail(root / "patterns", f"patterns differ in shape: {sorted(shapes)}")
    return np.stack(pats)


def import_paper(set_dir, sample: int) -> Dataset:
    """Sample ``sample`` of a PINN-paper set as a validated Dataset (upsample 4, no optics attributes).

    raw (K, 120, 120) uint8; patterns (K, 480, 480) float32 in [0, 1] from ``patterns/1..K.png`` in
    numeric order; psf float32 as stored (the operator normalises it); ground truth float32 in [0, 1].
    """
    root = _paper_root(set_dir)
    samples = sorted(_numbered(root / "input_frames", ".tif"))
    if sample not in samples:
        raise _fail(root, f"no sample {sample} (input_frames/{sample}.tif); available samples: "
                          f"{', '.join(map(str, samples)) or 'none'}")
    raw_path = root / "input_frames" / f"{sample}.tif"
    raw = read_array(raw_path, "raw", (".tif",))
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3:
        raise _fail(raw_path, f"expected a (K, h, w) stack, got shape {raw.shape}")
    gt_path = root / "ground_truth" / f"{sample}.png"
    if not gt_path.is_file():
        raise _fail(gt_path, f"missing ground truth of sample {sample}")
    ds = Dataset(raw=raw if raw.dtype in RAW_DTYPES else raw.astype(np.float32), upsample=PAPER_UPSAMPLE,
                 patterns=_paper_patterns(root, raw.shape[0]),
                 psf=read_array(root / "psf.png", "psf", (".png",)).astype(np.float32),
                 ground_truth=_unit_scale(read_array(gt_path, "ground truth", (".png",))))
    ds.attrs = {"source": "pinn-sim-paper", "source_dir": str(root.resolve()), "set": paper_set_name(root),
                "sample": int(sample), "has_low_res": (root / "low_res" / f"{sample}.png").is_file()}
    return _validated(ds, raw_path)


def import_paper_all(set_dir, out_dir, *, force: bool = False) -> list[Path]:
    """Import every sample of a set and save each as ``out_dir/<group>_<set>_<N>.h5`` (folder created).

    Existing files are replaced only with ``force`` (and never a file that is not HDF5); every target is
    checked, and every sample read and validated, before the first is written (a bad sample leaves nothing)."""
    samples = paper_samples(set_dir)
    if not samples:
        raise _fail(set_dir, "no samples (input_frames/*.tif)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise _fail(out, "exists and is not a folder (--all writes one file per sample into a folder)")
    targets = [out / paper_filename(set_dir, n) for n in samples]
    if out.is_dir():
        for target in targets:
            check_output("--out", target, "hdf5", force=force)
    datasets = [import_paper(set_dir, n) for n in samples]
    out.mkdir(parents=True, exist_ok=True)
    return [save(ds, target) for ds, target in zip(datasets, targets)]


def _validated(ds: Dataset, source, parts: dict | None = None) -> Dataset:
    """``ds`` validated; a problem names the imported file (``source``, or the file of ``parts`` that the problem's
    dataset path, such as "/psf", came from), not the not-yet-written dataset."""
    try:
        return ds.validate()
    except DatasetError as e:
        msg = str(e)
        msg = msg.split(": ", 1)[1] if msg.startswith("dataset: ") else msg
        named = [f for where, f in (parts or {}).items() if isinstance(f, (str, Path)) and msg.startswith(f"{where}:")]
        raise _fail(named[0] if named else source, msg) from None


# -- generic raw stacks ----------------------------------------------------------------------------------
def to_angle_major(frames, angles: int, phases: int) -> np.ndarray:
    """Reorder phase-major frames (index ``p * angles + a`` on axis -3) to angle-major (``a * phases + p``)."""
    a = np.asarray(frames)
    lead, (K, h, w) = a.shape[:-3], a.shape[-3:]
    if K != angles * phases:
        raise ValueError(f"to_angle_major: {K} frames, expected angles*phases = {angles * phases}")
    return a.reshape(*lead, phases, angles, h, w).swapaxes(-4, -3).reshape(*lead, K, h, w)


def to_phase_major(frames, angles: int, phases: int) -> np.ndarray:
    """Reorder angle-major frames (index ``a * phases + p`` on axis -3) to phase-major (``p * angles + a``):
    the inverse of :func:`to_angle_major`."""
    a = np.asarray(frames)
    lead, (K, h, w) = a.shape[:-3], a.shape[-3:]
    if K != angles * phases:
        raise ValueError(f"to_phase_major: {K} frames, expected angles*phases = {angles * phases}")
    return a.reshape(*lead, angles, phases, h, w).swapaxes(-4, -3).reshape(*lead, K, h, w)


def _refuse_colour(path: Path) -> None:
    """A TIFF of colour pixels (RGB: several samples per pixel, tifffile's axis 'S') is no camera's SIM stack:
    flattened as frames its colours would become rows (DatasetError)."""
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return
    import tifffile  # noqa: PLC0415

    try:
        with _quiet_readers(), tifffile.TiffFile(path) as t:
            series = t.series[0]
            axes, shape = series.axes, series.shape
    except Exception:  # noqa: BLE001 -- an unreadable file is read_array's to report
        return
    if "S" in axes and shape[axes.index("S")] > 1:
        raise _fail(path, f"its pixels are colour ({shape[axes.index('S')]} samples each, shape {tuple(shape)} "
                          f"{axes}); expected one grey value per pixel, as a camera records: save one channel")


def _group_frames(raw: np.ndarray, path, K: int, time_points: int | None, hexagonal: bool = False) -> np.ndarray:
    """(N, h, w) frames in file order -> (K, h, w) or (T, K, h, w), T = N / K frames per time point."""
    if raw.ndim < 2:
        raise _fail(path, f"expected a stack of 2-D frames, got shape {raw.shape}")
    frames = raw.reshape(-1, *raw.shape[-2:])  # leading axes (e.g. an ImageJ hyperstack) in file order
    n = frames.shape[0]
    if time_points is not None and n != time_points * K:
        raise _fail(path, f"{n} frames, expected time_points*angles*phases = {time_points}*{K} = {time_points * K}")
    if n % K:
        what = f"{HEX_PHASES} (hexagonal SIM)" if hexagonal else f"angles*phases = {K}"
        raise _fail(path, f"{n} frames, expected a multiple of {what}")
    T = n // K
    return frames if T == 1 else frames.reshape(T, K, *frames.shape[-2:])


def bin_frames(raw: np.ndarray, binning: int, path="raw") -> np.ndarray:
    """Mean over ``binning x binning`` pixel blocks of the last two axes (float32)."""
    h, w = raw.shape[-2:]
    if h % binning or w % binning:
        raise _fail(path, f"frames of {h} x {w} pixels are not divisible by binning {binning}")
    b = raw.reshape(*raw.shape[:-2], h // binning, binning, w // binning, binning)
    return b.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def _stack_patterns(path, K: int, angles: int, phases: int, order: str) -> np.ndarray:
    p = read_array(path, "patterns", PATTERN_SUFFIXES)
    if p.ndim != 3 or p.shape[0] != K:
        raise _fail(path, f"patterns: expected a (K, H, W) stack with K = angles*phases = {K}, got shape {p.shape}")
    p = p.astype(np.float32)
    return to_angle_major(p, angles, phases) if order == "phase-major" else p


def _plane(path, what: str) -> np.ndarray:
    a = read_array(path, what).astype(np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    return a


def stack_layout(family: str, angles: int | None, phases: int | None) -> tuple[int, int]:
    """(angles, phases) of a stack of ``family``: "linear" needs both given; "hexagonal" is 1 x 7 (both may
    be left out; given, they must say so). DatasetError otherwise."""
    if family not in FAMILIES:
        raise DatasetError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
    if family == "hexagonal":
        if angles not in (None, 1) or phases not in (None, HEX_PHASES):
            raise DatasetError(f"angles, phases: a hexagonal SIM stack is 1 angle x {HEX_PHASES} phases (three "
                               f"carriers in every frame), got {angles} x {phases}")
        return 1, HEX_PHASES
    if angles is None or phases is None:
        raise DatasetError("angles, phases: required for a linear SIM stack (e.g. 3 angles x 5 phases); a hexagonal "
                           f"SIM stack ({HEX_PHASES} frames) is imported as family 'hexagonal' (--family hexagonal)")
    return angles, phases


def import_stack(path, *, angles: int | None = None, phases: int | None = None, order: str = "angle-major",
                 upsample: int, na: float | None = None, wavelength_nm: float | None = None,
                 pixel_size_nm: float | None = None, patterns=None, psf=None, ground_truth=None,
                 time_points: int | None = None, binning: int = 1, family: str = "linear",
                 camera_offset: float | None = None, camera_gain: float | None = None,
                 camera_read_sigma: float | None = None, otf=None, otf_step_per_um: float | None = None) -> Dataset:
    """A raw TIFF/MRC stack of ``angles x phases`` frames (per time point) as a validated Dataset.

    ``family`` "hexagonal": hexagonal-lattice SIM, 7 frames per time point in their phase-step order
    (angles 1 x phases 7, which may be left out); recorded as the attribute ``pattern_family``, which
    ``cusim estimate`` follows.

    ``order`` is the file's frame order: ``angle-major`` (frame ``a * phases + p``, stored as is) or
    ``phase-major`` (frame ``p * angles + a``, reordered to angle-major). A file of T*K frames becomes
    (T, K, h, w), frames grouped per time point; ``time_points`` (optional) checks T. ``patterns`` is a
    (K, H, W) TIFF/MRC/NPY stack on the fine grid in the SAME frame order as the raw (reordered alongside);
    ``psf`` an odd 2-D PSF on the fine grid (TIFF/NPY/PNG/MRC); ``ground_truth`` (H, W) or (T, H, W).
    ``otf`` instead of ``psf``: a measured radial OTF profile (a 1-D ``.npy`` or array, sample j at
    ``j * otf_step_per_um`` cycles/um), turned into the PSF by :func:`psf_from_radial_otf` (needs
    ``pixel_size_nm``); the file and step are recorded in the attributes ``psf_source``.
    ``binning`` > 1 mean-bins the raw frames first (for stacks interpolated up from the camera grid);
    ``pixel_size_nm`` is then the pixel after binning. Raw uint8/uint16/float32 is kept, other dtypes
    become float32 (binned frames are float32). Integer raw data with more than 1 % of its pixels at the
    dtype's maximum (saturated) gives a :class:`~cusim.CusimWarning`.

    ``camera_offset`` (counts at zero light), ``camera_gain`` (counts per photo-electron, > 0) and
    ``camera_read_sigma`` (read noise in counts, >= 0), any of them, describe the camera of the frames AS
    STORED (after ``binning``) and are kept as ``Dataset.camera`` (the file's ``/camera``): the camera noise
    model's defaults whenever a method runs with noise "camera" on the file.
    """
    path = Path(path)
    otf_source = _checked_otf(otf, otf_step_per_um, psf, pixel_size_nm)
    camera = {k: v for k, v in (("offset", camera_offset), ("gain", camera_gain), ("read_sigma", camera_read_sigma))
              if v is not None}
    camera = check_camera(camera, error=lambda msg: DatasetError(f"camera_{msg}")) if camera else None
    angles, phases = stack_layout(family, angles, phases)
    for name, v in (("angles", angles), ("phases", phases), ("upsample", upsample), ("binning", binning)):
        check_int(name, v, 1, error=DatasetError)
    if time_points is not None:
        check_int("time_points", time_points, 1, error=DatasetError)
    if order not in ORDERS:
        raise DatasetError(f"order: expected one of {', '.join(ORDERS)}, got {order!r}")
    K = angles * phases
    _refuse_colour(path)
    raw = _group_frames(read_array(path, "raw", RAW_SUFFIXES), path, K, time_points, family == "hexagonal")
    source_dtype = str(raw.dtype)
    warn_saturated(raw, str(path), "the camera saturated there, which no reconstruction can model (expect "
                   "artefacts); acquire with less light or a shorter exposure")
    if order == "phase-major":
        raw = to_angle_major(raw, angles, phases)
    if binning > 1:
        raw = bin_frames(raw, binning, path)
    if raw.dtype not in RAW_DTYPES:
        raw = raw.astype(np.float32)
    ds = Dataset(raw=np.ascontiguousarray(raw), upsample=upsample, na=na, wavelength_nm=wavelength_nm,
                 pixel_size_nm=pixel_size_nm, camera=camera)
    if patterns is not None:
        ds.patterns = _stack_patterns(patterns, K, angles, phases, order)
    if psf is not None:
        ds.psf = _plane(psf, "psf")
    if otf is not None:
        try:
            ds.psf = psf_from_radial_otf(otf, otf_step_per_um, pixel_size_nm, upsample,
                                         cutoff_per_um=None if na is None or wavelength_nm is None
                                         else 2 * na / (wavelength_nm / 1000))
        except DatasetError:
            raise
        except ValueError as e:
            raise DatasetError(f"{otf if isinstance(otf, (str, Path)) else 'otf'}: {e}") from None
    if ground_truth is not None:
        ds.ground_truth = gt = _plane(ground_truth, "ground truth")
        if gt.size and float(np.nanmax(gt)) == float(np.nanmin(gt)):
            raise DatasetError(f"{ground_truth}: the ground truth is one value ({float(np.nanmax(gt)):g}) everywhere: "
                               f"nothing to compare a reconstruction with; expected an image of the sample")
    ds.attrs = {"source": "stack", "source_file": str(path.resolve()), "angles": int(angles),
                "phases": int(phases), "source_order": order, "source_dtype": source_dtype,
                "binning": int(binning), "pattern_family": family}
    if otf_source is not None:
        ds.attrs["psf_source"] = otf_source
    # each file's own problem names that file, not the raw stack
    return _validated(ds, path, {"/patterns": patterns, "/psf": psf, "/ground_truth": ground_truth})


def _checked_otf(otf, step_per_um, psf, pixel_size_nm) -> str | None:
    """The provenance line of import_stack's ``otf`` (None without one), after checking that it comes with its
    step and a pixel size and not with a ``psf`` too (DatasetError otherwise)."""
    if otf is None:
        if step_per_um is not None:
            raise DatasetError("otf_step_per_um: given without otf (the radial OTF profile it is the step of)")
        return None
    if psf is not None:
        raise DatasetError("otf: give a PSF or a radial OTF, not both")
    if step_per_um is None:
        raise DatasetError("otf_step_per_um: needed with otf (the cycles/um between its samples)")
    check_number("otf_step_per_um", step_per_um, lo=0.0, strict=True, error=DatasetError)
    if pixel_size_nm is None:
        raise DatasetError("otf: needs pixel_size_nm (the OTF's cycles/um are put on the fine grid through it)")
    what = f"{Path(otf).resolve()}" if isinstance(otf, (str, Path)) else "an array"
    return f"radial OTF {what}, {step_per_um:g} cycles/um per sample"


# -- a measured radial OTF -----------------------------------------------------------------------------
OTF_EXTENT_PER_UM = (0.02, 34.0)  # where a radial OTF may end (cycles/um): psf_from_radial_otf


def psf_from_radial_otf(otf_radial, step_per_um: float, pixel_size_nm: float, upsample: int,
                        size: int | None = None, *, cutoff_per_um: float | None = None) -> np.ndarray:
    """An odd (size, size) float32 PSF on the fine grid from a radially sampled OTF.

    ``otf_radial`` (array or ``.npy`` path): sample j at spatial frequency ``j * step_per_um`` cycles/um
    (its real part is used, normalised to 1 at zero). The fine pixel is ``pixel_size_nm / upsample``.
    ``size`` defaults to four first-zero radii across; negative ringing is clipped, the sum is 1. A profile
    that would end outside :data:`OTF_EXTENT_PER_UM` (a step in other units) or beyond the fine grid's sampling
    frequency is refused (ValueError), and so, where the optics give the cut-off ``cutoff_per_um`` (2 NA /
    wavelength), a profile that ends more than a factor 2 from it.
    """
    otf = otf_radial if not isinstance(otf_radial, (str, Path)) else read_array(otf_radial, "OTF", (".npy",), real=False)
    otf = np.real(np.asarray(otf)).astype(np.float64)
    if sum(d > 1 for d in otf.shape) > 1:  # a 2-D OTF image is not a radial profile: ravel would scramble it
        raise ValueError(f"otf_radial: expected a 1-D radial profile (sample j at j * step cycles/um), got an array "
                         f"of shape {otf.shape}")
    otf = otf.ravel()
    if otf.size < 2 or not np.all(np.isfinite(otf)) or otf[0] <= 0:
        raise ValueError("otf_radial: expected a finite 1-D profile with a positive zero-frequency value")
    otf = otf / otf[0]
    fine_um = pixel_size_nm / upsample / 1000.0
    support = step_per_um * max(1, np.nonzero(np.abs(otf) >= 0.01)[0].max())  # cycles/um: the PSF's size from it
    # where the profile first falls below 1 %: its cut-off, whatever noise floor a measured profile keeps past it
    below = np.nonzero(np.abs(otf) < 0.01)[0]
    end = step_per_um * (below[0] if below.size else otf.size - 1)
    # a microscope's OTF ends at 2 NA / wavelength: NA 0.02-1.7 and 100-2000 nm (cusim.optics' ranges) give
    # 0.02-34 cycles/um. A step in other units (cycles per mm, per nm, per pixel) lands far outside.
    if not OTF_EXTENT_PER_UM[0] <= end <= OTF_EXTENT_PER_UM[1]:
        raise ValueError(f"step_per_um: with {step_per_um:g} cycles/um per sample the OTF reaches {end:.3g} "
                         f"cycles/um (where it first falls below 1 % of the zero frequency's), where a microscope's "
                         f"OTF ends at 2 NA / wavelength, {OTF_EXTENT_PER_UM[0]:g} to {OTF_EXTENT_PER_UM[1]:g} "
                         "cycles/um; expected the step between its samples in cycles per micrometre")
    if cutoff_per_um is not None and not 0.5 <= end / cutoff_per_um <= 2:  # a measured OTF ends near it
        raise ValueError(f"step_per_um: with {step_per_um:g} cycles/um per sample the OTF reaches {end:.3g} "
                         f"cycles/um, where NA and wavelength put its cut-off at {cutoff_per_um:.3g}; expected the "
                         "step between its samples in cycles per micrometre")
    if end > 1 / fine_um:  # beyond the fine grid's sampling frequency: the PSF would be one pixel
        raise ValueError(f"step_per_um: the OTF reaches {end:.3g} cycles/um, beyond the fine grid's sampling "
                         f"frequency {1 / fine_um:.3g} cycles/um (pixel {pixel_size_nm:g} nm / upsample {upsample}); "
                         "expected the step between its samples in cycles per micrometre, and the camera pixel in nm")
    if size is None:
        size = 2 * int(np.ceil(4 * 1.22 / support / fine_um)) + 1
    if size % 2 == 0 or size < 3:
        raise ValueError(f"size: expected an odd PSF side >= 3, got {size}")
    n = 4 * size + 1  # odd grid, large enough that the periodic PSF does not wrap into the crop
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")) / fine_um
    otf2 = np.interp(f, np.arange(otf.size) * step_per_um, otf, right=0.0)
    psf = np.fft.fftshift(np.real(np.fft.ifft2(otf2)))
    c, h = n // 2, size // 2
    psf = np.clip(psf[c - h:c + h + 1, c - h:c + h + 1], 0, None)
    return (psf / psf.sum()).astype(np.float32)
