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


if __name__ == "__main__":  # pragma: no cover
    app()
