"""Low light: every method at its default settings on photon-thinned real frames and on simulated low light.

    python -m benchmarks.low_light [--fractions 1 0.2 0.1 0.05] [--no-pinn] [--sim-snr 4] [--sim-steps 600]
        [--device auto|cpu|cuda] [--only real|sim]

Real: ``../shared/data/real/dlsim-microtubules/raw_normal_light.tif`` imported with the options of
docs/data.md (binning 2 undoes the source's 2x interpolation; upsample 2 gives the 256 grid of the
reference). The camera (offset, gain) is estimated from the frames by mean-variance
(:func:`cusim.noise.estimate_camera`), the frames are turned into photo-electrons, binomially thinned
(seed 0) to each ``--fractions`` of the light and turned back into counts (:func:`cusim.noise.thin`).
Each thinned stack has its patterns ESTIMATED from itself (``cusim.estimate``) and is reconstructed
by widefield, Wiener, FISTA + TV, FISTA + Hessian (the relative weight's default, which is scaled by
the noise sigma estimated from the frames) and the PINN, all at default settings; each image is scored
against the source's normal-light SIM reconstruction ``reference_sim_normal_light.tif`` (same grid) by
Pearson r (8 px border) and the FRC 0.5 cut-off (cycles per 256-grid pixel, whole field). Fraction 1
is the unthinned frames (the ceiling each method reaches with all the light).

Simulated: ``cusim.simulate`` filaments, 256 x 256 fine (128 x 128 camera), linear 3 x 3, SNR
``--sim-snr`` per raw pixel, true patterns; PSNR / SSIM / FRC against the truth (the convention of
``benchmarks.quality``), and the PINN's PSNR-vs-step curve (``benchmarks.pinn_curve``): its best point
and the point where the default stopping rule fires.

Writes ``benchmarks/results/low_light-<device>.json`` and ``.md`` (the table of docs/quality.md, "Low light").
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks import _common as C

ROOT = Path(__file__).resolve().parents[1]
DLSIM = ROOT.parent / "shared" / "data" / "real" / "dlsim-microtubules"
NAME = "low_light"
BORDER = 8
IMPORT = dict(angles=3, phases=5, order="angle-major", binning=2, upsample=2, na=1.49, wavelength_nm=525,
              pixel_size_nm=44)
# The binned dlsim frames were interpolated (bicubic 2x) and binned back: their noise spectrum is white
# up to ~0.3 cycles per camera pixel and falls towards the corners (3950, 3300, 2600, 1800, 1100 in
# rings 0.24, 0.28, 0.32, 0.36, 0.40): the mean-variance band stops at 0.36 (0.32: gain 4.7; 0.36: 4.2;
# 0.40: 3.7; everything beyond the cut-off: 1.8, a third of the white level).
DLSIM_BAND_TOP = 0.36
# method label -> (cusim.reconstruct method, params)
METHODS = {
    "widefield": ("widefield", {}),
    "Wiener": ("wiener", {}),
    "FISTA + TV": ("iterative", {}),
    "FISTA + Hessian": ("iterative", {"prior": "hessian"}),
    "PINN": ("pinn", {}),
    # the camera noise model (opt-in): per-pixel variance in the loss and the stopping rule
    "PINN, camera noise": ("pinn", {"noise": "camera"}),
}


def pearson(img, ref, border: int = BORDER) -> float:
    a = np.asarray(img, np.float64)[border:-border, border:-border].ravel()
    b = np.asarray(ref, np.float64)[border:-border, border:-border].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def frc_cutoff(img, ref) -> float:
    """FRC 0.5 cut-off in cycles per pixel (0.5 when the curve never falls below 0.5), of the whole field
    (Hann-windowed by :func:`cusim.metrics.frc`): cropped by 8 px, the reference's ring 0 correlates
    negatively with every image (-0.4) and the smoothed curve starts below 0.5, a cut-off of 0."""
    from cusim import metrics  # noqa: PLC0415

    f = metrics.frc(img, ref, threshold="0.5")
    return 0.5 if f.cutoff is None else float(min(max(f.cutoff, 0.0), 0.5))


def camera_of(ds):
    """The camera estimated from the frames (mean-variance beyond the OTF cut-off)."""
    from cusim.noise import estimate_camera  # noqa: PLC0415

    cutoff = 2 * ds.na * ds.pixel_size_nm / ds.wavelength_nm  # cycles per camera pixel
    return estimate_camera(ds.raw, cutoff=1.05 * cutoff, band_top=DLSIM_BAND_TOP)


def real(args, methods: dict) -> dict:
    import tifffile  # noqa: PLC0415

    import cusim  # noqa: PLC0415
    from cusim.importers import import_stack  # noqa: PLC0415
    from cusim.noise import thin  # noqa: PLC0415
    from cusim.recon import with_estimated_patterns  # noqa: PLC0415

    ds = import_stack(args.data / "raw_normal_light.tif", **IMPORT)
    ref = tifffile.imread(args.data / "reference_sim_normal_light.tif").astype(np.float64)
    cam = camera_of(ds)
    photons = float(cam.to_photons(ds.raw).mean())
    print(f"camera (mean-variance): offset {cam.offset:.1f}, gain {cam.gain:.3f} counts/e-, "
          f"read {cam.read_sigma:.2f}; mean {photons:.1f} e- per camera pixel", flush=True)
    out = {"camera": cam.record(), "mean_photons": photons, "levels": {}}
    for frac in args.fractions:
        raw = ds.raw if frac == 1 else thin(ds.raw, cam, frac, seed=0)
        lds = dataclasses.replace(ds, raw=raw)
        est_ds, est = with_estimated_patterns(lds)
        level = {"photons": photons * frac, "estimate": est.summary(), "methods": {}}
        for label, (method, params) in methods.items():
            t0 = time.perf_counter()
            res = cusim.reconstruct(lds if method == "widefield" else est_ds, method, device=args.device, **params)
            rec = {"r": pearson(res.image, ref), "frc05": frc_cutoff(res.image, ref),
                   "runtime_s": time.perf_counter() - t0, "stop": res.extra.get("stop_reason"),
                   "steps": res.extra.get("steps_run")}
            level["methods"][label] = rec
            print(f"1/{1 / frac:g} light  {label:22s} r {rec['r']:.3f}  FRC {rec['frc05']:.3f}  "
                  f"({rec['runtime_s']:.0f} s; {rec['stop']})", flush=True)
        out["levels"][f"{frac:g}"] = level
    return out


def simulated(args, methods: dict) -> dict:
    import cusim  # noqa: PLC0415
    from benchmarks.pinn_curve import curve  # noqa: PLC0415
    from benchmarks.quality import quality  # noqa: PLC0415

    ds = cusim.simulate(phantom="filaments", shape=(256, 256), upsample=2, snr=args.sim_snr, seed=1, device="cpu")
    out = {"snr": ds.attrs["sim_snr"], "photons": ds.attrs["sim_photons"], "methods": {}}
    print(f"simulated: SNR {ds.attrs['sim_snr']:.2f}, {ds.attrs['sim_photons']:.1f} photons per camera pixel",
          flush=True)
    for label, (method, params) in methods.items():
        t0 = time.perf_counter()
        res = cusim.reconstruct(ds, method, device=args.device, **params)
        rec = {**quality(res.image.astype(np.float64), ds.ground_truth), "runtime_s": time.perf_counter() - t0,
               "stop": res.extra.get("stop_reason"), "steps": res.extra.get("steps_run")}
        out["methods"][label] = rec
        print(f"sim  {label:22s} PSNR {rec['psnr_db']:.2f} dB  SSIM {rec['ssim']:.3f}  FRC {rec['frc05']:.3f}  "
              f"({rec['runtime_s']:.0f} s; {rec['stop']})", flush=True)
    if "PINN" in methods:
        pinn_params = methods["PINN"][1]
        ns = SimpleNamespace(params=dict(pinn_params), steps=args.sim_steps, every=args.every, margin_camera=None,
                             rules={"default": {}})
        c = curve(ds, ns, args.device)
        fired, best = c["rules"]["default"], c["best_on_curve"]
        out["pinn_curve"] = {"best": best, "stop": {k: fired[k] for k in ("step", "reason", "psnr_db")},
                             "curve": [(p["step"], p["psnr_db"], p["mse"]) for p in c["curve"]]}
        print(f"sim  PINN curve: best {best['psnr_db']:.2f} dB at step {best['step']}; the stop fires at step "
              f"{fired['step']} with {fired['psnr_db']:.2f} dB ({fired['reason']})", flush=True)
    return out


def tables(data: dict) -> str:
    text = []
    if "real" in data:
        r = data["real"]
        cam = r["camera"]
        labels = list(next(iter(r["levels"].values()))["methods"])
        rows = []
        for label in labels:
            row = [label]
            for frac, lv in r["levels"].items():
                m = lv["methods"][label]
                row.append(f"{m['r']:.3f} / {m['frc05']:.3f}")
            rows.append(row)
        cols = ["method"] + [("all light" if float(f) == 1 else f"1/{1 / float(f):g} light") +
                             f" ({lv['photons']:.0f} e-)" for f, lv in r["levels"].items()]
        text.append(C.markdown_table(
            f"dlsim-microtubules thinned: Pearson r / FRC 0.5 cut-off (cycles per 256-grid pixel) against the "
            f"source's normal-light reconstruction (r: 8 px border; FRC: whole field); camera estimated offset {cam['offset']:.1f}, "
            f"gain {cam['gain']:.2f} counts/e-", cols, rows))
    if "sim" in data:
        s = data["sim"]
        rows = [[label, f"{m['psnr_db']:.2f}", f"{m['ssim']:.3f}", f"{m['frc05']:.3f}", str(m["steps"] or "-")]
                for label, m in s["methods"].items()]
        text.append(C.markdown_table(
            f"simulated filaments, SNR {s['snr']:.1f} per raw pixel ({s['photons']:.1f} photons), true patterns",
            ["method", "PSNR dB", "SSIM", "FRC 0.5", "steps"], rows))
        if "pinn_curve" in s:
            pc = s["pinn_curve"]
            text.append(f"PINN PSNR-vs-step curve: best {pc['best']['psnr_db']:.2f} dB at step {pc['best']['step']}; "
                        f"the default stop fires at step {pc['stop']['step']} with {pc['stop']['psnr_db']:.2f} dB "
                        f"({pc['stop']['reason']}).\n")
    return "\n".join(text)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.low_light", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DLSIM, help="the dlsim-microtubules folder")
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.2, 0.1, 0.05])
    ap.add_argument("--only", choices=["real", "sim"], default=None)
    ap.add_argument("--no-pinn", dest="pinn", action="store_false", help="leave the PINN out (minutes per run on a CPU)")
    ap.add_argument("--sim-snr", type=float, default=4.0)
    ap.add_argument("--sim-steps", type=int, default=600, help="steps of the PINN's PSNR-vs-step curve")
    ap.add_argument("--every", type=int, default=25, help="curve points every this many steps")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: the available cores)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), metavar="LABEL",
                    help=f"a subset of {list(METHODS)}")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"low_light: --methods: unknown {unknown}; expected some of {list(METHODS)}")
    for f in args.fractions:
        if not 0 < f <= 1:
            raise SystemExit(f"low_light: --fractions: expected numbers in (0, 1], got {f:g}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from cusim._threads import set_threads  # noqa: PLC0415
    from cusim.backend import resolve_device  # noqa: PLC0415

    set_threads(args.threads)
    device = resolve_device(args.device)
    methods = {k: v for k, v in METHODS.items() if k in args.methods and (args.pinn or v[0] != "pinn")}
    data = {"environment": C.environment(device, "float32"), "args": {k: str(v) for k, v in vars(args).items()}}
    if args.only in (None, "real"):
        data["real"] = real(args, methods)
    if args.only in (None, "sim"):
        data["sim"] = simulated(args, methods)
    text = tables(data)
    print("\n" + text)
    print(C.write_json(NAME, device, data))
    print(C.write_markdown(NAME, device, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
