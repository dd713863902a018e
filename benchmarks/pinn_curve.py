"""PSNR-vs-step curves of cusim's PINN on the PINN-paper data, and where each stopping rule would stop.

    python -m benchmarks.pinn_curve [--items SET:SAMPLE ...] [--crop 480] [--steps 800] [--every 50]
        [--device auto|cpu|cuda] [--margin-camera N] [--pinn-param key=value ...] [--rule NAME:key=value,...]
        [--workers N] [--deadline SECONDS] [--out benchmarks/results/pinn_curve-<device>.json]

One run per item with ``stop="max"`` (otherwise cusim's defaults and its default margin or ``--margin-camera``, as
``cusim.reconstruct(ds, "pinn")``), the quality of the image every ``--every`` steps (the convention
of ``benchmarks.quality``: least-squares fit, 10 px border, PSNR / SSIM / FRC 0.5 cut-off) with the
residual (sigma^2) and loss; and, replayed on the same run, every ``--rule`` (a set of stopping
parameters, ``stop="discrepancy"``): the step where it fires and the quality of the image there, the
image the same run with those parameters would return (same seed, same trajectory up to that step).
The rule ``default`` (no parameters) is the discrepancy stop at cusim's settings (cusim's default stop until
2026-12-05). So one run per sample measures every candidate discrepancy rule. The validation stop, cusim's
default now, cannot be replayed here: it holds pixels out of the loss, so its trajectory is its own
(``benchmarks.low_light.validation_curve``).

``--workers N`` splits the items over N processes (a PINN step on a GPU is bound by the host, so one
GPU serves several; runtimes are then shared-GPU times); ``--deadline`` stops them, keeping the items
they finished (each process writes its JSON after every item).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from benchmarks.quality import DATA, _param_value, quality, write_json_atomic

NAME = "pinn_curve"
DEFAULT_RULES = ["default:", "tau1.1:tau=1.1", "tau1.05:tau=1.05", "tau1.0:tau=1.0", "stall0.01:stall=0.01",
                 "stall0.02:stall=0.02", "patience200:patience=200"]


def _pairs(text: str, what: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"pinn_curve: {what}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = _param_value(value.strip())
    return out


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pinn_curve", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the pinn-sim-paper folder")
    ap.add_argument("--items", nargs="+", default=["SIM/microtubules:1"], metavar="SET:SAMPLE")
    ap.add_argument("--crop", type=int, default=480)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--margin-camera", type=int, default=None, help="camera pixels; default cusim's (auto_margin)")
    ap.add_argument("--pinn-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--rule", action="append", default=None, metavar="NAME:KEY=VALUE,...",
                    help=f"a stopping rule to replay (repeat); default {' '.join(DEFAULT_RULES)}")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=None, help="seconds; stop the workers then")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if min(args.crop, args.steps, args.every, args.workers) < 1:
        ap.error("--crop, --steps, --every and --workers must be positive")
    if args.margin_camera is not None and args.margin_camera < 0:
        ap.error("--margin-camera: expected an integer >= 0 (camera pixels)")
    args.parsed_items = []
    for it in args.items:
        name, sep, sample = it.rpartition(":")
        if not sep or not sample.isdigit() or int(sample) < 1:
            ap.error(f"--items: expected SET:SAMPLE (e.g. NL_SIM/er:2), got {it!r}")
        args.parsed_items.append((name, int(sample)))
    args.params = _pairs(",".join(args.pinn_param), "--pinn-param")
    for key in ("stop", "steps"):
        if key in args.params:
            ap.error(f"--pinn-param {key}: set by the benchmark (stop=max, --steps)")
    args.rules = {}
    for r in args.rule or DEFAULT_RULES:
        name, sep, kv = r.partition(":")
        if not sep or not name:
            ap.error(f"--rule: expected NAME:KEY=VALUE,... (NAME: alone for cusim's default), got {r!r}")
        args.rules[name] = _pairs(kv, f"--rule {name}")
    return args


def curve(ds, args, device: str) -> dict:
    """One stop=max run of ``ds``: the quality curve and every rule's stop."""
    import torch  # noqa: PLC0415

    from cusim.recon import pinn as P  # noqa: PLC0415

    margin = P.auto_margin(ds) if args.margin_camera is None else args.margin_camera
    # one network: the curve is one trajectory (the CUDA default, an ensemble, would step several)
    cfg = P.PINNConfig(**{"ensemble": 1, **args.params, "steps": args.steps, "stop": "max"})
    fit = P.PINNStep(ds.frames(), ds.operator(margin_camera=margin, device=device), cfg,
                     watch_inset=P.watch_inset(ds, margin))
    truth = ds.ground_truth

    def q(x):  # the first network's image (N, H, W) -> its field
        return quality(x.detach()[0][fit.field].float().cpu().numpy().astype(np.float64), truth)

    stoppers = {}
    for name, rp in args.rules.items():
        rcfg = P.PINNConfig(**{"ensemble": 1, **args.params, **rp, "steps": args.steps, "stop": "discrepancy"})
        stoppers[name] = P._Stopper(rcfg)
    fired, points = {}, []
    t0 = time.perf_counter()
    try:
        for step in range(args.steps):
            x, loss, mse = fit.evaluate()
            lv, mv = float(loss), float(mse)
            for name, st in stoppers.items():
                reason = None if name in fired else st(step, lv, mv)
                if reason:
                    fired[name] = {"step": step + 1, "reason": reason, "mse": mv, **q(x)}
            if (step + 1) % args.every == 0 or step + 1 == args.steps:
                points.append({"step": step + 1, "loss": lv, "mse": mv, **q(x)})
            fit.update()
        with torch.no_grad():
            last = q(fit.image())
    finally:
        fit.close()
    for name in stoppers:  # never fired: the run would have ended at --steps with the image after the last update
        fired.setdefault(name, {"step": None, "reason": f"max steps ({args.steps})", **last})
    best = max(points, key=lambda p: p["psnr_db"])
    return {"margin": margin, "runtime_s": time.perf_counter() - t0, "curve": points,
            "rules": fired, "best_on_curve": {"step": best["step"], "psnr_db": best["psnr_db"], "ssim": best["ssim"]},
            "at_max": last}


def _line(name, sample, rec, rules) -> str:
    cells = [f"{r} {rec['rules'][r]['psnr_db']:.2f}@{rec['rules'][r]['step'] or 'max'}" for r in rules]
    b = rec["best_on_curve"]
    return (f"{name} #{sample}: " + " | ".join(cells) + f" | best {b['psnr_db']:.2f}@{b['step']}"
            f" | max {rec['at_max']['psnr_db']:.2f}")


def summary(records: list[dict], rules: list[str]) -> list[str]:
    """Per set and rule: mean PSNR / SSIM / FRC at the stop and mean steps (the curve's best for scale)."""
    lines = []
    for name in dict.fromkeys(r["set"] for r in records):
        rs = [r for r in records if r["set"] == name]
        best = np.mean([r["best_on_curve"]["psnr_db"] for r in rs])
        lines.append(f"{name} ({len(rs)} samples): best on curve {best:.2f}"
                     f", at {rs[0]['steps']} steps {np.mean([r['at_max']['psnr_db'] for r in rs]):.2f}")
        for rule in rules:
            got = [r["rules"][rule] for r in rs]
            steps = [g["step"] or r["steps"] for g, r in zip(got, rs)]
            lines.append(f"  {rule:>14}: {np.mean([g['psnr_db'] for g in got]):.2f} dB / "
                         f"{np.mean([g['ssim'] for g in got]):.3f} / FRC {np.mean([g['frc05'] for g in got]):.3f}"
                         f", steps {np.mean(steps):.0f}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from cusim.backend import resolve_device  # noqa: PLC0415

    device = resolve_device(args.device)
    out = args.out or C.RESULTS / f"{NAME}-{C.device_tag(device)}.json"
    payload = {"benchmark": NAME, "command": "python -m benchmarks.pinn_curve " + " ".join(argv or sys.argv[1:]),
               "settings": {"crop": args.crop, "steps": args.steps, "every": args.every, "margin": args.margin_camera,
                            "pinn_params": args.params,
                            "rules": args.rules, "device": device},
               "environment": C.environment(device, "float32"), "samples": []}
    if args.workers > 1:  # split the items over processes, then merge what they wrote
        chunks = [args.parsed_items[i::args.workers] for i in range(args.workers)]
        base = _strip(argv if argv is not None else sys.argv[1:],
                      {"--items": None, "--workers": 1, "--deadline": 1, "--out": 1})
        procs = []
        for i, chunk in enumerate(c for c in chunks if c):
            part = out.with_name(f"{out.stem}.part{i}.json")
            part.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "benchmarks.pinn_curve", *base, "--workers", "1", "--out", str(part),
                   "--items", *[f"{n}:{s}" for n, s in chunk]]
            procs.append((part, subprocess.Popen(cmd)))
        t0 = time.monotonic()
        for _, p in procs:
            try:
                p.wait(timeout=None if args.deadline is None else max(1.0, args.deadline - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for part, _ in procs:
            if part.exists():
                payload["samples"] += json.loads(part.read_text())["samples"]
                part.unlink()
    else:
        if args.threads:
            import torch  # noqa: PLC0415

            torch.set_num_threads(args.threads)
        from cusim.importers import import_paper  # noqa: PLC0415

        for name, sample in args.parsed_items:
            ds = import_paper(args.data / name, sample).crop_center(args.crop)
            rec = {"set": name, "sample": sample, "steps": args.steps, **curve(ds, args, device)}
            payload["samples"].append(rec)
            write_json_atomic(out, payload)
            print(_line(name, sample, rec, list(args.rules)), flush=True)
    write_json_atomic(out, payload)
    print("\n".join(summary(payload["samples"], list(args.rules))))
    print(f"JSON: {out}")
    return 0 if payload["samples"] else 1


def _strip(argv: list[str], options: dict) -> list[str]:
    """``argv`` without ``options`` (name -> number of values; None: all values up to the next option)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in options:
            n = options[a]
            i += 1
            if n is None:
                while i < len(argv) and not argv[i].startswith("--"):
                    i += 1
            else:
                i += n
            continue
        out.append(a)
        i += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
