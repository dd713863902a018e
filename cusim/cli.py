"""The ``cusim`` command line. It only parses, calls the library and prints.

Exit codes: 0 success, 1 bad input (one clear line, no traceback), 2 usage (Typer's own).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from . import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="cusim: GPU-fast structured illumination microscopy (SIM) reconstruction.",
)
console = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one line to stderr and exit with code 1 (bad input)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _version(value: bool) -> None:
    if value:
        console.print(f"cusim {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """cusim: GPU-fast structured illumination microscopy (SIM) reconstruction."""


@app.command()
def demo(
    out: Path = typer.Option(Path("cusim-demo"), "--out", "-o", help="Folder for the figure."),
    size: int = typer.Option(256, help="Fine-grid side in pixels (a multiple of 2)."),
    seed: int = typer.Option(0, help="Seed of the phantom and the noise."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Simulate linear SIM of a filament phantom through the SIM operator and draw what it does.

    Example: cusim demo --out cusim-demo
    """
    from . import demo as demo_mod  # noqa: PLC0415  (keeps `cusim --help` fast)

    if size < 16 or size % 2:
        fail(f"--size: expected an even number >= 16, got {size}")
    try:
        t0 = time.perf_counter()
        res = demo_mod.forward_model_demo(out, size=size, seed=seed, device=device)
    except ValueError as e:
        fail(str(e))
    console.print(f"simulated {res['K']} raw frames {res['camera_shape']} from a {size}x{size} phantom "
                  f"on {res['device']} (forward {res['forward_ms']:.1f} ms, adjoint {res['adjoint_ms']:.1f} ms; "
                  f"{time.perf_counter() - t0:.1f} s in all)")
    console.print(f"adjoint check <Ax,r> vs <x,A^T r>: relative error {res['dottest']:.1e}")
    console.print(f"figure: [bold]{res['figure']}[/]")


def _load(path: Path):
    from .io import load  # noqa: PLC0415

    try:
        return load(path)
    except ValueError as e:  # DatasetError is a ValueError; its message names file and path
        fail(str(e))


@app.command()
def info(file: Path = typer.Argument(..., help="A cusim-sim HDF5 file.")) -> None:
    """Summarise a dataset: shapes, optics, patterns, reconstructions (with metrics if ground truth exists).

    Example: cusim info sample1.h5
    """
    from .report import dataset_summary  # noqa: PLC0415

    console.print(dataset_summary(_load(file)))


@app.command()
def run(
    file: Path = typer.Argument(..., help="A cusim-sim HDF5 file; the result is added as /recon/<name>."),
    method: str = typer.Option("widefield", "--method", "-m", help="widefield"),
    name: str = typer.Option(None, help="Name under /recon (default: the method)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing /recon/<name>."),
    tiff: Path = typer.Option(None, "--tiff", help="Also write the image as a float32 TIFF."),
    figure: Path = typer.Option(None, "--figure", help="Also write a PNG comparison figure."),
    crop: int = typer.Option(20, help="Border (fine px) left out of the metrics."),
) -> None:
    """Reconstruct a dataset and store the result with its provenance.

    Example: cusim run sample1.h5 --method widefield --figure wf.png
    """
    from . import recon  # noqa: PLC0415
    from .io import DatasetError, add_recon  # noqa: PLC0415
    from .report import metrics_table, save_figure, save_tiff  # noqa: PLC0415

    ds = _load(file)
    name = name or method
    if method not in recon.METHODS:
        fail(f"--method: expected one of {sorted(recon.METHODS)}, got {method!r}")
    if name in ds.recons and not force:
        fail(f"{file}: /recon/{name}: exists already; use --force to overwrite it")
    for opt, target in (("--tiff", tiff), ("--figure", figure)):
        if target is not None and not target.parent.resolve().is_dir():
            fail(f"{opt}: folder {target.parent} does not exist")
    try:
        res = recon.reconstruct(ds, method, device=device)
    except ValueError as e:
        fail(str(e))
    table, metrics = metrics_table(ds, res.image, name, crop)
    try:
        add_recon(file, name, res.to_recon(**({"metrics": metrics} if metrics else {})), force=force)
    except DatasetError as e:
        fail(str(e))
    console.print(f"{method} on {res.device}: {res.runtime_s:.2f} s -> {file}:/recon/{name}")
    if table is not None:
        console.print(table)
    if tiff is not None:
        console.print(f"tiff: {save_tiff(tiff, res.image)}")
    if figure is not None:
        console.print(f"figure: {save_figure(figure, ds, res.image, name, res.loss)}")


if __name__ == "__main__":  # pragma: no cover
    app()
