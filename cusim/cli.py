"""The ``cusim`` command line. It only parses, calls the library and prints.

Exit codes: 0 success, 1 bad input (one clear line, no traceback), 2 usage (Typer's own).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

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
    out: Path = typer.Option(Path("cusim-demo"), "--out", "-o", help="Folder for demo.h5 and demo.png."),
    size: int = typer.Option(192, help="Fine-grid side in pixels (even)."),
    seed: int = typer.Option(0, help="Seed of the phantom, the noise and the network."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    steps: int = typer.Option(400, help="Most PINN steps (about a minute on 2 CPU cores; the discrepancy principle may stop earlier)."),
) -> None:
    """Simulate linear SIM of filaments (SNR 20), reconstruct it with the untrained PINN, and compare
    with the widefield image and the ground truth.

    Example: cusim demo --out cusim-demo
    """
    from rich.table import Table  # noqa: PLC0415

    from .backend import resolve_device  # noqa: PLC0415
    from .demo import CROP, pinn_demo  # noqa: PLC0415  (keeps `cusim --help` fast)

    if size < 32 or size % 2:
        fail(f"--size: expected an even number >= 32, got {size}")
    try:
        device = resolve_device(device)
        if out.exists() and not out.is_dir():
            fail(f"--out: {out} exists and is not a folder")
        with _pinn_progress("pinn", steps) as callback:
            res = pinn_demo(out, size=size, seed=seed, device=device, steps=steps, callback=callback)
    except ValueError as e:
        fail(str(e))
    table = Table(title=f"{size}x{size} filaments, linear SIM 3x3, SNR 20, against the ground truth "
                        f"(least-squares fit, {CROP} px border)")
    for col in ("image", "PSNR dB", "SSIM", "FRC 0.5 resolution"):
        table.add_column(col, justify="left" if col == "image" else "right")
    for name, sc in res["scores"].items():
        rnm = sc["resolution_nm"]
        table.add_row(name, f"{sc['psnr_db']:.2f}", f"{sc['ssim']:.3f}",
                      "beyond Nyquist (0.5 cyc/px)" if sc["frc_cutoff"] is None else f"{sc['frc_cutoff']:.3f} cyc/px ({rnm:.0f} nm)")
    console.print(table)
    gain = res["scores"]["pinn"]["psnr_db"] - res["scores"]["widefield"]["psnr_db"]
    console.print(f"pinn on {res['device']}: {res['steps']} steps in {res['runtime_s']:.1f} s, stopped by "
                  f"{res['stop']}; {gain:+.1f} dB over widefield")
    console.print(f"data and reconstructions: [bold]{res['file']}[/]   figure: [bold]{res['figure']}[/]")
    console.print(f"next: cusim info {res['file']}")


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


@contextlib.contextmanager
def _pinn_progress(description: str, total: int, unit: str = "steps"):
    """A rich progress bar for optimisation steps (step, loss, residual, steps/s, ETA); yields the callback."""
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.2f} {unit}/s" if task.speed else "")

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("loss {task.fields[loss]:.4g}  residual {task.fields[mse]:.3g} sigma^2"), Rate(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(description, total=total, loss=float("nan"), mse=float("nan"))

        def callback(step, n, loss, mse):
            progress.update(task, completed=step, total=n, loss=loss, mse=mse)

        yield callback


def _method_params(method: str, *, steps, lr, loss, stop, tau, seed, warm_start_steps, refine_patterns, iterations,
                   algorithm, prior, reg, wiener_w, fast=False, margin=None, ensemble=1) -> dict:
    """The method's parameters from the CLI options, validated before any work (ValueError if bad)."""
    for flag, on in (("--refine-patterns", refine_patterns), ("--fast", fast), ("--ensemble", ensemble != 1)):
        if on and method != "pinn":
            raise ValueError(f"{flag}: only for --method pinn")
    if margin is not None:
        if method not in ("pinn", "iterative"):
            raise ValueError("--margin: only for --method pinn or iterative")
        if margin < 0:
            raise ValueError(f"--margin: expected an integer >= 0 (camera pixels), got {margin}")
    if method == "pinn":
        from .recon.pinn import FAST, PINNConfig  # noqa: PLC0415

        params = dict(steps=steps, lr=lr, loss=loss, stop=stop, seed=seed, warm_start_steps=warm_start_steps,
                      refine_patterns=refine_patterns, **(FAST if fast else {}))
        if tau is not None:  # else PINNConfig's
            params["tau"] = tau
        if ensemble != 1:
            params["ensemble"] = ensemble
        PINNConfig.from_params(params)
        return params if margin is None else {**params, "margin": margin}
    if method == "iterative":
        from .recon.iterative import check_params  # noqa: PLC0415

        if prior is None:
            prior = "tv" if algorithm == "fista" else "none"
        params = dict(algorithm=algorithm, prior=prior, reg=reg, n_iter=iterations, stop=stop,
                      tau=1.0 if tau is None else tau)
        check_params(**params)
        return params if margin is None else {**params, "margin": margin}
    if method == "wiener":
        if wiener_w is None:
            return {}
        if not wiener_w > 0:
            raise ValueError(f"--wiener-w: expected a positive number, got {wiener_w}")
        return {"w": wiener_w}
    return {}


@app.command()
def run(
    file: Path = typer.Argument(..., help="A cusim-sim HDF5 file; the result is added as /recon/<name>."),
    method: str = typer.Option("widefield", "--method", "-m", help="widefield | wiener | iterative | pinn"),
    name: str = typer.Option(None, help="Name under /recon (default: the method)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing /recon/<name>."),
    tiff: Path = typer.Option(None, "--tiff", help="Also write the image as a float32 TIFF."),
    figure: Path = typer.Option(None, "--figure", help="Also write a PNG comparison figure."),
    crop: int = typer.Option(20, help="Border (fine px) left out of the metrics."),
    norm: str = typer.Option("lstsq", help="Metrics normalisation: lstsq (scale and offset fitted to the "
                                           "min-max normalised truth) | minmax (both images min-max normalised)."),
    estimate_patterns: bool = typer.Option(False, "--estimate-patterns",
                                           help="wiener/iterative/pinn: estimate the sinusoidal patterns from the frames first."),
    steps: int = typer.Option(1000, help="pinn: optimisation steps (first time point)."),
    lr: float = typer.Option(1e-3, help="pinn: Adam learning rate (x0.9 every 50 steps)."),
    loss: str = typer.Option("mse", help="pinn: mse | ssim | pg | a weighted sum like mse+0.5*ssim."),
    stop: str = typer.Option("discrepancy", help="pinn: max | plateau | discrepancy; iterative: max | tol | discrepancy."),
    tau: float = typer.Option(None, help="Discrepancy stop at residual <= tau * sigma^2 (default 1.0; pinn and iterative)."),
    seed: int = typer.Option(0, help="pinn: seed of the network's weights."),
    ensemble: int = typer.Option(1, help="pinn: average the images of this many networks (seeds seed, seed+1, ...); "
                                         "that many times the time."),
    warm_start_steps: int = typer.Option(200, help="pinn: steps for each later time point (warm start)."),
    fast: bool = typer.Option(False, "--fast", help="pinn: the fast step: the U-Net in bfloat16 (autocast) with "
                              "channels-last tensors, the loss read back every 10 steps (about 2x on a CPU with "
                              "AVX-512 bf16; see docs/performance.md)."),
    refine_patterns: bool = typer.Option(False, "--refine-patterns",
                                         help="pinn: learn the pattern phases, carriers and modulation too."),
    margin: int = typer.Option(None, help="pinn/iterative: camera pixels by which the object extends past the field, "
                               "so that light from structure just outside is explained there (default: the PSF's reach "
                               "where the patterns are known that far, i.e. with /pattern_params; else 0)."),
    checkpoint_every: int = typer.Option(50, help="pinn: write a checkpoint every this many steps."),
    resume: bool = typer.Option(False, "--resume", help="pinn: continue an interrupted run from its checkpoint."),
    iterations: int = typer.Option(100, help="iterative: most iterations."),
    algorithm: str = typer.Option("fista", help="iterative: fista | rl (Richardson-Lucy)."),
    prior: str = typer.Option(None, help="iterative: none | tv | hessian (default tv for fista, none for rl)."),
    reg: float = typer.Option(0.002, help="iterative: prior weight relative to sigma * K."),
    wiener_w: float = typer.Option(None, "--wiener-w", help="wiener: the Wiener parameter (default 0.15)."),
) -> None:
    """Reconstruct a dataset and store the result with its provenance.

    Example: cusim run sample1.h5 --method pinn --steps 1000 --figure pinn.png
    """
    from . import recon  # noqa: PLC0415
    from .backend import resolve_device  # noqa: PLC0415
    from .io import DatasetError, add_recon  # noqa: PLC0415
    from .report import metrics_table, save_figure, save_tiff  # noqa: PLC0415

    ds = _load(file)
    name = name or method
    try:
        device = resolve_device(device)
    except ValueError as e:
        fail(str(e))
    if method not in recon.METHODS:
        fail(f"--method: expected one of {list(recon.METHODS)}, got {method!r}")
    if name in ds.recons and not force:
        fail(f"{file}: /recon/{name}: exists already; use --force to overwrite it")
    for opt, target in (("--tiff", tiff), ("--figure", figure)):
        if target is not None and not target.parent.resolve().is_dir():
            fail(f"{opt}: folder {target.parent} does not exist")
    if norm not in ("lstsq", "minmax"):
        fail(f"--norm: expected lstsq or minmax, got {norm!r}")
    if estimate_patterns and method not in recon.PATTERN_METHODS:
        fail(f"--estimate-patterns: method {method!r} uses no patterns")
    if method in recon.PATTERN_METHODS and not ds.has_patterns() and not estimate_patterns:
        fail(f"{file}: no /patterns and no /pattern_params; estimate them first: cusim estimate {file} "
             f"(or add --estimate-patterns)")
    try:
        params = _method_params(method, steps=steps, lr=lr, loss=loss, stop=stop, tau=tau, seed=seed,
                                warm_start_steps=warm_start_steps, refine_patterns=refine_patterns, fast=fast,
                                margin=margin, ensemble=ensemble, iterations=iterations, algorithm=algorithm, prior=prior, reg=reg, wiener_w=wiener_w)
        if estimate_patterns:
            params["estimate_patterns"] = True
        elif margin:
            ds.check_margin(margin)  # patterns not known that far past the field: one line, before any work
        if ds.ground_truth is not None and not 0 <= 2 * crop < min(ds.fine_shape):
            fail(f"--crop: a {crop} px border leaves nothing of the {ds.fine_shape[0]}x{ds.fine_shape[1]} image to "
                 f"compare with /ground_truth; expected 0 <= crop < {(min(ds.fine_shape) + 1) // 2}")
        if method == "pinn":
            ckpt = file.with_name(f".{file.name}.{name}.ckpt")
            with _pinn_progress(f"pinn {file.name}", steps) as callback:
                res = recon.reconstruct(ds, method, device=device, checkpoint=ckpt, resume=resume,
                                        checkpoint_every=checkpoint_every, callback=callback, **params)
        elif method == "iterative":
            with _pinn_progress(f"{params['algorithm']} {file.name}", iterations, unit="it") as callback:
                res = recon.reconstruct(ds, method, device=device, callback=callback, **params)
        else:
            res = recon.reconstruct(ds, method, device=device, **params)
    except ValueError as e:
        fail(str(e))
    table, metrics = metrics_table(ds, res.image, name, crop, norm)
    extra = {k: v for k, v in res.extra.items() if isinstance(v, (int, float, str)) or k == "pattern_params"}
    try:
        add_recon(file, name, res.to_recon(**extra, **({"metrics": metrics} if metrics else {})), force=force)
    except DatasetError as e:
        fail(str(e))
    stopped = f", {res.extra['steps_run']} steps, stopped by {res.extra['stop_reason']}" if "stop_reason" in res.extra else ""
    console.print(f"{method} on {res.device}: {res.runtime_s:.2f} s{stopped} -> {file}:/recon/{name}")
    if table is not None:
        console.print(table)
    if tiff is not None:
        console.print(f"tiff: {save_tiff(tiff, res.image)}")
    if figure is not None:
        console.print(f"figure: {save_figure(figure, ds, res.image, name, res.loss)}")


@app.command()
def estimate(
    file: Path = typer.Argument(..., help="A cusim-sim HDF5 file with sinusoidal SIM frames."),
    angles: int = typer.Option(None, help="Pattern orientations (default: recorded by import, or from K: 9, 15 -> 3; 25 -> 5)."),
    phases: int = typer.Option(None, help="Phases per orientation (default as --angles)."),
    order: int = typer.Option(1, help="1: linear SIM; 2: also the 2nd harmonic (saturated SIM, >= 5 phases)."),
    t: int = typer.Option(0, "--t", help="Time point to estimate from."),
    figure: Path = typer.Option(None, "--figure", help="Write a PNG of the detected carrier peaks."),
    write: bool = typer.Option(True, "--write/--no-write", help="Store the result as /pattern_params."),
    force: bool = typer.Option(False, "--force", help="Replace existing /pattern_params."),
) -> None:
    """Estimate the illumination (carrier per angle, phase per frame, modulation) from the raw frames and
    store it as /pattern_params, which the reconstructions then use.

    Example: cusim estimate data.h5 --figure peaks.png
    """
    from .estimate import estimate_dataset  # noqa: PLC0415
    from .io import set_pattern_params  # noqa: PLC0415

    ds = _load(file)
    if figure is not None and not figure.parent.resolve().is_dir():
        fail(f"--figure: folder {figure.parent} does not exist")
    if write and ds.pattern_params is not None and not force:
        fail(f"{file}: /pattern_params: exists already; use --force to replace it (or --no-write)")
    kw = {"order": order}
    if angles is not None or phases is not None:
        kw.update(n_angles=angles, n_phases=phases)
    try:
        est = estimate_dataset(ds, t=t, **kw)
    except ValueError as e:  # EstimationError: no carrier, bad counts, ...
        fail(f"{file}: {e}")
    console.print(est.summary(), highlight=False)
    if figure is not None:
        console.print(f"figure: {est.figure(figure)}")
    if not write:
        return
    attrs = {"source": "cusim estimate", "time_point": t, "order": order, "peak_snr": est.peak_snr.tolist(),
             "n_angles": est.n_angles, "n_phases": est.n_phases}
    try:
        set_pattern_params(file, est.params, kind="estimated", attrs=attrs, force=force)
    except ValueError as e:
        fail(str(e))
    console.print(f"-> {file}:/pattern_params")
    if ds.patterns is not None:
        console.print("note: the file also has /patterns, which reconstructions use first; "
                      "to reconstruct with the estimate, run with --estimate-patterns")


import_app = typer.Typer(no_args_is_help=True, help="Import raw SIM data into a cusim-sim HDF5 file.")
app.add_typer(import_app, name="import")


def _refuse_overwrite(out: Path, force: bool) -> None:
    if out.exists() and not force:
        fail(f"{out}: exists already; use --force to replace it")


@import_app.command("paper")
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
            paths = importers.import_paper_all(set_dir, out)
            console.print(f"imported {len(paths)} samples into {out}/")
            return
        _refuse_overwrite(out, force)
        ds = importers.import_paper(set_dir, sample)
        save(ds, out)
    except ValueError as e:
        fail(str(e))
    console.print(f"imported sample {sample}: raw {ds.raw.shape}, patterns {ds.patterns.shape}, upsample "
                  f"{ds.upsample} -> {out}")


@import_app.command("stack")
def import_stack_cmd(
    raw: Path = typer.Argument(..., help="Raw frames: a TIFF or MRC stack of angles*phases (x T) frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file."),
    angles: int = typer.Option(..., help="Number of pattern orientations."),
    phases: int = typer.Option(..., help="Number of phases per orientation."),
    order: str = typer.Option("angle-major", help="angle-major (frames of one angle together) or phase-major."),
    upsample: int = typer.Option(..., help="Fine-grid factor of the reconstruction (1..8)."),
    na: float = typer.Option(None, help="Detection numerical aperture."),
    wavelength_nm: float = typer.Option(None, help="Emission wavelength in nm."),
    pixel_size_nm: float = typer.Option(None, help="Camera pixel size at the sample in nm (after --binning)."),
    patterns: Path = typer.Option(None, help="Pattern stack (K, H, W) in the raw's frame order (TIFF/MRC/NPY)."),
    psf: Path = typer.Option(None, help="PSF on the fine grid, odd size (TIFF/NPY/PNG)."),
    ground_truth: Path = typer.Option(None, help="Ground truth on the fine grid (TIFF/NPY/PNG)."),
    time_points: int = typer.Option(None, help="Number of time points T (default: frames / (angles*phases))."),
    binning: int = typer.Option(1, help="Mean-bin the raw frames by this factor first (for interpolated stacks)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Import a generic raw stack with its frame order and optics; patterns given or left to estimation.

    Example: cusim import stack raw.tif --angles 3 --phases 5 --upsample 2 --na 1.49 --wavelength-nm 525
    --pixel-size-nm 65 -o data.h5
    """
    from . import importers  # noqa: PLC0415
    from .io import save  # noqa: PLC0415

    _refuse_overwrite(out, force)
    try:
        ds = importers.import_stack(raw, angles=angles, phases=phases, order=order, upsample=upsample, na=na,
                                    wavelength_nm=wavelength_nm, pixel_size_nm=pixel_size_nm, patterns=patterns,
                                    psf=psf, ground_truth=ground_truth, time_points=time_points, binning=binning)
        save(ds, out)
    except ValueError as e:
        fail(str(e))
    console.print(f"imported {raw}: raw {ds.raw.shape} {ds.raw.dtype}, upsample {ds.upsample}, patterns "
                  f"{'given' if ds.has_patterns() else 'to be estimated'} -> {out}")


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file."),
    phantom: str = typer.Option("filaments", help="filaments | ccp | er | actin"),
    family: str = typer.Option("linear", help="linear | nonlinear | lattice | speckle"),
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
    time_points: int = typer.Option(1, "--time-points", "-T", help="Frames of a drifting time series."),
    dtype: str = typer.Option("float32", help="float32 | uint16"),
    seed: int = typer.Option(0, help="Seed of phantom, patterns and noise."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Simulate a raw SIM stack with ground truth through the toolkit's own forward model.

    Example: cusim simulate -o sim.h5 --phantom filaments --family linear --snr 20
    """
    from .io import save  # noqa: PLC0415
    from .simulate import simulate as run_simulation  # noqa: PLC0415

    _refuse_overwrite(out, force)
    try:
        ds = run_simulation(phantom=phantom, shape=(size, size), upsample=upsample, family=family, na=na,
                            wavelength_nm=wavelength_nm, pixel_size_nm=pixel_size_nm, pattern_freq=pattern_freq,
                            snr=snr, photons=photons, read_noise=read_noise, offset=offset, noise=noise,
                            T=time_points, dtype=dtype, seed=seed)
        save(ds, out)
    except ValueError as e:
        fail(str(e))
    console.print(f"simulated {phantom} with {family} SIM: raw {ds.raw.shape} {ds.raw.dtype}, SNR "
                  f"{ds.attrs['sim_snr']:.1f}, {ds.attrs['sim_photons']:.0f} photons/px -> {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
