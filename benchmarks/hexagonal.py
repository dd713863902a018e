"""Hexagonal SIM on simulated filaments: pattern estimation accuracy and every method's PSNR (issue 20).

    python -m benchmarks.hexagonal [--size 128] [--snr 10] [--seeds 0] [--methods widefield wiener iterative pinn]
                                   [--truth-patterns] [--device cpu|cuda] [--out hexagonal]

Per seed: ``cusim.simulate(family="hexagonal", phantom="filaments", shape=(size, size), upsample=2,
snr=snr)`` (7 frames of ``size/2`` camera pixels, Poisson + read noise); the illumination is estimated
from the frames (:func:`cusim.estimate.estimate_dataset`) and scored against the truth (worst |k| error
in %, angle in degrees, phase in radians; issue 20's bounds 0.3 %, 0.2 deg, 0.1 rad); then each method
reconstructs with the ESTIMATED patterns (``--truth-patterns``: with the simulated ones) at cusim's
defaults, scored by PSNR against the truth after a least-squares scale and offset, 10 px border left out.
Bars (issue 20): the PINN >= widefield + 3 dB and >= FISTA + TV. Writes
``benchmarks/results/hexagonal-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from benchmarks import _common as C

BORDER = 10
METHODS = ["widefield", "wiener", "iterative", "pinn"]


def estimate_errors(est, truth) -> dict:
    """Worst |k| (%), angle (deg) and phase (rad) errors of estimated against true hexagonal parameters."""
    est, truth = est.normalised(), truth.normalised()
    order = [int(np.argmax(np.abs(truth.k @ kk))) for kk in est.k]
    t_k, t_phase = truth.k[order], truth.phase[:, order]
    kmag = np.hypot(*est.k.T) / np.hypot(*t_k.T) - 1
    dang = np.angle(np.exp(1j * (np.arctan2(*est.k.T) - np.arctan2(*t_k.T))))
    dphi = np.angle(np.exp(1j * (est.phase - t_phase)))
    return {"k_percent": float(100 * np.abs(kmag).max()), "angle_deg": float(np.degrees(np.abs(dang)).max()),
            "phase_rad": float(np.abs(dphi).max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hexagonal", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128, help="fine-grid side (camera side x 2)")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--truth-patterns", action="store_true", help="reconstruct with the simulated patterns")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="hexagonal", help="results name: benchmarks/results/<out>-<device>.json/.md")
    args = ap.parse_args(argv)
    import cusim  # noqa: PLC0415
    from cusim import metrics  # noqa: PLC0415
    from cusim.estimate import estimate_dataset  # noqa: PLC0415

    rows, records = [], []
    for seed in args.seeds:
        ds = cusim.simulate(family="hexagonal", shape=(args.size, args.size), snr=args.snr, seed=seed,
                            device=args.device)
        est = estimate_dataset(ds)
        rec = {"seed": seed, "estimate": estimate_errors(est.params, ds.pattern_params), "methods": {}}
        if not args.truth_patterns:
            ds = dataclasses.replace(ds, pattern_params=est.params, pattern_kind="estimated")
        for m in args.methods:
            res = cusim.reconstruct(ds, m, device=args.device)
            rec["methods"][m] = {"psnr_db": metrics.psnr(res.image, ds.ground_truth, norm="lstsq", crop=BORDER),
                                 "runtime_s": res.runtime_s, "steps_run": res.extra.get("steps_run"),
                                 "stop_reason": res.extra.get("stop_reason")}
            print(f"seed {seed} {m}: {rec['methods'][m]['psnr_db']:.2f} dB, {res.runtime_s:.1f} s "
                  f"{res.extra.get('stop_reason') or ''}", flush=True)
        records.append(rec)
        e = rec["estimate"]
        rows.append([str(seed), f"{e['k_percent']:.3f} / {e['angle_deg']:.3f} / {e['phase_rad']:.3f}",
                     *(f"{rec['methods'][m]['psnr_db']:.2f}" for m in args.methods)])
    cols = ["seed", "estimate: k % / deg / rad", *(f"{m} dB" for m in args.methods)]
    which = "simulated" if args.truth_patterns else "estimated"
    title = (f"hexagonal SIM, filaments {args.size}x{args.size} fine ({args.size // 2}x{args.size // 2} camera), "
             f"SNR {args.snr:g}, {which} patterns ({args.device})")
    C.print_table(title, cols, rows)
    lines = []
    if {"pinn", "widefield", "iterative"} <= set(args.methods):
        gain = min(r["methods"]["pinn"]["psnr_db"] - r["methods"]["widefield"]["psnr_db"] for r in records)
        over = min(r["methods"]["pinn"]["psnr_db"] - r["methods"]["iterative"]["psnr_db"] for r in records)
        lines = [f"TARGET PINN >= widefield + 3 dB (least gain): measured {gain:+.2f} dB -> "
                 f"{'PASS' if gain >= 3 else 'MISS'}",
                 f"TARGET PINN >= FISTA + TV (least gain): measured {over:+.2f} dB -> "
                 f"{'PASS' if over >= 0 else 'MISS'}"]
        print("\n".join(lines))
    env = C.environment(args.device, "float32")
    C.write_json(args.out, args.device, {"environment": env, "settings": vars(args), "records": records})
    C.write_markdown(args.out, args.device, C.markdown_table(title, cols, rows) + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
