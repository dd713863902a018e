"""What the CLI shows and writes besides the HDF5 file: summaries, metric tables, figures (the OME-TIFF
and OME-Zarr writers are in :mod:`cusim.ome`).

Files are written to a temporary name beside the target and renamed, so a crash never leaves a
half-written image.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
from rich.table import Table

from . import metrics
from ._files import atomic_target
from ._outputs import figure_kind
from .io import OPTICS_ATTRS, Dataset
from .patterns import HexagonalParams


def _atomic_write(path: Path, write) -> Path:
    with atomic_target(path) as tmp:
        write(tmp)
    return Path(path)


def _fine_pixel_nm(ds: Dataset) -> float | None:
    return ds.pixel_size_nm / ds.upsample if ds.pixel_size_nm else None


# The one scoring convention of every score cusim prints or stores (run, info, demo, /recon/*/metrics):
# each image mapped to the min-max normalised truth by its least-squares scale and offset (reconstructions
# come in arbitrary units; a Wiener image's ringing would skew its own min-max range), a border left out,
# and the FRC cut-off where the correlation with the truth falls below 0.5.
NORM = "lstsq"
FRC_THRESHOLD = "0.5"


def default_border(shape) -> int:
    """Fine pixels left out at each edge unless told: 20, or an eighth of a smaller image's side."""
    return min(20, min(shape[-2:]) // 8)


def scorable(shape, border: int) -> bool:
    """Whether an image of ``shape`` keeps at least SSIM's window (``metrics.SSIM_WINDOW``) a side within ``border``."""
    return min(shape[-2:]) - 2 * border >= metrics.SSIM_WINDOW


def convention(norm: str, border: int, time_points: int = 1) -> str:
    """The convention in words, as every table names it (a series' scores: the mean over its time points)."""
    how = "least-squares fit to the min-max normalised truth" if norm == "lstsq" else f"{norm} normalised"
    over = f", mean over the {time_points} time points" if time_points > 1 else ""
    return f"{how}, {border} px border left out, FRC at {FRC_THRESHOLD}{over}"


def image_metrics(ds: Dataset, image: np.ndarray, border: int | None = None, norm: str = NORM) -> dict | None:
    """PSNR/SSIM/NRMSE and FRC cut-off against the ground truth, averaged over time points; None without GT.
    The dict names its convention (``norm``, ``border_px``, ``frc_threshold``)."""
    if ds.ground_truth is None or np.ptp(ds.ground_truth) == 0:  # no truth, or one value: nothing to compare
        return None
    imgs = image if image.ndim == 3 else image[None]
    border = default_border(imgs.shape) if border is None else border
    if not scorable(imgs.shape, border):  # smaller than SSIM's window: not scored (the CLI says so)
        return None
    gts = ds.ground_truth if ds.ground_truth.ndim == 3 else np.broadcast_to(ds.ground_truth, imgs.shape)
    rows = []
    for img, gt in zip(imgs, gts):
        m = metrics.compare(img, gt, norm=norm, crop=border)
        m["frc_cutoff"] = metrics.frc(img, gt, threshold=FRC_THRESHOLD, crop=border,
                                      pixel_size_nm=_fine_pixel_nm(ds)).cutoff
        rows.append(m)
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr_db", "ssim", "nrmse")}
    cut = [r["frc_cutoff"] for r in rows]
    out["frc_cutoff_cycles_per_px"] = None if None in cut else float(np.mean(cut))  # cycles per fine pixel
    out.update(norm=norm, border_px=border, frc_threshold=FRC_THRESHOLD)
    if len(rows) > 1:  # the record says what it is: the mean over the time points
        out["time_points"] = len(rows)
    return out


def frc_text(cutoff: float | None, pixel_nm: float | None = None, nyquist: str = "beyond Nyquist") -> str:
    """An FRC cut-off (cycles per fine pixel) as the tables print it, with the resolution in nm where the pixel
    size is known; None: the curve never fell below the threshold; 0: it was below it from the start."""
    if cutoff is None:
        return nyquist
    if cutoff <= 0:
        return "none (no correlation)"
    return f"{cutoff:.3f} cyc/fine px" + (f" ({pixel_nm / cutoff:.0f} nm)" if pixel_nm else "")


def metrics_table(ds: Dataset, image: np.ndarray, name: str, border: int | None = None, norm: str = NORM):
    """A rich table comparing ``image`` and the widefield image with the ground truth, plus the dict
    of ``image``'s metrics; ``(None, None)`` without ground truth."""
    from .recon.widefield import image as widefield  # noqa: PLC0415

    mine = image_metrics(ds, image, border, norm)
    if mine is None:
        return None, None
    wf = np.stack([widefield(ds, t) for t in range(ds.T)]) if ds.is_series else widefield(ds)
    rows = [(name, mine)] if name == "widefield" else [(name, mine), ("widefield", image_metrics(ds, wf, border, norm))]
    px = _fine_pixel_nm(ds)
    table = Table(title=f"against /ground_truth ({convention(norm, mine['border_px'], ds.T)})")
    for col in ("image", "PSNR dB", "SSIM", "NRMSE", f"FRC {FRC_THRESHOLD} cut-off"):
        table.add_column(col, justify="right" if col != "image" else "left")
    for label, m in rows:
        c = m["frc_cutoff_cycles_per_px"]
        table.add_row(label, f"{m['psnr_db']:.2f}", f"{m['ssim']:.3f}", f"{m['nrmse']:.3f}", frc_text(c, px))
    return table, mine


def dataset_summary(ds: Dataset) -> Table:
    """A two-column table describing ``ds`` and its reconstructions."""
    t = Table(title=str(ds.path or "dataset"), show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("raw", f"{ds.raw.shape} {ds.raw.dtype}" + (f", {ds.T} time points" if ds.is_series else ""))
    t.add_row("frames K", str(ds.K))
    t.add_row("grid", f"camera {ds.camera_shape[0]}x{ds.camera_shape[1]}, upsample {ds.upsample}, "
                      f"fine {ds.fine_shape[0]}x{ds.fine_shape[1]}")
    optics = ", ".join(f"{a} {getattr(ds, a):g}" for a in OPTICS_ATTRS if getattr(ds, a) is not None)
    t.add_row("optics", (optics or "not given") + (f"; PSF {ds.psf.shape}" if ds.psf is not None else ""))
    if ds.pattern_params is not None:
        p = ds.pattern_params
        kmag = np.hypot(p.k[:, 0], p.k[:, 1])
        s = ds.upsample
        kind = ds.pattern_kind or "given"
        if isinstance(p, HexagonalParams) and "hexagonal" not in kind:
            kind += ", hexagonal"  # an estimate of hexagonal frames read like linear SIM's
        harmonics = getattr(p, "harmonics", None)
        pat = (f"parametric ({kind}), |k| {kmag.min():.4f}..{kmag.max():.4f} cycles/fine px "
               f"({kmag.min() * s:.4f}..{kmag.max() * s:.4f} cycles/camera px), "
               f"modulation {p.modulation.min():.2f}..{p.modulation.max():.2f}"
               + (f", {harmonics.shape[1]} harmonics" if harmonics is not None else ""))
    elif ds.patterns is not None:
        pat = f"array {ds.patterns.shape}"
    else:
        pat = "none (estimate them: cusim estimate)"
    t.add_row("patterns", pat)
    if ds.pattern_params is not None and ds.patterns is not None:  # both: which method uses which
        t.add_row("pattern arrays", f"{ds.patterns.shape} (iterative and pinn use these; wiener its carriers from the "
                                    "parameters above, phases and modulation from these)")
    t.add_row("ground truth", "yes" if ds.ground_truth is not None else "no")
    if ds.camera:
        units = {"offset": "counts", "gain": "counts/e-", "read_sigma": "counts"}
        t.add_row("camera", ", ".join(f"{k} {v:g} {units[k]}" for k, v in ds.camera.items())
                  + " (/camera: the defaults of --noise camera)")
    for key, v in ds.attrs.items():
        t.add_row(key, str(v))
    for name, rec in ds.recons.items():
        a = rec.attrs
        runtime = a.get("runtime_s")
        if runtime is None or isinstance(runtime, numbers.Real):
            runtime = f"{float('nan') if runtime is None else runtime:.2f} s"
        else:  # a hand-edited value is shown as it is
            runtime = f"runtime {runtime!r}"
        line = f"{a.get('method', '?')} on {a.get('device', '?')}, {runtime}, {a.get('created', '?')}"
        finite = bool(np.all(np.isfinite(rec.image)))  # a file may hold a diverged run's image; it is not scored
        m = image_metrics(ds, rec.image) if finite else None
        if not finite:
            line += "; not finite (NaN or Inf), not scored"
        if m is not None:
            line += (f"; PSNR {m['psnr_db']:.2f} dB, SSIM {m['ssim']:.3f} "
                     f"({convention(m['norm'], m['border_px'], ds.T)})")
        t.add_row(f"/recon/{name}", line)
    return t


def _logspec(img: np.ndarray) -> np.ndarray:
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))))


def save_figure(path: Path, ds: Dataset, image: np.ndarray, name: str, loss=None) -> Path:
    """Mean raw frame | reconstruction | ground truth (if any) | log spectra | loss curve (if any), in the
    format of ``path``'s suffix (.png, .pdf, .svg, .jpg; :data:`cusim._outputs.FIGURE_FORMATS`). A time series
    shows its time point 0, and its figure says so."""
    kind = figure_kind("figure", path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    img = image[0] if image.ndim == 3 else image
    panels = [("mean raw frame (camera)", ds.frames(0).mean(axis=0), "gray"), (name, img, "gray")]
    if ds.ground_truth is not None:
        gt = ds.ground_truth[0] if ds.ground_truth.ndim == 3 else ds.ground_truth
        panels.append(("ground truth", gt, "gray"))
    panels.append((f"log |FFT| {name}", _logspec(img), "viridis"))
    if ds.ground_truth is not None:
        panels.append(("log |FFT| ground truth", _logspec(gt), "viridis"))
    n = len(panels) + (loss is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9))
    for ax, (title, im, cmap) in zip(axes, panels):
        ax.imshow(im, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if loss is not None:
        axes[-1].semilogy(np.asarray(loss))
        axes[-1].set_title("loss", fontsize=9)
        axes[-1].set_xlabel("step")
    if ds.is_series:
        fig.suptitle(f"time point 0 of {ds.T}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if ds.is_series else None)

    def write(tmp):
        fig.savefig(tmp, dpi=80, format=kind)
        plt.close(fig)

    return _atomic_write(path, write)
