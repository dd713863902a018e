"""OME outputs, for the viewers microscopists use (Fiji, napari, QuPath): OME-TIFF through tifffile and
OME-Zarr (OME-NGFF, multiscales) through ome-zarr-py. Both carry the physical size of the FINE grid's
pixel (``pixel_size_nm / upsample``, in micrometres), the axes (``YX`` or, for a time series, ``TYX``) and
the provenance of the reconstruction (method, settings, version, device, runtime, source file).

Written like every cusim output: to a temporary file (or folder) beside the target, renamed when
complete; an existing output is replaced only with ``force`` and only when it is of the same kind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ._files import atomic_target, make_temporary, remove_stale_temporaries, resolve, same_file
from ._outputs import OutputError, check_distinct, check_output, check_suffix
from ._syserrors import describe_os_error
from ._warnings import warn

UNIT = "µm"  # OME-XML's unit symbol; OME-NGFF spells it "micrometer"
NGFF_UNIT = "micrometer"
MIN_LEVEL_PX = 32  # the coarsest level of an OME-Zarr pyramid keeps at least this many pixels a side


def fine_pixel_um(ds) -> float | None:
    """The fine grid's pixel in micrometres (``pixel_size_nm / upsample / 1000``); None when the dataset
    does not record its camera pixel."""
    return None if ds.pixel_size_nm is None else ds.pixel_size_nm / ds.upsample / 1000.0


def axes_of(image) -> str:
    """``YX`` for one image (H, W), ``TYX`` for a time series (T, H, W)."""
    ndim = np.ndim(image)
    if ndim not in (2, 3):
        raise ValueError(f"image: expected (H, W) or (T, H, W), got shape {np.shape(image)}")
    return "YX" if ndim == 2 else "TYX"


def provenance(ds, name: str, attrs: dict) -> dict:
    """What produced ``/recon/<name>`` of ``ds``: its attributes (method, params, version, device, runtime,
    metrics) with the source file, the dataset path and the grid."""
    return {"source": None if ds.path is None else str(Path(ds.path).resolve()), "dataset": f"/recon/{name}",
            "upsample": int(ds.upsample), "camera_pixel_size_nm": ds.pixel_size_nm, **json_safe(attrs)}


def json_safe(attrs: dict) -> dict:
    """``attrs`` as JSON-safe values (NumPy scalars and arrays become numbers and lists)."""
    return json.loads(json.dumps(attrs, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def _warn_no_size(path, pixel_um) -> None:
    if pixel_um is None:
        warn(f"{path}: the dataset records no pixel_size_nm, so no physical pixel size is written (viewers show "
             "pixels); a stack imported with --pixel-size-nm (cusim import stack) has one, the paper sets give none")


# -- OME-TIFF --------------------------------------------------------------------------------------------
def write_ome_tiff(path, image, *, pixel_um: float | None, description: dict, name: str = "cusim") -> Path:
    """Write ``image`` (H, W) or (T, H, W) as a float32 OME-TIFF: axes, ``PhysicalSizeX/Y`` = ``pixel_um``
    in micrometres (omitted, with a CusimWarning, when None) and ``description`` (provenance) as JSON in
    the image's OME Description. Atomic (temporary file + rename)."""
    import tifffile  # noqa: PLC0415

    data = np.asarray(image, dtype=np.float32)
    meta = {"axes": axes_of(data), "Name": name, "Description": json.dumps(json_safe(description))}
    if pixel_um is not None:
        meta.update(PhysicalSizeX=pixel_um, PhysicalSizeXUnit=UNIT, PhysicalSizeY=pixel_um, PhysicalSizeYUnit=UNIT)
    _warn_no_size(path, pixel_um)
    with atomic_target(path) as tmp:
        tifffile.imwrite(tmp, data, ome=True, metadata=meta, photometric="minisblack")
    return Path(path)


def save_recon_tiff(path, ds, name: str, attrs: dict, image=None) -> Path:
    """``/recon/<name>`` of ``ds`` (or ``image`` with those attributes) as OME-TIFF on the fine grid."""
    image = ds.recons[name].image if image is None else image
    return write_ome_tiff(path, image, pixel_um=fine_pixel_um(ds), description=provenance(ds, name, attrs), name=name)


# -- OME-Zarr --------------------------------------------------------------------------------------------
def is_ome_zarr(folder) -> bool:
    """Whether ``folder`` holds an OME-Zarr image (multiscales metadata, NGFF 0.4 or 0.5)."""
    folder = Path(folder)
    for meta in (folder / "zarr.json", folder / ".zattrs"):
        try:
            attrs = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs)
        if "multiscales" in attrs.get("ome", attrs):
            return True
    return False


def check_zarr_output(option: str, folder, *, inputs=(), force: bool = False) -> Path:
    """An OME-Zarr output folder: never an input, never an existing file or a folder of something else
    (even with ``force``), an existing OME-Zarr only with ``force``; its parent folder must exist."""
    folder = Path(folder)
    for inp in inputs:
        if same_file(folder, inp):
            raise OutputError(f"{option}: {folder} is the input {inp}; choose another output path")
    if not folder.parent.resolve().is_dir():
        raise OutputError(f"{option}: folder {folder.parent} does not exist")
    if folder.exists():
        if not folder.is_dir() or not is_ome_zarr(folder):
            what = "a file" if not folder.is_dir() else "a folder that is not an OME-Zarr image"
            raise OutputError(f"{option}: {folder} exists and is {what}; it is not replaced (remove it yourself, "
                              "or choose another path)")
        if not force:
            raise OutputError(f"{option}: {folder} exists already; use --force to replace it")
    check_suffix(option, folder, "zarr")
    return folder


def scale_factors(shape, min_px: int = MIN_LEVEL_PX) -> list[int]:
    """Downsampling factors 2, 4, 8, ... of the pyramid, as long as the smaller side keeps ``min_px``."""
    side, out, f = min(shape[-2:]), [], 2
    while side // f >= min_px:
        out.append(f)
        f *= 2
    return out


def write_ome_zarr(folder, image, *, pixel_um: float | None, description: dict, name: str = "cusim") -> Path:
    """Write ``image`` (H, W) or (T, H, W) as an OME-Zarr image (the current OME-NGFF version of ome-zarr-py)
    with a multiscale pyramid (:func:`scale_factors`), axes ``yx``/``tyx``, the fine pixel ``pixel_um`` as
    the scale in micrometres, and ``description`` under the group attribute ``cusim``.

    Written into a temporary folder beside ``folder`` and renamed; an existing OME-Zarr at ``folder`` (the
    caller checked :func:`check_zarr_output`) is replaced only once the new one is complete."""
    from ._syserrors import import_extra  # noqa: PLC0415

    zarr = import_extra("zarr", "ome", "OME-Zarr export (--ome-zarr)")
    write_image = import_extra("ome_zarr.writer", "ome", "OME-Zarr export (--ome-zarr)").write_image

    data = np.asarray(image, dtype=np.float32)
    axes = axes_of(data).lower()
    target = resolve(folder)
    _warn_no_size(folder, pixel_um)
    remove_stale_temporaries(target)  # of an export killed before its rename (kill -9, power loss)
    tmp = make_temporary(target)
    tmp.unlink()
    try:
        group = zarr.open_group(str(tmp), mode="w")
        spatial = {**({"t": 1.0} if "t" in axes else {}), "y": pixel_um or 1.0, "x": pixel_um or 1.0}
        write_image(data, group, scale_factors=scale_factors(data.shape), axes=list(axes), name=name,
                    scale=spatial, axes_units={"y": NGFF_UNIT, "x": NGFF_UNIT} if pixel_um else None)
        group.attrs["cusim"] = json_safe(description)
        old = None
        if target.exists():
            old = make_temporary(target)
            old.unlink()
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return Path(folder)


def export(ds, name: str | None, *, ome_zarr=None, ome_tiff=None, force: bool = False) -> dict[str, Path]:
    """Write ``/recon/<name>`` of ``ds`` (the only reconstruction when ``name`` is None) as OME-Zarr and/or
    OME-TIFF; every output is checked before the first is written. Returns {kind: path}."""
    if not ds.recons:
        raise ValueError(f"{ds.path}: /recon: no reconstruction to export; run one first (cusim run)")
    if name is None:
        if len(ds.recons) > 1:
            raise ValueError(f"{ds.path}: /recon: {len(ds.recons)} reconstructions {sorted(ds.recons)}; "
                             "choose one with --name")
        name = next(iter(ds.recons))
    if name not in ds.recons:
        raise ValueError(f"{ds.path}: /recon/{name}: no such reconstruction; expected one of {sorted(ds.recons)}")
    if ome_zarr is None and ome_tiff is None:
        raise ValueError("export: give --ome-zarr DIR and/or --ome-tiff FILE")
    inputs = [] if ds.path is None else [ds.path]
    if ome_zarr is not None:
        check_zarr_output("--ome-zarr", ome_zarr, inputs=inputs, force=force)
    if ome_tiff is not None:
        check_output("--ome-tiff", ome_tiff, "tiff", inputs=inputs, force=force)
    check_distinct(("--ome-zarr", ome_zarr), ("--ome-tiff", ome_tiff))
    for option, path in (("--ome-zarr", ome_zarr), ("--ome-tiff", ome_tiff)):  # each folder takes a new file
        if path is not None:
            try:
                make_temporary(resolve(path)).unlink()
            except OSError as e:
                raise OutputError(f"{option}: {describe_os_error(e, path)}") from None
    rec = ds.recons[name]
    desc = provenance(ds, name, rec.attrs)
    out = {}
    if ome_zarr is not None:
        out["ome-zarr"] = write_ome_zarr(ome_zarr, rec.image, pixel_um=fine_pixel_um(ds), description=desc, name=name)
    if ome_tiff is not None:
        out["ome-tiff"] = write_ome_tiff(ome_tiff, rec.image, pixel_um=fine_pixel_um(ds), description=desc, name=name)
    return out
