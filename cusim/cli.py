"""The ``cusim`` command line. It only parses, calls the library and prints.

Exit codes: 0 success, 1 bad input (one clear line, no traceback; an option Typer cannot parse too), 2 a bare
``cusim`` or ``cusim import`` (it prints the help), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from ._validate import check_int, check_number
from ._version import __version__
from .recon.config import CONFIGS, DEMO_TIME_LIMIT, ENSEMBLE_CUDA, FAST
from .recon.config import IterativeConfig as _I
from .recon.config import PINNConfig as _D  # the defaults the help texts name
from .recon.config import WienerConfig as _W

# The click that Typer runs on: the package itself (older Typer) or Typer's own copy of it (typer._click, 0.2x);
# its UsageError is the base of typer.BadParameter either way. click >= 8.2 shows the help of a bare group
# through a UsageError subclass; that one stays click's (exit 2), it is not bad input.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_HELP_ERRORS = tuple(e for e in (getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", None),) if e)


def _given(e, argv: list[str]) -> str | None:
    """What the command line gave the option of the BadParameter ``e`` (its last use in ``argv``), or None."""
    param = getattr(e, "param", None)
    if not argv or getattr(param, "param_type_name", None) != "option":
        return None
    n, given = max(getattr(param, "nargs", 1), 1), None
    for i, token in enumerate(argv):
        for opt in param.opts:
            if token == opt:
                given = " ".join(argv[i + 1:i + 1 + n])
            elif opt.startswith("--") and token.startswith(opt + "="):
                given = token[len(opt) + 1:]
    return given


class _Group(typer.core.TyperGroup):
    """Typer's group, whose usage errors (an unknown option or command, a value that does not parse, a missing
    value) exit with code 1 like every other bad input, not click's 2, and name the value that did not parse;
    the message stays Typer's one panel."""

    @staticmethod
    def _bad_input(e, argv: list[str]) -> None:
        if isinstance(e, _HELP_ERRORS):
            return
        e.exit_code = 1
        given = _given(e, argv) if isinstance(e, typer.BadParameter) else None
        if given and given not in e.message:
            e.message = f"{given!r}: {e.message}"

    def get_command(self, ctx, cmd_name):
        """The command, its one-line help in the group's list being its docstring's first paragraph joined into
        one line (Typer's rich list keeps the docstring's line breaks, which then wrap mid-sentence)."""
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None and not cmd.short_help and cmd.help:
            cmd.short_help = " ".join(inspect.cleandoc(cmd.help).split("\n\n")[0].split())
        return cmd

    def make_context(self, info_name, args, parent=None, **extra):
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except _UsageError as e:
            self._bad_input(e, argv)
            raise
        ctx.meta.setdefault("cusim.argv", argv)  # the whole command line: the first group's
        return ctx

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _UsageError as e:  # a subcommand's (the commands themselves raise typer.Exit)
            self._bad_input(e, ctx.meta.get("cusim.argv", []))
            raise


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    help="cusim: GPU-fast structured illumination microscopy (SIM) reconstruction.",
)
# soft_wrap: a printed line stays one line however narrow the output (rich wraps at 80 columns where stdout is not a
# terminal, which broke the estimate's rows and every long line of a log); tables still fit the width
console = Console(soft_wrap=True)
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one line to stderr and exit with code 1 (bad input)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def note(message: str) -> None:
    """Print one line to stderr that the user should read (the command goes on)."""
    err.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)


# Set by a Ctrl-C or SIGTERM inside a command. Python swallows (prints "Exception ignored") a KeyboardInterrupt
# raised while a finaliser runs; the PINN's progress callback raises it again at the next step from this flag.
_INTERRUPTED = threading.Event()


# what to try when a command's data does not fit the memory
_OOM_ADVICE = {"run": "the data or the reconstruction does not fit; try a smaller region (--roi), fewer --ensemble "
                      "networks, or another machine",
               "demo": "the demo does not fit; try a smaller --size or another machine"}


@contextlib.contextmanager
def _boundary(name: str = ""):
    """The one error boundary of every command: bad input (ValueError) and system errors (permission,
    disk full, a folder where a file belongs, out of memory) become one line and exit 1; SIGTERM is
    handled like Ctrl-C (one line, exit 130, no temporary file left: the writers clean up on the way out);
    cusim's warnings become ``note:`` lines."""
    from ._syserrors import MissingExtra, describe_os_error, out_of_memory  # noqa: PLC0415
    from ._warnings import CusimWarning  # noqa: PLC0415

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CusimWarning):
            note(str(message))
        else:
            previous_show(message, category, filename, lineno, file, line)

    def terminate(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    previous_show = warnings.showwarning
    warnings.showwarning = show
    in_main = threading.current_thread() is threading.main_thread()
    _INTERRUPTED.clear()
    previous_term = signal.signal(signal.SIGTERM, terminate) if in_main else None
    previous_int = signal.signal(signal.SIGINT, terminate) if in_main else None
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        err.print("interrupted; no output was left half-written (each appears only complete)", highlight=False)
        raise typer.Exit(code=130) from None
    except MissingExtra as e:  # an optional dependency this command needs
        fail(str(e))
    except OSError as e:
        fail(describe_os_error(e))
    except (MemoryError, RuntimeError) as e:  # RuntimeError: torch's out-of-memory; any other is a bug, re-raised
        if (text := out_of_memory(e)) is None:
            raise
        fail(f"{text}: {_OOM_ADVICE.get(name, 'the data do not fit; try a smaller input or another machine')}")
    except ValueError as e:
        fail(_as_option(str(e)))
    finally:
        warnings.showwarning = previous_show
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
            signal.signal(signal.SIGINT, previous_int)


def command(fn):
    """Run the command ``fn`` inside :func:`_boundary` (``@app.command()`` then ``@command``)."""

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        with _boundary(fn.__name__):
            return fn(*args, **kwargs)

    return guarded


def _threads_option(n):
    """Apply ``--threads`` (None: the cores this process may use)."""
    from ._threads import set_threads  # noqa: PLC0415

    try:
        return set_threads(n)
    except ValueError as e:  # "threads: expected ...": the option's name
        fail(f"--{e}")


THREADS_HELP = ("CPU threads for every pool (FFT workers, BLAS, torch); default: the cores this process may use "
                "(its CPU affinity), which avoids oversubscription on a shared machine.")


def _version(value: bool) -> None:
    if value:
        console.print(f"cusim {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """cusim: GPU-fast structured illumination microscopy (SIM) reconstruction."""


@app.command()
@command
def demo(
    out: Path = typer.Option(Path("cusim-demo"), "--out", "-o", help="Folder for demo.h5 and demo.png."),
    size: int = typer.Option(160, help="Fine-grid side in pixels (even)."),
    seed: int = typer.Option(0, help="Seed of the phantom, the noise and the network."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    steps: int = typer.Option(400, help="Most PINN steps (the validation stop or --time-limit may end them "
                              "earlier)."),
    time_limit: float = typer.Option(None, "--time-limit", help="Seconds of PINN steps at most, 0 for no limit "
                                     f"(default {DEMO_TIME_LIMIT:g}: the demo ends within about a minute; on 2 CPU cores "
                                     "without native bfloat16 the 400 steps take about 2 minutes)."),
    fast: bool = typer.Option(None, "--fast/--no-fast", help="The PINN's fast step (as cusim run --fast: the "
                              "U-Net's inner levels in bfloat16). Default: on a CPU with native bfloat16 "
                              "(AVX-512 BF16 or AMX), not elsewhere."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP),
    force: bool = typer.Option(False, "--force", help="Replace demo.h5 and demo.png in --out although an earlier "
                               "demo did not write them (a demo's own are replaced without it)."),
) -> None:
    """Simulate linear SIM of filaments (SNR 20), reconstruct it with the untrained PINN, and compare
    with the widefield image and the ground truth.

    Example: cusim demo --out cusim-demo
    """
    from rich.table import Table  # noqa: PLC0415

    from .backend import resolve_device  # noqa: PLC0415
    from .demo import pinn_demo  # noqa: PLC0415  (keeps `cusim --help` fast)
    from .report import FRC_THRESHOLD, convention, frc_text  # noqa: PLC0415

    if size < 32 or size % 2:
        fail(f"--size: expected an even number >= 32, got {size}")
    if time_limit is not None:
        try:
            check_number("--time-limit", time_limit, lo=0.0)  # seconds; 0: no limit
        except ValueError as e:
            fail(str(e))
    _threads_option(threads)
    try:
        check_int("--steps", steps, 1)
        check_int("--seed", seed, 0)
        device = resolve_device(device)
        if out.exists() and not out.is_dir():
            fail(f"--out: {out} exists and is not a folder")
        if out.is_dir():  # an earlier demo's outputs are replaced; other files of those names only with --force
            from ._outputs import check_output  # noqa: PLC0415
            from .demo import is_demo_output  # noqa: PLC0415

            own = is_demo_output(out / "demo.h5")
            for name, kind in (("demo.h5", "hdf5"), ("demo.png", "png")):
                check_output("--out", out / name, kind, force=True)  # never a file of another kind
                if (out / name).exists() and not (own or force):
                    fail(f"--out: {out / name} exists and no earlier cusim demo wrote it; use --force to replace it, "
                         "or another --out folder")
        with _pinn_progress("pinn", steps) as callback:
            res = pinn_demo(out, size=size, seed=seed, device=device, steps=steps, fast=fast, callback=callback,
                            time_limit=DEMO_TIME_LIMIT if time_limit is None else (time_limit or None))
    except ValueError as e:
        fail(_as_option(str(e)))
    first = next(iter(res["scores"].values()))
    table = Table(title=f"{size}x{size} filaments, linear SIM 3x3, SNR 20, against the ground truth "
                        f"({convention(first['norm'], first['border_px'])})")
    for col in ("image", "PSNR dB", "SSIM", f"FRC {FRC_THRESHOLD} resolution"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for name, sc in res["scores"].items():
        c = sc["frc_cutoff_cycles_per_px"]
        table.add_row(name, f"{sc['psnr_db']:.2f}", f"{sc['ssim']:.3f}",
                      frc_text(c, res["pixel_nm"], nyquist="beyond Nyquist (0.5 cyc/fine px)"))
    console.print(table)
    gain = res["scores"]["pinn"]["psnr_db"] - res["scores"]["widefield"]["psnr_db"]
    step = ("the fast step (U-Net's inner levels in bfloat16; --no-fast: float32)" if res["fast"]
            else "the float32 step")
    console.print(f"pinn on {res['device']}, {step}: {res['steps']} steps in {res['runtime_s']:.1f} s, stopped by "
                  f"{res['stop']}; {gain:+.1f} dB over widefield")
    if res["blend"] != "none":
        console.print("pinn's image: its fine detail, its coarse scales averaged with FISTA + TV's (--blend; "
                      "cusim run --blend none gives the network's image alone)")
    console.print(f"data and reconstructions: [bold]{res['file']}[/]   figure: [bold]{res['figure']}[/]")
    console.print(f"next: cusim info {res['file']}")


def _load(path: Path):
    from .io import load  # noqa: PLC0415

    try:
        return load(path)
    except ValueError as e:  # DatasetError is a ValueError; its message names file and path
        fail(str(e))


@app.command()
@command
def info(file: Path = typer.Argument(..., help="A cusim-sim HDF5 file.")) -> None:
    """Summarise a dataset: shapes, optics, patterns, reconstructions (with metrics if ground truth exists).

    Example: cusim info sample1.h5
    """
    from .report import dataset_summary  # noqa: PLC0415

    console.print(dataset_summary(_load(file)))


@app.command()
@command
def export(
    file: Path = typer.Argument(..., help="A cusim-sim HDF5 file with a reconstruction."),
    ome_zarr: Path = typer.Option(None, "--ome-zarr", help="Write an OME-Zarr image (OME-NGFF, multiscale pyramid) "
                                  "into this folder."),
    ome_tiff: Path = typer.Option(None, "--ome-tiff", help="Write an OME-TIFF file."),
    name: str = typer.Option(None, help="Which /recon/<name> (default: the only one)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing OME-Zarr folder or OME-TIFF file "
                               "(never something of another kind)."),
) -> None:
    """Export a reconstruction for Fiji and napari: OME-Zarr or OME-TIFF with the fine grid's physical pixel
    size, the axes (y, x; t for a time series) and the reconstruction's provenance.

    Example: cusim export sample1.h5 --ome-zarr sample1.zarr
    """
    from .ome import export as write  # noqa: PLC0415

    for kind, path in write(_load(file), name, ome_zarr=ome_zarr, ome_tiff=ome_tiff, force=force).items():
        console.print(f"{kind}: {path}")


# Where stdout is not a terminal (a log, a pipe, a batch job) the bar cannot redraw: one plain line every this many
# seconds of stepping instead, so a long run shows it is alive and how fast it goes
PROGRESS_EVERY_S = 30.0


@contextlib.contextmanager
def _pinn_progress(description: str, total: int, unit: str = "steps"):
    """Progress of optimisation steps (step, loss, residual, steps/s, ETA); yields the callback. On a terminal a
    rich bar; elsewhere a line every :data:`PROGRESS_EVERY_S` seconds."""
    if not console.is_terminal:
        yield _progress_lines(description, unit)
        return
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.2f} {unit}/s" if task.speed else "")

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4g}  residual {task.fields[mse]:.3g} sigma^2"), Rate(),
               TimeRemainingColumn()]
    # The bar appears with the first step, so that a refusal before any work (a checkpoint of other data,
    # a grid too large for memory) stays the one line it is.
    progress = Progress(*columns, console=console)
    task = None

    def callback(step, n, loss, mse):
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=total, loss=float("nan"), mse=float("nan"))
        progress.update(task, completed=step, total=n, loss=loss, mse=mse)

    try:
        yield callback
    finally:
        if task is not None:
            progress.stop()


def _progress_lines(description: str, unit: str):
    """The callback that prints ``description: step/total, loss, residual, rate`` once every PROGRESS_EVERY_S
    seconds after the first step (the rate over the steps since the first, whose set-up it leaves out)."""
    first = last = None

    def callback(step, n, loss, mse):
        nonlocal first, last
        now = time.perf_counter()
        if first is None:
            first = last = (now, step)
            return
        if now - last[0] >= PROGRESS_EVERY_S:
            last = (now, step)
            rate = (step - first[1]) / (now - first[0])
            console.print(f"{description}: {step}/{n} {unit}, loss {loss:.4g}, residual {mse:.3g} sigma^2, "
                          f"{rate:.2f} {unit}/s", highlight=False, markup=False)

    return callback


# Each method-specific option of `cusim run`: the setting it gives (None: handled by the CLI) and the
# methods it applies to; given for another method it is refused (one line), not silently ignored. The
# methods' configurations (cusim.recon.config) say what is valid.
_OPTIONS = {
    "--steps": ("steps", ("pinn",)), "--lr": ("lr", ("pinn",)), "--loss": ("loss", ("pinn",)),
    "--seed": ("seed", ("pinn",)), "--ensemble": ("ensemble", ("pinn",)), "--input": ("input", ("pinn",)),
    "--blend": ("blend", ("pinn",)), "--blend-weight": ("blend_weight", ("pinn",)),
    "--blend-sigma": ("blend_sigma", ("pinn",)),
    "--warm-start-steps": ("warm_start_steps", ("pinn",)), "--fast": (None, ("pinn",)),
    "--refine-patterns": ("refine_patterns", ("pinn",)), "--checkpoint-every": ("checkpoint_every", ("pinn",)),
    "--resume": (None, ("pinn",)), "--no-graph": (None, ("pinn",)),
    "--stop": ("stop", ("pinn", "iterative")), "--tau": ("tau", ("pinn", "iterative")),
    "--margin-camera": ("margin_camera", ("pinn", "iterative")), "--prior": ("prior", ("pinn", "iterative")),
    "--prior-weight": ("prior_weight", ("pinn", "iterative")),
    "--iterations": ("n_iter", ("iterative",)), "--min-iterations": ("min_iter", ("iterative",)),
    "--algorithm": ("algorithm", ("iterative",)),
    "--wiener-w": ("w", ("wiener",)),
    "--noise": ("noise", ("pinn", "iterative")), "--camera-offset": ("camera_offset", ("pinn", "iterative")),
    "--camera-gain": ("camera_gain", ("pinn", "iterative")),
    "--camera-read-sigma": ("camera_read_sigma", ("pinn", "iterative")),
    "--background": ("background", ("pinn",)), "--holdout": ("holdout", ("pinn",)),
    "--keep-within": ("keep_within", ("pinn",)), "--keep-jitter": ("keep_jitter", ("pinn",)),
    "--time-limit": ("time_limit", ("pinn",)),
}
_FLAG_OF = {setting: flag for flag, (setting, _) in _OPTIONS.items() if setting} | {"device": "--device"}
# cusim.estimate's settings as `cusim estimate` spells them
_ESTIMATE_FLAGS = {"n_angles": "--angles", "n_phases": "--phases", "k_guess": "--guess", "t": "--t", "order": "--order",
                   "min_peak_snr": "--min-peak-snr", "family": "--family", "lattice": "--no-lattice"}
# Options that only a stopping rule reads: given with another rule they are refused, not ignored
_STOP_OPTIONS = {"--holdout": ("validation",), "--keep-within": ("validation",), "--keep-jitter": ("validation",),
                 "--tau": ("discrepancy",), "--min-iterations": ("discrepancy",)}


def _deprecated(old: str, new: str, old_value, new_value):
    """The value of an option that also has an old spelling: the old one is taken with a one-line note."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise ValueError(f"{old}: deprecated spelling of {new}; give only {new}")
    note(f"{old} is deprecated and will be removed in the next release; use {new}")
    return old_value


def _as_option(message: str, own: tuple[str, ...] = ()) -> str:
    """A library message ``setting: ...`` about a setting that an option gives, as ``--option: ...``; ``own``:
    the command's further settings, each given by the option of its name (``binning`` by ``--binning``)."""
    head, sep, rest = message.partition(":")
    names = [n.strip() for n in head.split(",")]  # "angles, phases: ..." names two

    def flag(n):
        return f"--{n.replace('_', '-')}" if n in own else _FLAG_OF.get(n)
    if sep and all(flag(n) for n in names):
        return f"{', '.join(flag(n) for n in names)}:{rest}"
    return message


def _method_settings(method: str, given: dict):
    """The method's settings from the options given on the command line (None or False: not given) and
    its validated configuration (None for widefield); ValueError before any work if one is bad."""
    given = {f: v for f, v in given.items() if v is not None and v is not False}  # 0 is given, False is not
    for flag in given:
        methods = _OPTIONS[flag][1]
        if method not in methods:
            raise ValueError(f"{flag}: only for --method {' or '.join(methods)}, not {method}")
    settings = {_OPTIONS[f][0]: v for f, v in given.items() if _OPTIONS[f][0]}
    for flag in ("--blend-weight", "--blend-sigma"):  # they shape the blend, which --blend none turns off
        if flag in given and settings.get("blend", _D.blend) != "iterative":
            raise ValueError(f"{flag}: only with --blend iterative")
    if "--fast" in given:
        settings.update(FAST)
    if "--no-graph" in given:
        settings["graph"] = False
    operational = {k: settings.pop(k) for k in ("margin_camera", "checkpoint_every") if k in settings}
    cfg = CONFIGS[method].from_params(settings) if method in CONFIGS else None
    for flag, stops in _STOP_OPTIONS.items():  # a setting of another stopping rule would be silently unused
        if flag in given and cfg is not None and cfg.stop not in stops:
            raise ValueError(f"{flag}: only with --stop {' or '.join(stops)}, which this run does not use "
                             f"(its stop: {cfg.stop})")
    if method == "iterative" and "--min-iterations" in given and cfg.min_iter > cfg.n_iter:
        raise ValueError(f"--min-iterations: {cfg.min_iter} is more than the --iterations ({cfg.n_iter}); expected "
                         f"at most as many")
    return {**settings, **operational}, cfg


@app.command()
@command
def run(
    files: list[Path] = typer.Argument(..., help="A cusim-sim HDF5 file; the result is added as /recon/<name> (or "
                                                 "written to --out, and the file is only read). Several files, "
                                                 "folders or quoted patterns ('data/*.h5') run on a Dask cluster."),
    method: str = typer.Option("widefield", "--method", "-m", help="widefield | wiener | iterative | pinn"),
    name: str = typer.Option(None, help="Name under /recon (default: the method)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    out: Path = typer.Option(None, "--out", "-o", help="Write the result to this HDF5 file instead (a copy of the "
                             "input's data with /recon/<name>, or added to it if it holds the same raw data); the "
                             "input is only read and may be read-only."),
    roi: tuple[int, int, int, int] = typer.Option(None, "--roi", metavar="Y X H W",
                                                  help="Reconstruct only the region Y X H W (four integers: fine "
                                                  "pixels, multiples of the upsample factor), with the whole field's "
                                                  "patterns around it as margin context; needs --out."),
    force: bool = typer.Option(False, "--force", help="Replace what exists: /recon/<name>, the --out, --tiff and "
                               "--figure files (never an input, never a file of another kind)."),
    tiff: Path = typer.Option(None, "--tiff", help="Also write the image as a float32 OME-TIFF (the fine grid's "
                              "physical pixel size, axes, and the provenance in its description)."),
    figure: Path = typer.Option(None, "--figure", help="Also write a comparison figure; the format follows the "
                                "suffix (.png, .pdf, .svg, .jpg)."),
    metrics_border: int = typer.Option(None, "--metrics-border", help="Border (fine px) left out of the metrics "
                                       "against /ground_truth (default 20, or an eighth of a smaller image)."),
    crop: int = typer.Option(None, "--crop", hidden=True, help="Deprecated spelling of --metrics-border."),
    norm: str = typer.Option("lstsq", help="Metrics normalisation: lstsq (scale and offset fitted to the "
                                           "min-max normalised truth; cusim's convention) | minmax."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP),
    estimate_patterns: bool = typer.Option(False, "--estimate-patterns",
                                           help="wiener/iterative/pinn: estimate the sinusoidal patterns from the frames first."),
    steps: int = typer.Option(None, help=f"pinn: optimisation steps (first time point) (default {_D.steps})."),
    lr: float = typer.Option(None, help=f"pinn: Adam learning rate (x{_D.lr_decay} every {_D.lr_every} steps) "
                                        f"(default {_D.lr})."),
    loss: str = typer.Option(None, help=f"pinn: mse | ssim | pg | a weighted sum like mse+0.5*ssim (default {_D.loss})."),
    stop: str = typer.Option(None, help="pinn: max | plateau | discrepancy | validation (pixels held out of the "
                                        "loss; the latest image near their least residual, --keep-jitter; the "
                                        "default, discrepancy with an ssim loss); iterative: max | tol | "
                                        "discrepancy (default discrepancy)."),
    holdout: float = typer.Option(None, "--holdout", help=f"pinn, --stop validation: the share of the frames' "
                                  f"pixels held out of the loss (default {_D.holdout})."),
    keep_within: float = typer.Option(None, "--keep-within", help="pinn, --stop validation: keep the latest "
                                      "image whose held-out residual is within this many standard errors of the "
                                      f"least (0: the least's; default {_D.keep_within:g})."),
    keep_jitter: float = typer.Option(None, "--keep-jitter", help="pinn, --stop validation: keep the latest "
                                      "image whose held-out residual is within this many times its median "
                                      "step-to-step change of the least (0: the least's; default "
                                      f"{_D.keep_jitter:g})."),
    time_limit: float = typer.Option(None, "--time-limit", help="pinn: stop stepping after this many seconds of "
                                     "steps and keep the image the stopping rule holds then (each time point its "
                                     "own; default: no limit)."),
    tau: float = typer.Option(None, help=f"pinn/iterative: discrepancy stop at residual <= tau * sigma^2 "
                                         f"(default {_D.tau})."),
    prior: str = typer.Option(None, help="pinn/iterative: none | tv | hessian (default tv for --algorithm fista, "
                                         "none for rl and the pinn)."),
    prior_weight: float = typer.Option(None, "--prior-weight",
                                       help="pinn/iterative: weight of --prior (iterative: relative to sigma * K "
                                            f"(default {_I.prior_weight}); pinn: an absolute weight added to the "
                                            f"loss (default {_D.prior_weight}))."),
    reg: float = typer.Option(None, "--reg", hidden=True, help="Deprecated spelling of --prior-weight."),
    seed: int = typer.Option(None, help=f"pinn: seed of the network's weights (default {_D.seed})."),
    ensemble: int = typer.Option(None, help="pinn: average the images of this many networks (seeds seed, seed+1, "
                                            "...), stepped together as one batched network, about that many times "
                                            f"the time (default {ENSEMBLE_CUDA} on a GPU, 1 on the CPU)."),
    input: str = typer.Option(None, "--input", help="pinn: the network's input: upsampled (the frames "
                              "interpolated to the fine grid) | widefield (their mean) | mixed (an ensemble's "
                              f"networks alternate, the first upsampled) (default {_D.input})."),
    blend: str = typer.Option(None, "--blend", help="pinn: none | iterative: return the PINN's image averaged with "
                              f"FISTA + TV's (--method iterative at its defaults) (default {_D.blend})."),
    blend_weight: float = typer.Option(None, "--blend-weight", help="pinn, --blend iterative: the PINN's share "
                                       f"of the average, 0-1 (default {_D.blend_weight})."),
    blend_sigma: float = typer.Option(None, "--blend-sigma", help="pinn, --blend iterative: average "
                                      "only the coarser scales, below a Gaussian low-pass of this width in fine "
                                      f"pixels; the PINN's image alone above it; 0: every scale (default {_D.blend_sigma})."),
    warm_start_steps: int = typer.Option(None, help=f"pinn: steps for each later time point (warm start) "
                                                    f"(default {_D.warm_start_steps})."),
    fast: bool = typer.Option(False, "--fast", help="pinn: the fast step: the U-Net's inner levels in bfloat16 "
                              "(autocast; its full-resolution level and head in float32) with channels-last "
                              "tensors, the loss read back every 10 steps (1.6-1.7x per step on a CPU with AVX-512 "
                              "bf16; see docs/performance.md)."),
    no_graph: bool = typer.Option(False, "--no-graph", help="pinn, CUDA: run the eager step instead of the step "
                                  "captured once as a CUDA graph and replayed (the same computation; see "
                                  "docs/performance.md)."),
    refine_patterns: bool = typer.Option(False, "--refine-patterns",
                                         help="pinn: learn the pattern phases, carriers and modulation too."),
    margin_camera: int = typer.Option(None, "--margin-camera",
                                      help="pinn/iterative: camera pixels by which the object extends past the field, "
                                      "so that light from structure just outside is explained there (default: the "
                                      "PSF's reach where the patterns are known that far, i.e. with /pattern_params; "
                                      "else 0)."),
    margin: int = typer.Option(None, "--margin", hidden=True, help="Deprecated spelling of --margin-camera."),
    noise: str = typer.Option(None, "--noise", help="pinn/iterative (fista): white (one noise sigma) | camera "
                              "(per-pixel variance gain * (signal - offset) + read^2 weights the data term, the "
                              "camera from the file's /camera (cusim import stack --camera-*) or estimated from the "
                              f"frames by mean-variance) (default {_D.noise})."),
    camera_offset: float = typer.Option(None, "--camera-offset", help="pinn/iterative, --noise camera: the camera "
                                        "offset (counts at zero light) instead of the file's or its estimate."),
    camera_gain: float = typer.Option(None, "--camera-gain", help="pinn/iterative, --noise camera: the camera gain "
                                      "(counts per photo-electron) instead of the file's or its estimate."),
    camera_read_sigma: float = typer.Option(None, "--camera-read-sigma", help="pinn/iterative, --noise camera: the "
                                            "read noise (counts) instead of the file's or its estimate."),
    background: str = typer.Option(None, "--background", help="pinn: none | shared | frame: fit a smooth "
                                   "non-negative out-of-focus background (one for all frames, or one per frame) "
                                   f"with the object (default {_D.background})."),
    checkpoint_every: int = typer.Option(None, help="pinn: write a checkpoint every this many steps (default 50)."),
    resume: bool = typer.Option(False, "--resume", help="pinn: continue an interrupted run from its checkpoint."),
    iterations: int = typer.Option(None, help=f"iterative: most iterations (default {_I.n_iter})."),
    min_iterations: int = typer.Option(None, "--min-iterations", help="iterative: the discrepancy stop not before "
                                       f"this many iterations (default {_I.min_iter}; 1: the rule before 2026-12-06)."),
    algorithm: str = typer.Option(None, help=f"iterative: fista | rl (Richardson-Lucy) (default {_I.algorithm})."),
    wiener_w: float = typer.Option(None, "--wiener-w", help=f"wiener: the Wiener parameter (default {_W.w})."),
    scheduler: str = typer.Option(None, "--scheduler", help="Run on this existing Dask cluster (e.g. "
                                  "tcp://host:8786, from `dask scheduler`); default: a local one. Many inputs only."),
    workers: int = typer.Option(None, "--workers", help="Worker processes of the local Dask cluster (default: one "
                                "per core, or one per GPU). With several inputs, --resume skips those done with "
                                "the same settings."),
) -> None:
    """Reconstruct a dataset and store the result with its provenance.

    Example: cusim run sample1.h5 --method pinn --steps 1000 --figure pinn.png

    Many files: cusim run 'data/*.h5' --method wiener --workers 2 --resume
    """
    from . import recon  # noqa: PLC0415
    from .backend import resolve_device  # noqa: PLC0415

    if method not in recon.METHODS:
        fail(f"--method: expected one of {list(recon.METHODS)}, got {method!r}")
    margin_camera = _deprecated("--margin", "--margin-camera", margin, margin_camera)
    prior_weight = _deprecated("--reg", "--prior-weight", reg, prior_weight)
    metrics_border = _deprecated("--crop", "--metrics-border", crop, metrics_border)
    given = {"--steps": steps, "--lr": lr, "--loss": loss, "--seed": seed, "--ensemble": ensemble, "--input": input,
             "--blend": blend, "--blend-weight": blend_weight, "--blend-sigma": blend_sigma,
             "--warm-start-steps": warm_start_steps, "--fast": fast, "--no-graph": no_graph,
             "--refine-patterns": refine_patterns,
             "--checkpoint-every": checkpoint_every, "--resume": resume, "--stop": stop, "--tau": tau,
             "--margin-camera": margin_camera, "--prior": prior, "--prior-weight": prior_weight,
             "--iterations": iterations, "--min-iterations": min_iterations, "--algorithm": algorithm,
             "--wiener-w": wiener_w, "--noise": noise,
             "--camera-offset": camera_offset, "--camera-gain": camera_gain, "--camera-read-sigma": camera_read_sigma,
             "--background": background, "--holdout": holdout, "--keep-within": keep_within, "--keep-jitter": keep_jitter,
             "--time-limit": time_limit}
    if no_graph and device == "cpu":  # (with --device auto it may be a GPU: the option then applies there)
        fail("--no-graph: the CUDA graph is captured on CUDA only; this run is on the CPU (--device cpu)")
    if len(files) > 1 or scheduler is not None or workers is not None or _pattern_or_folder(files[0]):
        return _run_many(files, method, given, name, device, out, force, resume, threads, scheduler, workers,
                         estimate_patterns, {"--roi": roi, "--tiff": tiff, "--figure": figure,
                                             "--metrics-border": metrics_border,
                                             "--checkpoint-every": checkpoint_every})
    file = files[0]
    params, cfg = _method_settings(method, given)
    device = resolve_device(device)
    if norm not in ("lstsq", "minmax"):
        fail(f"--norm: expected lstsq or minmax, got {norm!r}")
    if roi is not None and out is None:
        fail("--roi: the result of a region is a dataset of its own; give --out OUT.h5 for it")
    _threads_option(threads)
    ds = _load(file)
    if roi is not None:
        ds = ds.crop(*roi)
    name = method if name is None else name  # an empty --name is refused below, not the method's name
    target = _check_run_outputs(file, out, tiff, figure, name, ds, roi is not None, force)
    if warm_start_steps is not None and not ds.is_series:
        fail(f"--warm-start-steps: {file} holds one time point; the warm starts are those of a series' later ones")
    if estimate_patterns and method not in recon.PATTERN_METHODS:
        fail(f"--estimate-patterns: method {method!r} uses no patterns")
    if method in recon.PATTERN_METHODS and not ds.has_patterns() and not estimate_patterns:
        fail(f"{file}: no /patterns and no /pattern_params; estimate them first: cusim estimate {file} "
             f"(or add --estimate-patterns)")
    border = _metrics_border(ds, metrics_border)
    try:
        res = _reconstruct(recon, ds, method, cfg, params, file, target, name, device, estimate_patterns, resume)
    except ValueError as e:  # the settings were checked before: what is left is about this file's data
        text = _as_option(str(e))
        for prefix in (f"{file}: ", f"{file.resolve()}: "):  # "a.h5: margin_camera: ..." is about an option
            if text.startswith(prefix) and (inner := _as_option(text[len(prefix):])).startswith("--"):
                text = inner
        # an option, or a file of this run: the input, the output, the PINN's checkpoint
        named = text.startswith(("--", str(file), str(file.resolve()), str(target), str(_checkpoint(target, name))))
        fail(text if named else f"{file}: {text}")
    _store(res, ds, file, out, roi is not None, target, name, border, norm, force, tiff, figure)
    if method == "pinn":  # the result is stored: its checkpoint has served
        _checkpoint(target, name).unlink(missing_ok=True)


def _pattern_or_folder(path: Path) -> bool:
    import glob  # noqa: PLC0415

    return path.is_dir() or (glob.has_magic(str(path)) and not path.exists())


def _run_many(files, method, given, name, device, out, force, resume, threads, scheduler, workers,
              estimate_patterns, single_only) -> None:
    """``cusim run`` over several inputs on a Dask cluster (:mod:`cusim.batch`): a progress bar over inputs,
    one line per failed input, a summary table, exit 1 at the end naming the failed inputs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from . import batch  # noqa: PLC0415
    from ._syserrors import import_extra  # noqa: PLC0415

    for flag, value in single_only.items():
        if value is not None:
            fail(f"{flag}: for one input only; with several inputs (or --scheduler / --workers) leave it out")
    import_extra("distributed", "dask", "reconstructing several inputs on a Dask cluster")  # before any output
    if scheduler is not None and workers is not None:
        fail("--workers: the workers of an existing cluster (--scheduler) are those started with it")
    from ._validate import check_int  # noqa: PLC0415

    for flag, value in (("--workers", workers), ("--threads", threads)):
        if value is not None:
            check_int(flag, value, 1)  # ValueError: one line, exit 1
    params, _ = _method_settings(method, {**given, "--resume": None})
    if name is not None:  # one name for every input: refused before the cluster and the progress bar
        from .io import DatasetError, check_recon_name  # noqa: PLC0415

        try:
            check_recon_name(Path(files[0]), name)
        except DatasetError as e:
            fail(f"--name: {e}")
    if out is not None and not out.is_dir():
        fail(f"--out: {out}: with several inputs, expected an existing folder for the result files")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console)
    failed = []

    def on_result(r):
        if r.status == "failed":
            failed.append(r)
            progress.console.print(f"failed: {escape(r.error)}", highlight=False, soft_wrap=True)
        progress.advance(task)

    inputs = batch.expand_inputs(files)
    with contextlib.ExitStack() as stack:
        client = None
        if scheduler is not None:
            from distributed import Client  # noqa: PLC0415

            try:
                client = stack.enter_context(Client(scheduler))  # waits distributed.comm.timeouts.connect
            except (OSError, TimeoutError) as e:
                fail(f"--scheduler {scheduler}: no Dask scheduler answered ({' '.join(str(e).split())[:200]})")
        with progress:
            task = progress.add_task(f"{method} over {len(inputs)} inputs", total=len(inputs))
            results = batch.reconstruct_many(inputs, method, client, name=name, out_dir=out, force=force,
                                             resume=resume, device=device, estimate_patterns=estimate_patterns,
                                             threads=threads, workers=workers, on_result=on_result, **params)
    table = Table(title=f"cusim run: {len(results)} inputs, {method}")
    for col in ("input", "method", "status", "steps", "stop", "runtime s", "worker"):
        table.add_column(col, justify="right" if col in ("steps", "runtime s") else "left")
    for r in results:
        table.add_row(str(r.path), r.method, r.status, "" if r.steps is None else str(r.steps), r.stop or "",
                      "" if r.runtime_s is None else f"{r.runtime_s:.2f}", r.worker)
    console.print(table)
    if failed:
        fail(f"{len(failed)} of {len(results)} inputs failed: {', '.join(str(r.path) for r in failed)}")


def _check_run_outputs(file: Path, out, tiff, figure, name: str, ds, region: bool, force: bool) -> Path:
    """Refuse, before any work, every output that would destroy data or could not be written; returns
    the HDF5 file the result goes to."""
    from ._outputs import OutputError, check_distinct, check_output, figure_kind  # noqa: PLC0415
    from .io import (DatasetError, check_recon_name, check_same_acquisition, check_writable,  # noqa: PLC0415
                     stored_bytes)

    target = file if out is None else out
    try:
        check_recon_name(target, name)
    except DatasetError as e:
        fail(f"--name: {e}")
    try:
        check_distinct(("--out", out), ("--tiff", tiff), ("--figure", figure))
    except OutputError as e:
        fail(str(e))
    if out is not None:  # an existing dataset of the same raw data takes the result beside its own
        check_output("--out", out, "hdf5", inputs=[file], force=force or not region)
    existing = ds if out is None else (_load(out) if out.exists() and not region else None)
    if existing is not None and existing is not ds:  # the result of this file's data goes into another's
        try:
            check_same_acquisition(out, existing, file, ds)
        except DatasetError as e:
            fail(str(e))
    if existing is not None and name in existing.recons and not force:
        fail(f"{target}: /recon/{name}: exists already; use --force to overwrite it (or --name)")
    outputs = [file] + ([out] if out is not None else [])
    if tiff is not None:
        check_writable(check_output("--tiff", tiff, "tiff", inputs=outputs, force=force), copy=False)
    if figure is not None:
        check_writable(check_output("--figure", figure, figure_kind("--figure", figure), inputs=outputs, force=force),
                       copy=False)
    image = stored_bytes() + 4 * ds.T * ds.fine_shape[0] * ds.fine_shape[1]  # float32 result, HDF5's structures
    if region:  # a new file of the region's dataset
        check_writable(target, extra_bytes=image + stored_bytes(ds.raw, ds.patterns, ds.psf, ds.ground_truth),
                       copy=False)
    elif out is not None and not out.exists():  # a new file that starts as a copy of the input
        check_writable(target, extra_bytes=image + file.stat().st_size)
    else:  # added to the file: a copy of it
        check_writable(target, extra_bytes=image)
    return target


def _metrics_border(ds, border):
    """The metrics border (fine px): given, or cusim's default for the image's size; None without truth."""
    from .metrics import SSIM_WINDOW  # noqa: PLC0415
    from .report import default_border, scorable  # noqa: PLC0415

    if ds.ground_truth is None:
        return border
    H, W = ds.fine_shape
    if border is None:
        border = default_border(ds.fine_shape)
        if not scorable(ds.fine_shape, border):  # a tiny field: the run goes on, unscored
            note(f"metrics: the {H}x{W} image is smaller than SSIM's {SSIM_WINDOW} px window once a {border} px "
                 "border is left out; the result is not scored against /ground_truth")
    elif min(H, W) < SSIM_WINDOW:
        fail(f"--metrics-border: the {H}x{W} image is smaller than SSIM's {SSIM_WINDOW} px window with any border; it "
             "cannot be scored against /ground_truth: leave --metrics-border out")
    elif border < 0 or not scorable(ds.fine_shape, border):
        fail(f"--metrics-border: a {border} px border leaves less of the {H}x{W} image than SSIM's {SSIM_WINDOW} px "
             f"window to compare with /ground_truth; expected 0 <= border <= {(min(H, W) - SSIM_WINDOW) // 2}")
    return border


def _checkpoint(target, name: str) -> Path:
    """Where ``cusim run`` keeps a PINN's checkpoint: a hidden file beside the file its result goes to."""
    target = Path(target)
    return target.with_name(f".{target.name}.{name}.ckpt")


def _reconstruct(recon, ds, method, cfg, params, file, target, name, device, estimate_patterns, resume):
    """The reconstruction with a progress bar; a PINN interrupted (Ctrl-C, SIGTERM) says what was kept. A PINN's
    checkpoint lies beside the file its result goes to (``target``, checked writable), not beside the input,
    which may be read-only."""
    if method == "pinn":
        target = Path(target)
        ckpt = _checkpoint(target, name)
        if resume and not ckpt.exists():
            note(f"--resume: no checkpoint of /recon/{name} beside {target} (a finished run removes its own); "
                 f"starting from step 0")
        reached = [0]
        with _pinn_progress(f"pinn {file.name}", cfg.steps) as progress:
            def callback(step, total, loss, mse):
                if _INTERRUPTED.is_set():  # an interrupt that a finaliser swallowed
                    raise KeyboardInterrupt
                reached[0] = step
                progress(step, total, loss, mse)

            try:
                return recon.reconstruct(ds, method, device=device, estimate_patterns=estimate_patterns,
                                         checkpoint=ckpt, resume=resume, callback=callback, keep_checkpoint=True,
                                         **params)  # removed once the result is stored (run)
            except KeyboardInterrupt:
                every = params.get("checkpoint_every", 50)
                kept = [p for p in ckpt.parent.glob(f"{ckpt.name}*") if p.is_file()]
                if kept:
                    err.print(f"interrupted at step {reached[0]}: the checkpoint {ckpt} (written every {every} "
                              f"steps) is kept; continue with the same command and --resume", highlight=False,
                              soft_wrap=True)
                else:
                    err.print(f"interrupted at step {reached[0]}, before the first checkpoint (every {every} steps): "
                              "nothing was kept", highlight=False, soft_wrap=True)
                raise typer.Exit(code=130) from None
    if method == "iterative":
        with _pinn_progress(f"{cfg.algorithm} {file.name}", cfg.n_iter, unit="it") as callback:
            return recon.reconstruct(ds, method, device=device, estimate_patterns=estimate_patterns,
                                     callback=callback, **params)
    return recon.reconstruct(ds, method, device=device, estimate_patterns=estimate_patterns, **params)


def _store(res, ds, file, out, region: bool, target, name, border, norm, force, tiff, figure) -> None:
    """Write the result with its provenance (and the TIFF and figure), then say where it went."""
    import dataclasses  # noqa: PLC0415

    from .io import add_recon, save, save_recon_as  # noqa: PLC0415
    from .ome import save_recon_tiff  # noqa: PLC0415
    from .report import metrics_table, save_figure  # noqa: PLC0415

    table, metrics = metrics_table(ds, res.image, name, border, norm)
    extra = res.recorded_extra()
    rec = res.to_recon(**extra, **({"metrics": metrics} if metrics else {}))
    if region:
        save(dataclasses.replace(ds, recons={name: rec}, path=None), out)
    elif out is not None:
        save_recon_as(file, out, name, rec, force=force)
    else:
        add_recon(file, name, rec, force=force)
    stopped = f", {res.extra['steps_run']} steps, stopped by {res.extra['stop_reason']}" if "stop_reason" in res.extra else ""
    console.print(f"{res.method} on {res.device}: {res.runtime_s:.2f} s{stopped} -> {target}:/recon/{name}")
    if table is not None:
        console.print(table)
    if tiff is not None:
        console.print(f"tiff: {save_recon_tiff(tiff, ds, name, rec.attrs, image=res.image)} (OME-TIFF)")
    if figure is not None:
        console.print(f"figure: {save_figure(figure, ds, res.image, name, res.loss)}")


def _parse_guess(text: str) -> tuple[list[float], list[float]]:
    """``--guess`` "PERIOD@ANGLE,..." -> (periods in fine pixels, angles in degrees); one clear line otherwise."""
    periods, angles = [], []
    for part in text.split(","):
        try:
            period, angle = (float(v) for v in part.split("@"))
            check_number("period", period, lo=0.0, strict=True)
            check_number("angle", angle)
        except ValueError:
            fail(f"--guess: expected PERIOD@ANGLE pairs (a period > 0 in fine pixels @ an angle in degrees) separated "
                 f"by commas, e.g. 16.4@14,16.4@-46,16.5@74; got {part.strip()!r} in {text!r}")
        periods.append(period)
        angles.append(angle)
    return periods, angles


@app.command()
@command
def estimate(
    file: Path = typer.Argument(..., help="A cusim-sim HDF5 file with sinusoidal or hexagonal SIM frames."),
    family: str = typer.Option(None, help="linear | hexagonal (default: recorded by import, else hexagonal for 7 "
                               "frames, linear otherwise)."),
    angles: int = typer.Option(None, help="Pattern orientations (default: recorded by import, or from K: 9, 15 -> 3; 25 -> 5)."),
    phases: int = typer.Option(None, help="Phases per orientation (default as --angles)."),
    order: int = typer.Option(1, help="1: linear SIM; 2: also the 2nd harmonic (saturated SIM, >= 5 phases)."),
    t: int = typer.Option(0, "--t", help="Time point to estimate from."),
    figure: Path = typer.Option(None, "--figure", help="Write a figure of the detected carrier peaks (format from "
                                "the suffix: .png, .pdf, .svg, .jpg)."),
    guess: str = typer.Option(None, "--guess", help="Approximate carriers, one per angle (hexagonal: per carrier), "
                              "as PERIOD@ANGLE in the units the estimate prints (period in fine pixels, angle in "
                              "degrees), comma-separated, e.g. 16.4@14,16.4@-46,16.5@74: the search stays within 10 % "
                              "of each; or angle 1's alone, the others then searched on its lattice (equal period, "
                              "angles 180/angles deg apart). For very noisy frames (with --min-peak-snr)."),
    min_peak_snr: float = typer.Option(None, "--min-peak-snr",
                                       help="The significance every carrier must reach (the estimate's 'peak SNR'; "
                                       "an angle without a carrier scores up to about 6; default 10). Lower it for "
                                       "very dark frames, and check the carriers with --figure."),
    lattice: bool = typer.Option(True, "--lattice/--no-lattice", help="An angle whose carrier is not found alone is "
                                 "searched again near the lattice of the angles found (equal |k|, angles 180/angles "
                                 "deg apart) and taken from significance 6 (or --min-peak-snr if lower); "
                                 "--no-lattice: every angle alone."),
    ideal_otf: bool = typer.Option(False, "--ideal-otf", help="Score the carriers with the ideal OTF of the file's "
                                   "--na/--wavelength-nm/--pixel-size-nm even where it has a /psf (a measured OTF "
                                   "scored rdlsim's weakest carrier lower: docs/data.md); the reconstructions still "
                                   "use the /psf."),
    write: bool = typer.Option(True, "--write/--no-write", help="Store the result as /pattern_params."),
    force: bool = typer.Option(False, "--force", help="Replace existing /pattern_params and --figure."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Estimate the illumination (carrier per angle, phase per frame, modulation) from the raw frames and
    store it as /pattern_params, which the reconstructions then use. Hexagonal SIM (7 frames): three
    carriers, the phase of each in every frame, a modulation per carrier.

    Example: cusim estimate data.h5 --figure peaks.png
    """
    from .estimate import MIN_PEAK_SNR, carrier_guess, estimate_dataset  # noqa: PLC0415
    from .io import set_pattern_params  # noqa: PLC0415
    from .optics import Widefield  # noqa: PLC0415

    from ._outputs import check_output, figure_kind  # noqa: PLC0415

    _threads_option(threads)
    ds = _load(file)
    if figure is not None:
        check_output("--figure", figure, figure_kind("--figure", figure), inputs=[file], force=force)
    if write and ds.pattern_params is not None and not force:
        fail(f"{file}: /pattern_params: exists already; use --force to replace it (or --no-write)")
    from .io import DatasetError, check_writable  # noqa: PLC0415

    try:  # before the estimate is printed: a file it cannot be written into is refused first
        for target in ([file] if write else []) + ([figure] if figure is not None else []):
            check_writable(target)
    except DatasetError as e:
        fail(str(e))
    if min_peak_snr is None:
        min_peak_snr = MIN_PEAK_SNR
    try:
        check_number("--min-peak-snr", min_peak_snr, lo=0.0, strict=True)
    except ValueError as e:
        fail(str(e))
    kw = {"order": order, "family": family, "min_peak_snr": float(min_peak_snr), "lattice": lattice}
    if angles is not None or phases is not None:
        kw.update(n_angles=angles, n_phases=phases)
    if guess is not None:
        kw["k_guess"] = carrier_guess(*_parse_guess(guess))
        if len(kw["k_guess"]) == 1:
            kw["k_guess"] = kw["k_guess"][0]  # one carrier: angle 1's, the others on its lattice
    if ideal_otf:
        if ds.na is None or ds.wavelength_nm is None or ds.pixel_size_nm is None:
            fail(f"{file}: --ideal-otf: the file has no optics attributes (na, wavelength_nm, pixel_size_nm) to make "
                 "the ideal OTF from; re-import with --na/--wavelength-nm/--pixel-size-nm")
        kw["psf"] = Widefield(ds.na, ds.wavelength_nm, ds.pixel_size_nm)
    try:
        est = estimate_dataset(ds, t=t, **kw)
    except ValueError as e:  # EstimationError: no carrier, bad counts, ... (a setting named as its option)
        head, sep, rest = str(e).partition(":")
        names = [n.strip() for n in head.split(",")]
        if sep and all(n in _ESTIMATE_FLAGS for n in names):
            head = ", ".join(_ESTIMATE_FLAGS[n] for n in names)
            if names == ["k_guess"]:  # the PERIOD@ANGLE pairs as the library saw them
                head = "--guess (as carriers in cycles per fine pixel)"
        fail(f"{file}: {head}{sep}{rest}")
    console.print(est.summary(), highlight=False)
    if figure is not None:
        console.print(f"figure: {est.figure(figure)}")
    if not write:
        return
    attrs = {"source": "cusim estimate", "time_point": t, "order": order, "peak_snr": est.peak_snr.tolist(),
             "n_angles": est.n_angles, "n_phases": est.n_phases, "pattern_family": est.family,
             "min_peak_snr": kw["min_peak_snr"], "otf": est.otf_source,
             "lattice_angles": [a + 1 for a in est.lattice]}  # angles found near the others' lattice (1-based)
    if guess is not None:
        attrs["k_guess"] = kw["k_guess"].tolist()  # cycles per fine pixel, (ky, kx) per angle or carrier
    try:
        set_pattern_params(file, est.params, kind="estimated", attrs=attrs, force=force)
    except ValueError as e:
        fail(str(e))
    console.print(f"-> {file}:/pattern_params")
    if ds.patterns is not None:
        console.print("note: the file also has /patterns: iterative and pinn reconstruct with those arrays; wiener "
                      "takes its carriers from this estimate and phases and modulation from the arrays; to "
                      "reconstruct with the estimate alone, run with --estimate-patterns")


import_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Import raw SIM data into a cusim-sim HDF5 file.")
app.add_typer(import_app, name="import")


def _check_out(out: Path, force: bool, inputs=()) -> None:
    """An HDF5 output: never an input or a file of another kind; an existing one only with --force."""
    from ._outputs import check_output  # noqa: PLC0415

    check_output("--out", out, "hdf5", inputs=inputs, force=force)


@import_app.command("paper")
@command
def import_paper_cmd(
    set_dir: Path = typer.Argument(..., help="A set folder of the PINN paper's layout, e.g. .../SIM/microtubules"),
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file (one sample) or folder (--all)."),
    sample: int = typer.Option(None, help="Sample number to import."),
    all_samples: bool = typer.Option(False, "--all", help="Import every sample, one file each, into the --out folder."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Import the PINN paper's layout (raw TIFF, pattern PNGs, PSF PNG, ground truth PNG; upsample 4).

    Example: cusim import paper ../shared/data/pinn-sim-paper/SIM/microtubules --sample 1 -o mt1.h5
    """
    from . import importers  # noqa: PLC0415
    from .io import save  # noqa: PLC0415

    if (sample is None) == (not all_samples):
        fail("import paper: give exactly one of --sample N or --all")
    try:
        if all_samples:
            paths = importers.import_paper_all(set_dir, out, force=force)
            console.print(f"imported {len(paths)} samples into {out}/")
            return
        _check_out(out, force)
        ds = importers.import_paper(set_dir, sample)
        save(ds, out)
    except ValueError as e:
        fail(str(e))
    console.print(f"imported sample {sample}: raw {ds.raw.shape}, patterns {ds.patterns.shape}, upsample "
                  f"{ds.upsample} -> {out}")


@import_app.command("stack")
@command
def import_stack_cmd(
    raw: Path = typer.Argument(..., help="Raw frames: a TIFF or MRC stack of angles*phases (x T) frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file."),
    angles: int = typer.Option(None, help="Number of pattern orientations (linear SIM: required)."),
    phases: int = typer.Option(None, help="Number of phases per orientation (linear SIM: required)."),
    family: str = typer.Option("linear", help="linear (angles x phases sinusoids) | hexagonal (7 frames of a "
                               "three-beam lattice, 1 angle x 7 phases)."),
    order: str = typer.Option("angle-major", help="angle-major (frames of one angle together) or phase-major."),
    upsample: int = typer.Option(..., help="Fine-grid factor of the reconstruction (1..8)."),
    na: float = typer.Option(None, help="Detection numerical aperture."),
    wavelength_nm: float = typer.Option(None, help="Emission wavelength in nm."),
    pixel_size_nm: float = typer.Option(None, help="Camera pixel size at the sample in nm (after --binning)."),
    patterns: Path = typer.Option(None, help="Pattern stack (K, H, W) in the raw's frame order (TIFF/MRC/NPY)."),
    psf: Path = typer.Option(None, help="PSF on the fine grid, odd size (TIFF/MRC/NPY/PNG)."),
    otf: Path = typer.Option(None, "--otf", help="Instead of --psf: a measured radial OTF profile (1-D .npy, "
                             "sample j at j x --otf-step-per-um cycles/um; needs --pixel-size-nm), made into the PSF."),
    otf_step_per_um: float = typer.Option(None, "--otf-step-per-um", help="--otf: cycles/um between its samples."),
    ground_truth: Path = typer.Option(None, help="Ground truth on the fine grid (TIFF/MRC/NPY/PNG)."),
    time_points: int = typer.Option(None, help="Number of time points T (default: frames / (angles*phases))."),
    binning: int = typer.Option(1, help="Mean-bin the raw frames by this factor first (for interpolated stacks)."),
    camera_offset: float = typer.Option(None, "--camera-offset", help="The camera offset (counts at zero light) of "
                                        "the stored frames; stored as /camera, the default of --noise camera."),
    camera_gain: float = typer.Option(None, "--camera-gain", help="The camera gain (counts per photo-electron, > 0) "
                                      "of the stored frames (after --binning)."),
    camera_read_sigma: float = typer.Option(None, "--camera-read-sigma", help="The read noise (counts, >= 0) of the "
                                            "stored frames (after --binning)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Import a generic raw stack with its frame order and optics; patterns given or left to estimation.

    Example: cusim import stack raw.tif --angles 3 --phases 5 --upsample 2 --na 1.49 --wavelength-nm 525
    --pixel-size-nm 65 -o data.h5 (hexagonal SIM: --family hexagonal instead of --angles/--phases)
    """
    from . import importers  # noqa: PLC0415
    from .io import save  # noqa: PLC0415

    _check_out(out, force, inputs=[p for p in (raw, patterns, psf, otf, ground_truth) if p is not None])
    try:
        ds = importers.import_stack(raw, angles=angles, phases=phases, order=order, upsample=upsample, na=na,
                                    wavelength_nm=wavelength_nm, pixel_size_nm=pixel_size_nm, patterns=patterns,
                                    psf=psf, ground_truth=ground_truth, time_points=time_points, binning=binning,
                                    family=family, camera_offset=camera_offset, camera_gain=camera_gain,
                                    camera_read_sigma=camera_read_sigma, otf=otf, otf_step_per_um=otf_step_per_um)
        save(ds, out)
    except ValueError as e:
        fail(_as_option(str(e), own=("angles", "phases", "family", "order", "upsample", "binning", "time_points",
                                     "otf", "otf_step_per_um")))
    camera = "" if ds.camera is None else ", camera " + ", ".join(f"{k} {v:g}" for k, v in ds.camera.items())
    psf_text = f", PSF {ds.psf.shape[0]}x{ds.psf.shape[1]} from the radial OTF" if otf is not None else ""
    console.print(f"imported {raw}: raw {ds.raw.shape} {ds.raw.dtype}, upsample {ds.upsample}, patterns "
                  f"{'given' if ds.has_patterns() else 'to be estimated'}{psf_text}{camera} -> {out}")


@app.command()
@command
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file."),
    phantom: str = typer.Option("filaments", help="filaments | ccp | er | actin | line_pairs | beads"),
    family: str = typer.Option("linear", help="linear | nonlinear | hexagonal | lattice | speckle"),
    size: int = typer.Option(256, help="Fine-grid side in pixels (divisible by --upsample)."),
    upsample: int = typer.Option(2, help="Fine-grid factor."),
    na: float = typer.Option(1.2, help="Detection numerical aperture."),
    wavelength_nm: float = typer.Option(520.0, help="Emission wavelength in nm."),
    pixel_size_nm: float = typer.Option(100.0, help="Camera pixel size at the sample in nm."),
    pattern_freq: float = typer.Option(0.9, help="Illumination frequency as a fraction of the OTF cut-off."),
    snr: float = typer.Option(None, help="Mean signal / noise sigma (default 20)."),
    photons: float = typer.Option(None, help="Mean photons per camera pixel (instead of --snr)."),
    read_noise: float = typer.Option(1.0, help="Camera read noise, electrons rms."),
    offset: float = typer.Option(100.0, help="Camera offset added to every pixel."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Add shot and read noise."),
    time_points: int = typer.Option(1, "--time-points", "-T",
                                    help="Time points of a drifting time series (each of angles x phases frames)."),
    dtype: str = typer.Option("float32", help="float32 | uint16"),
    seed: int = typer.Option(0, help="Seed of phantom, patterns and noise."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Simulate a raw SIM stack with ground truth through the toolkit's own forward model.

    Example: cusim simulate -o sim.h5 --phantom filaments --family linear --snr 20
    """
    from .io import save  # noqa: PLC0415
    from .simulate import simulate as run_simulation  # noqa: PLC0415

    _check_out(out, force)
    _threads_option(threads)
    try:
        ds = run_simulation(phantom=phantom, shape=(size, size), upsample=upsample, family=family, na=na,
                            wavelength_nm=wavelength_nm, pixel_size_nm=pixel_size_nm, pattern_freq=pattern_freq,
                            snr=snr, photons=photons, read_noise=read_noise, offset=offset, noise=noise,
                            T=time_points, dtype=dtype, seed=seed)
        save(ds, out)
    except ValueError as e:  # the library's names as the options that gave them (shape: --size; T: --time-points)
        head, sep, rest = str(e).partition(":")
        flag = {"shape": "--size", "T": "--time-points"}.get(head, f"--{head.replace('_', '-')}")
        fail(f"{flag}:{rest}" if sep and (head in ("shape", "T") or head in _SIMULATE_OPTIONS) else str(e))
    console.print(f"simulated {phantom} with {family} SIM: raw {ds.raw.shape} {ds.raw.dtype}, SNR "
                  f"{ds.attrs['sim_snr']:.1f}, {ds.attrs['sim_photons']:.0f} photons/px -> {out}")


_SIMULATE_OPTIONS = tuple(inspect.signature(simulate).parameters)


if __name__ == "__main__":  # pragma: no cover
    app()
