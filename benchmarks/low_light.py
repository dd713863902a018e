"""Low light: every method at its default settings on photon-thinned real frames and on simulated low light.

    python -m benchmarks.low_light [--fractions 1 0.2 0.1 0.05] [--no-pinn] [--methods LABEL ...] [--only real|sim]
        [--sim-snr 4] [--sim-seed 1] [--sim-size 128] [--sim-steps 400] [--device auto|cpu|cuda] [--threads N]

Real: ``../shared/data/real/dlsim-microtubules/raw_normal_light.tif`` imported with the options of
docs/data.md (binning 2 undoes the source's 2x interpolation; upsample 2 gives the 256 grid of the
reference). The camera (offset, gain) is estimated from the frames by mean-variance
(:func:`cusim.noise.estimate_camera`), the frames are turned into photo-electrons, binomially thinned
(seed 0) to each ``--fractions`` of the light and turned back into counts (:func:`cusim.noise.thin`).
Each thinned stack has its patterns ESTIMATED from itself (``cusim.estimate``) and is reconstructed
by widefield, Wiener, FISTA + TV, FISTA + Hessian (the relative weight's default, which is scaled by
the noise sigma estimated from the frames) and the PINN, all at default settings (where a level holds too few
photons for the estimate, its error is recorded and only widefield runs there); each image is scored
against the source's normal-light SIM reconstruction ``reference_sim_normal_light.tif`` (same grid) by
Pearson r (8 px border) and the FRC 0.5 cut-off (cycles per 256-grid pixel, whole field). Fraction 1
is the unthinned frames (the ceiling each method reaches with all the light).

Simulated: ``cusim.simulate`` filaments, ``--sim-size`` squared fine pixels (camera: half), linear 3 x 3,
SNR ``--sim-snr`` per raw pixel, true patterns; PSNR / SSIM / FRC against the truth (the convention of
``benchmarks.quality``). Each PINN row is what ``cusim.reconstruct`` returns with ``steps=--sim-steps``
(with the default blend, the network's image where its rule fires, blended with FISTA + TV's); beside it a
second, ``stop="max"`` run of the network alone (``benchmarks.pinn_curve``, same seed) gives its PSNR-vs-step
curve's best point and the network's image where the rule fires on it ("max" if never within the steps).

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
# filtered_r: hat functions of the radial frequency (16 gave 0.01 lower r on the dlsim images, 32 and 64 alike)
FILTER_BANDS = 32
IMPORT = dict(angles=3, phases=5, order="angle-major", binning=2, upsample=2, na=1.49, wavelength_nm=525,
              pixel_size_nm=44)
# The binned dlsim frames were interpolated (bicubic 2x) and binned back: their noise spectrum is white
# up to ~0.3 cycles per camera pixel and falls towards the corners (3950, 3300, 2600, 1800, 1100 in
# rings 0.24, 0.28, 0.32, 0.36, 0.40): the mean-variance band stops at 0.36 (0.32: gain 4.7; 0.36: 4.2;
# 0.40: 3.7; everything beyond the cut-off: 1.8, a third of the white level).
DLSIM_BAND_TOP = 0.36
# The simulated field's seed when --sim-seed is not given; JSON written before --sim-seed existed holds this one.
SIM_SEED = 1
# method label -> (cusim.reconstruct method, params)
METHODS = {
    "widefield": ("widefield", {}),
    "Wiener": ("wiener", {}),
    "FISTA + TV": ("iterative", {}),
    "FISTA + Hessian": ("iterative", {"prior": "hessian"}),
    # the camera noise model (opt-in): the data term weighted by 1 / var(y) (cusim.recon.iterative)
    "FISTA + TV, camera noise": ("iterative", {"noise": "camera"}),
    "FISTA + Hessian, camera noise": ("iterative", {"prior": "hessian", "noise": "camera"}),
    # FISTA without its discrepancy stop (to the 100-iteration cap): what the stop costs or saves (at 1/100 and 1/200
    # of the light it fired after 4 and 1 iterations, before its floor of 10: docs/quality.md, "Darker still")
    "FISTA + TV, no stop": ("iterative", {"stop": "max"}),
    "FISTA + Hessian, no stop": ("iterative", {"prior": "hessian", "stop": "max"}),
    "PINN": ("pinn", {}),
    # the network's image alone, without the default blend with FISTA + TV's coarse scales
    "PINN, network alone": ("pinn", {"blend": "none"}),
    # the camera noise model (opt-in): per-pixel variance in the loss and the stopping rule
    "PINN, camera noise": ("pinn", {"noise": "camera"}),
    "PINN, camera noise + background": ("pinn", {"noise": "camera", "background": "frame"}),
    # the default stop until 2026-12-05 (the default is now the validation stop: pixels held out of the loss,
    # the image of their least residual, no noise level needed)
    "PINN, discrepancy stop": ("pinn", {"stop": "discrepancy"}),
    # the validation stop's image before 2026-12-07: the least held-out residual's (keep_jitter 0)
    "PINN, least held-out residual": ("pinn", {"keep_jitter": 0.0}),
}


# rows that explain others (not defaults, not opt-in models): run only when named in --methods
DIAGNOSTIC = {"FISTA + TV, no stop", "FISTA + Hessian, no stop", "PINN, network alone", "PINN, least held-out residual"}


def pearson(img, ref, border: int = BORDER) -> float:
    a = np.asarray(img, np.float64)[border:-border, border:-border].ravel()
    b = np.asarray(ref, np.float64)[border:-border, border:-border].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def filtered_r(img, ref, border: int = BORDER, bands: int = FILTER_BANDS) -> float:
    """Pearson r (``border`` px in) after the isotropic linear filter that best maps ``img`` onto ``ref``: the
    filter is ``bands`` hat functions of the radial frequency (0 to the corner), fitted by least squares
    on one half of the field (left or right of the middle column) and applied to the other, so the
    reference's pixels never score the filter that was fitted on them. It measures how much of ``img``'s
    r is only its spectral weighting: an isotropic blur of the reference itself scores near 1."""
    x = np.asarray(img, np.float64)
    y = np.asarray(ref, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"filtered_r: expected two images of one shape, got {x.shape} and {y.shape}")
    h, w = x.shape
    rho = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    centres, step = np.linspace(0.0, np.sqrt(0.5), bands, retstep=True)
    spectrum = np.fft.fft2(x - x.mean())
    parts = np.stack([np.fft.ifft2(spectrum * np.clip(1 - np.abs(rho - c) / step, 0, None)).real for c in centres])
    left = np.zeros((h, w), bool)
    left[border:h - border, border:w // 2] = True
    right = np.zeros((h, w), bool)
    right[border:h - border, w // 2:w - border] = True
    pred = np.zeros((h, w))
    for fit, use in ((left, right), (right, left)):
        design = np.c_[parts[:, fit].T, np.ones(int(fit.sum()))]
        coef, *_ = np.linalg.lstsq(design, y[fit], rcond=None)
        pred[use] = np.tensordot(coef[:-1], parts[:, use], 1) + coef[-1]
    inner = left | right
    return float(np.corrcoef(pred[inner], y[inner])[0, 1])


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


def real(args, methods: dict, save) -> dict:
    import tifffile  # noqa: PLC0415

    import cusim  # noqa: PLC0415
    from cusim.importers import import_stack  # noqa: PLC0415
    from cusim.noise import thin  # noqa: PLC0415
    from cusim.estimate import EstimationError  # noqa: PLC0415
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
        level = {"photons": photons * frac, "methods": {}}
        try:
            options = {} if args.min_peak_snr is None else {"min_peak_snr": args.min_peak_snr}
            est_ds, est = with_estimated_patterns(lds, **options)
            level["estimate"] = est.summary()
        except EstimationError as e:  # too few photons to find a carrier: recorded; widefield still runs
            est_ds, level["estimate_error"] = None, str(e)
            print(f"1/{1 / frac:g} light  patterns not estimated: {e}", flush=True)
        for label, (method, params) in methods.items():
            if method != "widefield" and est_ds is None:
                continue
            t0 = time.perf_counter()
            res = cusim.reconstruct(lds if method == "widefield" else est_ds, method, device=args.device, **params)
            rec = {"r": pearson(res.image, ref), "r_filtered": filtered_r(res.image, ref),
                   "frc05": frc_cutoff(res.image, ref),
                   "runtime_s": time.perf_counter() - t0, "stop": res.extra.get("stop_reason"),
                   "steps": res.extra.get("steps_run")}
            level["methods"][label] = rec
            save({"real": {**out, "levels": {**out["levels"], f"{frac:g}": level}}})
            print(f"1/{1 / frac:g} light  {label:22s} r {rec['r']:.3f} (filtered {rec['r_filtered']:.3f})  "
                  f"FRC {rec['frc05']:.3f}  "
                  f"({rec['runtime_s']:.0f} s; {rec['stop']})", flush=True)
        out["levels"][f"{frac:g}"] = level
    return out


def validation_curve(ds, params: dict, steps: int, every: int, device: str) -> dict:
    """One run of ``stop="validation"`` (its pixels held out) stepped ``steps`` times: the PSNR-vs-step curve
    of its own trajectory, and where the rule fires with the image it returns (the one its rule keeps),
    in the layout of :func:`benchmarks.pinn_curve.curve`."""
    import torch  # noqa: PLC0415

    from benchmarks.quality import quality  # noqa: PLC0415
    from cusim.recon import pinn as P  # noqa: PLC0415

    margin = P.auto_margin(ds)
    cfg = P.PINNConfig(**{"ensemble": 1, **params, "steps": steps, "stop": "validation"})  # one trajectory
    fit = P.PINNStep(ds.frames(), ds.operator(margin_camera=margin, device=device), cfg,
                     watch_inset=P.watch_inset(ds, margin))

    def q(x):
        return quality(x.detach()[0][fit.field].float().cpu().numpy().astype(np.float64), ds.ground_truth)

    stopper, fired, at_best, points = P._Stopper(cfg, fit.data_loss.n_held), None, None, []
    try:
        for step in range(steps):
            x, loss, mse = fit.evaluate()
            if fired is None:
                reason = stopper(step, float(loss), float(mse))
                if stopper.keep == step:
                    at_best = q(x)
                if reason:
                    fired = {"step": stopper.keep + 1, "fired_at": step + 1, "reason": reason, **at_best}
            if (step + 1) % every == 0 or step + 1 == steps:
                points.append({"step": step + 1, "loss": float(loss), "mse": float(mse), **q(x)})
            fit.update()
        with torch.no_grad():
            last = q(fit.image())
    finally:
        fit.close()
    if fired is None:
        fired = {"step": stopper.keep + 1, "fired_at": None, "reason": f"max steps ({steps})", **at_best}
    best = max(points, key=lambda p: p["psnr_db"])
    return {"curve": points, "rules": {"default": fired},
            "best_on_curve": {"step": best["step"], "psnr_db": best["psnr_db"], "ssim": best["ssim"]}, "at_max": last}


def simulated(args, methods: dict, save) -> dict:
    import cusim  # noqa: PLC0415
    from benchmarks.pinn_curve import curve  # noqa: PLC0415
    from benchmarks.quality import quality  # noqa: PLC0415
    from cusim.recon.config import PINNConfig  # noqa: PLC0415

    n = args.sim_size
    ds = cusim.simulate(phantom="filaments", shape=(n, n), upsample=2, snr=args.sim_snr, seed=args.sim_seed,
                        device="cpu")
    out = {"snr": ds.attrs["sim_snr"], "photons": ds.attrs["sim_photons"], "size": n, "seed": args.sim_seed,
           "methods": {}, "pinn_curves": {}}
    print(f"simulated: SNR {ds.attrs['sim_snr']:.2f}, {ds.attrs['sim_photons']:.1f} photons per camera pixel",
          flush=True)
    for label, (method, params) in methods.items():
        t0 = time.perf_counter()
        if method == "pinn":  # one stop=max run: its PSNR-vs-step curve, and the image where its stop fires (a
            # validation run holds pixels out of its loss: its own trajectory)
            if PINNConfig(**params).stop == "validation":  # the default's stop, unless params name another
                c = validation_curve(ds, params, args.sim_steps, args.every, args.device)
            else:
                ns = SimpleNamespace(params=dict(params), steps=args.sim_steps, every=args.every, margin_camera=None,
                                     rules={"default": {}})
                c = curve(ds, ns, args.device)
            fired, best = c["rules"]["default"], c["best_on_curve"]
            # the row is what the run itself returns (with the default blend, the network's image at the stop
            # blended with FISTA + TV's); the curve is the network's alone
            t1 = time.perf_counter()
            res = cusim.reconstruct(ds, method, device=args.device, steps=args.sim_steps, **params)
            rec = {**quality(res.image.astype(np.float64), ds.ground_truth), "runtime_s": time.perf_counter() - t1,
                   "stop": res.extra.get("stop_reason"), "steps": res.extra.get("steps_run"),
                   "blend": params.get("blend", PINNConfig.blend) if "blend_parts" in res.extra else "none"}
            out["pinn_curves"][label] = {"best": best, "stop": {k: fired[k] for k in ("step", "reason", "psnr_db")},
                                         "returned": {"psnr_db": rec["psnr_db"], "blend": rec["blend"]},
                                         "curve_runtime_s": t1 - t0,
                                         "curve": [(p["step"], p["psnr_db"], p["mse"]) for p in c["curve"]]}
            print(f"sim  {label}: the network's curve best {best['psnr_db']:.2f} dB at step {best['step']}; the stop "
                  f"fires at step {fired['step']} with {fired['psnr_db']:.2f} dB ({fired['reason']}); the run returns "
                  f"{rec['psnr_db']:.2f} dB (blend {rec['blend']})", flush=True)
        else:
            res = cusim.reconstruct(ds, method, device=args.device, **params)
            rec = {**quality(res.image.astype(np.float64), ds.ground_truth), "runtime_s": time.perf_counter() - t0,
                   "stop": res.extra.get("stop_reason"), "steps": res.extra.get("steps_run")}
        out["methods"][label] = rec
        save({"sim": out})
        print(f"sim  {label:22s} PSNR {rec['psnr_db']:.2f} dB  SSIM {rec['ssim']:.3f}  FRC {rec['frc05']:.3f}  "
              f"({rec['runtime_s']:.0f} s; {rec['stop']})", flush=True)
    return out


def tables(data: dict) -> str:
    text = []
    if "real" in data:
        r = data["real"]
        cam = r["camera"]
        seen = {k for lv in r["levels"].values() for k in lv["methods"]}
        labels = [k for k in METHODS if k in seen] + sorted(seen - set(METHODS))

        def cell(lv: dict, label: str, key: str) -> str:
            m = lv["methods"].get(label)
            if m is None and "estimate_error" in lv:
                return "patterns not estimated"
            return "not run" if m is None or key not in m else f"{m['r']:.3f} / {m[key]:.3f}"

        def grid(key: str) -> list[list[str]]:  # a row per method: "r / <key>" per level, where it was measured
            return [[label] + [cell(lv, label, key) for lv in r["levels"].values()] for label in labels]

        cols = ["method"] + [("all light" if float(f) == 1 else f"1/{1 / float(f):g} light") +
                             f" ({lv['photons']:.0f} e-)" for f, lv in r["levels"].items()]
        text.append(C.markdown_table(
            f"dlsim-microtubules thinned: Pearson r / FRC 0.5 cut-off (cycles per 256-grid pixel) against the "
            f"source's normal-light reconstruction (r: 8 px border; FRC: whole field); camera estimated offset {cam['offset']:.1f}, "
            f"gain {cam['gain']:.2f} counts/e-", cols, grid("frc05")))
        if any("r_filtered" in m for lv in r["levels"].values() for m in lv["methods"].values()):
            text.append(C.markdown_table(
                "the same images: Pearson r as is / after the isotropic filter that best maps each half of the "
                "field onto the reference, fitted on the other half (benchmarks.low_light.filtered_r)", cols,
                grid("r_filtered")))
    if "sim" in data:
        s = data["sim"]
        rows = [[label, f"{m['psnr_db']:.2f}", f"{m['ssim']:.3f}", f"{m['frc05']:.3f}", str(m["steps"] or "-")]
                for label, m in s["methods"].items()]
        text.append(C.markdown_table(
            f"simulated filaments, SNR {s['snr']:.1f} per raw pixel ({s['photons']:.1f} photons), true patterns, "
            f"seed {s.get('seed', SIM_SEED)}",
            ["method", "PSNR dB", "SSIM", "FRC 0.5", "steps"], rows))
        for label, pc in s.get("pinn_curves", {}).items():
            got = pc.get("returned")
            returned = "" if got is None or not got.get("blend") or got["blend"] == "none" else (
                f"; blended ({got['blend']}), the image returned: {got['psnr_db']:.2f} dB")
            text.append(f"{label}, the network's PSNR-vs-step curve: best {pc['best']['psnr_db']:.2f} dB at step "
                        f"{pc['best']['step']}; the stop keeps the image of step {pc['stop']['step'] or 'max'}, "
                        f"{pc['stop']['psnr_db']:.2f} dB ({pc['stop']['reason']}){returned}.\n")
    return "\n".join(text)


def merge(paths: list[Path]) -> dict:
    """One record from the JSON of several partial runs (later files win for the same cell)."""
    import json  # noqa: PLC0415

    data: dict = {}

    def same(what: str, have: dict, new: dict, path) -> None:
        """The settings two pieces share must be equal (it checked the simulated seed only: a SNR 1 piece was
        merged under the SNR 4 heading)."""
        differ = sorted(k for k in set(have) & set(new) if have[k] != new[k])
        if differ:
            raise SystemExit(f"low_light: --merge: {path}: {what + ' ' if what else ''}"
                             f"{', '.join(f'{k} {new[k]!r}' for k in differ)}, the "
                             f"files before it {', '.join(f'{k} {have[k]!r}' for k in differ)}; merge pieces of one "
                             "setting at a time")

    for path in paths:
        part = json.loads(Path(path).read_text())
        data.setdefault("environment", part["environment"])
        same("", {"device": data["environment"].get("device")}, {"device": part["environment"].get("device")},
             path)
        data.setdefault("merged_from", []).append(str(path))
        if "real" in part:
            top = {k: v for k, v in part["real"].items() if k != "levels"}
            if "real" in data:
                same("thinned frames:", {k: v for k, v in data["real"].items() if k != "levels"}, top, path)
            r = data.setdefault("real", top)
            r.setdefault("levels", {})
            for frac, lv in part["real"]["levels"].items():
                have = r["levels"].setdefault(frac, {k: v for k, v in lv.items() if k != "methods"})
                same(f"level {frac}:", {k: v for k, v in have.items() if k == "photons"},
                     {k: v for k, v in lv.items() if k == "photons"}, path)
                have.setdefault("methods", {}).update(lv["methods"])
        if "sim" in part:
            field = {k: v for k, v in part["sim"].items() if k not in ("methods", "pinn_curves")}
            field.setdefault("seed", SIM_SEED)
            if "sim" in data:
                same("simulated field:", {k: v for k, v in data["sim"].items() if k not in ("methods", "pinn_curves")},
                     field, path)
            sim = data.setdefault("sim", field)
            sim.setdefault("methods", {}).update(part["sim"]["methods"])
            sim.setdefault("pinn_curves", {}).update(part["sim"].get("pinn_curves", {}))
    order = list(METHODS)
    for lv in data.get("real", {}).get("levels", {}).values():
        lv["methods"] = {k: lv["methods"][k] for k in order if k in lv["methods"]}
    if "sim" in data:
        data["sim"]["methods"] = {k: data["sim"]["methods"][k] for k in order if k in data["sim"]["methods"]}
    if "real" in data:
        data["real"]["levels"] = dict(sorted(data["real"]["levels"].items(), key=lambda kv: -float(kv[0])))
    return data


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.low_light", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DLSIM, help="the dlsim-microtubules folder")
    ap.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.2, 0.1, 0.05])
    ap.add_argument("--only", choices=["real", "sim"], default=None)
    ap.add_argument("--no-pinn", dest="pinn", action="store_false", help="leave the PINN out (minutes per run on a CPU)")
    ap.add_argument("--sim-snr", type=float, default=4.0)
    ap.add_argument("--sim-seed", type=int, default=SIM_SEED, help="seed of the simulated field (phantom and "
                    "noise; the network's seed stays 0)")
    ap.add_argument("--sim-size", type=int, default=128, help="fine-grid side of the simulated field (camera: half)")
    ap.add_argument("--sim-steps", type=int, default=400, help="steps of the PINN's PSNR-vs-step curve (stop=max)")
    ap.add_argument("--every", type=int, default=25, help="curve points every this many steps")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: the available cores)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="no runs: merge the JSON of partial runs (--only, --methods) into one table")
    ap.add_argument("--out", default=NAME, help=f"results name: benchmarks/results/<out>-<device>.json/.md ({NAME})")
    ap.add_argument("--min-peak-snr", type=float, default=None,
                    help="the pattern estimate's significance threshold (default: the library's, 10); at 1/200 of the "
                         "light the weakest dlsim carrier scores about 8 alone, and the estimate's lattice pass takes "
                         "it (down to 1/300) at the default")
    ap.add_argument("--methods", nargs="+", default=[k for k in METHODS if k not in DIAGNOSTIC], metavar="LABEL",
                    help=f"a subset of {list(METHODS)} (default: all but {sorted(DIAGNOSTIC)})")
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

    if args.merge:
        data = merge(args.merge)
        text = tables(data)
        print(text)
        device = "cuda" if "cuda" in str(data["environment"].get("device", "")).lower() else "cpu"
        print(C.write_json(args.out, device, data))
        print(C.write_markdown(args.out, device, text))
        return 0
    set_threads(args.threads)
    device = resolve_device(args.device)
    methods = {k: v for k, v in METHODS.items() if k in args.methods and (args.pinn or v[0] != "pinn")}
    data = {"environment": C.environment(device, "float32"), "args": {k: str(v) for k, v in vars(args).items()}}
    def save(part: dict) -> None:  # after every cell: a killed run keeps what it measured
        C.write_json(args.out, device, {**data, **part})

    if args.only in (None, "real"):
        data["real"] = real(args, methods, save)
    if args.only in (None, "sim"):
        data["sim"] = simulated(args, methods, save)
    text = tables(data)
    print("\n" + text)
    print(C.write_json(args.out, device, data))
    print(C.write_markdown(args.out, device, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
