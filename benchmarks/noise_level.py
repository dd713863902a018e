"""How well the frames' estimated noise level matches the noise the stopping rule meets.

    python -m benchmarks.noise_level [--snrs 4 10] [--seeds 1 2 3 4 5 6] [--size 128] [--sim-inset 0]
        [--pinn-steps 0] [--threads N] [--paper-sets SET ...] [--samples 1 2 3 4 5] [--crop 240]
        [--out noise_level]

The discrepancy stop ends a run when the residual mean square over the watched pixels reaches
``tau * sigma^2``, with ``sigma`` from :func:`cusim.noise.estimate_sigma` (the power beyond the passband of
Tukey-windowed frames). Here each field's TRUE object is put through the operator (least-squares gain and
offset per frame) and its residual over the pixels the stop watches is divided by ``sigma^2``: 1 means the
stop fires where the fit reaches the noise; below 1, sigma is too high and the stop fires early.

Beside cusim's estimate, two others for comparison (not used by cusim): ``p+s``, the same power beyond
the passband of the frames' periodic component (Moisan's periodic-plus-smooth decomposition, no window, every
pixel weighted alike), and ``band``, the frames filtered to beyond the passband and averaged over the watched
window only. Shot noise differs between a field's edge and its centre, so an estimate that weights the
pixels unlike the residual errs by that difference (docs/quality.md, "Issue 20: the stop on a second field").

Simulated: ``cusim.simulate`` filaments (linear 3 x 3, Poisson and read noise, periodic, margin 0, the whole
field watched). Paper: the central ``--crop`` of each sample with cusim's default margin, the true object
around the crop filling the margin, the stop's watched window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import _common as C

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "data" / "pinn-sim-paper"
NAME = "noise_level"


def periodic_component(u: np.ndarray) -> np.ndarray:
    """The periodic component of each image (last two axes) in Moisan's periodic-plus-smooth split."""
    v = np.zeros_like(u)
    v[..., 0, :] += u[..., -1, :] - u[..., 0, :]
    v[..., -1, :] += u[..., 0, :] - u[..., -1, :]
    v[..., :, 0] += u[..., :, -1] - u[..., :, 0]
    v[..., :, -1] += u[..., :, 0] - u[..., :, -1]
    m, n = u.shape[-2:]
    d = 2 * np.cos(2 * np.pi * np.arange(m) / m)[:, None] + 2 * np.cos(2 * np.pi * np.arange(n) / n)[None, :] - 4
    d[0, 0] = 1.0
    smooth = np.fft.fft2(v) / d
    smooth[..., 0, 0] = 0.0
    return u - np.fft.ifft2(smooth).real


def _beyond(passband: np.ndarray) -> np.ndarray:
    out = ~np.asarray(passband, bool)
    out[0, 0] = False
    return out


def ps_sigma(frames: np.ndarray, passband: np.ndarray) -> float:
    out = _beyond(passband)
    f = periodic_component(np.asarray(frames, np.float64))
    spec = np.abs(np.fft.fft2(f - f.mean(axis=(-2, -1), keepdims=True))) ** 2 / (f.shape[-1] * f.shape[-2])
    return float(np.sqrt(spec[..., out].mean()))


def band_sigma(frames: np.ndarray, passband: np.ndarray, window: tuple) -> float:
    out = _beyond(passband)
    f = periodic_component(np.asarray(frames, np.float64))
    r = np.fft.ifft2(np.fft.fft2(f) * out).real[(Ellipsis, *window)]
    return float(np.sqrt((r**2).mean() / out.mean()))


def truth_residual(op, truth: np.ndarray, y: np.ndarray, window: tuple) -> float:
    """Mean square of ``y - (a A truth + b)`` over ``window`` (a, b least squares per frame there)."""
    from cusim.optim import fit_gain_offset  # noqa: PLC0415

    p = np.asarray(op.forward(truth.astype(np.float32)), np.float64)[(Ellipsis, *window)]
    y = y[(Ellipsis, *window)]
    a, b = fit_gain_offset(p, y, positive=False)
    return float(np.mean((a[:, None, None] * p + b[:, None, None] - y) ** 2))


def row(op, frames, truth, inset: int) -> dict:
    from cusim.noise import estimate_sigma  # noqa: PLC0415

    h, w = frames.shape[-2:]
    window = (slice(inset, h - inset), slice(inset, w - inset))
    y = np.asarray(frames, np.float64)
    tr = truth_residual(op, truth, y, window)
    pb = op.passband()
    sig = {"cusim": estimate_sigma(frames, op)[0], "p+s": ps_sigma(frames, pb), "band": band_sigma(frames, pb, window)}
    return {"inset": inset, **{k: tr / s**2 for k, s in sig.items()}}


def simulated(snr: float, seed: int, size: int, inset: int = 0, pinn_steps: int = 0) -> dict:
    """The ratios of one simulated field; with ``pinn_steps``, one ``stop="max"`` run of cusim's PINN (one
    network, ``blend="none"``, as ``benchmarks.pinn_curve``) and where its discrepancy stop would fire with each
    estimate's sigma and with the true noise level ("truth"): the stop fires at ``mse <= tau`` in units of cusim's
    sigma^2, so another sigma is the rule with ``tau = (sigma / cusim's sigma)^2`` on the same trajectory (the
    loss's scale does not move Adam's steps)."""
    from types import SimpleNamespace  # noqa: PLC0415

    import cusim  # noqa: PLC0415

    ds = cusim.simulate(phantom="filaments", shape=(size, size), upsample=2, snr=snr, seed=seed, device="cpu")
    op = ds.operator(margin_camera=0, device="cpu")
    rec = row(op, ds.frames(), ds.ground_truth, inset)
    if pinn_steps:
        from benchmarks.pinn_curve import curve  # noqa: PLC0415

        rules = {"cusim": {}, **{k: {"tau": rec["cusim"] / rec[k]} for k in ("p+s", "band")},
                 "truth": {"tau": rec["cusim"]}}
        c = curve(ds, SimpleNamespace(margin_camera=0, params={"blend": "none"}, steps=pinn_steps, every=25,
                                      rules=rules), "cpu")
        best = c["best_on_curve"]
        rec["pinn"] = {"best": best, **{k: {"step": v["step"], "psnr_db": v["psnr_db"],
                                            "below_best_db": best["psnr_db"] - v["psnr_db"]}
                                        for k, v in c["rules"].items()}}
    return rec


def paper(name: str, sample: int, crop: int, data: Path) -> dict:
    from cusim.importers import import_paper  # noqa: PLC0415
    from cusim.recon import pinn as P  # noqa: PLC0415

    full = import_paper(data / name, sample)
    ds = full.crop_center(crop)
    m = P.auto_margin(ds)
    op = ds.operator(margin_camera=m, device="cpu")
    (h, w), (fh, fw) = op.input_shape, full.fine_shape
    truth = full.ground_truth[(fh - h) // 2:(fh - h) // 2 + h, (fw - w) // 2:(fw - w) // 2 + w]
    return row(op, ds.frames(), truth, P.watch_inset(ds, m))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.noise_level", description=__doc__.split("\n\n")[0])
    ap.add_argument("--snrs", type=float, nargs="*", default=[4.0, 10.0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--size", type=int, default=128, help="simulated fine-grid side (camera: half)")
    ap.add_argument("--sim-inset", type=int, default=0, help="camera pixels left out at the simulated field's edge "
                    "(cusim's stop watches the whole simulated field: 0)")
    ap.add_argument("--pinn-steps", type=int, default=0, help="simulated fields: also one PINN run of this many steps "
                    "and where its stop fires with each estimate (0: none)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--paper-sets", nargs="*", default=["SIM/microtubules", "NL_SIM/ccp", "NL_SIM/er", "NL_SIM/factin",
                                                         "NL_SIM/microtubules", "LPSIM/microtubules"])
    ap.add_argument("--samples", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    ap.add_argument("--crop", type=int, default=240)
    ap.add_argument("--data", type=Path, default=PAPER)
    ap.add_argument("--out", default=NAME)
    args = ap.parse_args(argv)
    if args.pinn_steps and args.sim_inset:
        raise SystemExit("noise_level: --pinn-steps: the PINN's stop watches the whole simulated field; "
                         "leave --sim-inset at 0")
    from cusim._threads import set_threads  # noqa: PLC0415

    set_threads(args.threads)
    records = []
    for snr in args.snrs:
        for seed in args.seeds:
            rec = simulated(snr, seed, args.size, args.sim_inset, args.pinn_steps)
            records.append({"field": f"simulated SNR {snr:g}", "seed": seed, **rec})
    if args.paper_sets and not args.data.is_dir():
        raise SystemExit(f"noise_level: --data: no folder {args.data}")
    for name in args.paper_sets:
        for s in args.samples:
            records.append({"field": name, "seed": s, **paper(name, s, args.crop, args.data)})
    rows = [[r["field"], str(r["seed"]), str(r["inset"]), f"{r['cusim']:.3f}", f"{r['p+s']:.3f}", f"{r['band']:.3f}"]
            for r in records]
    text = C.markdown_table("the true object's residual over the watched pixels / sigma^2 (1: the stop fires at the "
                            "noise; below 1: sigma too high, the stop fires early)",
                            ["field", "seed / sample", "watch inset px", "cusim (Tukey)", "p+s", "band"], rows)
    stops = [r for r in records if "pinn" in r]
    if stops:
        def cell(p):
            return f"{p['psnr_db']:.2f} @ {p['step'] or 'max'} ({-p['below_best_db']:+.2f})"
        text += "\n" + C.markdown_table(
            "the PINN's discrepancy stop with each sigma (truth: the true object's residual as the noise level): "
            "PSNR dB @ step (minus the curve's best)",
            ["field", "seed", "curve best", "cusim (Tukey)", "p+s", "band", "truth"],
            [[r["field"], str(r["seed"]), f"{r['pinn']['best']['psnr_db']:.2f} @ {r['pinn']['best']['step']}",
              *(cell(r["pinn"][k]) for k in ("cusim", "p+s", "band", "truth"))] for r in stops])
    print(text)
    data = {"environment": C.environment("cpu", "float64"), "records": records}
    print(C.write_json(args.out, "cpu", data))
    print(C.write_markdown(args.out, "cpu", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
