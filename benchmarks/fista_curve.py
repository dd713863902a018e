"""PSNR-vs-iteration curves of cusim's FISTA + TV, and where a held-out-pixel stop would stop it.

    python -m benchmarks.fista_curve [--items SET:SAMPLE ... sim/FAMILY:SNR ...] [--sim-seeds 7 ...] [--crop 240]
        [--iterations 200] [--holdout 0.05] [--patience 20] [--prior tv] [--out fista_curve]

One FISTA run per item at cusim's defaults (prior and relative weight of ``IterativeConfig``, per-frame gain and
offset refit, the default margin) with ``--holdout`` of the camera pixels held out of the fit (weight 0,
seeded), stepped ``--iterations`` times with no stop. Every iteration: the image's quality (the convention of
``benchmarks.quality``: least-squares fit, 10 px border), the residual mean square of the fitted pixels and of
the held-out ones (sigma^2; per-frame gain and offset refitted on the fitted pixels). Then where each rule picks:

- ``best``: the curve's best PSNR (known only with the truth);
- ``discrepancy``: the first iteration whose fitted residual is <= ``tau`` sigma^2 (cusim's default stop);
- ``default``: what cusim's default run returns: the discrepancy iteration, else its cap (``n_iter``);
- ``held-out``: the least held-out residual seen before it has not fallen for ``--patience`` iterations (or
  ``--iterations`` ran): a validation stop, as the PINN's ``stop="validation"``.

Items: ``SET:SAMPLE`` is the central ``--crop`` of a PINN-paper sample; ``sim/FAMILY:SNR`` is ``cusim simulate``'s
128 x 128 filaments of that pattern family at that SNR, once per ``--sim-seeds`` (default 7, benchmarks.blend's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.blend import SIM_SEED, _dataset
from benchmarks.quality import DATA, quality, write_json_atomic

NAME = "fista_curve"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fista_curve", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the pinn-sim-paper folder")
    ap.add_argument("--items", nargs="+", default=["SIM/microtubules:1", "sim/linear:4"], metavar="SET:SAMPLE")
    ap.add_argument("--sim-seeds", nargs="+", type=int, default=[SIM_SEED])
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--holdout", type=float, default=0.05, help="share of the camera pixels held out of the fit")
    ap.add_argument("--patience", type=int, default=20, help="held-out rule: iterations without a new least")
    ap.add_argument("--prior", default=None, choices=["none", "tv", "hessian"], help="default cusim's (tv)")
    ap.add_argument("--out", default=NAME, help="results name: benchmarks/results/<out>-cpu.json / .md")
    args = ap.parse_args(argv)
    if min(args.crop, args.iterations, args.patience) < 1 or not 0 < args.holdout < 0.5:
        ap.error("--crop, --iterations and --patience must be positive, --holdout in (0, 0.5)")
    args.parsed = []
    for item in args.items:
        name, sep, sample = item.rpartition(":")
        if not sep or not name:
            ap.error(f"--items: expected SET:SAMPLE or sim/FAMILY:SNR, got {item!r}")
        try:
            value = float(sample) if name.startswith("sim/") else int(sample)
        except ValueError:
            ap.error(f"--items: {item!r}: the part after ':' must be a number")
        args.parsed += [(name, value, seed) for seed in args.sim_seeds] if name.startswith("sim/") else \
            [(name, value, None)]
    return args


def picks(curve: list[dict], tau: float, cap: int, patience: int) -> dict:
    """Where each rule picks on ``curve`` (per iteration: ``it``, ``fit``, ``held``, ``psnr_db``, ``ssim``; in
    order from iteration 1): the entry it returns, with ``reason``."""
    best = max(curve, key=lambda p: p["psnr_db"])
    disc = next((p for p in curve if p["fit"] <= tau), None)
    default = disc if disc is not None and disc["it"] <= cap else curve[min(cap, len(curve)) - 1]
    least, fired = curve[0], None
    for p in curve:
        if p["held"] < least["held"]:
            least = p
        elif p["it"] - least["it"] >= patience:
            fired = p["it"]
            break
    out = {"best": {**best, "reason": "the curve's best"},
           "discrepancy": None if disc is None else {**disc, "reason": f"fitted residual <= {tau:g} sigma^2"},
           "default": {**default, "reason": "discrepancy" if default is disc else f"cap ({cap})"},
           "held-out": {**least, "reason": f"not lower over {patience} iterations (at {fired})" if fired
                        else f"least held-out residual by iteration {curve[-1]['it']}"}}
    return out


def curve(ds, args) -> list[dict]:
    """One FISTA run of ``args.iterations`` with ``args.holdout`` of the pixels held out: the per-iteration curve."""
    from cusim.noise import estimate_sigma  # noqa: PLC0415
    from cusim.optim import fista, fit_gain_offset  # noqa: PLC0415
    from cusim.recon.config import IterativeConfig  # noqa: PLC0415

    cfg = IterativeConfig() if args.prior is None else IterativeConfig(prior=args.prior)
    op = ds.operator(margin_camera=ds.default_margin(), device="cpu")
    y = np.asarray(ds.frames(0), np.float32)
    sigma, _ = estimate_sigma(y, op)
    held = np.random.default_rng(0).random(y.shape) < args.holdout
    kept = (~held).astype(np.float32)
    points = []

    def watch(i, x, loss):
        ax = op.forward(x)
        g, o = fit_gain_offset(ax, y, weights=kept)
        r2 = (g[:, None, None] * ax + o[:, None, None] - y) ** 2
        q = quality(np.asarray(x)[op.field].astype(np.float64), ds.ground_truth)
        points.append({"it": i + 1, "fit": float(r2[~held].mean()) / sigma**2,
                       "held": float(r2[held].mean()) / sigma**2, "psnr_db": q["psnr_db"], "ssim": q["ssim"]})
        return False

    fista(op, y, n_iter=args.iterations, prior=cfg.prior, prior_weight=cfg.prior_weight * sigma * y.shape[0],
          fit_gain_offset=True, tol=0.0, callback=watch, weights=kept)
    return points


def main(argv=None) -> int:
    from cusim.recon.config import IterativeConfig  # noqa: PLC0415

    args = parse_args(argv)
    d = IterativeConfig()
    payload = {"benchmark": NAME, "command": "python -m benchmarks.fista_curve " + " ".join(argv or sys.argv[1:]),
               "settings": {"crop": args.crop, "iterations": args.iterations, "holdout": args.holdout,
                            "patience": args.patience, "prior": args.prior or d.prior, "tau": d.tau, "cap": d.n_iter},
               "environment": C.environment("cpu", "float32"), "items": []}
    out = C.RESULTS / f"{args.out}-cpu.json"
    rows = []
    for name, value, seed in args.parsed:
        pts = curve(_dataset(name, value, args, seed), args)  # seed None: a paper crop (no seed)
        got = picks(pts, d.tau, d.n_iter, args.patience)
        label = f"{name} SNR {value:g} seed {seed}" if seed is not None else f"{name} {value}"
        payload["items"].append({"item": label, "curve": pts, "picks": got})
        write_json_atomic(out, payload)

        def cell(k):
            p = got[k]
            return "-" if p is None else f"{p['psnr_db']:.2f} @ {p['it']}"

        rows.append([label, *(cell(k) for k in ("best", "default", "discrepancy", "held-out")),
                     f"{got['held-out']['psnr_db'] - got['default']['psnr_db']:+.2f}", f"{pts[-1]['held']:.3f}"])
        print(" | ".join(rows[-1]), flush=True)
    text = C.markdown_table(
        f"FISTA + {args.prior or d.prior} (cusim's defaults), {args.holdout:g} of the camera pixels held out, "
        f"{args.iterations} iterations; PSNR dB @ iteration where each rule picks (held-out: patience {args.patience})",
        ["item", "best", "default (discrepancy, else cap)", "discrepancy", "held-out", "held-out - default",
         f"held-out residual at {args.iterations} (sigma^2)"], rows)
    env = payload["environment"]
    text = (f"- device: cpu ({env['cpu_name']}), float32, one FISTA run per item; {env['date']}, commit "
            f"{env['git_commit']}\n- command: `{payload['command']}`\n\n" + text)
    print(text)
    (C.RESULTS / f"{args.out}-cpu.md").write_text(text)
    print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
