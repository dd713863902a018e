"""The napari reader of ``cusim-sim`` HDF5 files: one layer for the raw frames (axes t, angle, phase, y, x
as the file has them), one per ``/recon/<name>`` and one for ``/ground_truth``.

Every layer carries the physical pixel size as its ``scale`` (micrometres; the raw frames on the camera
grid, the rest on the fine grid, with the raw layer shifted by half a fine pixel less than half a camera
pixel so that the two grids overlay exactly) and, in ``metadata["cusim"]``, the file, the path inside it
and the provenance. Without ``pixel_size_nm`` the unit is the fine pixel. Free of napari and Qt: it
returns napari's layer-data tuples, so it is tested and used without a viewer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import FORMAT, load
from ..patterns import ANGLE_PHASE_DEFAULTS
from ..ome import json_safe

SUFFIXES = (".h5", ".hdf5")
NON_SINUSOIDAL = ("lattice", "speckle")  # simulated families whose K frames are not angles x phases


def get_reader(path):
    """napari's reader hook: a function that reads ``path`` when it is one cusim-sim HDF5 file, else None
    (napari then asks other readers)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES or not _is_cusim(path):
        return None
    return read


def _is_cusim(path: Path) -> bool:
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except OSError:
        return False
    return (fmt.decode() if isinstance(fmt, bytes) else fmt) == FORMAT


def read(path) -> list[tuple]:
    """The layers of one cusim-sim file (napari's ``[(data, kwargs, "image"), ...]``)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    return dataset_layers(load(path))


def frame_axes(ds) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Axis labels and shape of the raw layer: K frames as (angle, phase) when they are sinusoidal SIM
    (counts recorded by ``cusim import stack``, or the usual 9, 15, 25 frames), else one ``frame`` axis."""
    K = ds.K
    counts = None
    if "angles" in ds.attrs and "phases" in ds.attrs:
        counts = int(ds.attrs["angles"]), int(ds.attrs["phases"])
    elif K in ANGLE_PHASE_DEFAULTS and ds.attrs.get("sim_family") not in NON_SINUSOIDAL:
        counts = ANGLE_PHASE_DEFAULTS[K]
    labels, shape = (("angle", "phase"), counts) if counts and counts[0] * counts[1] == K else (("frame",), (K,))
    if ds.is_series:  # t next to (y, x): napari lines the axes of layers up from the right, and a fine layer's
        labels, shape = (*labels, "t"), (*shape, ds.T)  # (t, y, x) then shares the raw layer's t slider
    return (*labels, "y", "x"), (*shape, *ds.camera_shape)


def grid_scale(ds) -> tuple[float, str]:
    """The fine pixel's size and unit: micrometres when the file records its camera pixel, else 1 pixel."""
    if ds.pixel_size_nm is None:
        return 1.0, "pixel"
    return ds.pixel_size_nm / ds.upsample / 1000.0, "um"


def _meta(ds, where: str, **more) -> dict:
    return {"cusim": json_safe({"path": str(Path(ds.path).resolve()) if ds.path is not None else None,
                                "dataset": where, "upsample": int(ds.upsample), "pixel_size_nm": ds.pixel_size_nm,
                                **more})}


def fine_layer(ds, data, name: str, where: str, **more) -> tuple:
    px, unit = grid_scale(ds)
    lead = data.ndim - 2
    labels = ("t", "y", "x")[-data.ndim:]
    kwargs = {"name": name, "scale": (1.0,) * lead + (px, px), "axis_labels": labels,
              "units": ("", unit, unit)[-data.ndim:] if lead else (unit, unit),
              "metadata": _meta(ds, where, **more)}
    return np.asarray(data, dtype=np.float32), kwargs, "image"


def raw_layer(ds) -> tuple:
    """The raw frames, reshaped to :func:`frame_axes`, on the camera grid and aligned with the fine grid."""
    px, unit = grid_scale(ds)
    labels, shape = frame_axes(ds)
    s, lead = ds.upsample, len(labels) - 2
    data = np.asarray(ds.raw)
    if ds.is_series:  # (T, K, h, w) -> (frame axes..., T, h, w)
        data = np.moveaxis(data.reshape(ds.T, *shape[:-3], *shape[-2:]), 0, -3)
    else:
        data = data.reshape(shape)
    kwargs = {"name": f"{Path(ds.path).stem if ds.path else 'dataset'} raw", "scale": (1.0,) * lead + (s * px,) * 2,
              # camera pixel i covers fine pixels s*i .. s*i+s-1: its centre is at fine coordinate s*i + (s-1)/2
              "translate": (0.0,) * lead + ((s - 1) / 2 * px,) * 2, "axis_labels": labels,
              "units": ("",) * lead + (unit, unit), "metadata": _meta(ds, "/raw", attrs=ds.attrs),
              "visible": False}
    return data, kwargs, "image"


def dataset_layers(ds) -> list[tuple]:
    """Raw frames, every ``/recon/<name>`` (with its attributes as provenance) and ``/ground_truth``."""
    stem = Path(ds.path).stem if ds.path else "dataset"
    layers = [raw_layer(ds)]
    if ds.ground_truth is not None:
        layers.append(fine_layer(ds, ds.ground_truth, f"{stem} ground truth", "/ground_truth"))
    for name, rec in ds.recons.items():
        layers.append(fine_layer(ds, rec.image, f"{stem} {name}", f"/recon/{name}", provenance=rec.attrs))
    return layers
